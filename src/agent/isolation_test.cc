// Task isolation through the real runner and shim (docs/agent.md, "Task isolation"): the
// clean environment, the private working directory, the task's user (the privilege drop
// runs where the test runs as root), refusals, and the garbage collection of task files.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <sstream>

#include "agent/runner.h"
#include "agent/test_util.h"

namespace gpuorch::agent {
namespace {

using testing::FileOr;
using testing::TaskLog;
using testing::TempDir;
using testing::WaitExit;
using testing::WaitFor;

class IsolationTest : public ::testing::Test {
 protected:
  std::unique_ptr<Runner> Open(RunAsPolicy policy) {
    Runner::Options o;
    o.data_dir = dir_.path();
    o.shim_command = {GPUORCH_TEST_SHIM};
    o.visible_ids = {"0", "1"};
    o.run_as = std::move(policy);
    core::Result<std::unique_ptr<Runner>> r = Runner::Open(o);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  std::string Log(const TaskKey& key, const char* stream) {
    return TaskLog(dir_.path(), key, stream);
  }

  static TaskSpec Spec(TaskKey key, std::vector<std::string> command) {
    TaskSpec s;
    s.key = key;
    s.command = std::move(command);
    return s;
  }

  TempDir dir_;
};

std::set<std::string> Names(const std::string& env_output) {
  std::set<std::string> names;
  std::istringstream in(env_output);
  for (std::string line; std::getline(in, line);) names.insert(line.substr(0, line.find('=')));
  return names;
}

TEST_F(IsolationTest, TaskSeesOnlyTheAllowListItsUserTheSpecAndTheGpus) {
  // The agent's own environment holds something a task must never see.
  ::setenv("GPUORCH_AGENT_SECRET", "leaked", 1);
  ::setenv("TZ", "Europe/Paris", 1);
  std::unique_ptr<Runner> r = Open(RunAsPolicy{});
  ::unsetenv("GPUORCH_AGENT_SECRET");
  TaskSpec s = Spec({1, 0, 0}, {"/usr/bin/env"});
  s.env = {{"FOO", "bar"}, {"HOME", "/from-spec"}};
  s.gpus = {1};
  ASSERT_TRUE(r->Start(s).ok());
  std::optional<TaskStatus> t = WaitExit(*r, s.key);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->exit.code, 0) << Log(s.key, "stderr");
  const std::string env = Log(s.key, "stdout");
  EXPECT_EQ(env.find("GPUORCH_AGENT_SECRET"), std::string::npos) << env;
  EXPECT_NE(env.find("FOO=bar\n"), std::string::npos) << env;
  EXPECT_NE(env.find("HOME=/from-spec\n"), std::string::npos) << "the spec overrides" << env;
  EXPECT_NE(env.find("TZ=Europe/Paris\n"), std::string::npos) << "allowed variable" << env;
  EXPECT_NE(env.find("CUDA_VISIBLE_DEVICES=1\n"), std::string::npos) << env;
  // Exactly these names, whatever the agent's environment holds (LANG and LC_ALL when set).
  std::set<std::string> want = {
      "PATH", "HOME",    "TZ",   "FOO", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
      "USER", "LOGNAME", "SHELL"};
  for (const char* opt : {"LANG", "LC_ALL"}) {
    if (::getenv(opt) != nullptr) want.insert(opt);
  }
  std::set<std::string> got = Names(env);
  // USER/LOGNAME/SHELL come from the user's passwd entry, which a container may lack.
  for (const char* opt : {"USER", "LOGNAME", "SHELL"}) {
    if (!got.count(opt)) want.erase(opt);
  }
  EXPECT_EQ(got, want) << env;
}

TEST_F(IsolationTest, DefaultWorkdirIsPrivateToTheTask) {
  std::unique_ptr<Runner> r = Open(RunAsPolicy{});
  TaskSpec s = Spec({2, 0, 0}, {"/bin/sh", "-c", "pwd; stat -c %a .; echo data > file"});
  ASSERT_TRUE(r->Start(s).ok());
  std::optional<TaskStatus> t = WaitExit(*r, s.key);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->exit.code, 0) << Log(s.key, "stderr");
  EXPECT_EQ(Log(s.key, "stdout"), r->WorkPath(s.key) + "\n700\n");
  EXPECT_EQ(FileOr(r->WorkPath(s.key) + "/file"), "data\n");
  // Specs and logs are the agent's alone; task users may cross DATA/work but not list it.
  struct stat st;
  ASSERT_EQ(::stat((dir_.path() + "/tasks").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat((dir_.path() + "/tasks/" + s.key.DirName() + ".state").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir_.path() + "/work").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0711u);
}

// The privilege drop itself: only a root agent can switch users. `nobody` exists on every
// Debian system and owns nothing, so no test user is created.
TEST_F(IsolationTest, RootAgentRunsTasksAsTheTaskUserByDefaultNobody) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: the privilege drop runs in a root agent";
  core::Result<TaskUser> nobody = LookupUser("nobody");
  if (!nobody.ok()) GTEST_SKIP() << "no user 'nobody' here: " << nobody.status().message();
  std::unique_ptr<Runner> r = Open(RunAsPolicy{});  // the default: nobody
  TaskSpec s = Spec({3, 0, 0}, {"/bin/sh", "-c",
                                "id -u; id -g; id -G; echo $HOME $USER; touch mine && echo wrote; "
                                "ls ../../tasks >/dev/null 2>&1 || echo no-tasks"});
  ASSERT_TRUE(r->Start(s).ok());
  std::optional<TaskStatus> t = WaitExit(*r, s.key);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->exit.code, 0) << Log(s.key, "stderr");
  std::string groups;
  for (gid_t g : nobody->groups) groups += (groups.empty() ? "" : " ") + std::to_string(g);
  EXPECT_EQ(Log(s.key, "stdout"), std::to_string(nobody->uid) + "\n" + std::to_string(nobody->gid) +
                                      "\n" + groups + "\n" + nobody->home + " nobody\n" +
                                      "wrote\nno-tasks\n")
      << "no root group may survive the drop; the task cannot read other tasks' files";
  struct stat st;
  ASSERT_EQ(::stat(r->WorkPath(s.key).c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, nobody->uid);
  // And a queue's user: `daemon` (also on every Debian system).
  core::Result<TaskUser> daemon = LookupUser("daemon");
  if (!daemon.ok()) return;
  TaskSpec d = Spec({3, 1, 0}, {"/usr/bin/id", "-un"});
  d.run_as = "daemon";
  ASSERT_TRUE(r->Start(d).ok());
  ASSERT_TRUE(WaitExit(*r, d.key).has_value());
  EXPECT_EQ(Log(d.key, "stdout"), "daemon\n");
}

TEST_F(IsolationTest, RootAndUsersOutsideThePolicyAreRefusedWithTheReason) {
  RunAsPolicy policy;
  policy.allowed = {"daemon"};
  std::unique_ptr<Runner> r = Open(policy);
  TaskSpec root = Spec({4, 0, 0}, {"/bin/true"});
  root.run_as = "root";
  EXPECT_FALSE(r->Start(root).ok());
  std::optional<TaskStatus> t = WaitExit(*r, root.key);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->exit.code, kLostExitCode);
  EXPECT_NE(Log(root.key, "stderr").find("run_as 'root'"), std::string::npos)
      << Log(root.key, "stderr");
  TaskSpec other = Spec({4, 1, 0}, {"/bin/true"});
  other.run_as = "nobody";  // exists, but not allowed
  EXPECT_FALSE(r->Start(other).ok());
  EXPECT_NE(Log(other.key, "stderr").find("run_as 'nobody'"), std::string::npos);
  TaskSpec ghost = Spec({4, 2, 0}, {"/bin/true"});
  ghost.run_as = "no-such-user-gpuorch";
  EXPECT_FALSE(r->Start(ghost).ok());
  EXPECT_NE(Log(ghost.key, "stderr").find("no such user"), std::string::npos);
}

// The decisions for an agent that is not root, whoever runs the test (the agent's uid is a
// parameter).
TEST(RunAsPolicyTest, AgentThatIsNotRootRunsTasksAsItselfOnly) {
  const uid_t agent = 54321;  // no passwd entry needed
  core::Result<TaskUser> self = ResolveTaskUser("", RunAsPolicy{}, agent);
  ASSERT_TRUE(self.ok()) << self.status().message();
  EXPECT_TRUE(self->same_as_agent);
  EXPECT_EQ(self->uid, agent);
  core::Result<TaskUser> other = ResolveTaskUser("nobody", RunAsPolicy{}, agent);
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("not root"), std::string::npos)
      << other.status().message();
  // A root agent never picks root by itself, and refuses it unless allowed.
  core::Result<TaskUser> dflt = ResolveTaskUser("", RunAsPolicy{}, 0);
  ASSERT_TRUE(dflt.ok()) << dflt.status().message();
  EXPECT_EQ(dflt->name, "nobody");
  EXPECT_FALSE(dflt->same_as_agent);
  EXPECT_FALSE(ResolveTaskUser("root", RunAsPolicy{}, 0).ok());
  RunAsPolicy allow_root;
  allow_root.allow_root = true;
  core::Result<TaskUser> root = ResolveTaskUser("0", allow_root, 0);
  ASSERT_TRUE(root.ok()) << root.status().message();
  EXPECT_TRUE(root->same_as_agent);
  EXPECT_EQ(root->ShimArgument().rfind("0:0", 0), 0u);
  // A bad default stops the agent at start.
  RunAsPolicy bad;
  bad.default_user = "no-such-user-gpuorch";
  EXPECT_FALSE(CheckRunAsPolicy(bad, 0).ok());
}

TEST_F(IsolationTest, GarbageCollectionRemovesOnlyForgottenTasksAfterTheRetention) {
  std::unique_ptr<Runner> r = Open(RunAsPolicy{});
  TaskSpec done = Spec({5, 0, 0}, {"/bin/sh", "-c", "echo out; echo x > file"});
  TaskSpec running = Spec({5, 1, 0}, {"/bin/sh", "-c",
                                      "echo ready; while [ ! -f " + dir_.path() +
                                          "/release ]; do "
                                          "sleep 0.02; done"});
  ASSERT_TRUE(r->Start(done).ok());
  ASSERT_TRUE(r->Start(running).ok());
  ASSERT_TRUE(WaitExit(*r, done.key).has_value());
  ASSERT_TRUE(WaitFor([&] { return Log(running.key, "stdout") == "ready\n"; }));
  const std::string files = dir_.path() + "/tasks/" + done.key.DirName();
  // Not forgotten yet: kept, whatever the retention.
  EXPECT_EQ(r->CollectGarbage(0), 0);
  r->Forget(done.key);
  r->Forget(running.key);  // no effect on a running task
  EXPECT_EQ(r->CollectGarbage(3600), 0) << "within the retention";
  EXPECT_TRUE(fs::Exists(files + ".stdout.log"));
  // A later agent on the same directory knows the forgotten task too.
  r.reset();
  r = Open(RunAsPolicy{});
  EXPECT_EQ(r->CollectGarbage(0), 1);
  for (const char* suffix : {".state", ".stdout.log", ".stderr.log"}) {
    EXPECT_FALSE(fs::Exists(files + suffix)) << suffix;
  }
  EXPECT_FALSE(fs::Exists(r->WorkPath(done.key)));
  EXPECT_TRUE(fs::Exists(dir_.path() + "/tasks/" + running.key.DirName() + ".state"));
  EXPECT_TRUE(fs::Exists(r->WorkPath(running.key)));
  ASSERT_TRUE(fs::WriteFileAtomic(dir_.path() + "/release", "").ok());
  ASSERT_TRUE(WaitExit(*r, running.key).has_value());
}

TEST(RemoveTreeTest, NeverFollowsASymbolicLink) {
  TempDir dir;
  const std::string outside = dir.path() + "/outside", tree = dir.path() + "/tree";
  ASSERT_TRUE(fs::MakeDirs(outside).ok());
  ASSERT_TRUE(fs::WriteFileAtomic(outside + "/keep", "x").ok());
  ASSERT_TRUE(fs::MakeDirs(tree + "/a/b").ok());
  ASSERT_TRUE(fs::WriteFileAtomic(tree + "/a/b/f", "x").ok());
  ASSERT_EQ(::symlink(outside.c_str(), (tree + "/a/link").c_str()), 0);
  ASSERT_EQ(::symlink((outside + "/keep").c_str(), (tree + "/file-link").c_str()), 0);
  EXPECT_TRUE(fs::RemoveTree(tree));
  EXPECT_FALSE(fs::Exists(tree));
  EXPECT_EQ(FileOr(outside + "/keep"), "x");
  EXPECT_TRUE(fs::RemoveTree(tree)) << "already gone";
}

}  // namespace
}  // namespace gpuorch::agent
