#include "agent/runner.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/test_util.h"

namespace gpuorch::agent {
namespace {

using testing::FileOr;
using testing::TempDir;
using testing::WaitFor;

// A shell loop that the tests can release by creating a file, and that announces itself
// on stdout once it runs (so a test never signals a task that has not started yet).
constexpr const char* kWaitForRelease =
    "echo ready; while [ ! -f release ]; do sleep 0.02; done; exit 5";
constexpr const char* kTrapTermForever =
    "trap 'echo term' TERM; echo ready; while true; do sleep 0.02; done";

class RunnerTest : public ::testing::Test {
 protected:
  std::unique_ptr<Runner> Open() {
    Runner::Options o;
    o.data_dir = dir_.path();
    o.shim_command = {GPUORCH_TEST_SHIM};
    o.visible_ids = {"0", "1", "2", "3"};
    // Tasks run as the test's own user, root included (said explicitly, as an operator
    // must): these tests are about processes, isolation_test about identities.
    o.run_as.default_user = std::to_string(::geteuid());
    o.run_as.allow_root = true;
    core::Result<std::unique_ptr<Runner>> r = Runner::Open(o);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  TaskSpec Shell(TaskKey key, const std::string& script) {
    TaskSpec s;
    s.key = key;
    s.command = {"/bin/sh", "-c", script};
    s.workdir = dir_.path();
    return s;
  }

  static std::optional<TaskStatus> Find(const Runner& r, const TaskKey& key) {
    for (const TaskStatus& t : r.Tasks()) {
      if (t.key == key) return t;
    }
    return std::nullopt;
  }

  // Polls the runner until the task has exited; returns its exit code.
  static std::optional<int32_t> WaitExit(Runner& r, const TaskKey& key) {
    std::optional<int32_t> code;
    WaitFor([&] {
      r.Poll();
      std::optional<TaskStatus> t = Find(r, key);
      if (t && t->state == TaskState::kExited) code = t->exit.code;
      return code.has_value();
    });
    return code;
  }

  TaskStateFile State(const TaskKey& key) {
    return ParseTaskState(FileOr(dir_.path() + "/tasks/" + key.DirName() + ".state"));
  }

  std::string Log(const TaskKey& key, const char* stream) {
    return FileOr(dir_.path() + "/tasks/" + key.DirName() + "." + stream + ".log");
  }

  bool WaitReady(const TaskKey& key) {
    return WaitFor([&] { return Log(key, "stdout").find("ready") != std::string::npos; });
  }

  TempDir dir_;
};

TEST_F(RunnerTest, RunsCommandWithGpuEnvLogsAndExitCode) {
  std::unique_ptr<Runner> r = Open();
  TaskSpec s = Shell({17, 2, 1},
                     "echo $CUDA_VISIBLE_DEVICES $NVIDIA_VISIBLE_DEVICES $FOO; pwd; "
                     "echo oops >&2; exit 3");
  s.env = {{"FOO", "bar"}, {"CUDA_VISIBLE_DEVICES", "ignored"}};
  s.gpus = {1, 3};
  ASSERT_TRUE(r->Start(s).ok());
  EXPECT_EQ(WaitExit(*r, s.key), 3);
  EXPECT_EQ(Log(s.key, "stdout"), "1,3 1,3 bar\n" + dir_.path() + "\n");
  EXPECT_EQ(Log(s.key, "stderr"), "oops\n");
  TaskStateFile st = State(s.key);
  ASSERT_TRUE(st.exit.has_value());
  EXPECT_EQ(st.exit->code, 3);
  EXPECT_GT(st.shim_pid, 0);
  EXPECT_GT(st.child_pid, 0);
  EXPECT_GT(st.exit->max_rss_kib, 0) << "resource use of the command is recorded";
}

TEST_F(RunnerTest, ReportsTheCommandsResourceUse) {
  std::unique_ptr<Runner> r = Open();
  // Busy for a while in user space (a few hundred milliseconds of shell arithmetic).
  TaskSpec s = Shell({18, 0, 0}, "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done");
  ASSERT_TRUE(r->Start(s).ok());
  EXPECT_EQ(WaitExit(*r, s.key), 0);
  std::optional<TaskStatus> t = Find(*r, s.key);
  ASSERT_TRUE(t.has_value());
  EXPECT_GT(t->exit.cpu_user_ms + t->exit.cpu_system_ms, 0);
  EXPECT_GT(t->exit.max_rss_kib, 0);
}

TEST_F(RunnerTest, NoGpusHidesAllGpus) {
  std::unique_ptr<Runner> r = Open();
  TaskSpec s = Shell({1, 0, 0}, "echo \"[$CUDA_VISIBLE_DEVICES] $NVIDIA_VISIBLE_DEVICES\"");
  ASSERT_TRUE(r->Start(s).ok());
  EXPECT_EQ(WaitExit(*r, s.key), 0);
  EXPECT_EQ(Log(s.key, "stdout"), "[] none\n");
}

TEST_F(RunnerTest, StartsAnAttemptOnlyOnce) {
  std::unique_ptr<Runner> r = Open();
  TaskSpec s = Shell({1, 0, 0}, "echo run");
  ASSERT_TRUE(r->Start(s).ok());
  EXPECT_EQ(r->Start(s).code(), core::StatusCode::kAlreadyExists);
  EXPECT_EQ(WaitExit(*r, s.key), 0);
  EXPECT_EQ(r->Start(s).code(), core::StatusCode::kAlreadyExists);
  EXPECT_EQ(Log(s.key, "stdout"), "run\n");
}

TEST_F(RunnerTest, LaunchFailuresAreReportedAsExited) {
  std::unique_ptr<Runner> r = Open();
  TaskSpec bad_gpu = Shell({1, 0, 0}, "true");
  bad_gpu.gpus = {7};
  EXPECT_FALSE(r->Start(bad_gpu).ok());
  EXPECT_EQ(WaitExit(*r, bad_gpu.key), kLostExitCode);
  EXPECT_NE(Log(bad_gpu.key, "stderr").find("GPU index 7 out of range"), std::string::npos);

  TaskSpec no_command = Shell({2, 0, 0}, "");
  no_command.command = {"/nonexistent/gpuorch-test-binary"};
  ASSERT_TRUE(r->Start(no_command).ok());
  EXPECT_EQ(WaitExit(*r, no_command.key), 127);
  EXPECT_NE(Log(no_command.key, "stderr").find("cannot run"), std::string::npos);

  TaskSpec no_workdir = Shell({3, 0, 0}, "true");
  no_workdir.workdir = dir_.path() + "/missing";
  EXPECT_FALSE(r->Start(no_workdir).ok());
  EXPECT_EQ(WaitExit(*r, no_workdir.key), 127);
  EXPECT_NE(Log(no_workdir.key, "stderr").find("cannot enter workdir"), std::string::npos);
}

TEST_F(RunnerTest, StopLetsATaskExitWithinGrace) {
  std::unique_ptr<Runner> r = Open();
  TaskSpec s = Shell({1, 0, 0},
                     "trap 'echo bye; exit 7' TERM; echo ready; "
                     "while true; do sleep 0.02; done");
  ASSERT_TRUE(r->Start(s).ok());
  ASSERT_TRUE(WaitReady(s.key));
  EXPECT_TRUE(r->Stop(s.key, 60000));
  EXPECT_FALSE(r->Stop(s.key, 0));  // The first stop stands.
  EXPECT_EQ(WaitExit(*r, s.key), 7);
  EXPECT_NE(Log(s.key, "stdout").find("bye"), std::string::npos);
}

TEST_F(RunnerTest, StopKillsATaskThatIgnoresSigtermAfterGrace) {
  std::unique_ptr<Runner> r = Open();
  TaskSpec s = Shell({1, 0, 0}, kTrapTermForever);
  ASSERT_TRUE(r->Start(s).ok());
  ASSERT_TRUE(WaitReady(s.key));
  ASSERT_TRUE(r->Stop(s.key, 200));
  // The task saw SIGTERM (the shim forwarded it) and survived it ...
  ASSERT_TRUE(WaitFor([&] { return Log(s.key, "stdout").find("term") != std::string::npos; }));
  // ... until SIGKILL after the grace period.
  EXPECT_EQ(WaitExit(*r, s.key), 128 + SIGKILL);
}

TEST_F(RunnerTest, NewRunnerAdoptsARunningTaskAndLearnsItsExit) {
  TaskSpec s = Shell({4, 1, 2}, kWaitForRelease);
  pid_t shim = 0;
  {
    std::unique_ptr<Runner> first = Open();
    ASSERT_TRUE(first->Start(s).ok());
    ASSERT_TRUE(WaitReady(s.key));
    first->Poll();
    shim = State(s.key).shim_pid;
  }  // The "agent" is gone; the task is not.
  std::unique_ptr<Runner> second = Open();
  second->Poll();
  std::optional<TaskStatus> t = Find(*second, s.key);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->state, TaskState::kRunning);
  EXPECT_GT(t->pid, 0);
  EXPECT_TRUE(second->EverStarted(s.key));
  EXPECT_EQ(second->Start(s).code(), core::StatusCode::kAlreadyExists);
  ASSERT_TRUE(fs::WriteFileAtomic(dir_.path() + "/release", "").ok());
  EXPECT_EQ(WaitExit(*second, s.key), 5);
  EXPECT_EQ(Log(s.key, "stdout"), "ready\n");  // Ran once.
  if (shim > 0) ::waitpid(shim, nullptr, 0);   // The test process is the shim's parent.
}

TEST_F(RunnerTest, NewRunnerSeesAnExitThatHappenedWhileNoAgentRan) {
  TaskSpec s = Shell({5, 0, 0}, "exit 4");
  {
    std::unique_ptr<Runner> first = Open();
    ASSERT_TRUE(first->Start(s).ok());
  }
  ASSERT_TRUE(WaitFor([&] { return State(s.key).exit.has_value(); }));
  std::unique_ptr<Runner> second = Open();
  EXPECT_EQ(WaitExit(*second, s.key), 4);
}

TEST_F(RunnerTest, AStopDeadlineSurvivesARestart) {
  TaskSpec s = Shell({6, 0, 0}, kTrapTermForever);
  {
    std::unique_ptr<Runner> first = Open();
    ASSERT_TRUE(first->Start(s).ok());
    ASSERT_TRUE(WaitReady(s.key));
    ASSERT_TRUE(first->Stop(s.key, 200));
  }
  std::unique_ptr<Runner> second = Open();
  EXPECT_FALSE(second->Stop(s.key, 600000));  // Already stopping: the old deadline holds.
  EXPECT_EQ(WaitExit(*second, s.key), 128 + SIGKILL);
}

TEST_F(RunnerTest, ForgottenTasksStayStartedButUnreported) {
  TaskSpec s = Shell({7, 0, 0}, "true");
  {
    std::unique_ptr<Runner> r = Open();
    ASSERT_TRUE(r->Start(s).ok());
    ASSERT_EQ(WaitExit(*r, s.key), 0);
    r->Forget(s.key);
    EXPECT_FALSE(Find(*r, s.key).has_value());
    EXPECT_TRUE(r->EverStarted(s.key));
  }
  std::unique_ptr<Runner> again = Open();
  EXPECT_TRUE(again->Tasks().empty());
  EXPECT_TRUE(again->EverStarted(s.key));
}

}  // namespace
}  // namespace gpuorch::agent
