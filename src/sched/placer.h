#pragma once

#include <optional>
#include <vector>

#include "core/rng.h"
#include "sched/cluster_state.h"
#include "sched/policy.h"

namespace gpuorch::sched {

struct TaskPlacement {
  NodeId node;
  GpuMask gpus = 0;
};

// Chooses the node and GPUs for one task: filter (Fits), score (policy), pick the highest
// score with ties to the lowest node id. Without `domain`, it scores one representative per
// group of identical nodes: O(groups), not O(nodes). With `domain`, it scores those nodes.
// Returns nothing when no node fits. It does not change the cluster.
std::optional<TaskPlacement> ChooseNode(const ClusterState& cluster, PlacementPolicy& policy,
                                        const TaskRequest& t, WorkloadId as,
                                        ReservationAccess access, core::Rng& rng,
                                        const std::vector<NodeId>* domain = nullptr);

}  // namespace gpuorch::sched
