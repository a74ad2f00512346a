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
  int8_t mig_start = -1;  // a MIG task's instance on its GPU (see TaskBinding)
};

// Scores the engine remembers per group of nodes with equal GPU state (ClusterState::Group)
// and GPU request, for nodes beyond the policy's CPU headroom (PlacementPolicy::CpuHeadroom),
// where the score depends on neither the node's CPU and memory nor the task's. A group that
// changes is a new group (new generation), so an entry is never stale; Clear() when the
// policy's scoring rule changes (SetTypicalTasks).
//
// Contract: single-threaded; at most kPerGroup entries per group slot.
class ScoreCache {
 public:
  static constexpr size_t kPerGroup = 32;
  struct Entry {
    int32_t gpu_count, gpu_milli;
    int64_t gpu_memory;
    uint64_t models;
    GpuMask usable;
    int64_t headroom;
    std::optional<int64_t> score;  // computed once a node beyond the headroom was scored
  };
  // The entry for a GPU request on group g, created empty (headroom unset: -1) if new.
  Entry& Find(const ClusterState::Group& g, const TaskRequest& t, GpuMask usable);
  void Clear() { slots_.clear(); }

 private:
  struct Slot {
    uint64_t generation = 0;
    std::vector<Entry> entries;
  };
  std::vector<Slot> slots_;
};

// Chooses the node and GPUs for one task: filter (Fits), then, by `choice`, either score
// (policy) and pick the highest score with ties to the lowest node id, or draw one feasible
// node uniformly from `rng`. The policy sees each node through a NodeView whose usable GPUs
// are those `as` may take.
//
// Without `domain`, it works group by group (nodes with equal GPU state): the GPU part of
// the fit is checked once per group, and of the members with enough CPU and memory, those
// beyond the policy's CPU headroom are represented by their lowest member, scored once (and
// remembered in `cache` when given); only members below the headroom are scored one by one.
// The answer is the same as scoring every feasible node. With `domain`, it considers those
// nodes. Returns nothing when no node fits. It does not change the cluster.
std::optional<TaskPlacement> ChooseNode(const ClusterState& cluster, PlacementPolicy& policy,
                                        NodeChoice choice, const TaskRequest& t, WorkloadId as,
                                        ReservationAccess access, core::Rng& rng,
                                        const std::vector<NodeId>* domain = nullptr,
                                        ScoreCache* cache = nullptr);

}  // namespace gpuorch::sched
