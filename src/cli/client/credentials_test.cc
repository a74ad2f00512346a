// Where the CLI's token comes from, and `gpuorch audit --since`.
#include "cli/client/credentials.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli/client/admin_commands.h"

namespace gpuorch::cli {
namespace {

class CredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("gpuorch-cred-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_ / "gpuorch");
    for (const char* v : {"GPUORCH_TOKEN", "XDG_CONFIG_HOME"}) {
      const char* old = std::getenv(v);
      saved_.emplace_back(v, old ? std::optional<std::string>(old) : std::nullopt);
    }
    unsetenv("GPUORCH_TOKEN");
    setenv("XDG_CONFIG_HOME", dir_.c_str(), 1);
  }
  void TearDown() override {
    for (const auto& [name, value] : saved_) {
      if (value) {
        setenv(name.c_str(), value->c_str(), 1);
      } else {
        unsetenv(name.c_str());
      }
    }
    std::filesystem::remove_all(dir_);
  }
  void Write(const std::filesystem::path& p, const std::string& text) { std::ofstream(p) << text; }

  std::filesystem::path dir_;
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST_F(CredentialsTest, FlagThenVariableThenUserFile) {
  EXPECT_EQ(LoadToken("", true).value(), "") << "nothing set: no token";
  Write(dir_ / "gpuorch" / "token", "from-config\n");
  EXPECT_EQ(UserTokenPath(), (dir_ / "gpuorch" / "token").string());
  EXPECT_EQ(LoadToken("", true).value(), "from-config");
  EXPECT_EQ(LoadToken("", false).value(), "") << "agents do not read the per-user file";
  setenv("GPUORCH_TOKEN", " from-env ", 1);
  EXPECT_EQ(LoadToken("", true).value(), "from-env");
  Write(dir_ / "flag", "from-flag\n");
  EXPECT_EQ(LoadToken((dir_ / "flag").string(), true).value(), "from-flag");
}

TEST_F(CredentialsTest, ANamedFileThatCannotBeUsedIsAUsageError) {
  auto missing = LoadToken((dir_ / "nope").string(), true);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.failure().exit_code, kExitUsage);
  EXPECT_NE(missing.failure().message.find("--token-file"), std::string::npos);
  Write(dir_ / "empty", "\n");
  auto empty = LoadToken((dir_ / "empty").string(), true);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.failure().message.find("is empty"), std::string::npos);
  EXPECT_NE(TokenHint().find("GPUORCH_TOKEN"), std::string::npos);
}

TEST(AuditSince, TimesAndDurationsBackFromNow) {
  const auto now = std::chrono::system_clock::from_time_t(1764681876);  // 2025-12-02T13:24:36Z
  EXPECT_EQ(AuditSince("", now).value(), "");
  EXPECT_EQ(AuditSince("2026-12-02T13:00:00Z", now).value(), "2026-12-02T13:00:00.000Z");
  EXPECT_EQ(AuditSince("30m", now).value(), "2025-12-02T12:54:36.000Z");
  EXPECT_EQ(AuditSince("2h", now).value(), "2025-12-02T11:24:36.000Z");
  EXPECT_EQ(AuditSince("1d", now).value(), "2025-12-01T13:24:36.000Z");
  EXPECT_EQ(AuditSince("90s", now).value(), "2025-12-02T13:23:06.000Z");
  for (const char* bad : {"yesterday", "10", "m", "5w", "-5m", "1234567890123s"}) {
    auto r = AuditSince(bad, now);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.failure().exit_code, kExitUsage);
    EXPECT_EQ(r.failure().message.rfind("--since", 0), 0u);
  }
}

}  // namespace
}  // namespace gpuorch::cli
