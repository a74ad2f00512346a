#include "agent/emulated_executor.h"

#include <gtest/gtest.h>

namespace gpuorch::agent {
namespace {

TaskSpec Spec(int64_t workload, std::map<std::string, std::string> env) {
  TaskSpec s;
  s.key = TaskKey{workload, 0, 0};
  s.command = {"true"};
  s.env = std::move(env);
  return s;
}

class EmulatedExecutorTest : public ::testing::Test {
 protected:
  int64_t now_ = 1000;
  EmulatedExecutor ex_{[this] { return now_; }};
};

TEST_F(EmulatedExecutorTest, RunsForItsRuntimeThenExitsWithItsCode) {
  const TaskSpec s = Spec(1, {{kEmulateRuntimeEnv, "2.5"}, {kEmulateExitCodeEnv, "3"}});
  ASSERT_TRUE(ex_.StartAll({&s})[0].ok());
  EXPECT_EQ(ex_.running(), 1);
  EXPECT_EQ(ex_.NextEventMs(), 3500);
  now_ = 3499;
  EXPECT_FALSE(ex_.Poll());
  ASSERT_EQ(ex_.Tasks().size(), 1u);
  EXPECT_EQ(ex_.Tasks()[0].state, TaskState::kRunning);
  now_ = 3500;
  EXPECT_TRUE(ex_.Poll());
  EXPECT_EQ(ex_.Tasks()[0].state, TaskState::kExited);
  EXPECT_EQ(ex_.Tasks()[0].exit.code, 3);
  EXPECT_EQ(ex_.running(), 0);
  EXPECT_EQ(ex_.NextEventMs(), std::nullopt);
}

TEST_F(EmulatedExecutorTest, WithoutRuntimeRunsUntilStopped) {
  const TaskSpec s = Spec(1, {});
  ASSERT_TRUE(ex_.StartAll({&s})[0].ok());
  now_ += 1000LL * 3600 * 24 * 365;
  EXPECT_FALSE(ex_.Poll());
  EXPECT_TRUE(ex_.Stop(s.key, 30000));
  EXPECT_FALSE(ex_.Stop(s.key, 30000));  // a second stop changes nothing
  EXPECT_EQ(ex_.Tasks()[0].state, TaskState::kExited);
  EXPECT_EQ(ex_.Tasks()[0].exit.code, kEmulatedStopExitCode);
}

TEST_F(EmulatedExecutorTest, ZeroRuntimeExitsAtTheNextPoll) {
  const TaskSpec s = Spec(1, {{kEmulateRuntimeEnv, "0"}});
  ASSERT_TRUE(ex_.StartAll({&s})[0].ok());
  EXPECT_TRUE(ex_.Poll());
  EXPECT_EQ(ex_.Tasks()[0].exit.code, 0);
}

TEST_F(EmulatedExecutorTest, StartsEachAttemptOnceEvenAfterForget) {
  const TaskSpec s = Spec(1, {{kEmulateRuntimeEnv, "0"}});
  ASSERT_TRUE(ex_.StartAll({&s})[0].ok());
  EXPECT_EQ(ex_.StartAll({&s})[0].code(), core::StatusCode::kAlreadyExists);
  ex_.Forget(s.key);  // still running: not forgotten
  EXPECT_EQ(ex_.Tasks().size(), 1u);
  ASSERT_TRUE(ex_.Poll());
  ex_.Forget(s.key);
  EXPECT_TRUE(ex_.Tasks().empty());
  EXPECT_TRUE(ex_.EverStarted(s.key));
  EXPECT_EQ(ex_.StartAll({&s})[0].code(), core::StatusCode::kAlreadyExists);
  EXPECT_EQ(ex_.started_total(), 1);
  EXPECT_EQ(ex_.exited_total(), 1);
}

TEST_F(EmulatedExecutorTest, MalformedEnvFailsTheTaskNamingTheVariable) {
  struct Case {
    const char* var;
    const char* value;
  };
  const Case cases[] = {{kEmulateRuntimeEnv, "soon"}, {kEmulateRuntimeEnv, "-1"},
                        {kEmulateRuntimeEnv, ""},     {kEmulateRuntimeEnv, "1e99"},
                        {kEmulateExitCodeEnv, "x"},   {kEmulateExitCodeEnv, "256"},
                        {kEmulateExitCodeEnv, "-3"},  {kEmulateExitCodeEnv, "1.5"}};
  int64_t id = 0;
  for (const Case& c : cases) {
    const TaskSpec s = Spec(++id, {{c.var, c.value}});
    const core::Status st = ex_.StartAll({&s})[0];
    EXPECT_EQ(st.code(), core::StatusCode::kInvalidArgument) << c.var << "=" << c.value;
    EXPECT_NE(st.message().find(c.var), std::string::npos) << st.message();
    const std::vector<TaskStatus> tasks = ex_.Tasks();
    ASSERT_FALSE(tasks.empty());
    EXPECT_EQ(tasks.back().state, TaskState::kExited);
    EXPECT_EQ(tasks.back().exit.code, kLostExitCode);
  }
  EXPECT_EQ(ex_.running(), 0);
}

}  // namespace
}  // namespace gpuorch::agent
