#pragma once

#include <vector>

#include "sched/policy.h"
#include "sched/policy/fragmentation.h"

namespace gpuorch::sched {

// gpuorch, the default policy: fragmentation-gradient placement that also counts GPUs
// stranded by CPU. For each typical task tau (integer weight w, parts per million) it
// measures two kinds of idle GPU a future tau could not use:
// - frag(n; tau), FGD's measure: GPUs too small for one tau, or all idle GPU when tau does
//   not fit at all (fragmentation.h);
// - stranded(n; tau): idle GPU left over after as many copies of tau as the node could hold
//   at once, limited by GPU slots *and* by free CPU. A CPU-only task that lands on a GPU node
//   whose CPU is tight strands GPUs this way, which FGD does not see (its fit test asks for
//   one copy only).
// D(n) = sum w * (16 * frag + stranded); the score is floor((D(n) - D(n')) / 200 milli-GPU),
// so placements within a fifth of a GPU of expected damage tie and go to the lowest node id:
// the coarse quantum keeps FGD's useful habit of packing ties onto the same nodes. Weights,
// quantum and the 16:1 mix were measured on the FGD experiment (docs/placement.md).
// Fractions take the GPU with the best score (lowest index on ties); whole GPUs the
// lowest-index fully free ones. Scores are memoised per node state (ScoreMemo).
//
// Without SetTypicalTasks the policy uses DefaultTypicalTasks().
class GpuorchPolicy final : public PlacementPolicy {
 public:
  // The weight of FGD's measure against the stranded measure, and the score quantum.
  static constexpr int64_t kFragWeight = 16;
  static constexpr int64_t kQuantumMilli = 200;

  GpuorchPolicy() { SetTypicalTasks({}); }
  std::string_view name() const override { return "gpuorch"; }
  int64_t Score(const NodeView& n, const TaskRequest& t) override;
  // CPU reaches D(n) through each typical tau that needs GPUs: whether one copy fits, and how
  // many copies the GPU slots allow. Beyond that many copies' CPU, more CPU changes nothing.
  int64_t CpuHeadroom(const NodeView& n, const TaskRequest& t) override;
  GpuMask SelectGpus(const NodeView& n, const TaskRequest& t) override;
  void SetTypicalTasks(std::vector<TypicalTask> tasks) override;
  std::vector<TypicalTask> typical_tasks() const override { return given_; }

  // Idle milli-GPU a stream of tasks of shape tau could not use on a node: idle minus what
  // as many copies of tau as fit together (GPU slots, CPU) would take.
  static int64_t Stranded(int64_t cpu_free, GpuModelId model, int gpu_count,
                          const int16_t* gpu_free, const TaskRequest& tau);

 private:
  struct Weighted {
    TaskRequest task;
    int64_t weight;  // parts per million
  };
  // D(n) for a node given as raw state, in ppm x milli-GPU.
  int64_t Damage(int64_t cpu_free, GpuModelId model, int gpu_count, const int16_t* gpu_free) const;
  // Score of taking t from GPU j (j < 0: whole GPUs or CPU only).
  int64_t ScoreOf(const NodeView& n, const TaskRequest& t, int64_t before, int j) const;

  std::vector<TypicalTask> given_;  // as set (or the default), for typical_tasks()
  std::vector<Weighted> typical_;
  int64_t quantum_ = 1;
  ScoreMemo memo_;
};

}  // namespace gpuorch::sched
