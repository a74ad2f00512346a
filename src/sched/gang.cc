// Gang placement: the first min_tasks tasks of a workload are placed together or not at all,
// in the narrowest topology domain that holds them (node, then rack, then zone, then the
// cluster). A required level caps the search; a preferred level is served by the
// narrowest-first order itself.
#include <algorithm>

#include "sched/placer.h"
#include "sched/scheduler_impl.h"

namespace gpuorch::sched {

using core::TopologyLevel;

namespace {

// Wider levels compare lower (kCluster < kZone < kRack < kNode < kNvlink).
bool Wider(TopologyLevel a, TopologyLevel b) { return a < b; }

bool InOneNvlinkDomain(const NodeState& n, GpuMask mask) {
  int dom = n.nvlink_domain_gpus > 0 ? n.nvlink_domain_gpus : n.gpu_count;
  for (int d = 0; d < n.gpu_count; d += dom) {
    GpuMask domain_mask = static_cast<GpuMask>(((1u << dom) - 1u) << d);
    if ((mask & ~domain_mask) == 0) return true;
  }
  return mask == 0;
}

// Upper bound on the tasks of shape t that a domain's free GPUs can hold.
int64_t DomainTaskBound(const std::array<int32_t, core::kMaxGpusPerNode + 1>& hist,
                        const TaskRequest& t, size_t nodes) {
  if (t.gpu_count == 0 || t.fractional()) return static_cast<int64_t>(nodes) * 1000;
  int64_t bound = 0;
  for (int k = t.gpu_count; k <= core::kMaxGpusPerNode; ++k) {
    bound += int64_t{hist[k]} * (k / t.gpu_count);
  }
  return bound;
}

}  // namespace

int NvlinkRoom(const NodeState& n, const TaskRequest& t, WorkloadId as, ReservationAccess access) {
  const GpuMask usable = UsableGpus(n, as, access);
  const int dom = n.nvlink_domain_gpus > 0 ? n.nvlink_domain_gpus : n.gpu_count;
  int best = 0;
  for (int d = 0; d < n.gpu_count; d += dom) {
    int free = 0;
    for (int j = d; j < std::min<int>(d + dom, n.gpu_count); ++j) {
      if (!((usable >> j) & 1u) || n.gpu_free[j] != core::kMilliGpu) continue;
      if (t.gpu_memory_mib > 0 && n.gpu_memory_capacity < t.gpu_memory_mib) continue;
      ++free;
    }
    best = std::max(best, free);
  }
  return best;
}

void Scheduler::Impl::Unallocate(const WorkloadRec& w, const std::vector<TaskPlacement>& placed) {
  for (const TaskPlacement& p : placed) cluster_.Release(p.node, w.spec.task, p.gpus);
}

std::optional<std::vector<TaskPlacement>> Scheduler::Impl::PlaceGang(const WorkloadRec& w,
                                                                     ModelSet models, int32_t count,
                                                                     ReservationAccess access,
                                                                     PendingReason& reason) {
  TaskRequest t = w.spec.task;
  if (t.gpu_count > 0) t.models = models;
  const TopologyLevel cap =
      w.spec.topology.required ? w.spec.topology.level : TopologyLevel::kCluster;
  const bool nvlink = cap == TopologyLevel::kNvlink;
  std::vector<TaskPlacement> placed;
  placed.reserve(static_cast<size_t>(count));

  // Places `count` tasks one by one inside `domain` (all nodes if null); all or nothing.
  auto sequential = [&](const std::vector<NodeId>* domain) -> bool {
    for (int32_t i = 0; i < count; ++i) {
      auto p = ChooseNode(cluster_, *policy_, node_choice_, t, w.id, access, rng_, domain);
      if (!p) {
        Unallocate(w, placed);
        placed.clear();
        return false;
      }
      cluster_.Allocate(p->node, t, p->gpus);
      placed.push_back(*p);
    }
    return true;
  };

  // Growing an elastic workload under a required level stays in its current domain.
  if (!w.tasks.empty() && cap != TopologyLevel::kCluster) {
    const NodeState& first = cluster_.node(w.tasks.front().node);
    std::vector<NodeId> single{first.id};
    const std::vector<NodeId>* domain =
        cap == TopologyLevel::kZone   ? &cluster_.zone_nodes(first.zone)
        : cap == TopologyLevel::kRack ? &cluster_.rack_nodes(first.rack)
                                      : &single;
    if (sequential(domain)) return placed;
    reason = PendingReason::kTopologyUnsatisfiable;
    return std::nullopt;
  }

  auto nvlink_ok = [&] {
    if (!nvlink || placed.empty()) return true;
    GpuMask all = 0;
    for (const TaskPlacement& q : placed) all = static_cast<GpuMask>(all | q.gpus);
    return InOneNvlinkDomain(cluster_.node(placed.front().node), all);
  };

  // Required NVLink with whole GPUs: every task on one node, all their GPUs in one NVLink
  // domain. Only nodes with a domain that has room are candidates, and each is tried in
  // the policy's order until one works: a node whose free GPUs are split across domains
  // does not end the search.
  if (nvlink && t.gpu_count > 0 && !t.fractional()) {
    const int gpus = t.gpu_count * count;
    TaskRequest whole = t;
    whole.gpu_count = gpus;
    whole.milli_cpu = t.milli_cpu * count;
    whole.memory_mib = t.memory_mib * count;
    std::vector<NodeId> room;
    if (gpus <= core::kMaxGpusPerNode) {
      for (const NodeState& n : cluster_.nodes()) {
        if (Fits(n, whole, w.id, access) && NvlinkRoom(n, whole, w.id, access) >= gpus) {
          room.push_back(n.id);
        }
      }
    }
    while (!room.empty()) {
      auto p = ChooseNode(cluster_, *policy_, node_choice_, whole, w.id, access, rng_, &room);
      if (!p) break;
      std::vector<NodeId> single{p->node};
      if (sequential(&single)) {
        if (nvlink_ok()) return placed;
        Unallocate(w, placed);
        placed.clear();
      }
      std::erase(room, p->node);
    }
    reason = PendingReason::kTopologyUnsatisfiable;
    int64_t free = 0;
    for (uint32_t m = 0; m < cluster_.model_bound(); ++m) {
      if (models.Accepts(GpuModelId(m))) free += cluster_.free_milli(GpuModelId(m));
    }
    if (free < t.total_milli_gpu() * count) reason = PendingReason::kNoFit;
    return std::nullopt;
  }

  // One task: the policy picks among all nodes.
  if (count == 1) {
    if (sequential(nullptr)) {
      if (nvlink_ok()) return placed;
      Unallocate(w, placed);
      placed.clear();
      reason = PendingReason::kTopologyUnsatisfiable;
    } else {
      reason = PendingReason::kNoFit;
    }
    return std::nullopt;
  }

  // Node level: one node for every task. Whole-GPU and CPU-only gangs are scored as one
  // combined task; fractional gangs confined to a node try nodes in id order.
  if (t.gpu_count == 0 || !t.fractional()) {
    if (int64_t{t.gpu_count} * count <= core::kMaxGpusPerNode) {
      TaskRequest whole = t;
      whole.gpu_count = t.gpu_count * count;
      whole.milli_cpu = t.milli_cpu * count;
      whole.memory_mib = t.memory_mib * count;
      auto p = ChooseNode(cluster_, *policy_, node_choice_, whole, w.id, access, rng_);
      if (p) {
        std::vector<NodeId> single{p->node};
        if (sequential(&single)) {
          if (nvlink_ok()) return placed;
          Unallocate(w, placed);
          placed.clear();
        }
      }
    }
  } else if (!Wider(cap, TopologyLevel::kNode)) {
    for (const NodeState& n : cluster_.nodes()) {
      if (!Fits(n, t, w.id, access)) continue;
      std::vector<NodeId> single{n.id};
      if (sequential(&single) && nvlink_ok()) return placed;
      Unallocate(w, placed);
      placed.clear();
    }
  }
  if (!Wider(cap, TopologyLevel::kNode)) {
    reason = PendingReason::kTopologyUnsatisfiable;
  } else {
    // Rack, then zone: the tightest domain whose free capacity bounds allow the gang.
    for (TopologyLevel level : {TopologyLevel::kRack, TopologyLevel::kZone}) {
      if (Wider(level, cap)) break;
      uint32_t domains =
          level == TopologyLevel::kRack ? cluster_.rack_count() : cluster_.zone_count();
      std::vector<std::pair<int64_t, uint32_t>> candidates;
      for (uint32_t d = 0; d < domains; ++d) {
        const auto& nodes =
            level == TopologyLevel::kRack ? cluster_.rack_nodes(d) : cluster_.zone_nodes(d);
        const auto& hist = level == TopologyLevel::kRack ? cluster_.rack_free_histogram(d)
                                                         : cluster_.zone_free_histogram(d);
        int64_t bound = DomainTaskBound(hist, t, nodes.size());
        if (bound >= count) candidates.emplace_back(bound, d);
      }
      std::sort(candidates.begin(), candidates.end());
      int tries = 0;
      for (auto [bound, d] : candidates) {
        const auto& nodes =
            level == TopologyLevel::kRack ? cluster_.rack_nodes(d) : cluster_.zone_nodes(d);
        if (t.gpu_count > 0 && std::none_of(nodes.begin(), nodes.end(), [&](NodeId id) {
              return models.Accepts(cluster_.node(id).model);
            })) {
          continue;
        }
        if (sequential(&nodes)) return placed;
        if (++tries >= 8) break;
      }
    }
    if (!Wider(cap, TopologyLevel::kZone)) {
      reason = PendingReason::kTopologyUnsatisfiable;
    } else if (sequential(nullptr)) {
      return placed;
    } else {
      reason = PendingReason::kNoFit;
    }
  }
  // Say "topology" only when the capacity exists but not inside one domain.
  if (reason == PendingReason::kTopologyUnsatisfiable) {
    int64_t need = t.total_milli_gpu() * count;
    int64_t free = 0;
    for (uint32_t m = 0; m < cluster_.model_bound(); ++m) {
      if (models.Accepts(GpuModelId(m))) free += cluster_.free_milli(GpuModelId(m));
    }
    if (t.gpu_count > 0 && free < need) reason = PendingReason::kNoFit;
  }
  return std::nullopt;
}

}  // namespace gpuorch::sched
