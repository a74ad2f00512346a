#include "sched/placer.h"

#include <algorithm>

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

// The highest score, ties to the lowest node id.
struct Best {
  NodeId id;
  int64_t score = 0;
  void Consider(int64_t s, NodeId n) {
    if (!id.valid() || s > score || (s == score && n < id)) id = n, score = s;
  }
};

// Best-score choice over every schedulable node, group by group (see ChooseNode).
NodeId BestOverGroups(const ClusterState& cluster, PlacementPolicy& policy, const TaskRequest& t,
                      WorkloadId as, ReservationAccess access, ScoreCache* cache) {
  Best best;
  cluster.ForEachGroup([&](const ClusterState::Group& g, const NodeState& rep) {
    if (g.max_cpu_free() < t.milli_cpu || g.max_memory_free() < t.memory_mib) return;
    if (!g.MayFitGpus(t) || !FitsGpus(rep, t, as, access)) return;
    const GpuMask usable = UsableGpus(rep, as, access);
    ScoreCache::Entry* e = cache != nullptr ? &cache->Find(g, t, usable) : nullptr;
    int64_t headroom;
    if (e != nullptr && e->headroom >= 0) {
      headroom = e->headroom;
    } else {
      headroom = policy.CpuHeadroom(NodeView(rep, usable), t);
      if (e != nullptr) e->headroom = headroom;
    }
    const int64_t saturated = headroom >= PlacementPolicy::kAlwaysReadsHost
                                  ? PlacementPolicy::kAlwaysReadsHost
                                  : t.milli_cpu + headroom;
    // Members beyond the headroom score alike: the lowest one stands for them.
    if (saturated < PlacementPolicy::kAlwaysReadsHost) {
      if (NodeId id = cluster.LowestFitting(g, saturated, t.memory_mib); id.valid()) {
        int64_t s;
        if (e != nullptr && e->score.has_value()) {
          s = *e->score;
        } else {
          s = policy.Score(NodeView(cluster.node(id), usable), t);
          if (e != nullptr) e->score = s;
        }
        best.Consider(s, id);
      }
    }
    // Members with enough CPU for the task but not beyond the headroom: one per free CPU
    // value (in (CPU, id) order the lowest id of a value comes first, and members of a
    // group with equal free CPU score alike: Score does not read memory).
    int64_t scored_cpu = -1;
    for (auto it = g.by_cpu.lower_bound({t.milli_cpu, 0}); it != g.by_cpu.end(); ++it) {
      if (it->first >= saturated) break;
      if (it->first == scored_cpu) continue;
      const NodeState& n = cluster.node(NodeId(it->second));
      if (n.memory_free < t.memory_mib) continue;
      scored_cpu = it->first;
      best.Consider(policy.Score(NodeView(n, usable), t), n.id);
    }
  });
  return best.id;
}

}  // namespace

ScoreCache::Entry& ScoreCache::Find(const ClusterState::Group& g, const TaskRequest& t,
                                    GpuMask usable) {
  if (g.slot >= slots_.size()) slots_.resize(g.slot + 1);
  Slot& slot = slots_[g.slot];
  if (slot.generation != g.generation) {
    slot.generation = g.generation;
    slot.entries.clear();
  }
  const uint64_t models = t.models.bits();
  for (Entry& e : slot.entries) {
    if (e.gpu_count == t.gpu_count && e.gpu_milli == t.gpu_milli &&
        e.gpu_memory == t.gpu_memory_mib && e.models == models && e.usable == usable) {
      return e;
    }
  }
  if (slot.entries.size() >= kPerGroup) slot.entries.clear();
  slot.entries.push_back(
      Entry{t.gpu_count, t.gpu_milli, t.gpu_memory_mib, models, usable, -1, std::nullopt});
  return slot.entries.back();
}

std::optional<TaskPlacement> ChooseNode(const ClusterState& cluster, PlacementPolicy& policy,
                                        NodeChoice choice, const TaskRequest& t, WorkloadId as,
                                        ReservationAccess access, core::Rng& rng,
                                        const std::vector<NodeId>* domain, ScoreCache* cache) {
  if (choice == NodeChoice::kUniform) {
    // Uniformly among the feasible nodes, in id order.
    std::vector<NodeId> feasible;
    if (domain != nullptr) {
      for (NodeId id : *domain) {
        if (Fits(cluster.node(id), t, as, access)) feasible.push_back(id);
      }
    } else {
      for (const NodeState& n : cluster.nodes()) {
        if (Fits(n, t, as, access)) feasible.push_back(n.id);
      }
    }
    if (feasible.empty()) return std::nullopt;
    return Finish(cluster, policy, t, as, access, feasible[rng.Uniform(feasible.size())]);
  }
  NodeId best;
  if (domain != nullptr) {
    Best b;
    for (NodeId id : *domain) {
      const NodeState& n = cluster.node(id);
      if (Fits(n, t, as, access))
        b.Consider(policy.Score(NodeView(n, UsableGpus(n, as, access)), t), id);
    }
    best = b.id;
  } else {
    best = BestOverGroups(cluster, policy, t, as, access, cache);
  }
  if (!best.valid()) return std::nullopt;
  return Finish(cluster, policy, t, as, access, best);
}

}  // namespace gpuorch::sched
