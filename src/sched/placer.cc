#include "sched/placer.h"

#include <iterator>

namespace gpuorch::sched {

namespace {

std::optional<TaskPlacement> Finish(const ClusterState& cluster, PlacementPolicy& policy,
                                    const TaskRequest& t, WorkloadId as, ReservationAccess access,
                                    NodeId id) {
  const NodeState& n = cluster.node(id);
  GpuMask gpus = policy.SelectGpus(NodeView(n, UsableGpus(n, as, access)), t);
  if (t.gpu_count > 0 && gpus == 0) return std::nullopt;
  return TaskPlacement{id, gpus};
}

}  // namespace

std::optional<TaskPlacement> ChooseNode(const ClusterState& cluster, PlacementPolicy& policy,
                                        NodeChoice choice, const TaskRequest& t, WorkloadId as,
                                        ReservationAccess access, core::Rng& rng,
                                        const std::vector<NodeId>* domain) {
  const bool random = choice == NodeChoice::kUniform;
  NodeId best;
  int64_t best_score = 0;
  auto consider = [&](const NodeState& n, NodeId lowest) {
    int64_t s = policy.Score(NodeView(n, UsableGpus(n, as, access)), t);
    if (!best.valid() || s > best_score || (s == best_score && lowest < best)) {
      best = lowest;
      best_score = s;
    }
  };
  if (domain != nullptr) {
    if (random) {
      std::vector<NodeId> feasible;
      for (NodeId id : *domain) {
        if (Fits(cluster.node(id), t, as, access)) feasible.push_back(id);
      }
      if (feasible.empty()) return std::nullopt;
      return Finish(cluster, policy, t, as, access, feasible[rng.Uniform(feasible.size())]);
    }
    for (NodeId id : *domain) {
      const NodeState& n = cluster.node(id);
      if (Fits(n, t, as, access)) consider(n, id);
    }
  } else if (random) {
    uint64_t feasible = 0;
    cluster.ForEachGroup([&](const NodeState& n, NodeId, size_t members) {
      if (Fits(n, t, as, access)) feasible += members;
    });
    if (feasible == 0) return std::nullopt;
    uint64_t pick = rng.Uniform(feasible);
    cluster.ForEachGroup([&](const NodeState& n, NodeId lowest, size_t members) {
      if (best.valid() || !Fits(n, t, as, access)) return;
      if (pick < members) {
        const auto& m = cluster.GroupMembers(lowest);
        best = NodeId(*std::next(m.begin(), static_cast<std::ptrdiff_t>(pick)));
      } else {
        pick -= members;
      }
    });
  } else {
    cluster.ForEachGroup([&](const NodeState& n, NodeId lowest, size_t) {
      if (Fits(n, t, as, access)) consider(n, lowest);
    });
  }
  if (!best.valid()) return std::nullopt;
  return Finish(cluster, policy, t, as, access, best);
}

}  // namespace gpuorch::sched
