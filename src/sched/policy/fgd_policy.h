#pragma once

#include <vector>

#include "sched/policy.h"
#include "sched/policy/fragmentation.h"

namespace gpuorch::sched {

// FGD, Fragmentation Gradient Descent (ATC'23; FGD-PROTOCOL.md §5.6). The node
// fragmentation F(n) = sum over typical tasks tau of weight(tau) * frag(n; tau) is the idle
// GPU that tasks of the typical mix could not use (see fragmentation.h). A placement moves
// n to n'; the score is floor(100 * sigmoid((F(n) - F(n')) / 1000)), so the node whose
// fragmentation grows least wins, quantised to about 40 milli-GPU per point near zero. For a
// fraction every fitting GPU is tried and the best one (lowest index on ties) is both the
// node's score and the GPU chosen; whole GPUs take the lowest-index fully free ones (F only
// depends on the multiset of free amounts). Scores are memoised per node state.
//
// Without SetTypicalTasks the policy uses DefaultTypicalTasks().
class FgdPolicy final : public PlacementPolicy {
 public:
  FgdPolicy() { SetTypicalTasks({}); }
  std::string_view name() const override { return "fgd"; }
  int64_t Score(const NodeView& n, const TaskRequest& t) override;
  // CPU reaches the fragment only through whether one typical tau fits.
  int64_t CpuHeadroom(const NodeView& n, const TaskRequest& t) override;
  GpuMask SelectGpus(const NodeView& n, const TaskRequest& t) override;
  void SetTypicalTasks(std::vector<TypicalTask> tasks) override;
  std::vector<TypicalTask> typical_tasks() const override { return typical_; }

  // F(n) in milli-GPU for a node given as raw state.
  double NodeFragment(int64_t cpu_free, GpuModelId model, int gpu_count,
                      const int16_t* gpu_free) const;

 private:
  // The score of taking t.gpu_milli from GPU j (j < 0: whole GPUs or CPU only).
  int64_t ScoreOf(const NodeView& n, const TaskRequest& t, double before, int j) const;

  std::vector<TypicalTask> typical_;
  ScoreMemo memo_;
};

}  // namespace gpuorch::sched
