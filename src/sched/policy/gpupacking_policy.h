#pragma once

#include "sched/policy.h"

namespace gpuorch::sched {

// GpuPacking (FGD-PROTOCOL.md §5.4): fill partly used GPUs first, then fresh GPUs on used
// nodes, and touch idle nodes last (smaller idle nodes first). CPU-only tasks score 0. A node
// whose GPUs are all free scores max(33 - G, G). Otherwise take the fitting GPUs in ascending
// order of free milli (stable by index) until the task has enough; if f > 0 of them were
// fully free the score is max(50 - f, 33), else max(100 - floor(sum floor(free/10) / 10), 50),
// so the tightest fit onto used GPUs scores highest. GPUs: the protocol's "best" selection.
class GpuPackingPolicy final : public PlacementPolicy {
 public:
  std::string_view name() const override { return "gpupacking"; }
  int64_t Score(const NodeView& n, const TaskRequest& t) override;
  // Score reads GPU state only.
  int64_t CpuHeadroom(const NodeView&, const TaskRequest&) override { return 0; }
};

}  // namespace gpuorch::sched
