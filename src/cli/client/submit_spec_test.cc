#include "cli/client/submit_spec.h"

#include <gtest/gtest.h>

#include "cli/client/test_support.h"

namespace gpuorch::cli {
namespace {

using nlohmann::json;
using testing::WriteTempFile;

TEST(LoadSpecFile, ReadsYamlWithTypedScalars) {
  const std::string path = WriteTempFile("spec.yaml", R"(
name: llm
queue: research
gpus: 8
preemptible: no
gpu_models: [H100-80GB]
env:
  SEED: "3"
  MODE: offline
topology: {level: rack, required: true}
command: [python, train.py, "--epochs", "3"]
)");
  auto spec = LoadSpecFile(path);
  ASSERT_TRUE(spec.ok()) << spec.failure().message;
  EXPECT_EQ(spec.value(), json::parse(R"({
    "name": "llm", "queue": "research", "gpus": 8, "preemptible": false,
    "gpu_models": ["H100-80GB"], "env": {"SEED": "3", "MODE": "offline"},
    "topology": {"level": "rack", "required": true},
    "command": ["python", "train.py", "--epochs", "3"]})"));
}

TEST(LoadSpecFile, ReadsJsonByExtensionOrBrace) {
  for (const char* name : {"spec.json", "spec.txt"}) {
    auto spec = LoadSpecFile(WriteTempFile(name, R"({"queue": "q", "gpus": 2})"));
    ASSERT_TRUE(spec.ok()) << name << ": " << spec.failure().message;
    EXPECT_EQ(spec.value(), json::parse(R"({"queue": "q", "gpus": 2})"));
  }
}

// Every bad file is a usage error (exit 2) whose message names the file and the problem.
TEST(LoadSpecFile, BadFilesAreUsageErrorsNamingTheFile) {
  struct Case {
    const char* file;
    const char* text;
    const char* expect;  // substring of the message after the path
  };
  const Case cases[] = {
      {"bad.yaml", "name: [unclosed\n", ":2:1: invalid YAML:"},
      {"bad.json", R"({"name": "x",})", ": invalid JSON:"},
      {"list.yaml", "- a\n- b\n", ": expected a mapping"},
      {"scalar.json", "17", ": expected a mapping"},
      {"empty.yaml", "", ": expected a mapping"},
      // Found by fuzz/spec_file_fuzzer.cc: YAML let the byte through and the body's dump()
      // threw, ending `gpuorch submit` with an uncaught exception.
      {"latin1.yaml", "name: caf\xE9\ncommand: [x]\n",
       ": not UTF-8 text: invalid UTF-8 byte at index 10"},
  };
  for (const auto& c : cases) {
    const std::string path = WriteTempFile(c.file, c.text);
    auto spec = LoadSpecFile(path);
    ASSERT_FALSE(spec.ok()) << c.file;
    EXPECT_EQ(spec.failure().exit_code, kExitUsage) << c.file;
    EXPECT_EQ(spec.failure().message.rfind(path, 0), 0u) << spec.failure().message;
    EXPECT_NE(spec.failure().message.find(c.expect), std::string::npos)
        << c.file << ": " << spec.failure().message;
  }
  // Found by a long fuzz run: valid UTF-8 that yaml-cpp decodes into a lone 0x85 byte (a
  // tag before a NUL), which could be neither sent nor written back with `-o yaml`.
  auto tag = ParseSpecText(std::string("env:\n  !\0N: x\n", 14), "tag.yaml");
  ASSERT_FALSE(tag.ok());
  EXPECT_EQ(tag.failure().exit_code, kExitUsage);
  EXPECT_EQ(tag.failure().message,
            "tag.yaml: invalid YAML: a key or value decodes to bytes that are not UTF-8");
  auto missing = LoadSpecFile("/nonexistent/spec.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.failure().exit_code, kExitUsage);
  EXPECT_EQ(missing.failure().message, "/nonexistent/spec.yaml: cannot read the spec file");
}

TEST(BuildSubmitBody, FlagsOverrideFileAndMerge) {
  SubmitFlags f;
  f.queue = "prod";
  f.gpus = 4;
  f.env = {"MODE=online", "EMPTY="};
  f.models = {"A100-40GB"};
  f.topology = "zone";
  f.command = {"./run.sh"};
  const json base = json::parse(R"({
    "name": "from-file", "queue": "research", "gpus": 8, "gpu_models": ["H100-80GB"],
    "env": {"MODE": "offline", "KEEP": "1"}, "topology": {"level": "rack", "required": true},
    "command": ["python", "old.py"]})");
  auto body = BuildSubmitBody(f, base);
  ASSERT_TRUE(body.ok()) << body.failure().message;
  EXPECT_EQ(body.value(), json::parse(R"({
    "name": "from-file", "queue": "prod", "gpus": 4, "gpu_models": ["A100-40GB"],
    "env": {"MODE": "online", "KEEP": "1", "EMPTY": ""},
    "topology": {"level": "zone", "required": true}, "command": ["./run.sh"]})"));
}

TEST(BuildSubmitBody, TasksFlagsAndTheFilesShorthand) {
  struct Case {
    const char* name;
    std::optional<int64_t> tasks;
    std::optional<int64_t> max_tasks;
    const char* file;
    const char* want;  // the task fields of the body
  };
  const Case cases[] = {
      {"tasks sets both", 4, std::nullopt, "{}", R"({"min_tasks": 4, "max_tasks": 4})"},
      {"elastic", 2, 8, "{}", R"({"min_tasks": 2, "max_tasks": 8})"},
      {"max only", std::nullopt, 8, R"({"min_tasks": 2})", R"({"min_tasks": 2, "max_tasks": 8})"},
      {"shorthand expanded", std::nullopt, 8, R"({"tasks": 3})",
       R"({"min_tasks": 3, "max_tasks": 8})"},
      {"shorthand untouched", std::nullopt, std::nullopt, R"({"tasks": 3})", R"({"tasks": 3})"},
      {"flag beats file", 1, std::nullopt, R"({"min_tasks": 2, "max_tasks": 6})",
       R"({"min_tasks": 1, "max_tasks": 1})"},
  };
  for (const auto& c : cases) {
    SubmitFlags f;
    f.tasks = c.tasks;
    f.max_tasks = c.max_tasks;
    f.name = "n";
    f.command = {"true"};
    auto body = BuildSubmitBody(f, json::parse(c.file));
    ASSERT_TRUE(body.ok()) << c.name;
    json got = body.value();
    got.erase("name");
    got.erase("command");
    EXPECT_EQ(got, json::parse(c.want)) << c.name;
  }
}

TEST(BuildSubmitBody, NameDefaultsToTheCommandsBasename) {
  SubmitFlags f;
  f.command = {"/opt/bin/train job.py", "x"};
  auto body = BuildSubmitBody(f, json::object());
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(body.value()["name"], "train-job.py");
}

TEST(BuildSubmitBody, UsageErrors) {
  SubmitFlags no_eq;
  no_eq.command = {"x"};
  no_eq.env = {"NOVALUE"};
  SubmitFlags no_level;
  no_level.command = {"x"};
  no_level.require_topology = true;
  SubmitFlags no_command;
  no_command.name = "n";
  const std::pair<SubmitFlags, const char*> cases[] = {
      {no_eq, "--env: expected KEY=VALUE, got 'NOVALUE'"},
      {no_level, "--require-topology needs a level"},
      {no_command, "no command to run"},
  };
  for (const auto& [flags, want] : cases) {
    auto body = BuildSubmitBody(flags, json::object());
    ASSERT_FALSE(body.ok()) << want;
    EXPECT_EQ(body.failure().exit_code, kExitUsage);
    EXPECT_NE(body.failure().message.find(want), std::string::npos) << body.failure().message;
  }
}

TEST(BuildSubmitBody, RequireTopologyUsesTheFilesLevel) {
  SubmitFlags f;
  f.require_topology = true;
  auto body = BuildSubmitBody(f, json::parse(R"({"topology": {"level": "node"},
                                                  "command": ["x"], "name": "n"})"));
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(body.value()["topology"], json::parse(R"({"level": "node", "required": true})"));
}

}  // namespace
}  // namespace gpuorch::cli
