// Engine benchmarks: the four headline figures of bench/README.md, each a user counter with a
// fixed name that scripts/bench collects, plus variants quoted for comparison. Every scenario
// is deterministic (fixed seeds and shapes) and builds its state outside the timed region.
// Rates and cycle times come from this thread's CPU clock around exactly the calls they name:
// the engine is single-threaded and does no I/O, so CPU time is its latency, and unlike wall
// time it does not move when other jobs share the machine.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "sched/scheduler.h"
#include "sched/testing.h"

namespace gpuorch::sched {
namespace {

using core::QueueId;
using core::TopologyLevel;
using testing::NodeBuilder;
using testing::QueueBuilder;
using testing::WorkloadBuilder;

// --- The synthetic cluster: 10,000 nodes of 8 GPUs (one NVLink domain of 8), racks of 32
// nodes, 4 zones, 4 GPU models. A rack holds one model, as real racks do.
constexpr int kNodes = 10'000;
constexpr int kGpusPerNode = 8;
constexpr int kRackNodes = 32;
constexpr int kZones = 4;
constexpr uint32_t kModels = 4;  // 0 H100, 1 A100, 2 L40S, 3 T4
constexpr int64_t kGpuMemoryMib[kModels] = {81920, 81920, 49152, 16384};

// 40% H100, 30% A100, 20% L40S, 10% T4, interleaved so that every zone holds every model.
uint32_t RackModel(int rack) {
  static constexpr uint32_t kPattern[10] = {0, 1, 0, 2, 1, 0, 3, 1, 0, 2};
  return kPattern[rack % 10];
}

// Whole GPUs of model m in the cluster.
int64_t ModelGpus(uint32_t m) {
  int64_t gpus = 0;
  for (int first = 0; first < kNodes; first += kRackNodes) {
    if (RackModel(first / kRackNodes) == m) {
      gpus += int64_t{std::min(kRackNodes, kNodes - first)} * kGpusPerNode;
    }
  }
  return gpus;
}

void Must(const core::Status& s) {
  if (s.ok()) return;
  std::fprintf(stderr, "engine_bench: %s\n", s.message().c_str());
  std::abort();
}

// CPU seconds used by this thread so far.
double CpuNow() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::unique_ptr<Scheduler> MakeEngine(const std::string& policy) {
  SchedulerConfig config;
  config.policy = policy;
  config.seed = 42;
  auto s = Scheduler::Create(config);
  if (!s.ok()) Must(s.status());
  return std::move(s).value();
}

void AddCluster(Scheduler& s) {
  const int racks = (kNodes + kRackNodes - 1) / kRackNodes;
  for (int i = 0; i < kNodes; ++i) {
    const int rack = i / kRackNodes;
    const uint32_t m = RackModel(rack);
    Must(s.AddNode(NodeId(static_cast<uint32_t>(i)),
                   NodeBuilder("node-" + std::to_string(i))
                       .Gpus(kGpusPerNode, m, kGpuMemoryMib[m])
                       .Nvlink(8)
                       .Rack("rack-" + std::to_string(rack))
                       .Zone("zone-" + std::to_string(rack * kZones / racks))));
  }
}

// --- Workload shapes.

// A single-GPU task: 4, 8 or 16 cores; 30% of them pinned to one model.
WorkloadSpec OneGpu(core::Rng& rng, uint32_t queue, Time now) {
  static constexpr int64_t kCpu[3] = {4000, 8000, 16000};
  WorkloadBuilder b("job", queue);
  b.Gpus(1).Cpu(kCpu[rng.Uniform(3)]).Submitted(now);
  if (rng.Uniform(10) < 3) b.Model(static_cast<uint32_t>(rng.Uniform(kModels)));
  return b;
}

// 1, 2, 4 or 8 whole GPUs (weights 4:2:2:1), 8 cores per GPU; model pinned when m >= 0.
// Every job states a runtime estimate (1 minute to a day), so the cycle's start-time
// estimates have real work to do.
WorkloadSpec Mixed(core::Rng& rng, uint32_t queue, Time now, int model = -1) {
  static constexpr int kGpus[9] = {1, 1, 1, 1, 2, 2, 4, 4, 8};
  const int g = kGpus[rng.Uniform(9)];
  WorkloadBuilder b("job", queue);
  b.Gpus(g).Cpu(8000 * g).Submitted(now);
  if (model >= 0) b.Model(static_cast<uint32_t>(model));
  b.Estimate(static_cast<Duration>(1 + rng.Uniform(24 * 60)) * core::kMinute);
  return b;
}

// A gang of 8 tasks x 8 GPUs that must sit in one rack; a quarter pinned to one model.
WorkloadSpec Gang8x8(core::Rng& rng, uint32_t queue, Time now) {
  WorkloadBuilder b("gang", queue);
  b.Gpus(8).Tasks(8).Cpu(64000).Require(TopologyLevel::kRack).Submitted(now);
  if (rng.Uniform(4) == 0) b.Model(static_cast<uint32_t>(rng.Uniform(kModels)));
  b.Estimate(static_cast<Duration>(1 + rng.Uniform(48)) * core::kHour);
  return b;
}

// A model drawn in proportion to its capacity (the rack pattern), so that work pinned this
// way fills every model evenly. (Unpinned work goes to the lowest model id that fits first.)
uint32_t ModelByCapacity(core::Rng& rng) { return RackModel(static_cast<int>(rng.Uniform(10))); }

// Runs about `gpus` GPUs of 1-, 2- and 4-GPU work of `queue` (ids from `first`), each pinned
// to a model in proportion to capacity, placed by one cycle; what does not fit is cancelled.
// Returns the next unused id.
uint32_t FillBackground(Scheduler& s, uint32_t queue, int64_t gpus, uint32_t first, Time now,
                        core::Rng& rng) {
  static constexpr int kGpus[4] = {1, 1, 2, 4};
  uint32_t id = first;
  for (int64_t used = 0; used < gpus; ++id) {
    const int g = kGpus[rng.Uniform(4)];
    Must(s.Submit(WorkloadId(id), WorkloadBuilder("bg", queue)
                                      .Gpus(g)
                                      .Cpu(8000 * g)
                                      .Model(ModelByCapacity(rng))
                                      .Submitted(now)));
    used += g;
  }
  Plan plan = s.Cycle(now);
  for (const PendingExplanation& p : plan.pending) Must(s.Cancel(p.workload));
  return id;
}

// Shared by scenarios 1 and 2. The cluster is `fill_percent` full of background work under
// one queue whose guarantee covers it. Timed: Submit of `batch` workloads made by `make`
// plus the one Cycle that places them all; outside the timer they finish, so every
// iteration sees the same state. Sets counter `rate` to placed workloads per CPU second.
template <typename Make>
void BatchRate(benchmark::State& state, const std::string& policy, int fill_percent, uint64_t seed,
               Make&& make, const char* rate) {
  const int batch = static_cast<int>(state.range(0));
  auto s = MakeEngine(policy);
  AddCluster(*s);
  Must(s->AddQueue(QueueId(0), QueueBuilder("all").Guarantee(kNodes * kGpusPerNode)));
  core::Rng rng(seed);
  Time now = 0;
  const uint32_t first =
      FillBackground(*s, 0, kNodes * kGpusPerNode * fill_percent / 100, 0, now, rng);
  std::vector<WorkloadSpec> specs;
  for (int i = 0; i < batch; ++i) specs.push_back(make(rng, now));

  int64_t placed = 0;
  double seconds = 0;
  for (auto _ : state) {
    now += core::kSecond;
    const double start = CpuNow();
    for (int i = 0; i < batch; ++i) Must(s->Submit(WorkloadId(first + i), specs[i]));
    Plan plan = s->Cycle(now);
    seconds += CpuNow() - start;
    state.PauseTiming();
    placed += static_cast<int64_t>(plan.binds.size());
    if (plan.binds.size() != static_cast<size_t>(batch)) {
      state.SkipWithError("a batch did not fit");
      break;
    }
    for (int i = 0; i < batch; ++i) Must(s->WorkloadFinished(WorkloadId(first + i)));
    plan = Plan{};
    state.ResumeTiming();
  }
  state.counters[rate] = static_cast<double>(placed) / seconds;
  state.counters["groups"] = static_cast<double>(s->cluster().group_count());
}

// --- 1. Single-GPU placements per second.
//
// Cluster half full of 1/2/4-GPU background work; batches of single-GPU workloads.
void BM_PlacementsBatch(benchmark::State& state, const std::string& policy, bool headline) {
  BatchRate(
      state, policy, 50, 1, [](core::Rng& rng, Time now) { return OneGpu(rng, 0, now); },
      headline ? "placements_per_s_1gpu" : "placements_per_s");
}

// One arrival and one departure per cycle (a window of 1,000 running): the latency view.
// Timed: WorkloadFinished of the oldest, Submit of one, and Cycle.
void BM_PlacementsPerCycle(benchmark::State& state, const std::string& policy) {
  constexpr uint32_t kWindow = 1000;
  auto s = MakeEngine(policy);
  AddCluster(*s);
  Must(s->AddQueue(QueueId(0), QueueBuilder("all").Guarantee(kNodes * kGpusPerNode)));
  core::Rng rng(1);
  Time now = 0;
  const uint32_t first = FillBackground(*s, 0, kNodes * kGpusPerNode / 2, 0, now, rng);
  std::vector<WorkloadSpec> specs;
  for (uint32_t i = 0; i < kWindow; ++i) specs.push_back(OneGpu(rng, 0, now));

  int64_t placed = 0, cycles = 0;
  double seconds = 0;
  for (auto _ : state) {
    now += core::kSecond;
    const uint32_t slot = static_cast<uint32_t>(cycles % kWindow);
    const WorkloadId id(first + slot);
    const double start = CpuNow();
    if (cycles >= kWindow) Must(s->WorkloadFinished(id));
    Must(s->Submit(id, specs[slot]));
    Plan plan = s->Cycle(now);
    seconds += CpuNow() - start;
    placed += static_cast<int64_t>(plan.binds.size());
    ++cycles;
  }
  if (placed != cycles) state.SkipWithError("a workload did not fit");
  state.counters["placements_per_s"] = static_cast<double>(placed) / seconds;
}

// --- 2. Gangs of 8 tasks x 8 GPUs with required rack locality, per second.
//
// Cluster 40% full of background work. Timed: Submit of `batch` gangs plus the Cycle that
// places them all; they finish outside the timer.
void BM_Gangs(benchmark::State& state, const std::string& policy, bool headline) {
  BatchRate(
      state, policy, 40, 2, [](core::Rng& rng, Time now) { return Gang8x8(rng, 0, now); },
      headline ? "gangs_per_s_8x8gpu" : "gangs_per_s");
}

// --- 3. One full cycle with 10,000 pending workloads.
//
// 50 queues. Queues 0-24 each hold a guarantee on one model (together half the cluster) and
// run at 30% of it; queues 25-49 have no guarantee (weights 1-3) and borrow the rest, so the
// cluster is ~97% full of preemptible borrowed work. Then, ten minutes later, 10,000 arrive:
// `in_quota` mixed-size workloads in the guaranteed queues (they must preempt borrowers),
// 50 rack-local 8x8 gangs in borrower queues (the first that cannot start takes the
// head-of-line reservation) and the rest mixed borrower work that cannot fit.
struct Backlog {
  std::unique_ptr<Scheduler> engine;
  Time now = 0;
};

Backlog BuildBacklog(int in_quota) {
  constexpr int kQueues = 50, kGuaranteed = 25, kPending = 10'000, kGangs = 50;
  Backlog b{MakeEngine("gpuorch"), 10 * core::kMinute};
  Scheduler& s = *b.engine;
  AddCluster(s);
  int per_model[kModels] = {};
  for (int q = 0; q < kGuaranteed; ++q) ++per_model[q % kModels];
  std::vector<int64_t> guarantee(kGuaranteed);
  for (int q = 0; q < kQueues; ++q) {
    QueueBuilder spec("queue-" + std::to_string(q));
    if (q < kGuaranteed) {
      const int m = q % static_cast<int>(kModels);
      guarantee[q] = ModelGpus(static_cast<uint32_t>(m)) / 2 / per_model[m];
      spec.Guarantee(guarantee[q], -1, m);
    } else {
      spec.Weight(1 + q % 3);
    }
    Must(s.AddQueue(QueueId(static_cast<uint32_t>(q)), spec));
  }
  core::Rng rng(3);
  uint32_t id = 0;
  int64_t gpus = 0;
  for (int q = 0; q < kGuaranteed; ++q) {
    for (int64_t used = 0; used < guarantee[q] * 3 / 10; ++id) {
      WorkloadSpec w = Mixed(rng, static_cast<uint32_t>(q), 0, q % static_cast<int>(kModels));
      used += w.task.gpu_count;
      gpus += w.task.gpu_count;
      Must(s.Submit(WorkloadId(id), w));
    }
  }
  for (; gpus < kNodes * kGpusPerNode * 97 / 100; ++id) {
    WorkloadSpec w = Mixed(rng, kGuaranteed + static_cast<uint32_t>(rng.Uniform(kGuaranteed)), 0);
    gpus += w.task.gpu_count;
    Must(s.Submit(WorkloadId(id), w));
  }
  Plan fill = s.Cycle(0);
  for (const PendingExplanation& p : fill.pending) Must(s.Cancel(p.workload));

  for (int i = 0; i < kPending; ++i, ++id) {
    WorkloadSpec w;
    if (i < in_quota) {
      const int q = i % kGuaranteed;
      w = Mixed(rng, static_cast<uint32_t>(q), b.now, q % static_cast<int>(kModels));
    } else if (i < in_quota + kGangs) {
      w = Gang8x8(rng, kGuaranteed + static_cast<uint32_t>(rng.Uniform(kGuaranteed)), b.now);
    } else {
      w = Mixed(rng, kGuaranteed + static_cast<uint32_t>(rng.Uniform(kGuaranteed)), b.now);
    }
    Must(s.Submit(WorkloadId(id), w));
  }
  return b;
}

void BM_Cycle10kPending(benchmark::State& state, bool headline) {
  const int in_quota = static_cast<int>(state.range(0));
  double seconds = 0;
  int64_t cycles = 0, evictions = 0, binds = 0, preempting = 0, reserved = 0, estimated = 0;
  for (auto _ : state) {
    state.PauseTiming();
    Backlog b = BuildBacklog(in_quota);
    state.ResumeTiming();
    const double start = CpuNow();
    Plan plan = b.engine->Cycle(b.now);
    seconds += CpuNow() - start;
    state.PauseTiming();
    ++cycles;
    evictions = static_cast<int64_t>(plan.evictions.size() + plan.resizes.size());
    binds = static_cast<int64_t>(plan.binds.size());
    preempting = reserved = estimated = 0;
    for (const PendingExplanation& p : plan.pending) {
      preempting += p.reason == PendingReason::kPreempting;
      reserved += p.reason == PendingReason::kReserved;
      estimated += p.estimated_start >= 0;
    }
    plan = Plan{};
    b = Backlog{};
    state.ResumeTiming();
  }
  state.counters[headline ? "cycle_ms_10k_pending" : "cycle_ms"] =
      seconds * 1e3 / static_cast<double>(cycles);
  state.counters["evictions"] = static_cast<double>(evictions);
  state.counters["estimated_starts"] = static_cast<double>(estimated);
  state.counters["binds"] = static_cast<double>(binds);
  state.counters["preempting"] = static_cast<double>(preempting);
  state.counters["reserved"] = static_cast<double>(reserved);
}

// --- 4. Resident memory of an engine with 10,000 nodes and 100,000 workloads.

// VmRSS or VmHWM of this process, in MiB.
double ProcMib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0)
      return std::strtod(line.c_str() + field.size() + 1, nullptr) / 1024;
  }
  return 0;
}

// Ten queues, each guaranteed a tenth of every model. 65,000 mixed workloads are placed by
// one cycle (about 80% of the GPUs), then 35,000 more arrive and stay pending through a
// second cycle. The engine is measured after that cycle, its plan dropped.
void BM_Rss(benchmark::State& state) {
  for (auto _ : state) {
    malloc_trim(0);
    const double before = ProcMib("VmRSS");
    auto s = MakeEngine("gpuorch");
    AddCluster(*s);
    for (uint32_t q = 0; q < 10; ++q) {
      Must(s->AddQueue(
          QueueId(q),
          QueueBuilder("queue-" + std::to_string(q)).Guarantee(kNodes * kGpusPerNode / 10)));
    }
    core::Rng rng(4);
    auto submit = [&](uint32_t from, uint32_t to) {
      for (uint32_t id = from; id < to; ++id) {
        WorkloadSpec w = OneGpu(rng, id % 10, 0);
        if (rng.Uniform(4) == 0) w.task.gpu_count = 2;
        w.name = "job-" + std::to_string(id);
        Must(s->Submit(WorkloadId(id), w));
      }
    };
    submit(0, 65'000);
    (void)s->Cycle(0);
    submit(65'000, 100'000);
    (void)s->Cycle(core::kSecond);
    malloc_trim(0);
    const double after = ProcMib("VmRSS");
    int64_t running = 0;
    for (uint32_t id = 0; id < 100'000; ++id) {
      running += s->state(WorkloadId(id)) == WorkloadState::kRunning;
    }
    state.counters["rss_mib_10k_nodes_100k_workloads"] = after;
    state.counters["rss_baseline_mib"] = before;
    state.counters["rss_delta_mib"] = after - before;
    state.counters["hwm_mib"] = ProcMib("VmHWM");
    state.counters["running"] = static_cast<double>(running);
    state.counters["pending"] = static_cast<double>(100'000 - running);
  }
}

// Registration order is run order: memory first, before other scenarios grow the heap.
BENCHMARK(BM_Rss)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_PlacementsBatch, gpuorch, std::string("gpuorch"), true)
    ->Arg(1000)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_PlacementsBatch, bestfit, std::string("bestfit"), false)
    ->Arg(1000)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_PlacementsPerCycle, gpuorch, std::string("gpuorch"))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_PlacementsPerCycle, bestfit, std::string("bestfit"))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Gangs, gpuorch, std::string("gpuorch"), true)
    ->Arg(64)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Gangs, bestfit, std::string("bestfit"), false)
    ->Arg(64)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Cycle10kPending, headline, true)
    ->Arg(1000)
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Cycle10kPending, fewer_preemptors, false)
    ->Arg(0)
    ->Arg(100)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace gpuorch::sched

BENCHMARK_MAIN();
