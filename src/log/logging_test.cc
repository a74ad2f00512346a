#include "log/logging.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace gpuorch::log {
namespace {

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string TempPath(const char* name) {
  return ::testing::TempDir() + "/" + name + "-" + std::to_string(::getpid()) + ".log";
}

TEST(Logging, ParsesLevelsAndFormatsNamingTheFlag) {
  Level l;
  Format f;
  std::string e;
  EXPECT_TRUE(ParseLevel("debug", l, e));
  EXPECT_EQ(l, Level::kDebug);
  EXPECT_FALSE(ParseLevel("loud", l, e));
  EXPECT_NE(e.find("--log-level"), std::string::npos) << e;
  EXPECT_TRUE(ParseFormat("json", f, e));
  EXPECT_EQ(f, Format::kJson);
  EXPECT_FALSE(ParseFormat("xml", f, e));
  EXPECT_NE(e.find("--log-format"), std::string::npos) << e;
}

TEST(Logging, TextQuotesOnlyWhatNeedsIt) {
  const std::string body =
      FormatFields(Format::kText, "server", "bind",
                   {{"workload", 17}, {"queue", "prod"}, {"why", "no fit"}, {"gpus", {0, 1}}});
  EXPECT_EQ(body, "bind workload=17 queue=prod why=\"no fit\" gpus=[0,1]");
}

TEST(Logging, JsonLinesParseAndLevelsFilter) {
  const std::string path = TempPath("json");
  SetupFile(Level::kInfo, Format::kJson, "server", path);
  Debug("hidden", {{"x", 1}});
  Info("bind", {{"workload", 17}, {"nodes", {"a", "b"}}, {"msg", "quote \" and \\ here"}});
  Warn("refused", {{"field", "gpus"}});
  Flush();
  const std::vector<std::string> lines = Lines(path);
  ASSERT_EQ(lines.size(), 2u);
  Json a = Json::parse(lines[0]);
  EXPECT_EQ(a["level"], "info");
  EXPECT_EQ(a["component"], "server");
  EXPECT_EQ(a["event"], "bind");
  EXPECT_EQ(a["workload"], 17);
  EXPECT_EQ(a["nodes"], Json({"a", "b"}));
  EXPECT_EQ(a["msg"], "quote \" and \\ here");
  EXPECT_EQ(a["time"].get<std::string>().back(), 'Z');
  Json b = Json::parse(lines[1]);
  EXPECT_EQ(b["level"], "warning");
  EXPECT_EQ(b["field"], "gpus");
  EXPECT_FALSE(Enabled(Level::kDebug));
  EXPECT_TRUE(Enabled(Level::kError));
  ::unlink(path.c_str());
}

TEST(Logging, TextLinesCarryTimeLevelAndEvent) {
  const std::string path = TempPath("text");
  SetupFile(Level::kDebug, Format::kText, "agent", path);
  Debug("started task", {{"task", "17-0-0"}});
  Flush();
  const std::vector<std::string> lines = Lines(path);
  ASSERT_EQ(lines.size(), 1u);
  // 2026-12-02T13:40:01.123Z debug started task task=17-0-0
  EXPECT_EQ(lines[0].substr(10, 1), "T");
  EXPECT_EQ(lines[0].substr(23, 1), "Z");
  EXPECT_EQ(lines[0].substr(24), " debug started task task=17-0-0");
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace gpuorch::log
