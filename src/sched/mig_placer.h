#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "core/mig.h"
#include "sched/cluster_state.h"

namespace gpuorch::sched {

// The live mix of MIG requests: how many instances of each request shape (compute slices,
// memory) run or wait. It weighs the fragmentation score, so that a placement keeps room for
// what is asked for now (FGD's idea, on MIG slices). Resolved per GPU model into weights
// per profile on demand.
class MigMix {
 public:
  void Add(const TaskRequest& t, int sign);
  // Weights per profile of model m (index as in m.profiles), from the shapes above.
  const std::array<int64_t, 8>& WeightsFor(const core::MigModel& m);
  bool empty() const { return shapes_.empty(); }

 private:
  std::map<std::pair<int, int64_t>, int64_t> shapes_;  // (compute slices, memory) -> count
  uint64_t version_ = 0;
  struct Resolved {
    const core::MigModel* model;
    uint64_t version;
    std::array<int64_t, 8> weights;
  };
  std::vector<Resolved> resolved_;
};

// Where a MIG task goes. Either an idle instance that exists (`reconfigure` false: bind
// now), or a GPU whose layout must change first (`reconfigure` true: `target` is the new
// layout, which holds an idle instance of the task's profile at `start`).
struct MigChoice {
  NodeId node;
  int gpu = 0;
  int start = 0;
  bool reconfigure = false;
  core::MigLayout target;
};

// Chooses a MIG instance for task t (t.mig()) of workload `as`, in this order of classes:
//  1. an idle instance of the task's profile (core::ProfileFor: exactly t.mig_compute slices,
//     at least t.gpu_memory_mib) on a usable MIG GPU: the busiest GPU first,
//     so that idle GPUs stay whole for large profiles;
//  2. (with `reconfigure`) a new instance beside the existing ones, at a free start;
//  3. (with `reconfigure`) a new instance after destroying idle instances that are in its
//     way (instances holding tasks are never touched; idle ones that still fit are kept).
// Within classes 2 and 3 the choice minimises the increase of MigFragmentation over the
// live mix, then prefers the busiest GPU. Ties go to the lowest node id, GPU and start.
// Nodes are visited group by group (ClusterState::Group): members of a group share their
// MIG state, and the lowest member with enough CPU and memory stands for it.
// Pure: does not change the cluster. O(groups x MIG GPUs x starts x profiles).
// `profile_exists`, when given, is set when some MIG GPU of an acceptable model has the
// request's profile (whether or not there is room for it now).
std::optional<MigChoice> ChooseMig(const ClusterState& cluster, const TaskRequest& t, WorkloadId as,
                                   ReservationAccess access, MigMix& mix, bool reconfigure,
                                   bool* profile_exists = nullptr);

}  // namespace gpuorch::sched
