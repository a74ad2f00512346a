// Task isolation and the log path end to end (docs/agent.md, "Task isolation"; docs/api.md,
// "Agent log endpoint"): a real server and agent with the agent's default identity policy,
// tasks that show who they run as, where, and with what environment; logs that come only
// through the server, with the agent's credential, capped at the server's max_log_bytes.
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <sstream>

#include "fixture.h"

namespace gpuorch::cptest {
namespace {

constexpr const char* kQueues = R"(
max_log_bytes: 2048
queues:
  - {name: default}
  - {name: daemons, run_as: daemon}
)";

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::unique_ptr<Cluster> IsolatedCluster() {
  ClusterOptions options;
  options.bin = GPUORCH_BIN;
  options.config_yaml = std::string(kFastTimings) + kQueues;
  options.tasks_as_test_user = false;  // the agent's own defaults
  auto c = std::make_unique<Cluster>(options);
  // Tasks of another user (nobody, under a root test) cross the test's directory to reach
  // their workdirs; the agent checks that they can at start.
  ::chmod(c->dir().c_str(), 0711);
  EXPECT_TRUE(c->StartServer());
  EXPECT_TRUE(c->StartAgent("a")) << "agent did not become Ready; see " << c->dir();
  return c;
}

TEST(Isolation, TasksRunAsTheirUserInAPrivateDirectoryWithACleanEnvironment) {
  auto c = IsolatedCluster();
  CliResult r = c->Cli({"submit", "-q", "default", "--gpus", "1", "--", "/bin/sh", "-c",
                        "id -un; pwd; exec /usr/bin/env"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int64_t id = std::stoll(r.out);
  ASSERT_TRUE(c->WaitState(id, "Succeeded")) << c->Workload(id).dump();
  CliResult logs = c->Cli({"logs", std::to_string(id)});
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  std::vector<std::string> lines = Lines(logs.out);
  ASSERT_GE(lines.size(), 3u) << logs.out;
  // A root agent runs tasks as nobody; any other agent as itself.
  std::string self = RunCli("/usr/bin/id", {"-un"}).out;
  if (!self.empty() && self.back() == '\n') self.pop_back();
  EXPECT_EQ(lines[0], ::geteuid() == 0 ? "nobody" : self);
  EXPECT_EQ(lines[1], c->dir() + "/agent-a/work/" + std::to_string(id) + "-0-0");
  // Only the allow-list (the test's is the default plus the cleanup token), the user's
  // identity, the server's variables and the GPUs': nothing else of the agent's environment
  // (which holds the whole test runner's).
  const std::set<std::string> allowed = {"PATH",
                                         "LANG",
                                         "LC_ALL",
                                         "TZ",
                                         "GPUORCH_CP_TOKEN",
                                         "HOME",
                                         "USER",
                                         "LOGNAME",
                                         "SHELL",
                                         "CUDA_VISIBLE_DEVICES",
                                         "NVIDIA_VISIBLE_DEVICES",
                                         "RANK",
                                         "LOCAL_RANK",
                                         "WORLD_SIZE",
                                         "MASTER_ADDR",
                                         "MASTER_PORT",
                                         "GPUORCH_WORKLOAD",
                                         "GPUORCH_TASK",
                                         "GPUORCH_ATTEMPT",
                                         "PWD",
                                         "OLDPWD"};
  for (size_t i = 2; i < lines.size(); ++i) {
    const std::string name = lines[i].substr(0, lines[i].find('='));
    EXPECT_TRUE(allowed.count(name)) << "leaked into the task: " << lines[i];
  }

  // A queue's run_as: its tasks run as that user (only a root agent can switch).
  if (::geteuid() != 0) return;
  r = c->Cli({"submit", "-q", "daemons", "--gpus", "1", "--", "/usr/bin/id", "-un"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int64_t daemon = std::stoll(r.out);
  ASSERT_TRUE(c->WaitState(daemon, "Succeeded")) << c->Workload(daemon).dump();
  EXPECT_EQ(c->Cli({"logs", std::to_string(daemon)}).out, "daemon\n");
}

TEST(Isolation, LogsComeThroughTheServerOnlyAndAreCapped) {
  auto c = IsolatedCluster();
  CliResult r = c->Cli({"submit", "-q", "default", "--gpus", "1", "--", "/bin/sh", "-c",
                        "head -c 5000 /dev/zero | tr '\\0' x; printf END"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int64_t id = std::stoll(r.out);
  ASSERT_TRUE(c->WaitState(id, "Succeeded")) << c->Workload(id).dump();

  // The server holds at most max_log_bytes, and says when the answer is not the whole log.
  CliResult logs = c->Cli({"logs", std::to_string(id)});
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_EQ(logs.out, std::string(2048, 'x'));
  EXPECT_NE(logs.err.find("not the whole log: bytes 0..2048 of 5003"), std::string::npos)
      << logs.err;
  logs = c->Cli({"logs", std::to_string(id), "--tail-bytes", "5"});
  EXPECT_EQ(logs.out, "xxEND");
  logs = c->Cli({"logs", std::to_string(id), "--offset", "4000"});
  EXPECT_EQ(logs.out, std::string(1000, 'x') + "END");
  HttpResult h = c->api().Get("/v1/workloads/" + std::to_string(id) + "/logs?tail=3");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "END");

  // The agent's endpoint refuses anyone without the credential the server presents.
  HttpResult nodes = c->api().Get("/v1/nodes");
  ASSERT_EQ(nodes.status, 200);
  const std::string address = nodes.json["nodes"][0].value("address", "");
  ASSERT_FALSE(address.empty()) << nodes.body;
  EXPECT_EQ(nodes.body.find("log_secret"), std::string::npos) << "the secret is never shown";
  HttpResult direct = Api("http://" + address).Get("/v1/tasks/" + std::to_string(id) + "/0/0/logs");
  EXPECT_EQ(direct.status, 401) << direct.body;
  EXPECT_EQ(direct.body.find("xxx"), std::string::npos);
}

}  // namespace
}  // namespace gpuorch::cptest
