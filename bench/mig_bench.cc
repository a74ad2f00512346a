// MIG benchmarks (issue 13's goals; see README.md, "MIG benchmarks"):
// - mig_placements_per_s: single-instance placements per CPU second at 10,000 nodes of 8
//   H100s in MIG mode, like placements_per_s_1gpu for whole GPUs;
// - cycle_ms_10k_pending_mig: the 10,000-pending backlog cycle of engine_bench
//   (BuildBacklog) with a rack of MIG nodes beside it and MIG requests that need layout
//   changes, so that the cycle makes re-partition decisions.
// Deterministic (fixed seeds); state is built outside the timed region; times are this
// thread's CPU clock.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "core/mig.h"
#include "engine_fixture.h"

namespace gpuorch::sched::bench {
namespace {

using core::QueueId;
using testing::NodeBuilder;
using testing::QueueBuilder;
using testing::WorkloadBuilder;

constexpr const char* kSevenSmall =
    "1g.10gb@0,1g.10gb@1,1g.10gb@2,1g.10gb@3,1g.10gb@4,1g.10gb@5,1g.10gb@6";

// A MIG request of `compute` slices with CPU and memory drawn per workload (distinct
// shapes, as the engine headline uses).
core::WorkloadSpec MigTask(core::Rng& rng, uint32_t queue, int compute) {
  return WorkloadBuilder("mig", queue)
      .Mig(compute)
      .Cpu(500 + static_cast<int64_t>(rng.Uniform(8000)))
      .Memory(1024 + static_cast<int64_t>(rng.Uniform(32768)));
}

// 10,000 nodes x 8 H100 in MIG mode, each GPU with seven 1g.10gb instances; node i has
// i mod 57 of its 56 instances busy (adopted), so the cluster is about half full in many
// distinct states. Timed: Submit of `batch` 1g requests and the Cycle that binds them.
void BM_MigPlacements(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  constexpr int kNodes = kDefaultNodes;
  auto s = MakeEngine("gpuorch");
  for (int i = 0; i < kNodes; ++i) {
    Must(
        s->AddNode(NodeId(static_cast<uint32_t>(i)), NodeBuilder("m" + std::to_string(i))
                                                         .Gpus(kGpusPerNode, 0)
                                                         .Rack("r" + std::to_string(i / kRackNodes))
                                                         .Mig(0xFF, "H100-80GB", kSevenSmall)));
  }
  Must(s->AddQueue(QueueId(0), QueueBuilder("all").Guarantee(kNodes * kGpusPerNode)));
  core::Rng rng(13);
  uint32_t id = 0;
  for (int i = 0; i < kNodes; ++i) {
    const int busy = i % 57;
    for (int k = 0; k < busy && k < 56; ++k) {
      TaskBinding t{0, NodeId(static_cast<uint32_t>(i)), static_cast<GpuMask>(1u << (k / 7)),
                    core::MigMilliForCompute(1), static_cast<int8_t>(k % 7)};
      core::WorkloadSpec w = WorkloadBuilder("bg", 0).Mig(1).Cpu(1000).Memory(4096);
      Must(s->Adopt(WorkloadId(id++), w, {t}, 0));
    }
  }
  std::vector<core::WorkloadSpec> specs;
  for (int i = 0; i < batch; ++i) specs.push_back(MigTask(rng, 0, 1));
  Time now = 0;
  int64_t placed = 0;
  double seconds = 0;
  StatsCounter stats;
  for (auto _ : state) {
    now += core::kSecond;
    const double start = CpuNow();
    for (int i = 0; i < batch; ++i) Must(s->Submit(WorkloadId(id + i), specs[i]));
    Plan plan = s->Cycle(now);
    seconds += CpuNow() - start;
    state.PauseTiming();
    placed += static_cast<int64_t>(plan.binds.size());
    stats.Add(plan.stats);
    if (plan.binds.size() != static_cast<size_t>(batch) || !plan.reconfigs.empty()) {
      state.SkipWithError("a batch did not bind on existing instances");
      break;
    }
    for (int i = 0; i < batch; ++i) Must(s->WorkloadFinished(WorkloadId(id + i)));
    state.ResumeTiming();
  }
  state.counters["mig_placements_per_s"] = static_cast<double>(placed) / seconds;
  stats.Report(state);
}
BENCHMARK(BM_MigPlacements)->Arg(1000)->Unit(benchmark::kMillisecond)->Iterations(5);

// The 10,000-pending backlog (engine_bench's cycle_ms_10k_pending) plus 320 nodes of 8
// H100s in MIG mode with empty layouts and 1,000 pending MIG requests of 1, 2, 3, 4 and 7
// slices in a queue of their own: the cycle binds nothing on MIG yet and plans one layout
// change per MIG GPU it can (2,560), each a fragmentation-scored re-partition decision.
void BM_MigCycle10kPending(benchmark::State& state) {
  StatsCounter stats;
  state.counters["cycle_ms_10k_pending_mig"] =
      BacklogCycleMs(state, BacklogConfig{}, stats, [](Backlog& b) {
        constexpr int kMigNodes = 320;
        for (int i = 0; i < kMigNodes; ++i) {
          const auto node = NodeId(static_cast<uint32_t>(b.nodes + i));
          Must(b.engine->AddNode(node, NodeBuilder("mig" + std::to_string(i))
                                           .Gpus(kGpusPerNode, 0)
                                           .Rack("mig" + std::to_string(i / kRackNodes))
                                           .Mig(0xFF, "H100-80GB", "")));
        }
        const QueueId q(b.queues);
        Must(b.engine->AddQueue(q, QueueBuilder("mig").Guarantee(kMigNodes * kGpusPerNode, -1, 0)));
        core::Rng rng(17);
        const int compute[] = {1, 1, 2, 3, 4, 7};
        for (int i = 0; i < 1000; ++i) {
          Must(b.engine->Submit(WorkloadId(50'000'000u + static_cast<uint32_t>(i)),
                                MigTask(rng, q.value(), compute[rng.Uniform(6)])));
        }
      });
  stats.Report(state);
}
BENCHMARK(BM_MigCycle10kPending)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace gpuorch::sched::bench

int main(int argc, char** argv) { return gpuorch::sched::bench::BenchMain(argc, argv); }
