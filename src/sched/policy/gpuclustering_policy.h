#pragma once

#include "sched/policy.h"

namespace gpuorch::sched {

// GpuClustering (FGD-PROTOCOL.md §5.3): keep tasks of one shape together. Each GPU task has
// a tag (fraction, or k whole GPUs); a node's tag multiset is NodeState::tag_counts. With
// b = floor(25 * (8000 - idle_n) / 8000): 75+b if the node holds only the task's tag, 50+b
// if it holds that tag among others, 25+b if it holds no GPU task, b if it holds only other
// tags. CPU-only tasks score 0 everywhere (lowest node id wins). GPUs: "best" selection.
class GpuClusteringPolicy final : public PlacementPolicy {
 public:
  std::string_view name() const override { return "gpuclustering"; }
  int64_t Score(const NodeView& n, const TaskRequest& t) override;
  // Score reads GPU state only.
  int64_t CpuHeadroom(const NodeView&, const TaskRequest&) override { return 0; }
};

}  // namespace gpuorch::sched
