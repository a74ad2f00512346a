// Engine benchmarks: the headline figures of bench/README.md, each a user counter with a
// fixed name that scripts/bench collects, plus variants quoted for comparison. Every scenario
// runs in distinct shapes (the headline: every workload's CPU, memory and fractions drawn
// from continuous ranges) and in regular shapes (the same name with `_regular`); see
// engine_fixture.h. Every scenario is deterministic (fixed seeds) and builds its state
// outside the timed region. Rates and cycle times come from this thread's CPU clock around
// exactly the calls they name. Each benchmark also reports what the cycles saw: node_groups,
// and per cycle attempts, shape_cache_hits and placements_tried (CycleStats).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <string>
#include <vector>

#include "engine_fixture.h"

namespace gpuorch::sched::bench {
namespace {

using core::QueueId;
using testing::QueueBuilder;

constexpr int kNodes = kDefaultNodes;

// Shared by scenarios 1 and 2. The cluster is `fill_percent` full of background work under
// one queue whose guarantee covers it. Timed: Submit of `batch` workloads made by `make`
// plus the one Cycle that places them all; outside the timer they finish, so every
// iteration sees the same state. Sets counter `rate` to placed workloads per CPU second.
template <typename Make>
void BatchRate(benchmark::State& state, const std::string& policy, Shapes shapes, int fill_percent,
               uint64_t seed, Make&& make, const std::string& rate) {
  const int batch = static_cast<int>(state.range(0));
  auto s = MakeEngine(policy);
  AddCluster(*s);
  Must(s->AddQueue(QueueId(0), QueueBuilder("all").Guarantee(kNodes * kGpusPerNode)));
  core::Rng rng(seed);
  Time now = 0;
  const uint32_t first =
      FillBackground(*s, shapes, 0, kNodes * kGpusPerNode * fill_percent / 100, 0, now, rng);
  std::vector<WorkloadSpec> specs;
  for (int i = 0; i < batch; ++i) specs.push_back(make(rng, now));

  StatsCounter stats;
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
    stats.Add(plan.stats);
    if (plan.binds.size() != static_cast<size_t>(batch)) {
      state.SkipWithError("a batch did not fit");
      break;
    }
    for (int i = 0; i < batch; ++i) Must(s->WorkloadFinished(WorkloadId(first + i)));
    plan = Plan{};
    state.ResumeTiming();
  }
  state.counters[rate] = static_cast<double>(placed) / seconds;
  stats.Report(state);
}

// --- 1. Single-GPU placements per second.
//
// Cluster half full of 1/2/4-GPU background work (and fractions, in distinct shapes);
// batches of single-GPU workloads. The gpuorch policy's rate is the headline
// (placements_per_s_1gpu); the other policies report placements_per_s.
void PlacementsBatch(benchmark::State& state, const std::string& policy, Shapes shapes,
                     bool headline) {
  BatchRate(
      state, policy, shapes, 50, 1,
      [shapes](core::Rng& rng, Time now) { return OneGpu(rng, shapes, 0, now); },
      std::string(headline ? "placements_per_s_1gpu" : "placements_per_s") + Suffix(shapes));
}
void BM_PlacementsBatch(benchmark::State& state, const std::string& policy, bool headline) {
  PlacementsBatch(state, policy, Shapes::kDistinct, headline);
}
void BM_PlacementsBatch_regular(benchmark::State& state, const std::string& policy, bool headline) {
  PlacementsBatch(state, policy, Shapes::kRegular, headline);
}

// One arrival and one departure per cycle (a window of 1,000 running): the latency view.
// Timed: WorkloadFinished of the oldest, Submit of one, and Cycle.
void PlacementsPerCycle(benchmark::State& state, const std::string& policy, Shapes shapes) {
  constexpr uint32_t kWindow = 1000;
  auto s = MakeEngine(policy);
  AddCluster(*s);
  Must(s->AddQueue(QueueId(0), QueueBuilder("all").Guarantee(kNodes * kGpusPerNode)));
  core::Rng rng(1);
  Time now = 0;
  const uint32_t first = FillBackground(*s, shapes, 0, kNodes * kGpusPerNode / 2, 0, now, rng);
  std::vector<WorkloadSpec> specs;
  for (uint32_t i = 0; i < kWindow; ++i) specs.push_back(OneGpu(rng, shapes, 0, now));

  StatsCounter stats;
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
    stats.Add(plan.stats);
    ++cycles;
  }
  if (placed != cycles) state.SkipWithError("a workload did not fit");
  state.counters[std::string("placements_per_s") + Suffix(shapes)] =
      static_cast<double>(placed) / seconds;
  stats.Report(state);
}
void BM_PlacementsPerCycle(benchmark::State& state, const std::string& policy) {
  PlacementsPerCycle(state, policy, Shapes::kDistinct);
}
void BM_PlacementsPerCycle_regular(benchmark::State& state, const std::string& policy) {
  PlacementsPerCycle(state, policy, Shapes::kRegular);
}

// --- 2. Gangs of 8 tasks x 8 GPUs with required rack locality, per second.
//
// Cluster 40% full of background work. Timed: Submit of `batch` gangs plus the Cycle that
// places them all; they finish outside the timer.
void Gangs(benchmark::State& state, const std::string& policy, Shapes shapes, bool headline) {
  BatchRate(
      state, policy, shapes, 40, 2,
      [shapes](core::Rng& rng, Time now) { return Gang8x8(rng, shapes, 0, now); },
      std::string(headline ? "gangs_per_s_8x8gpu" : "gangs_per_s") + Suffix(shapes));
}
void BM_Gangs(benchmark::State& state, const std::string& policy, bool headline) {
  Gangs(state, policy, Shapes::kDistinct, headline);
}
void BM_Gangs_regular(benchmark::State& state, const std::string& policy, bool headline) {
  Gangs(state, policy, Shapes::kRegular, headline);
}

// --- 3. One full cycle with 10,000 pending workloads (BuildBacklog, engine_fixture.h):
// 1,000 in-quota preemptors (the headline; 0 and 100 for comparison), 50 rack-local gangs
// and the rest borrower work that cannot fit, on a cluster ~97% full of borrowed work that
// the engine's own cycle placed.
void Cycle10kPending(benchmark::State& state, Shapes shapes, bool headline) {
  BacklogConfig config;
  config.in_quota = static_cast<int>(state.range(0));
  config.shapes = shapes;
  StatsCounter stats;
  state.counters[std::string(headline ? "cycle_ms_10k_pending" : "cycle_ms") + Suffix(shapes)] =
      BacklogCycleMs(state, config, stats);
  stats.Report(state);
}
void BM_Cycle10kPending(benchmark::State& state, bool headline) {
  Cycle10kPending(state, Shapes::kDistinct, headline);
}
void BM_Cycle10kPending_regular(benchmark::State& state, bool headline) {
  Cycle10kPending(state, Shapes::kRegular, headline);
}

// --- 4. Resident memory of an engine with 10,000 nodes and 100,000 workloads.
//
// Measured in a child process capped at kRssLimitMib (RunIsolated): on the engine of
// issue 14's start, distinct shapes took this scenario past 20 GiB.
constexpr int64_t kRssLimitMib = 4096;
//
// Ten queues, each guaranteed a tenth of every model. 65% of the workloads (single-GPU, a
// quarter of them two GPUs; in distinct shapes one in ten a fraction) are placed by one
// cycle (about 80% of the GPUs), then the rest arrive and stay pending through a second
// cycle. The engine is measured after that cycle, its plan dropped.
void Rss(benchmark::State& state, Shapes shapes) {
  constexpr uint32_t kWorkloads = 100'000, kPlaced = 65'000;
  for (auto _ : state) {
    RunIsolated(state, kRssLimitMib, [&](Counters& counters) {
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
      StatsCounter stats;
      auto submit = [&](uint32_t from, uint32_t to) {
        for (uint32_t id = from; id < to; ++id) {
          WorkloadSpec w;
          if (shapes == Shapes::kDistinct && rng.Uniform(10) == 0) {
            w = Fraction(rng, id % 10, 0, ModelByCapacity(rng));
          } else {
            w = OneGpu(rng, shapes, id % 10, 0);
            if (rng.Uniform(4) == 0) {
              w.task.gpu_count = 2;
              // Distinct shapes ask CPU and memory per GPU; the regular shapes did not.
              if (shapes == Shapes::kDistinct) w.task.milli_cpu *= 2, w.task.memory_mib *= 2;
            }
          }
          w.name = "job-" + std::to_string(id);
          Must(s->Submit(WorkloadId(id), w));
        }
      };
      submit(0, kPlaced);
      stats.Add(s->Cycle(0).stats);
      submit(kPlaced, kWorkloads);
      stats.Add(s->Cycle(core::kSecond).stats);
      malloc_trim(0);
      const double after = ProcMib("VmRSS");
      int64_t running = 0;
      for (uint32_t id = 0; id < kWorkloads; ++id) {
        running += s->state(WorkloadId(id)) == WorkloadState::kRunning;
      }
      counters[std::string("rss_mib_10k_nodes_100k_workloads") + Suffix(shapes)] = after;
      counters["rss_baseline_mib"] = before;
      counters["rss_delta_mib"] = after - before;
      counters["hwm_mib"] = ProcMib("VmHWM");
      counters["running"] = static_cast<double>(running);
      counters["pending"] = static_cast<double>(kWorkloads - running);
      stats.Report(counters);
    });
  }
}
void BM_Rss(benchmark::State& state) { Rss(state, Shapes::kDistinct); }
void BM_Rss_regular(benchmark::State& state) { Rss(state, Shapes::kRegular); }

// Registration order is run order: memory first, before other scenarios grow the heap.
BENCHMARK(BM_Rss)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Rss_regular)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_PlacementsBatch, gpuorch, std::string("gpuorch"), true)
    ->Arg(1000)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_PlacementsBatch, bestfit, std::string("bestfit"), false)
    ->Arg(1000)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_PlacementsBatch_regular, gpuorch, std::string("gpuorch"), true)
    ->Arg(1000)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_PlacementsBatch_regular, bestfit, std::string("bestfit"), false)
    ->Arg(1000)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_PlacementsPerCycle, gpuorch, std::string("gpuorch"))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_PlacementsPerCycle, bestfit, std::string("bestfit"))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_PlacementsPerCycle_regular, gpuorch, std::string("gpuorch"))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_PlacementsPerCycle_regular, bestfit, std::string("bestfit"))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Gangs, gpuorch, std::string("gpuorch"), true)
    ->Arg(64)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Gangs, bestfit, std::string("bestfit"), false)
    ->Arg(64)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Gangs_regular, gpuorch, std::string("gpuorch"), true)
    ->Arg(64)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Gangs_regular, bestfit, std::string("bestfit"), false)
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
BENCHMARK_CAPTURE(BM_Cycle10kPending_regular, headline, true)
    ->Arg(1000)
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Cycle10kPending_regular, fewer_preemptors, false)
    ->Arg(0)
    ->Arg(100)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace gpuorch::sched::bench

int main(int argc, char** argv) { return gpuorch::sched::bench::BenchMain(argc, argv); }
