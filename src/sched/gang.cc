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
  for (const TaskPlacement& p : placed) cluster_.Release(p.node, w.spec.task, p.gpus, p.mig_start);
}

namespace {

// One gang placement in steps: the tasks placed so far, and the domains tried in turn.
class GangPlacement {
 public:
  GangPlacement(Scheduler::Impl& s, const WorkloadRec& w, ModelSet models, int32_t count,
                ReservationAccess access)
      : s_(s), w_(w), models_(models), count_(count), access_(access), t_(w.spec.task) {
    if (t_.gpu_count > 0) t_.models = models;
    cap_ = w.spec.topology.required ? w.spec.topology.level : TopologyLevel::kCluster;
    nvlink_ = cap_ == TopologyLevel::kNvlink;
    placed_.reserve(static_cast<size_t>(count));
  }

  // The steps, narrowest domain first; on failure `reason` says why.
  std::optional<std::vector<TaskPlacement>> Run(PendingReason& reason) {
    // Growing an elastic workload under a required level stays in its current domain.
    if (!w_.tasks.empty() && cap_ != TopologyLevel::kCluster) {
      if (InCurrentDomain()) return std::move(placed_);
      reason = PendingReason::kTopologyUnsatisfiable;
      return std::nullopt;
    }
    if (nvlink_ && t_.gpu_count > 0 && !t_.fractional()) {
      if (RequiredNvlink()) return std::move(placed_);
      reason = PendingReason::kTopologyUnsatisfiable;
      if (FreeOnModels() < t_.total_milli_gpu() * count_) reason = PendingReason::kNoFit;
      return std::nullopt;
    }
    if (count_ == 1) {
      if (OneTask(reason)) return std::move(placed_);
      return std::nullopt;
    }
    if (NodeLevel()) return std::move(placed_);
    if (!Wider(cap_, TopologyLevel::kNode)) {
      reason = PendingReason::kTopologyUnsatisfiable;
    } else if (RackOrZone()) {
      return std::move(placed_);
    } else if (!Wider(cap_, TopologyLevel::kZone)) {
      reason = PendingReason::kTopologyUnsatisfiable;
    } else if (Sequential(nullptr)) {
      return std::move(placed_);
    } else {
      reason = PendingReason::kNoFit;
    }
    // Say "topology" only when the capacity exists but not inside one domain.
    if (reason == PendingReason::kTopologyUnsatisfiable && t_.gpu_count > 0 &&
        FreeOnModels() < t_.total_milli_gpu() * count_) {
      reason = PendingReason::kNoFit;
    }
    return std::nullopt;
  }

 private:
  // Places count_ tasks one by one inside `domain` (all nodes if null); all or nothing.
  bool Sequential(const std::vector<NodeId>* domain) {
    for (int32_t i = 0; i < count_; ++i) {
      auto p = ChooseNode(s_.cluster_, *s_.policy_, s_.node_choice_, t_, w_.id, access_, s_.rng_,
                          domain, &s_.score_cache_);
      if (!p) {
        Undo();
        return false;
      }
      s_.cluster_.Allocate(p->node, t_, p->gpus);
      placed_.push_back(*p);
    }
    return true;
  }

  // Gives back what was placed so far.
  void Undo() {
    s_.Unallocate(w_, placed_);
    placed_.clear();
  }

  // Whether the placed tasks meet a required NVLink level (one domain of one node).
  bool NvlinkOk() const {
    if (!nvlink_ || placed_.empty()) return true;
    GpuMask all = 0;
    for (const TaskPlacement& q : placed_) all = static_cast<GpuMask>(all | q.gpus);
    return InOneNvlinkDomain(s_.cluster_.node(placed_.front().node), all);
  }

  // Sequential on one node, kept only if it meets the NVLink level.
  bool OnNode(NodeId id) {
    std::vector<NodeId> single{id};
    if (!Sequential(&single)) return false;
    if (NvlinkOk()) return true;
    Undo();
    return false;
  }

  // All tasks as one combined task (whole GPUs or CPU only), for node-level choices.
  TaskRequest Combined() const {
    TaskRequest whole = t_;
    whole.gpu_count = t_.gpu_count * count_;
    whole.milli_cpu = t_.milli_cpu * count_;
    whole.memory_mib = t_.memory_mib * count_;
    return whole;
  }

  // Free milli-GPU on the models the gang may use.
  int64_t FreeOnModels() const {
    int64_t free = 0;
    for (uint32_t m = 0; m < s_.cluster_.model_bound(); ++m) {
      if (models_.Accepts(GpuModelId(m))) free += s_.cluster_.free_milli(GpuModelId(m));
    }
    return free;
  }

  // Step: extra tasks of a running workload, inside the domain its first task is in.
  bool InCurrentDomain() {
    const ClusterState& c = s_.cluster_;
    const NodeState& first = c.node(w_.tasks.front().node);
    std::vector<NodeId> single{first.id};
    const std::vector<NodeId>* domain = cap_ == TopologyLevel::kZone   ? &c.zone_nodes(first.zone)
                                        : cap_ == TopologyLevel::kRack ? &c.rack_nodes(first.rack)
                                                                       : &single;
    return Sequential(domain);
  }

  // Step: required NVLink with whole GPUs: every task on one node, all their GPUs in one
  // NVLink domain. Only nodes with a domain that has room are candidates, and each is
  // tried in the policy's order until one works: a node whose free GPUs are split across
  // domains does not end the search.
  bool RequiredNvlink() {
    const TaskRequest whole = Combined();
    const int gpus = whole.gpu_count;
    std::vector<NodeId> room;
    if (gpus <= core::kMaxGpusPerNode) {
      for (const NodeState& n : s_.cluster_.nodes()) {
        if (Fits(n, whole, w_.id, access_) && NvlinkRoom(n, whole, w_.id, access_) >= gpus) {
          room.push_back(n.id);
        }
      }
    }
    while (!room.empty()) {
      auto p = ChooseNode(s_.cluster_, *s_.policy_, s_.node_choice_, whole, w_.id, access_, s_.rng_,
                          &room);
      if (!p) break;
      if (OnNode(p->node)) return true;
      std::erase(room, p->node);
    }
    return false;
  }

  // Step: one task; the policy picks among all nodes.
  bool OneTask(PendingReason& reason) {
    if (!Sequential(nullptr)) {
      reason = PendingReason::kNoFit;
      return false;
    }
    if (NvlinkOk()) return true;
    Undo();
    reason = PendingReason::kTopologyUnsatisfiable;
    return false;
  }

  // Step: node level, one node for every task. Whole-GPU and CPU-only gangs are scored
  // as one combined task; fractional gangs confined to a node try nodes in id order.
  bool NodeLevel() {
    if (t_.gpu_count == 0 || !t_.fractional()) {
      if (int64_t{t_.gpu_count} * count_ > core::kMaxGpusPerNode) return false;
      auto p = ChooseNode(s_.cluster_, *s_.policy_, s_.node_choice_, Combined(), w_.id, access_,
                          s_.rng_, nullptr, &s_.score_cache_);
      return p && OnNode(p->node);
    }
    if (Wider(cap_, TopologyLevel::kNode)) return false;
    for (const NodeState& n : s_.cluster_.nodes()) {
      if (!Fits(n, t_, w_.id, access_)) continue;
      std::vector<NodeId> single{n.id};
      if (Sequential(&single) && NvlinkOk()) return true;
      Undo();
    }
    return false;
  }

  // Step: rack, then zone: the tightest domain whose free capacity bounds allow the gang
  // (at most 8 domains tried per level).
  bool RackOrZone() {
    const ClusterState& c = s_.cluster_;
    for (TopologyLevel level : {TopologyLevel::kRack, TopologyLevel::kZone}) {
      if (Wider(level, cap_)) break;
      const bool rack = level == TopologyLevel::kRack;
      const uint32_t domains = rack ? c.rack_count() : c.zone_count();
      std::vector<std::pair<int64_t, uint32_t>> candidates;
      for (uint32_t d = 0; d < domains; ++d) {
        const auto& nodes = rack ? c.rack_nodes(d) : c.zone_nodes(d);
        const auto& hist = rack ? c.rack_free_histogram(d) : c.zone_free_histogram(d);
        int64_t bound = DomainTaskBound(hist, t_, nodes.size());
        if (bound >= count_) candidates.emplace_back(bound, d);
      }
      std::sort(candidates.begin(), candidates.end());
      int tries = 0;
      for (auto [bound, d] : candidates) {
        const auto& nodes = rack ? c.rack_nodes(d) : c.zone_nodes(d);
        if (t_.gpu_count > 0 && std::none_of(nodes.begin(), nodes.end(), [&](NodeId id) {
              return models_.Accepts(c.node(id).model);
            })) {
          continue;
        }
        if (Sequential(&nodes)) return true;
        if (++tries >= 8) break;
      }
    }
    return false;
  }

  Scheduler::Impl& s_;
  const WorkloadRec& w_;
  const ModelSet models_;
  const int32_t count_;
  const ReservationAccess access_;
  TaskRequest t_;
  TopologyLevel cap_;
  bool nvlink_ = false;
  std::vector<TaskPlacement> placed_;
};

}  // namespace

std::optional<std::vector<TaskPlacement>> Scheduler::Impl::PlaceGang(const WorkloadRec& w,
                                                                     ModelSet models, int32_t count,
                                                                     ReservationAccess access,
                                                                     PendingReason& reason) {
  return GangPlacement(*this, w, models, count, access).Run(reason);
}

}  // namespace gpuorch::sched
