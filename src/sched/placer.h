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

// Chooses the node and GPUs for one task: filter (Fits), then, by `choice`, either score
// (policy) and pick the highest score with ties to the lowest node id, or draw one feasible
// node uniformly from `rng`. The policy sees each node through a NodeView whose usable GPUs
// are those `as` may take. Without `domain`, it considers one representative per group of
// identical nodes: O(groups), not O(nodes). With `domain`, it considers those nodes.
// Returns nothing when no node fits. It does not change the cluster.
std::optional<TaskPlacement> ChooseNode(const ClusterState& cluster, PlacementPolicy& policy,
                                        NodeChoice choice, const TaskRequest& t, WorkloadId as,
                                        ReservationAccess access, core::Rng& rng,
                                        const std::vector<NodeId>* domain = nullptr);

}  // namespace gpuorch::sched
