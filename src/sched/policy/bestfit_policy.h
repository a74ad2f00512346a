#pragma once

#include "sched/policy.h"

namespace gpuorch::sched {

// BestFit (FGD-PROTOCOL.md §5.5): the node left with the least free capacity after the
// placement wins. S = floor(100 * (1 - [(c_n - c_p)/128000/2 + (idle_n - R_p)/8000/2]))
// over free CPU and idle milli-GPU; the authors' min-max normalisation is monotone and only
// the maximum reaches 100, so the plain argmax (ties to the lowest node id) is the same
// choice. Computed exactly in integers. GPUs: the protocol's "best" selection.
class BestFitPolicy final : public PlacementPolicy {
 public:
  std::string_view name() const override { return "bestfit"; }
  int64_t Score(const NodeView& n, const TaskRequest& t) override;
};

}  // namespace gpuorch::sched
