#pragma once

#include <vector>

#include "sched/policy.h"
#include "sched/policy/fragmentation.h"

namespace gpuorch::sched {

// gpuorch, the default policy: fragmentation-gradient placement without FGD's quantisation.
// (Rule and measurements: docs/placement.md.) F(n) = sum over typical tasks of an integer
// weight (parts per million) times frag(n; tau), in milli-GPU; the score is -(F(n') - F(n))
// exactly, so two placements that differ by a few milli-GPU of expected fragmentation are
// told apart, where FGD's floor(100*sigmoid(.)) calls them equal and falls back to node id.
//
// Without SetTypicalTasks the policy uses DefaultTypicalTasks().
class GpuorchPolicy final : public PlacementPolicy {
 public:
  GpuorchPolicy() { SetTypicalTasks({}); }
  std::string_view name() const override { return "gpuorch"; }
  int64_t Score(const NodeState& n, const TaskRequest& t) override;
  GpuMask SelectGpus(const NodeState& n, const TaskRequest& t, GpuMask usable) override;
  void SetTypicalTasks(std::vector<TypicalTask> tasks) override;

 private:
  struct Weighted {
    TaskRequest task;
    int64_t weight;  // parts per million
  };
  int64_t Fragment(int64_t cpu_free, GpuModelId model, int gpu_count,
                   const int16_t* gpu_free) const;
  // Score of taking t from GPU j (j < 0: whole GPUs or CPU only).
  int64_t ScoreOf(const NodeState& n, const TaskRequest& t, int64_t before, int j) const;

  std::vector<Weighted> typical_;
  ScoreMemo memo_;
};

}  // namespace gpuorch::sched
