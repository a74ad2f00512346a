#pragma once

// The engine benchmarks' synthetic cluster and workload shapes, shared by the headline
// scenarios (engine_bench.cc) and the scaling table (engine_scaling.cc).
//
// Every scenario comes in two shape families:
// - regular: the shapes the benchmarks used first (CPU 8 cores per GPU or one of three
//   values, memory fixed at 1 GiB, whole GPUs only). Nodes then fall into a few dozen
//   groups of identical free state and pending work hits the per-cycle failed-shape cache.
// - distinct: CPU, memory and, for fractional tasks, GPU share and GPU memory are drawn from
//   continuous ranges for every workload, the background as much as the arrivals, so that no
//   two workloads (and, after a fill, few nodes) are alike. These are the headline figures.
// Both draw from core::Rng with fixed seeds, so every run builds the same state.

#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "sched/scheduler.h"
#include "sched/testing.h"

namespace gpuorch::sched::bench {

// --- The cluster: nodes of 8 GPUs (one NVLink domain of 8), 128 cores and 1 TiB, racks of
// 32 nodes, 4 zones, 4 GPU models. A rack holds one model, as real racks do.
constexpr int kDefaultNodes = 10'000;
constexpr int kGpusPerNode = 8;
constexpr int kRackNodes = 32;
constexpr int kZones = 4;
constexpr uint32_t kModels = 4;  // 0 H100, 1 A100, 2 L40S, 3 T4
constexpr int64_t kGpuMemoryMib[kModels] = {81920, 81920, 49152, 16384};

enum class Shapes { kRegular, kDistinct };

// The suffix of a benchmark's name and counters: "" for distinct shapes (the headline),
// "_regular" for the regular ones.
const char* Suffix(Shapes shapes);

// The model of rack `rack`: 40% H100, 30% A100, 20% L40S, 10% T4, interleaved so that every
// zone holds every model.
uint32_t RackModel(int rack);
// Whole GPUs of model m in a cluster of `nodes` nodes.
int64_t ModelGpus(uint32_t m, int nodes);
// A model drawn in proportion to its capacity, so that work pinned this way fills every
// model evenly.
uint32_t ModelByCapacity(core::Rng& rng);

// Aborts the benchmark binary with the status' message when it is not ok: a scenario that
// cannot be built measures nothing.
void Must(const core::Status& s);
// CPU seconds used by this thread so far. The engine is single-threaded and does no I/O, so
// CPU time is its latency, and unlike wall time it does not move when other jobs share the
// machine.
double CpuNow();
// VmRSS or VmHWM of this process, in MiB.
double ProcMib(const std::string& field);

// The benchmark binaries' main: caps this process' address space at kProcessLimitMib
// (RLIMIT_AS) so that an engine whose memory runs away fails here with std::bad_alloc
// instead of pushing a shared machine into its OOM killer, then runs Google Benchmark.
constexpr int64_t kProcessLimitMib = 8192;
int BenchMain(int argc, char** argv);

// Runs `measure` in a forked child whose address space is capped at `limit_mib`, and sets
// the counters it filled on `state`. The resident-memory scenarios run this way: each
// measures a fresh process, and an engine that needs more than the cap (distinct shapes
// made one need over 20 GiB) ends the benchmark with an error naming the cap, not the run.
using Counters = std::map<std::string, double>;
void RunIsolated(benchmark::State& state, int64_t limit_mib,
                 const std::function<void(Counters&)>& measure);

std::unique_ptr<Scheduler> MakeEngine(const std::string& policy);
void AddCluster(Scheduler& s, int nodes = kDefaultNodes);

// --- Workload shapes. In regular shapes each is what its comment says; in distinct shapes
// CPU and memory are drawn per workload (see engine_fixture.cc for the ranges), with the
// same GPU counts, models and estimates drawn as in regular shapes.

// A single-GPU task: 4, 8 or 16 cores; 30% of them pinned to one model.
core::WorkloadSpec OneGpu(core::Rng& rng, Shapes shapes, uint32_t queue, Time now);
// 1, 2, 4 or 8 whole GPUs (weights 4:2:2:1), 8 cores per GPU; model pinned when m >= 0.
// Every job states a runtime estimate (1 minute to a day).
core::WorkloadSpec Mixed(core::Rng& rng, Shapes shapes, uint32_t queue, Time now, int model = -1);
// A gang of 8 tasks x 8 GPUs that must sit in one rack; a quarter pinned to one model.
core::WorkloadSpec Gang8x8(core::Rng& rng, Shapes shapes, uint32_t queue, Time now);
// A fractional task (distinct shapes only): 100-900 milli-GPU and 1-40 GiB of GPU memory
// (at most the model's), pinned to `model`, with CPU and memory in proportion to its share.
core::WorkloadSpec Fraction(core::Rng& rng, uint32_t queue, Time now, uint32_t model);
// A background task: 1, 2 or 4 GPUs (weights 2:1:1) pinned to a model drawn by capacity;
// in distinct shapes one in eight is a fraction instead. Adds the milli-GPUs it takes to
// `milli`.
core::WorkloadSpec Background(core::Rng& rng, Shapes shapes, uint32_t queue, Time now,
                              int64_t& milli);

// Runs about `gpus` GPUs of background work of `queue` (ids from `first`), placed by one
// cycle; what does not fit is cancelled. Returns the next unused id.
uint32_t FillBackground(Scheduler& s, Shapes shapes, uint32_t queue, int64_t gpus, uint32_t first,
                        Time now, core::Rng& rng);

// --- What a cycle did, as counters: `node_groups` at the end of the last cycle and, per
// cycle, `attempts`, `shape_cache_hits` and `placements_tried` (see CycleStats).
class StatsCounter {
 public:
  void Add(const CycleStats& stats);
  void Report(benchmark::State& state) const;
  void Report(Counters& counters) const;

 private:
  int64_t cycles_ = 0;
  size_t node_groups_ = 0;
  uint64_t attempts_ = 0, shape_cache_hits_ = 0, placements_tried_ = 0;
};

// --- A first-fit packing made by the bench, for work placed by Scheduler::Adopt: it
// tracks each node's free CPU, memory and per-GPU share and GPU memory as AddCluster made
// them. First fit over a few open nodes of each model: a workload goes to the first of the
// model's (at most 16) partly used nodes that holds it, else to its next unused node, which
// then opens (closing the oldest open one when 16 are). O(1) per workload.
class Packer {
 public:
  explicit Packer(int nodes);
  // Places one task of `w` on a node of `model`; on success sets `tasks` (for Adopt) and
  // returns true.
  bool Place(const core::WorkloadSpec& w, uint32_t model, std::vector<TaskBinding>& tasks);

 private:
  struct FreeNode {
    int64_t cpu = 0, memory = 0;
    std::array<int32_t, kGpusPerNode> milli{};
    std::array<int64_t, kGpusPerNode> gpu_mem{};
  };
  static bool Fits(const FreeNode& f, const core::TaskRequest& t, GpuMask& mask);
  static void Take(FreeNode& f, const core::TaskRequest& t, GpuMask mask);
  static bool Full(const FreeNode& f);

  std::vector<FreeNode> free_;
  std::array<std::vector<int>, kModels> by_model_;
  std::array<std::vector<int>, kModels> open_;  // partly used nodes, oldest first
  std::array<size_t, kModels> next_{};          // the model's first node never used
};

// --- A cluster nearly full of preemptible borrowed work, with a backlog of pending work.
//
// 50 queues. Queues 0-24 each hold a guarantee on one model (together half the cluster) and
// run at 30% of it; queues 25-49 have no guarantee (weights 1-3) and borrow the rest, so the
// cluster is ~97% full of preemptible borrowed work. Then, ten minutes later, `pending`
// arrive: `in_quota` mixed-size workloads in the guaranteed queues (they must preempt
// borrowers), `gangs` rack-local 8x8 gangs in borrower queues (the first that cannot start
// takes the head-of-line reservation) and the rest mixed borrower work that cannot fit.
struct BacklogConfig {
  int nodes = kDefaultNodes;
  int pending = 10'000;
  int in_quota = 1'000;
  int gangs = 50;
  Shapes shapes = Shapes::kDistinct;
  // How the running work is placed: by the engine's own cycle (as a cluster fills), or by
  // Adopt on a first-fit packing made here, which takes seconds where a fill cycle of
  // distinct shapes at 50,000 nodes takes far longer on an engine without an index.
  bool adopt_fill = false;
};

struct Backlog {
  std::unique_ptr<Scheduler> engine;
  Time now = 0;
  int nodes = 0;
  uint32_t queues = 0;
};

Backlog BuildBacklog(const BacklogConfig& config);

// Cycles `backlog`'s engine once, timed by CPU clock; adds the plan's counts to the
// benchmark's counters (evictions, binds, preempting, reserved, estimated_starts; and
// fill_percent, the GPUs in use before the cycle) and its stats to `stats`. Returns the
// cycle's CPU seconds.
double TimedBacklogCycle(benchmark::State& state, Backlog& backlog, StatsCounter& stats);

// Every iteration of `state`: builds the backlog of `config` outside the timer (then lets
// `extend`, when given, add to it), then one TimedBacklogCycle. Returns the mean cycle in
// CPU milliseconds.
double BacklogCycleMs(benchmark::State& state, const BacklogConfig& config, StatsCounter& stats,
                      const std::function<void(Backlog&)>& extend = {});

}  // namespace gpuorch::sched::bench
