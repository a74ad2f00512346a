#include "agent/task_state.h"

#include <gtest/gtest.h>

#include "agent/fsutil.h"
#include "agent/protocol.h"
#include "agent/test_util.h"

namespace gpuorch::agent {
namespace {

TEST(TaskState, ParsesEveryRecord) {
  TaskStateFile s = ParseTaskState(
      "spec {\"workload\":1}\nshim 10 500\nchild 11 501\nstop 9000\nexit 3 12 4 2048\ndone\n");
  ASSERT_TRUE(s.spec.has_value());
  EXPECT_EQ(*s.spec, "{\"workload\":1}");
  EXPECT_EQ(s.shim_pid, 10);
  EXPECT_EQ(s.shim_start, 500u);
  EXPECT_EQ(s.child_pid, 11);
  EXPECT_EQ(s.child_start, 501u);
  EXPECT_EQ(s.kill_at_ms, 9000);
  ASSERT_TRUE(s.exit.has_value());
  EXPECT_EQ(s.exit->code, 3);
  EXPECT_EQ(s.exit->cpu_user_ms, 12);
  EXPECT_EQ(s.exit->cpu_system_ms, 4);
  EXPECT_EQ(s.exit->max_rss_kib, 2048);
  EXPECT_TRUE(s.done);
}

TEST(TaskState, TornAndOddRecordsAreIgnored) {
  struct Case {
    const char* text;
    bool spec, exit;
    int32_t code;
    int64_t kill_at;
  };
  const Case cases[] = {
      {"", false, false, 0, 0},
      {"spec {}", false, false, 0, 0},              // torn first line: never launched
      {"shim 1 2\nspec {}\n", false, false, 0, 0},  // spec only counts first
      {"spec {}\nexit 4", true, false, 0, 0},       // torn exit record
      {"spec {}\nexit x\nexit 5 0 0 0\n", true, true, 5, 0},
      {"spec {}\nexit 7\n", true, true, 7, 0},                        // usage is optional
      {"spec {}\nexit -1 0 0 0\nexit 0 0 0 0\n", true, true, -1, 0},  // the first exit counts
      {"spec {}\nstop 100\nstop 900\n", true, false, 0, 100},         // the first stop stands
      {"spec {}\nbogus line\n\n", true, false, 0, 0},
  };
  for (const Case& c : cases) {
    TaskStateFile s = ParseTaskState(c.text);
    EXPECT_EQ(s.spec.has_value(), c.spec) << c.text;
    EXPECT_EQ(s.exit.has_value(), c.exit) << c.text;
    if (s.exit) {
      EXPECT_EQ(s.exit->code, c.code) << c.text;
    }
    EXPECT_EQ(s.kill_at_ms, c.kill_at) << c.text;
  }
}

// Found by a long run of fuzz/task_state_fuzzer.cc: a number that is not an integer of the
// field's type (a float, one out of range) converted with undefined behaviour; it is an
// error naming the field.
TEST(TaskState, SpecNumbersMustBeIntegersInRange) {
  const std::string base = R"("task":0,"attempt":1,"command":["true"])";
  EXPECT_TRUE(ParseTaskSpec("{\"workload\":1," + base + ",\"grace_period_ms\":5000}").ok());
  struct Case {
    std::string field, value;
  };
  for (const Case& c :
       {Case{"grace_period_ms", "4444444444444444444444444444"}, Case{"grace_period_ms", "1.5"},
        Case{"cpu_milli", "18446744073709551615"}, Case{"gpu_milli", "4294967296"},
        Case{"gpus", "[0,1e3]"}, Case{"gpus", "{\"a\":1}"}, Case{"memory_mib", "-1e300"}}) {
    auto spec = ParseTaskSpec("{\"workload\":1," + base + ",\"" + c.field + "\":" + c.value + "}");
    ASSERT_FALSE(spec.ok()) << c.field << "=" << c.value;
    EXPECT_NE(spec.status().message().find(c.field), std::string::npos) << spec.status().message();
  }
}

TEST(TaskState, AppendedRecordsReadBack) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/state";
  ASSERT_TRUE(AppendRecord(path, "spec {}\n", true).ok());
  TaskExit e{137, 1, 2, 3};
  ASSERT_TRUE(AppendRecord(path, ExitRecord(e), false).ok());
  ASSERT_TRUE(AppendRecord(path, "done\n", false).ok());
  TaskStateFile s = ParseTaskState(*fs::ReadFile(path));
  ASSERT_TRUE(s.exit.has_value());
  EXPECT_EQ(s.exit->code, 137);
  EXPECT_EQ(s.exit->max_rss_kib, 3);
  EXPECT_TRUE(s.done);
  EXPECT_FALSE(AppendRecord(dir.path() + "/missing/state", "done\n", false).ok());
}

}  // namespace
}  // namespace gpuorch::agent
