#include "agent/mps.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/runner.h"
#include "agent/test_util.h"

namespace gpuorch::agent {
namespace {

using testing::FileOr;
using testing::TempDir;
using testing::WaitExit;

// A runner over the production shim whose tasks print their GPU environment.
class GpuEnvTest : public ::testing::Test {
 protected:
  std::unique_ptr<Runner> Open(Runner::Options o) {
    o.data_dir = dir_.path();
    o.shim_command = {GPUORCH_TEST_SHIM};
    o.visible_ids = {"GPU-aaaa", "GPU-bbbb"};
    o.run_as.default_user = std::to_string(::geteuid());
    o.run_as.allow_root = true;
    core::Result<std::unique_ptr<Runner>> r = Runner::Open(std::move(o));
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  TaskSpec PrintEnv(TaskKey key, std::vector<int32_t> gpus) {
    TaskSpec s;
    s.key = key;
    s.command = {"/bin/sh", "-c", "env | grep -E '^(CUDA|NVIDIA)_' | sort"};
    s.workdir = dir_.path();
    s.gpus = std::move(gpus);
    return s;
  }
  std::string Stdout(const TaskKey& key) { return testing::TaskLog(dir_.path(), key, "stdout"); }

  TempDir dir_;
};

TEST_F(GpuEnvTest, AMigTaskSeesOnlyItsInstance) {
  Runner::Options o;
  o.mig_uuid = [](const MigPlacement& p) -> std::optional<std::string> {
    if (p.gpu == 1 && p.start == 4 && p.profile == "3g.40gb") return "MIG-1234";
    return std::nullopt;
  };
  std::unique_ptr<Runner> r = Open(o);
  TaskSpec s = PrintEnv({1, 0, 0}, {1});
  s.mig = MigPlacement{1, 4, "3g.40gb"};
  ASSERT_TRUE(r->Start(s).ok());
  ASSERT_TRUE(WaitExit(*r, s.key).has_value());
  EXPECT_EQ(Stdout(s.key), "CUDA_VISIBLE_DEVICES=MIG-1234\nNVIDIA_VISIBLE_DEVICES=MIG-1234\n");
  ASSERT_EQ(r->Tasks().size(), 1u);

  // An instance that does not exist: a launch failure that says which.
  TaskSpec gone = PrintEnv({2, 0, 0}, {1});
  gone.mig = MigPlacement{1, 0, "3g.40gb"};
  core::Status st = r->Start(gone);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("MIG instance 3g.40gb@0 on GPU 1 does not exist"), std::string::npos)
      << st.message();
  std::optional<TaskStatus> t = WaitExit(*r, gone.key);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->exit.code, kLostExitCode);
  EXPECT_NE(testing::TaskLog(dir_.path(), gone.key, "stderr").find("does not exist"),
            std::string::npos);

  // The task's gpus must be the instance's GPU.
  TaskSpec other = PrintEnv({3, 0, 0}, {0});
  other.mig = MigPlacement{1, 4, "3g.40gb"};
  EXPECT_FALSE(r->Start(other).ok());
}

TEST_F(GpuEnvTest, AMigTaskOnANodeWithoutMigFails) {
  std::unique_ptr<Runner> r = Open({});
  TaskSpec s = PrintEnv({1, 0, 0}, {0});
  s.mig = MigPlacement{0, 0, "1g.10gb"};
  core::Status st = r->Start(s);
  EXPECT_NE(st.message().find("no GPU in MIG mode"), std::string::npos) << st.message();
}

TEST_F(GpuEnvTest, AnMpsTaskGetsItsShareAndTheDaemonsPipes) {
  Runner::Options o;
  std::vector<int32_t> ensured;
  o.mps_pipe_dir = [&](int32_t gpu) {
    ensured.push_back(gpu);
    return "/pipes/" + std::to_string(gpu);
  };
  std::unique_ptr<Runner> r = Open(o);
  TaskSpec s = PrintEnv({1, 0, 0}, {1});
  s.sharing = kSharingMps;
  s.gpu_milli = 333;
  s.gpu_memory_mib = 20480;
  ASSERT_TRUE(r->Start(s).ok());
  ASSERT_TRUE(WaitExit(*r, s.key).has_value());
  EXPECT_EQ(Stdout(s.key),
            "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=34\n"
            "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=GPU-bbbb=20480M\n"
            "CUDA_MPS_PIPE_DIRECTORY=/pipes/1\n"
            "CUDA_VISIBLE_DEVICES=GPU-bbbb\n"
            "NVIDIA_VISIBLE_DEVICES=GPU-bbbb\n");
  EXPECT_EQ(ensured, std::vector<int32_t>{1});

  // Time-slicing (the default) sets no MPS variable; the task's own env cannot override.
  TaskSpec plain = PrintEnv({2, 0, 0}, {0});
  plain.env["CUDA_VISIBLE_DEVICES"] = "7";
  ASSERT_TRUE(r->Start(plain).ok());
  ASSERT_TRUE(WaitExit(*r, plain.key).has_value());
  EXPECT_EQ(Stdout(plain.key), "CUDA_VISIBLE_DEVICES=GPU-aaaa\nNVIDIA_VISIBLE_DEVICES=GPU-aaaa\n");
}

TEST(MpsEnvironmentTest, PercentageRoundsUpWithinOneToHundredAndMemoryIsOptional) {
  TaskSpec s;
  struct Case {
    int32_t milli;
    const char* pct;
  };
  for (const Case& c :
       {Case{1, "1"}, Case{250, "25"}, Case{251, "26"}, Case{1000, "100"}, Case{2000, "100"}}) {
    s.gpu_milli = c.milli;
    EXPECT_EQ(MpsEnvironment(s, {"0"}, "/p").at("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), c.pct)
        << c.milli;
  }
  EXPECT_FALSE(MpsEnvironment(s, {"0"}, "/p").count("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"));
  s.gpu_memory_mib = 100;
  EXPECT_EQ(MpsEnvironment(s, {"0", "1"}, "/p").at("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"),
            "0=100M,1=100M");
}

TEST(MpsControlTest, WithoutTheBinaryItSaysSoOnce) {
  TempDir dir;
  std::vector<std::string> log;
  MpsControl mps(
      dir.path(), {"0"}, [&](const std::string& l) { log.push_back(l); }, "");
  EXPECT_FALSE(mps.available());
  EXPECT_EQ(mps.Ensure(0), MpsPipeDir(dir.path(), 0));
  EXPECT_EQ(mps.Ensure(1), MpsPipeDir(dir.path(), 1));
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("MPS unavailable"), std::string::npos);
  EXPECT_EQ(MpsControl::FindOnPath("gpuorch-no-such-binary-here"), "");
}

// The real daemon needs a GPU (and is not installed here); a stand-in script records how it
// was started.
TEST(MpsControlTest, StartsOneDaemonPerGpuWithItsDirectories) {
  TempDir dir;
  const std::string fake = dir.path() + "/fake-mps-control";
  const std::string record = dir.path() + "/calls";
  ASSERT_TRUE(fs::WriteFileAtomic(fake,
                                  "#!/bin/sh\necho \"$1 $CUDA_VISIBLE_DEVICES "
                                  "$CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY\" >> " +
                                      record + "\n")
                  .ok());
  ASSERT_EQ(::chmod(fake.c_str(), 0755), 0);
  std::vector<std::string> log;
  MpsControl mps(
      dir.path(), {"GPU-a", "GPU-b"}, [&](const std::string& l) { log.push_back(l); }, fake);
  EXPECT_EQ(mps.Ensure(1), MpsPipeDir(dir.path(), 1));
  EXPECT_EQ(mps.Ensure(1), MpsPipeDir(dir.path(), 1));
  EXPECT_EQ(FileOr(record),
            "-d GPU-b " + MpsPipeDir(dir.path(), 1) + " " + MpsLogDir(dir.path(), 1) + "\n")
      << "started once";
  struct stat st;
  ASSERT_EQ(::stat(MpsPipeDir(dir.path(), 1).c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_NE(log.at(0).find("MPS control daemon started for GPU 1"), std::string::npos);
}

}  // namespace
}  // namespace gpuorch::agent
