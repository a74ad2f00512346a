#pragma once

#include "sched/policy.h"

namespace gpuorch::sched {

// DotProd (FGD-PROTOCOL.md §5.2), the "merge" dimension with "max" normalisation of the
// FGD authors' baseline: d = c_n*c_p/128000^2 + idle_n*R_p/8000^2 over the node's free CPU
// c_n and idle milli-GPU idle_n before placement, and the task's CPU c_p and total milli-GPU
// R_p; the score is floor(100 * (1 - d/2)), so the *smallest* dot product wins (the baseline
// is coded that way, unlike classic Tetris alignment). Computed exactly in integers. GPUs:
// the protocol's "best" selection.
class DotProdPolicy final : public PlacementPolicy {
 public:
  std::string_view name() const override { return "dotprod"; }
  int64_t Score(const NodeView& n, const TaskRequest& t) override;
};

// floor(a / b) for b > 0, also for negative a.
inline int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

}  // namespace gpuorch::sched
