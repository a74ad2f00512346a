#include "agent/gpu.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include "agent/nvml.h"
#include "agent/protocol.h"

namespace gpuorch::agent {
namespace {

TEST(EmulatedSpec, ParsesGoodSpecs) {
  struct Case {
    const char* spec;
    int32_t count;
    const char* model;
    int64_t memory_mib;
  };
  const Case cases[] = {
      {"8xH100-80GB", 8, "H100-80GB", 80 * 1024},
      {"4xA100-40GB", 4, "A100-40GB", 40 * 1024},
      {"2xT4", 2, "T4", 16 * 1024},
      {"1xL40S", 1, "L40S", 48 * 1024},
      {"16xB200", 16, "B200", 180 * 1024},
      {"3xMyGpu-12GB", 3, "MyGpu-12GB", 12 * 1024},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.spec);
    core::Result<EmulatedSpec> r = ParseEmulatedSpec(c.spec);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->count, c.count);
    EXPECT_EQ(r->model, c.model);
    EXPECT_EQ(r->memory_mib, c.memory_mib);
  }
}

TEST(EmulatedSpec, RejectsBadSpecsNamingThem) {
  struct Case {
    const char* spec;
    const char* says;
  };
  const Case cases[] = {
      {"", "expected <count>x<model>"},
      {"H100", "expected <count>x<model>"},
      {"x4", "expected <count>x<model>"},
      {"0xH100", "count must be"},
      {"17xH100", "count must be"},
      {"axH100", "count must be"},
      {"8x", "missing model"},
      {"8xFOO", "unknown model 'FOO'"},
      {"8xH100-0GB", "memory suffix"},
      {"8xH100-abcGB", "memory suffix"},
      {"2xT4 ", "character outside"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.spec);
    core::Result<EmulatedSpec> r = ParseEmulatedSpec(c.spec);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(std::string("'") + c.spec + "'"), std::string::npos)
        << r.status().message();
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << r.status().message();
  }
}

TEST(EmulatedBackend, DiscoversNamedGpus) {
  EmulatedGpuBackend b(*ParseEmulatedSpec("2xA100-40GB"), "node-7");
  core::Result<std::vector<GpuInfo>> gpus = b.Discover();
  ASSERT_TRUE(gpus.ok());
  ASSERT_EQ(gpus->size(), 2u);
  EXPECT_EQ((*gpus)[1].index, 1);
  EXPECT_EQ((*gpus)[1].uuid, "EMU-node-7-1");
  EXPECT_EQ((*gpus)[1].model, "A100-40GB");
  EXPECT_EQ((*gpus)[1].memory_mib, 40960);
  EXPECT_EQ(b.VisibleDeviceId((*gpus)[1]), "1");
  EXPECT_EQ(b.Name(), "emulated");
}

TEST(ModelName, FromNvmlProductNames) {
  const std::pair<const char*, const char*> cases[] = {
      {"NVIDIA H100 80GB HBM3", "H100-80GB"},
      {"NVIDIA A100-SXM4-40GB", "A100-40GB"},
      {"NVIDIA A100-SXM4-80GB", "A100-80GB"},
      {"Tesla T4", "T4"},
      {"Tesla V100-SXM2-16GB", "V100-16GB"},
      {"NVIDIA L40S", "L40S"},
      {"NVIDIA A10G", "A10G"},
      {"NVIDIA H200", "H200"},
      {"NVIDIA GeForce RTX 4090", "NVIDIAGeForceRTX4090"},
  };
  for (const auto& [product, model] : cases) EXPECT_EQ(ModelNameFromProduct(product), model);
}

TEST(Nvml, MissingLibraryGivesAClearError) {
  NvmlBackend b("libgpuorch-no-such-nvml.so.1");
  core::Result<std::vector<GpuInfo>> r = b.Discover();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not found (no NVIDIA driver on this machine)"),
            std::string::npos);
  EXPECT_NE(r.status().message().find("--emulate-gpus"), std::string::npos);
  const ProbeReport probe = ProbeNvml("libgpuorch-no-such-nvml.so.1");
  EXPECT_FALSE(probe.ok);
  EXPECT_NE(probe.json.find("\"error\""), std::string::npos);
}

// The real soname: on a machine without a driver this is the path users hit.
TEST(Nvml, RealLibraryAbsentOrWorking) {
  void* h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h != nullptr) {
    dlclose(h);
    NvmlBackend b;
    core::Result<std::vector<GpuInfo>> r = b.Discover();
    // A driver without a usable GPU (a container without devices) fails, but clearly.
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find("NVML:"), std::string::npos);
    } else {
      for (const GpuInfo& g : *r) EXPECT_FALSE(g.uuid.empty());
    }
    GTEST_SKIP() << "a real libnvidia-ml.so.1 is present";
  }
  NvmlBackend b;
  core::Result<std::vector<GpuInfo>> r = b.Discover();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), core::StatusCode::kNotFound);
  EXPECT_EQ(r.status().message().rfind(
                "NVML: libnvidia-ml.so.1 not found (no NVIDIA driver on this machine); use "
                "--emulate-gpus to run without GPUs",
                0),
            0u)
      << r.status().message();
}

TEST(Protocol, HeartbeatAnswerRoundTrip) {
  const std::string body = R"({"desired": [{"workload": 17, "task": 0, "attempt": 1,
      "command": ["python", "train.py"], "env": {"RANK": "0"}, "workdir": "/tmp",
      "gpus": [0, 1], "gpu_milli": 1000, "grace_period_ms": 30000, "future_field": 1}],
      "epoch": 1700000000000, "version": 42})";
  core::Result<DesiredList> r = ParseHeartbeatResponse(body);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->epoch, 1700000000000);
  EXPECT_EQ(r->version, 42);
  ASSERT_EQ(r->tasks.size(), 1u);
  const TaskSpec& s = r->tasks[0];
  EXPECT_EQ(s.key, (TaskKey{17, 0, 1}));
  EXPECT_EQ(s.command, (std::vector<std::string>{"python", "train.py"}));
  EXPECT_EQ(s.env.at("RANK"), "0");
  EXPECT_EQ(s.gpus, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(s.grace_period_ms, 30000);
  const std::string line = TaskSpecJson(s);
  EXPECT_EQ(line.find('\n'), std::string::npos) << "one record line of the state file";
  core::Result<TaskSpec> again = ParseTaskSpec(line);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->key, s.key);
  EXPECT_EQ(again->command, s.command);
  EXPECT_EQ(again->workdir, "/tmp");
}

TEST(Protocol, BadAnswersAreErrorsNotExceptions) {
  for (const char* body : {"", "{", "{}", R"({"desired": [{"workload": "x"}]})",
                           R"({"desired": [{"workload": 1, "task": 0, "attempt": 0}]})"}) {
    EXPECT_FALSE(ParseHeartbeatResponse(body).ok()) << body;
  }
  EXPECT_FALSE(ParseRegisterResponse("nope").ok());
  EXPECT_EQ(*ParseRegisterResponse(R"({"node": "a", "heartbeat_interval_ms": 250})"), 250);
}

TEST(Protocol, HeartbeatRequestShape) {
  TaskStatus running{{17, 0, 1}, TaskState::kRunning, 4242, {}};
  TaskStatus exited{{12, 1, 0}, TaskState::kExited, 0, {0, 15, 4, 2048}};
  EXPECT_EQ(HeartbeatRequestJson({running, exited}),
            R"({"tasks":[{"attempt":1,"pid":4242,"state":"running","task":0,"workload":17},)"
            R"({"attempt":0,"cpu_system_ms":4,"cpu_user_ms":15,"exit_code":0,)"
            R"("max_rss_kib":2048,"state":"exited","task":1,"workload":12}]})");
}

// Heartbeats carry only changes: a running task until a server acknowledged it (again
// when its pid changes or another server answers), an exited one until it is forgotten.
TEST(Protocol, HeartbeatsReportOnlyWhatTheServerHasNotAcknowledged) {
  const TaskStatus starting{{1, 0, 0}, TaskState::kRunning, 0, {}};
  const TaskStatus running{{1, 0, 0}, TaskState::kRunning, 77, {}};
  const TaskStatus other{{2, 0, 0}, TaskState::kRunning, 88, {}};
  const TaskStatus exited{{1, 0, 0}, TaskState::kExited, 0, {3, 0, 0, 0}};
  auto keys = [](const std::vector<TaskStatus>& ts) {
    std::vector<std::pair<int64_t, int32_t>> out;
    for (const TaskStatus& t : ts) out.emplace_back(t.key.workload, t.pid);
    return out;
  };
  using Keys = std::vector<std::pair<int64_t, int32_t>>;
  ReportTracker r;
  EXPECT_EQ(keys(r.ToReport({starting, other})), (Keys{{1, 0}, {2, 88}})) << "all at first";
  EXPECT_TRUE(r.Acknowledge(100, {starting, other}));
  EXPECT_TRUE(r.ToReport({starting, other}).empty()) << "a keep-alive";
  EXPECT_EQ(keys(r.ToReport({running, other})), (Keys{{1, 77}})) << "the pid is news";
  ASSERT_TRUE(r.Acknowledge(100, {running}));
  EXPECT_TRUE(r.ToReport({running, other}).empty());
  // Not acknowledged (the heartbeat failed): reported again next time.
  EXPECT_EQ(r.ToReport({exited, other}).size(), 1u);
  ASSERT_TRUE(r.Acknowledge(100, {exited}));
  EXPECT_EQ(r.ToReport({exited, other}).size(), 1u) << "exits until forgotten";
  // A restarted server (another epoch): everything again.
  EXPECT_FALSE(r.Acknowledge(101, {exited}));
  EXPECT_EQ(r.ToReport({exited, other}).size(), 2u);
  EXPECT_TRUE(r.Acknowledge(101, {exited, other}));
  EXPECT_EQ(r.ToReport({exited, other}).size(), 1u);
  r.Reset();
  EXPECT_EQ(r.ToReport({exited, other}).size(), 2u) << "registered again: everything";
}

TEST(Protocol, HeartbeatAnswerCarriesTheInterval) {
  auto r = ParseHeartbeatResponse(
      R"({"desired": [], "epoch": 1, "version": 2, "heartbeat_interval_ms": 20000})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->heartbeat_interval_ms, 20000);
  EXPECT_EQ(ParseHeartbeatResponse(R"({"desired": []})")->heartbeat_interval_ms, 0);
}

TEST(Protocol, DesiredListOrder) {
  DesiredList a{5, 10, {}}, b{5, 11, {}}, restarted{6, 1, {}}, clock_went_back{4, 1, {}};
  EXPECT_TRUE(b.NewerThan(a));
  EXPECT_FALSE(a.NewerThan(b));
  EXPECT_FALSE(a.NewerThan(a));
  EXPECT_TRUE(restarted.NewerThan(b)) << "a restarted server starts its versions over";
  EXPECT_TRUE(clock_went_back.NewerThan(b)) << "an epoch names a server; it is not a clock";
}

}  // namespace
}  // namespace gpuorch::agent
