// GPU telemetry on the node (issue 9 §1): emulated GPUs read what their tasks declare, pids
// are attributed through the real process tree, the exposition carries dcgm-exporter's
// names and labels, the NVML path runs against a stand-in driver library (no GPU here),
// and the heartbeat's summary stays small.
#include "agent/telemetry.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "agent/gpu.h"
#include "agent/nvml.h"
#include "agent/protocol.h"

namespace gpuorch::agent {
namespace {

std::vector<GpuInfo> Gpus(int n, int64_t memory_mib = 81920) {
  EmulatedGpuBackend b(EmulatedSpec{n, "H100-80GB", memory_mib}, "node-a");
  return b.Discover().value();
}

TaskOnNode Task(int64_t workload, std::vector<int32_t> gpus, int32_t milli = 1000,
                std::map<std::string, std::string> env = {}) {
  TaskOnNode t;
  t.key = TaskKey{workload, 0, 0};
  t.name = "train";
  t.queue = "prod";
  t.gpus = std::move(gpus);
  t.gpu_milli = milli;
  t.env = std::move(env);
  return t;
}

TEST(EmulatedTelemetry, GpusReadWhatTheirTasksDeclare) {
  EmulatedTelemetry e(Gpus(4));
  const std::vector<TaskOnNode> tasks = {
      Task(1, {1, 2}, 1000, {{"GPUORCH_EMULATE_GPU_UTIL", "37"}}),
      Task(2, {3}, 1000),  // default 90%, all the memory (its share of a whole GPU)
  };
  const Telemetry t = e.Sample(tasks, 0).value();
  ASSERT_EQ(t.gpus.size(), 4u);
  EXPECT_EQ(t.gpus[0].util_pct, 0);
  EXPECT_EQ(t.gpus[0].fb_used_mib, 0);
  EXPECT_EQ(t.gpus[0].fb_free_mib, 81920);
  EXPECT_EQ(t.gpus[0].sm_clock_mhz, 345);
  EXPECT_EQ(t.gpus[1].util_pct, 37);
  EXPECT_EQ(t.gpus[2].util_pct, 37);
  EXPECT_EQ(t.gpus[3].util_pct, 90);
  EXPECT_EQ(t.gpus[3].fb_used_mib, 81920);
  EXPECT_GT(t.gpus[3].power_w, t.gpus[1].power_w);
  EXPECT_GT(t.gpus[1].power_w, t.gpus[0].power_w);
  ASSERT_EQ(t.tasks.size(), 2u);
  EXPECT_EQ(t.tasks[0].util_pct, 37);
  EXPECT_EQ(t.tasks[0].memory_used_mib, 2 * 81920);
  EXPECT_EQ(t.tasks[1].util_pct, 90);
  for (const GpuSample& g : t.gpus) EXPECT_TRUE(g.unhealthy.empty());
}

TEST(EmulatedTelemetry, SharedGpusAddTheirTasksSharesAndMemory) {
  EmulatedTelemetry e(Gpus(1));
  TaskOnNode a = Task(1, {0}, 500, {{"GPUORCH_EMULATE_GPU_UTIL", "80"}});
  TaskOnNode b = Task(2, {0}, 250, {{"GPUORCH_EMULATE_GPU_MEMORY_MIB", "1000"}});
  a.gpu_memory_mib = 20000;
  const Telemetry t = e.Sample({a, b}, 0).value();
  EXPECT_DOUBLE_EQ(t.gpus[0].util_pct, 80 * 0.5 + 90 * 0.25);
  EXPECT_EQ(t.gpus[0].fb_used_mib, 21000);
  EXPECT_EQ(t.tasks[0].memory_used_mib, 20000);
  EXPECT_EQ(t.tasks[1].memory_used_mib, 1000);
  // Malformed or out-of-range settings fall back or are clamped.
  TaskOnNode c =
      Task(3, {0}, 1000,
           {{"GPUORCH_EMULATE_GPU_UTIL", "lots"}, {"GPUORCH_EMULATE_GPU_MEMORY_MIB", "9e9"}});
  TaskOnNode d = Task(4, {0}, 1000, {{"GPUORCH_EMULATE_GPU_UTIL", "250"}});
  const Telemetry u = e.Sample({c}, 0).value();
  EXPECT_EQ(u.tasks[0].util_pct, 90);
  EXPECT_EQ(u.tasks[0].memory_used_mib, 81920);
  EXPECT_EQ(e.Sample({d}, 0).value().tasks[0].util_pct, 100);
}

TEST(EmulatedTelemetry, EnergyIntegratesPowerOverTime) {
  EmulatedTelemetry e(Gpus(1));
  EXPECT_EQ(e.Sample({}, 1000).value().gpus[0].energy_mj, 0);
  // 10 s idle at 60 W = 600 J = 600,000 mJ.
  EXPECT_EQ(e.Sample({}, 11000).value().gpus[0].energy_mj, 600'000);
}

TEST(EmulatedTelemetry, AnInjectedXidMarksTheGpusUnhealthyUntilRestart) {
  EmulatedTelemetry e(Gpus(2));
  Telemetry t = e.Sample({Task(1, {1}, 1000, {{"GPUORCH_EMULATE_XID", "79"}})}, 0).value();
  EXPECT_TRUE(t.gpus[0].unhealthy.empty());
  EXPECT_EQ(t.gpus[1].unhealthy, "XID 79");
  EXPECT_EQ(t.gpus[1].last_xid, 79);
  t = e.Sample({}, 1).value();
  EXPECT_EQ(t.gpus[1].unhealthy, "XID 79") << "sticky after the task ended";
  // An application's own fault (XID 13) is reported but leaves the GPU healthy.
  EmulatedTelemetry f(Gpus(1));
  t = f.Sample({Task(1, {0}, 1000, {{"GPUORCH_EMULATE_XID", "13"}})}, 0).value();
  EXPECT_EQ(t.gpus[0].last_xid, 13);
  EXPECT_TRUE(t.gpus[0].unhealthy.empty());
  EXPECT_FALSE(XidMarksUnhealthy(0));
  EXPECT_TRUE(XidMarksUnhealthy(48));
}

TEST(Attribution, PidsFollowTheProcessTreeToTheirTask) {
  // 100 <- 101 <- 102 (task 7's command is 100); 200 belongs to nobody; 300 loops.
  std::map<int32_t, int32_t> parent = {{101, 100}, {102, 101}, {100, 1},
                                       {200, 1},   {300, 301}, {301, 300}};
  auto parent_of = [&](int32_t p) { return parent.count(p) ? parent[p] : 0; };
  TaskOnNode t = Task(7, {0});
  t.pid = 100;
  const auto owner = AttributePids({100, 102, 200, 300, 999}, {t}, parent_of);
  ASSERT_EQ(owner.size(), 2u);
  EXPECT_EQ(owner.at(100).workload, 7);
  EXPECT_EQ(owner.at(102).workload, 7);
}

TEST(Attribution, ThroughTheRealProcessTree) {
  // A child that forks a grandchild: the grandchild's pid leads to the child through /proc.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const pid_t grandchild = ::fork();
    if (grandchild == 0) {
      ::pause();
      ::_exit(0);
    }
    ssize_t w = ::write(fds[1], &grandchild, sizeof(grandchild));
    (void)w;
    ::waitpid(grandchild, nullptr, 0);
    ::_exit(0);
  }
  pid_t grandchild = 0;
  ASSERT_EQ(::read(fds[0], &grandchild, sizeof(grandchild)),
            static_cast<ssize_t>(sizeof(grandchild)));
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_EQ(ParentPidFromProc(grandchild), child);
  TaskOnNode t = Task(5, {0});
  t.pid = child;
  const auto owner = AttributePids({grandchild, ::getpid()}, {t}, ParentPidFromProc);
  EXPECT_EQ(owner.size(), 1u);
  EXPECT_EQ(owner.count(grandchild), 1u);
  ::kill(grandchild, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_EQ(ParentPidFromProc(grandchild), 0) << "gone";
}

TEST(TaskUses, MemoryByAttributionUtilizationByTheTasksGpus) {
  std::vector<GpuSample> gpus(2);
  gpus[0].index = 0;
  gpus[0].util_pct = 80;
  gpus[1].index = 1;
  gpus[1].util_pct = 40;
  TaskOnNode t = Task(1, {0, 1});
  t.pid = 10;
  TaskOnNode idle = Task(2, {});
  idle.pid = 20;
  const std::vector<GpuProcess> procs = {{0, 11, 1000}, {1, 11, 500}, {1, 12, 24}, {0, 99, 7}};
  auto parent_of = [](int32_t p) { return p == 11 || p == 12 ? 10 : 0; };
  const auto uses = TaskUses(gpus, procs, {t, idle}, parent_of);
  ASSERT_EQ(uses.size(), 2u);
  EXPECT_DOUBLE_EQ(uses[0].util_pct, 60);
  EXPECT_EQ(uses[0].memory_used_mib, 1524);
  EXPECT_EQ(uses[1].util_pct, 0);
  EXPECT_EQ(uses[1].memory_used_mib, 0);
}

TEST(DcgmExposition, NamesLabelsAndAttributionAsDcgmExporterWritesThem) {
  EmulatedTelemetry e(Gpus(2));
  TaskOnNode t = Task(17, {1}, 1000, {{"GPUORCH_EMULATE_GPU_UTIL", "42"}});
  t.key.task = 3;
  const std::vector<GpuInfo> gpus = Gpus(2);
  const std::string text =
      RenderDcgmExposition(e.Sample({t}, 0).value(), gpus, {t}, "node-a", true);
  EXPECT_NE(text.find("# TYPE DCGM_FI_DEV_GPU_UTIL gauge"), std::string::npos) << text;
  EXPECT_NE(text.find("[emulated GPU"), std::string::npos);
  // The busy GPU carries the Kubernetes attribution labels; the idle one has none.
  EXPECT_NE(text.find("DCGM_FI_DEV_GPU_UTIL{Hostname=\"node-a\",UUID=\"EMU-node-a-1\","
                      "container=\"3\",device=\"nvidia1\",gpu=\"1\",modelName=\"emulated "
                      "H100-80GB\",namespace=\"prod\",pci_bus_id=\"00000000:11:00.0\","
                      "pod=\"train-17\"} 42"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("DCGM_FI_DEV_GPU_UTIL{Hostname=\"node-a\",UUID=\"EMU-node-a-0\","
                      "device=\"nvidia0\",gpu=\"0\",modelName=\"emulated H100-80GB\","
                      "pci_bus_id=\"00000000:10:00.0\"} 0"),
            std::string::npos)
      << text;
  for (const char* name :
       {"DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_SM_CLOCK",
        "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "gpuorch_agent_gpu_healthy",
        "gpuorch_agent_telemetry_emulated{Hostname=\"node-a\"} 1"}) {
    EXPECT_NE(text.find(name), std::string::npos) << name;
  }
  // A field the device did not answer is left out, not shown as 0.
  Telemetry missing = e.Sample({}, 0).value();
  missing.gpus[0].missing = kFieldSmClock;
  const std::string partial = RenderDcgmExposition(missing, gpus, {}, "node-a", false);
  EXPECT_EQ(partial.find("DCGM_FI_DEV_SM_CLOCK{Hostname=\"node-a\",UUID=\"EMU-node-a-0\""),
            std::string::npos);
  EXPECT_NE(partial.find("DCGM_FI_DEV_SM_CLOCK{Hostname=\"node-a\",UUID=\"EMU-node-a-1\""),
            std::string::npos);
  EXPECT_EQ(partial.find("[emulated GPU"), std::string::npos);
}

TEST(HeartbeatSummary, EightGpusAndEightTasksFitInTwoKilobytes) {
  EmulatedTelemetry e(Gpus(8));
  std::vector<TaskOnNode> tasks;
  for (int i = 0; i < 8; ++i) {
    TaskOnNode t = Task(1'000'000 + i, {i}, 1000, {{"GPUORCH_EMULATE_XID", i == 7 ? "79" : "0"}});
    t.key.attempt = 12;
    tasks.push_back(t);
  }
  std::vector<TaskStatus> none;
  const Telemetry t = e.Sample(tasks, 0).value();
  const std::string body = HeartbeatRequestJson(none, &t);
  EXPECT_LE(body.size(), 2048u) << body.size() << ": " << body;
  const nlohmann::json j = nlohmann::json::parse(body);
  ASSERT_EQ(j["telemetry"]["gpus"].size(), 8u);
  EXPECT_EQ(j["telemetry"]["gpus"][0]["util"], 90);
  EXPECT_EQ(j["telemetry"]["gpus"][0]["healthy"], true);
  EXPECT_EQ(j["telemetry"]["gpus"][7]["healthy"], false);
  EXPECT_EQ(j["telemetry"]["gpus"][7]["health"], "XID 79");
  ASSERT_EQ(j["telemetry"]["tasks"].size(), 8u);
  EXPECT_EQ(j["telemetry"]["tasks"][0]["workload"], 1'000'000);
  EXPECT_EQ(j["telemetry"]["tasks"][0]["attempt"], 12);
  EXPECT_EQ(HeartbeatRequestJson(none).find("telemetry"), std::string::npos);
}

// The NVML path against a stand-in library (testdata/fake_nvml.c): loading, every field,
// a missing one, ECC, XID events and per-task memory through the process tree.
TEST(NvmlTelemetry, SamplesEveryFieldThroughTheDriverInterface) {
  ::unsetenv("GPUORCH_FAKE_NVML_DBE");
  ::unsetenv("GPUORCH_FAKE_NVML_XID");
  const int32_t me = ::getpid();
  ::setenv("GPUORCH_FAKE_NVML_PROCS",
           (std::to_string(0) + ":" + std::to_string(me) + ":2048,1:" + std::to_string(me) +
            ":100,1:4000000:7")
               .c_str(),
           1);
  NvmlBackend backend(GPUORCH_FAKE_NVML);
  auto found = backend.Discover();
  ASSERT_TRUE(found.ok()) << found.status().message();
  ASSERT_EQ(found->size(), 2u);
  EXPECT_EQ((*found)[0].model, "H100-80GB");
  EXPECT_EQ((*found)[1].pci_bus_id, "00000000:19:00.0");
  auto source = backend.OpenTelemetry(*found);
  ASSERT_TRUE(source.ok()) << source.status().message();
  ASSERT_FALSE((*source)->emulated());
  TaskOnNode mine = Task(9, {0, 1});
  mine.pid = me;  // this test process stands for the task's command
  Telemetry t = (*source)->Sample({mine}, 0).value();
  ASSERT_EQ(t.gpus.size(), 2u);
  EXPECT_EQ(t.gpus[0].util_pct, 37);
  EXPECT_EQ(t.gpus[0].mem_copy_util_pct, 12);
  EXPECT_EQ(t.gpus[0].fb_used_mib, 40960);
  EXPECT_EQ(t.gpus[0].fb_free_mib, 81559 - 40960);
  EXPECT_DOUBLE_EQ(t.gpus[0].power_w, 312.5);
  EXPECT_EQ(t.gpus[0].temp_c, 61);
  EXPECT_EQ(t.gpus[0].sm_clock_mhz, 1980);
  EXPECT_EQ(t.gpus[0].energy_mj, 123456789);
  EXPECT_EQ(t.gpus[0].ecc_sbe, 5);
  EXPECT_EQ(t.gpus[0].ecc_dbe, 0);
  EXPECT_EQ(t.gpus[0].missing, 0u);
  EXPECT_EQ(t.gpus[1].missing, static_cast<uint32_t>(kFieldSmClock)) << "NOT_SUPPORTED";
  for (const GpuSample& g : t.gpus) EXPECT_TRUE(g.unhealthy.empty());
  ASSERT_EQ(t.tasks.size(), 1u);
  EXPECT_DOUBLE_EQ(t.tasks[0].util_pct, 18.5);
  EXPECT_EQ(t.tasks[0].memory_used_mib, 2148) << "pid 4000000 belongs to no task";

  // Double-bit ECC errors and an XID mark their GPUs unhealthy; the XID stays.
  ::setenv("GPUORCH_FAKE_NVML_DBE", "1", 1);
  ::setenv("GPUORCH_FAKE_NVML_XID", "0:79", 1);
  t = (*source)->Sample({mine}, 0).value();
  EXPECT_EQ(t.gpus[0].unhealthy, "XID 79");
  EXPECT_EQ(t.gpus[0].last_xid, 79);
  EXPECT_EQ(t.gpus[1].unhealthy, "ECC double-bit errors: 2");
  t = (*source)->Sample({mine}, 0).value();
  EXPECT_EQ(t.gpus[0].unhealthy, "XID 79") << "delivered once, remembered";
  ::unsetenv("GPUORCH_FAKE_NVML_DBE");
  ::unsetenv("GPUORCH_FAKE_NVML_XID");
  ::unsetenv("GPUORCH_FAKE_NVML_PROCS");
}

TEST(NvmlTelemetry, MissingLibraryIsAClearError) {
  auto t = NvmlTelemetry::Open("libgpuorch-no-such-nvml.so.1");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("--emulate-gpus"), std::string::npos);
}

}  // namespace
}  // namespace gpuorch::agent
