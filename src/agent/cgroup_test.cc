// Task cgroups (docs/agent.md, "Task isolation"). The mechanics (a cgroup per task, joined
// before exec; usage read back; leftovers and escaped processes killed) run wherever a
// cgroup v2 hierarchy is writable, even one without controllers (a hybrid host's
// /sys/fs/cgroup/unified); the limits need the cpu, memory and pids controllers and are
// skipped, with the reason, where they cannot be had.
#include "agent/cgroup.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <sstream>

#include "agent/runner.h"
#include "agent/shim.h"
#include "agent/test_util.h"

namespace gpuorch::agent {
namespace {

using testing::FileOr;
using testing::TaskLog;
using testing::TempDir;
using testing::WaitExit;
using testing::WaitFor;

TEST(CgroupValuesTest, CpuMaxIsTheRequestedShareOfEachPeriod) {
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {0, "max 100000"},       {1, "1000 100000"},      {500, "50000 100000"},
      {1000, "100000 100000"}, {2500, "250000 100000"}, {64000, "6400000 100000"}};
  for (const auto& [milli, want] : cases) EXPECT_EQ(CpuMaxValue(milli), want) << milli;
}

TEST(CgroupValuesTest, StatFieldReadsKeyValueLines) {
  const std::string stat = "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n";
  EXPECT_EQ(StatField(stat, "user_usec"), 2000);
  EXPECT_EQ(StatField(stat, "system_usec"), 500);
  EXPECT_EQ(StatField(stat, "nice_usec"), -1);
  EXPECT_EQ(StatField("populated 1\nfrozen 0\n", "populated"), 1);
}

// A parent cgroup of the test's own, removed at the end.
class CgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mount_ = Cgroups::FindMount();
    if (mount_.empty()) GTEST_SKIP() << "no cgroup v2 file system is mounted here";
    parent_ = mount_ + "/gpuorch-test-" + std::to_string(::getpid()) + "-" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name();
    core::Result<std::unique_ptr<Cgroups>> c = Cgroups::Open(parent_, {});
    if (!c.ok())
      GTEST_SKIP() << "cgroup v2 at " << mount_ << " is not writable: " << c.status().message();
    cgroups_ = std::move(c).value();
  }
  void TearDown() override {
    if (!cgroups_) return;
    for (const char* name : {"task-1-0-0", "task-2-0-0", "task-3-0-0", "limits"}) {
      const std::string p = cgroups_->PathOf(name);
      if (!cgroups_->Exists(p)) continue;
      cgroups_->Kill(p);
      WaitFor([&] { return !cgroups_->Populated(p); });
      cgroups_->Remove(p);
    }
    ::rmdir(parent_.c_str());
  }

  std::unique_ptr<Runner> Open(std::shared_ptr<const Cgroups> cgroups) {
    Runner::Options o;
    o.data_dir = dir_.path();
    o.shim_command = {GPUORCH_TEST_SHIM};
    o.run_as.allow_root = true;  // the test's own user: this test is about cgroups
    o.run_as.default_user = std::to_string(::geteuid());
    o.cgroups = std::move(cgroups);
    o.pids_max = 64;
    core::Result<std::unique_ptr<Runner>> r = Runner::Open(o);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  std::string Log(const TaskKey& key, const char* stream) {
    return TaskLog(dir_.path(), key, stream);
  }
  static bool Gone(pid_t pid) { return ProcessStartTime(pid) == 0; }

  std::string mount_, parent_;
  std::shared_ptr<Cgroups> cgroups_;
  TempDir dir_;
};

TEST_F(CgroupTest, TaskRunsInItsCgroupWhichCountsItsCpuAndEndsWhatItLeaves) {
  std::unique_ptr<Runner> r = Open(cgroups_);
  TaskSpec s;
  s.key = {1, 0, 0};
  s.command = {"/bin/sh", "-c",
               "grep '^0::' /proc/self/cgroup; sleep 300 & echo $!; "
               "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done"};
  ASSERT_TRUE(r->Start(s).ok());
  std::optional<TaskStatus> t = WaitExit(*r, s.key);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->exit.code, 0) << Log(s.key, "stderr");
  const std::string cg = cgroups_->PathOf(Runner::CgroupName(s.key));
  std::istringstream out(Log(s.key, "stdout"));
  std::string where;
  pid_t leftover = 0;
  out >> where >> leftover;
  EXPECT_EQ(where, "0::" + cg.substr(mount_.size())) << "the command ran inside its cgroup";
  ASSERT_GT(leftover, 0);
  // The background sleep outlived the command: the task's end ends it too.
  EXPECT_TRUE(WaitFor([&] { return Gone(leftover) && !cgroups_->Populated(cg); }));
  EXPECT_GT(t->exit.cpu_user_ms + t->exit.cpu_system_ms, 0) << "cpu.stat of the cgroup";
  r->Forget(s.key);
  r->CollectGarbage(0);
  EXPECT_FALSE(cgroups_->Exists(cg)) << "removed with the task's files";
}

TEST_F(CgroupTest, StopKillsProcessesThatLeftTheTasksProcessGroup) {
  std::unique_ptr<Runner> r = Open(cgroups_);
  TaskSpec s;
  s.key = {2, 0, 0};
  s.grace_period_ms = 0;
  // A child in a session of its own that ignores SIGTERM: the process-group kill cannot
  // reach it, the cgroup's can.
  s.command = {"/bin/sh", "-c",
               "setsid /bin/sh -c 'trap \"\" TERM; echo $$ > escaped; "
               "while true; do sleep 0.05; done' & "
               "trap '' TERM; while [ ! -s escaped ]; do sleep 0.02; done; echo ready; "
               "while true; do sleep 0.05; done"};
  s.workdir = dir_.path();
  ASSERT_TRUE(r->Start(s).ok());
  ASSERT_TRUE(WaitFor([&] { return Log(s.key, "stdout") == "ready\n"; })) << Log(s.key, "stderr");
  const pid_t escaped = std::stoi(FileOr(dir_.path() + "/escaped", "0"));
  ASSERT_GT(escaped, 0);
  ASSERT_TRUE(r->Stop(s.key, 0));
  std::optional<TaskStatus> t = WaitExit(*r, s.key);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->exit.code, 128 + SIGKILL);
  EXPECT_TRUE(WaitFor([&] { return Gone(escaped); })) << "pid " << escaped << " survived";
}

// The limits themselves, where the controllers can be had (a pure cgroup v2 host, as root
// or with the subtree delegated).
TEST_F(CgroupTest, LimitsComeFromTheTasksRequest) {
  core::Result<std::unique_ptr<Cgroups>> full = Cgroups::Open(parent_, {"cpu", "memory", "pids"});
  if (!full.ok()) GTEST_SKIP() << "no cgroup v2 limits here: " << full.status().message();
  std::shared_ptr<const Cgroups> limited = std::move(full).value();
  CgroupLimits l;
  l.cpu_milli = 500;
  l.memory_mib = 64;
  l.pids_max = 32;
  core::Result<std::string> cg = limited->Create("limits", l);
  ASSERT_TRUE(cg.ok()) << cg.status().message();
  EXPECT_EQ(FileOr(*cg + "/cpu.max"), "50000 100000\n");
  EXPECT_EQ(FileOr(*cg + "/memory.max"), std::to_string(64 << 20) + "\n");
  EXPECT_EQ(FileOr(*cg + "/pids.max"), "32\n");
  EXPECT_FALSE(limited->Create("limits", l).ok()) << "an existing cgroup is never shared";

  // A task that goes over its memory is ended by the kernel, and says so.
  std::unique_ptr<Runner> r = Open(limited);
  TaskSpec s;
  s.key = {3, 0, 0};
  s.memory_mib = 32;
  s.command = {"/bin/sh", "-c", "x=$(head -c 268435456 /dev/zero | tr '\\0' a); echo survived"};
  ASSERT_TRUE(r->Start(s).ok());
  std::optional<TaskStatus> t = WaitExit(*r, s.key);
  ASSERT_TRUE(t.has_value());
  EXPECT_NE(Log(s.key, "stdout"), "survived\n");
  if (fs::Exists(*cg + "/memory.peak")) {  // Linux 5.19+
    EXPECT_GT(t->exit.memory_peak_kib, 0);
  }
  EXPECT_NE(Log(s.key, "stderr").find("memory limit"), std::string::npos) << Log(s.key, "stderr");
}

}  // namespace
}  // namespace gpuorch::agent
