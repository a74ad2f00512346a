// Issue 9 §6: what observability costs.
//   - The server's /metrics with 10,000 nodes (80,000 GPUs), 100,000 finished workloads in
//     history and every GPU busy with telemetry: render time (goal 50 ms) and how long the
//     render holds the controller's lock (goal 5 ms).
//   - The agent's telemetry at 8 GPUs: one sampling (emulated source, the process-tree walk
//     of attribution on real /proc, the dcgm-exporter exposition and the heartbeat summary),
//     as a share of one core at the default 10 s interval (goal 0.5%); and the heartbeat's
//     size (goal 2 KiB).
// The controller runs on a real SQLite store (in /dev/shm when it exists, so that setting up
// 100,000 workloads is not a test of the disk).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <future>
#include <map>
#include <memory>

#include "agent/gpu.h"
#include "agent/protocol.h"
#include "agent/telemetry.h"
#include "log/logging.h"
#include "server/controller.h"

namespace gpuorch {
namespace {

using server::ApiError;
using server::Json;

constexpr int kNodes = 10'000;
constexpr int kGpus = 8;
constexpr int kFinished = 100'000;

std::string BenchDir() {
  const std::filesystem::path base =
      std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
  return (base / ("gpuorch-obs-bench-" + std::to_string(::getpid()))).string();
}

// A controller with the cluster of the goal, built once.
struct Cluster {
  std::string dir;
  std::unique_ptr<store::StateStore> store;
  std::unique_ptr<server::Controller> controller;
  std::vector<int64_t> running;  // one 8-GPU workload per node, with telemetry

  Cluster() {
    log::Setup(log::Level::kWarn, log::Format::kText, "bench");  // not 100,000 bind lines
    dir = BenchDir();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    store = store::OpenSqliteStore(dir + "/gpuorch.db").value();
    std::string queues = "queues:\n";
    for (int q = 0; q < 10; ++q) queues += "  - name: team-" + std::to_string(q) + "\n";
    auto config = server::ParseConfig("finished_retention: 0\n" + queues);
    controller = server::Controller::Create(*config, store.get()).value();
    for (int i = 0; i < kNodes; ++i) Register(i);
    // History: 100,000 short CPU-only workloads, bound and finished in rounds.
    int submitted = 0;
    while (submitted < kFinished) {
      const int batch = std::min(20'000, kFinished - submitted);
      std::vector<int64_t> ids = SubmitMany(batch, 0);
      submitted += batch;
      controller->Step();
      ExitAll(ids);
      controller->Step();
    }
    running = SubmitMany(kNodes, kGpus);
    controller->Step();
    // Every node reports its tasks running, with telemetry (half of them idle-looking).
    for (int i = 0; i < kNodes; ++i) Beat(i, i % 2 == 0 ? 85.0 : 2.0);
  }
  ~Cluster() {
    controller.reset();
    store.reset();
    std::filesystem::remove_all(dir);
  }

  static std::string Name(int i) { return "node-" + std::to_string(100000 + i); }

  void Register(int i) {
    Json gpus = Json::array();
    for (int j = 0; j < kGpus; ++j) {
      gpus.push_back({{"index", j}, {"model", "H100-80GB"}, {"memory_mib", 81920}});
    }
    Json out;
    ApiError e;
    if (!controller->Register({{"name", Name(i)},
                               {"cpu_milli", 192000},
                               {"memory_mib", 2097152},
                               {"backend", "emulated"},
                               {"telemetry", "emulated"},
                               {"metrics_address", "10.0.0.1:9400"},
                               {"gpus", gpus}},
                              out, e)) {
      std::fprintf(stderr, "register: %s\n", e.message.c_str());
      std::abort();
    }
  }

  // Submits `n` workloads (`gpus` GPUs each, 0: CPU only) without waiting for each commit.
  std::vector<int64_t> SubmitMany(int n, int gpus) {
    std::vector<std::promise<int64_t>> done(static_cast<size_t>(n));
    for (int k = 0; k < n; ++k) {
      Json spec = {{"name", "w"},
                   {"queue", "team-" + std::to_string(k % 10)},
                   {"gpus", gpus},
                   {"cpu_milli", 100},
                   {"command", {"true"}}};
      controller->SubmitAsync(spec,
                              [p = &done[static_cast<size_t>(k)]](bool ok, Json out, ApiError) {
                                p->set_value(ok ? out.value("id", int64_t{-1}) : -1);
                              });
    }
    std::vector<int64_t> ids;
    for (auto& p : done) ids.push_back(p.get_future().get());
    return ids;
  }

  // Reports every task of `ids` exited, node by node.
  void ExitAll(const std::vector<int64_t>& ids) {
    std::map<std::string, Json> by_node;
    for (int64_t id : ids) {
      Json w;
      ApiError e;
      if (!controller->GetWorkload(id, w, e)) continue;
      for (const Json& t : w["tasks"]) {
        by_node[t["node"].get<std::string>()].push_back({{"workload", id},
                                                         {"task", t["task"]},
                                                         {"attempt", w["attempt"]},
                                                         {"state", "exited"},
                                                         {"exit_code", 0}});
      }
    }
    for (auto& [node, tasks] : by_node) {
      Json out;
      ApiError e;
      (void)controller->Heartbeat(node, {{"tasks", tasks}}, out, e);
    }
  }

  void Beat(int i, double util) {
    Json gpus = Json::array();
    for (int j = 0; j < kGpus; ++j) {
      gpus.push_back({{"index", j}, {"util", util}, {"mem_used_mib", 40960}, {"healthy", true}});
    }
    const int64_t id = running[static_cast<size_t>(i)];
    Json out;
    ApiError e;
    (void)controller->Heartbeat(Name(i),
                                {{"tasks", Json::array()},
                                 {"telemetry",
                                  {{"gpus", gpus},
                                   {"tasks",
                                    {{{"workload", id},
                                      {"task", 0},
                                      {"attempt", 0},
                                      {"util", util},
                                      {"mem_used_mib", 327680}}}}}}},
                                out, e);
  }
};

void BM_MetricsRender10kNodes(benchmark::State& state) {
  static Cluster* cluster = new Cluster();  // built once, kept for every repetition
  int64_t lock_max_ns = 0;
  size_t bytes = 0;
  for (auto _ : state) {
    const std::string text = cluster->controller->Metrics();
    bytes = text.size();
    lock_max_ns = std::max(lock_max_ns, cluster->controller->MetricsLockNs());
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["metrics_lock_ms_max"] = static_cast<double>(lock_max_ns) / 1e6;
  state.counters["metrics_bytes"] = static_cast<double>(bytes);
  state.counters["nodes"] = kNodes;
  state.counters["finished_workloads"] = kFinished;
}
BENCHMARK(BM_MetricsRender10kNodes)->Unit(benchmark::kMillisecond)->Iterations(20);

void BM_AgentTelemetry8Gpus(benchmark::State& state) {
  agent::EmulatedGpuBackend backend(agent::EmulatedSpec{kGpus, "H100-80GB", 81920}, "node-a");
  const std::vector<agent::GpuInfo> gpus = backend.Discover().value();
  agent::EmulatedTelemetry source(gpus);
  std::vector<agent::TaskOnNode> tasks;
  for (int j = 0; j < kGpus; ++j) {
    agent::TaskOnNode t;
    t.key = agent::TaskKey{1000 + j, 0, 0};
    t.name = "train";
    t.queue = "prod";
    t.gpus = {j};
    t.pid = ::getppid();  // a real process whose tree the walk climbs
    t.env = {{"GPUORCH_EMULATE_GPU_UTIL", "73"}};
    tasks.push_back(t);
  }
  // The attribution walk NVML's process list causes: 8 GPUs' worth of pids through /proc.
  std::vector<agent::GpuProcess> processes;
  for (int j = 0; j < kGpus; ++j) processes.push_back({j, ::getpid(), 1024});
  const std::vector<agent::TaskStatus> none;
  int64_t now = 0;
  size_t heartbeat = 0, exposition = 0;
  for (auto _ : state) {
    agent::Telemetry t = source.Sample(tasks, now += 10'000).value();
    t.tasks = agent::TaskUses(t.gpus, processes, tasks, agent::ParentPidFromProc);
    const std::string text = agent::RenderDcgmExposition(t, gpus, tasks, "node-a", true);
    const std::string body = agent::HeartbeatRequestJson(none, &t);
    exposition = text.size();
    heartbeat = body.size();
    benchmark::DoNotOptimize(text.data());
    benchmark::DoNotOptimize(body.data());
  }
  state.counters["heartbeat_bytes_8gpus"] = static_cast<double>(heartbeat);
  state.counters["exposition_bytes_8gpus"] = static_cast<double>(exposition);
  // One sampling per 10 s interval: its CPU time as a percentage of one core, i.e.
  // (CPU s per sampling) / 10 s x 100 = CPU s / (iterations / 10).
  state.counters["agent_telemetry_cpu_pct"] =
      benchmark::Counter(static_cast<double>(state.iterations()) / 10.0,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_AgentTelemetry8Gpus)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace gpuorch

BENCHMARK_MAIN();
