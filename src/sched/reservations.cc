// Head-of-line reservations: a workload that cannot start reserves the nodes where it
// will fit soonest; the reserved GPUs are lent to backfill meanwhile, and taken back (lent
// work evicted) once the holder would fit. The Ledger records the holds; this file decides
// where, and when to take them back.
#include <algorithm>
#include <bit>

#include "sched/scheduler_impl.h"

namespace gpuorch::sched {

namespace {

// Where a head-of-line hold for w on model m goes: the domain whose nodes are expected
// to be free soonest.
struct HoldSearch {
  const Scheduler::Impl& s;
  const WorkloadRec& w;
  GpuModelId m;
  Time now;
  int64_t need;
  std::vector<NodeId> best;
  Time best_eta = -1;

  // Step: when node n is expected to be free: the latest expected end of the tasks on it
  // (unknown runtimes count as far away).
  Time FreeAt(const NodeState& n) const {
    constexpr Duration kUnknown = 100LL * 24 * core::kHour;
    Time t = now;
    for (auto [wid, task] : s.node_tasks_[n.id.value()]) {
      const WorkloadRec& r = s.Rec(wid);
      Duration est = r.spec.runtime_estimate > 0 ? r.spec.runtime_estimate : kUnknown;
      t = std::max(t, r.start_time + est);
    }
    return t;
  }

  // Step: the nodes of `nodes` free soonest that together hold the gang (unreserved, of
  // model m, with enough healthy GPUs for one task); when the last of them is free, or -1.
  Time Pick(const std::vector<NodeId>& nodes, std::vector<NodeId>& out) const {
    std::vector<std::pair<Time, NodeId>> by_time;
    for (NodeId id : nodes) {
      const NodeState& n = s.cluster_.node(id);
      if (!n.schedulable() || n.model != m || n.reserved_gpus != 0) continue;
      if (w.spec.task.gpu_count > std::popcount(n.whole_gpus())) continue;
      by_time.emplace_back(FreeAt(n), id);
    }
    std::sort(by_time.begin(), by_time.end());
    int64_t got = 0;
    for (auto [t, id] : by_time) {
      const NodeState& n = s.cluster_.node(id);
      out.push_back(id);
      // Unhealthy GPUs never free up for it: only the healthy ones count (and are held).
      got += int64_t{std::popcount(n.whole_gpus()) / w.spec.task.gpu_count} * w.task_milli();
      if (got >= need) return t;
    }
    out.clear();
    return -1;
  }

  // Keeps `nodes`' pick if it is ready before the best so far.
  void Consider(const std::vector<NodeId>& nodes) {
    std::vector<NodeId> out;
    Time eta = Pick(nodes, out);
    if (eta >= 0 && (best_eta < 0 || eta < best_eta)) {
      best_eta = eta;
      best = std::move(out);
    }
  }

  // Step: the domains a hold may span: one node for a gang confined to one, a rack or a
  // zone under a required level, otherwise racks first and then the whole cluster.
  void Run() {
    const ClusterState& c = s.cluster_;
    const core::TopologyLevel level =
        w.spec.topology.required ? w.spec.topology.level : core::TopologyLevel::kCluster;
    if (level >= core::TopologyLevel::kNode && w.spec.min_tasks > 1) {
      for (const NodeState& n : c.nodes()) {
        if (n.present) Consider({n.id});
      }
    } else if (level >= core::TopologyLevel::kRack) {
      for (uint32_t r = 0; r < c.rack_count(); ++r) Consider(c.rack_nodes(r));
    } else if (level == core::TopologyLevel::kZone) {
      for (uint32_t z = 0; z < c.zone_count(); ++z) Consider(c.zone_nodes(z));
    } else {
      for (uint32_t r = 0; r < c.rack_count(); ++r) Consider(c.rack_nodes(r));
      if (best.empty()) {
        std::vector<NodeId> all;
        for (const NodeState& n : c.nodes()) {
          if (n.present) all.push_back(n.id);
        }
        Consider(all);
      }
    }
  }
};

}  // namespace

bool Scheduler::Impl::CreateHold(WorkloadRec& w, GpuModelId m, bool in_quota, Time now) {
  HoldSearch search{*this, w, m, now, w.task_milli() * w.spec.min_tasks, {}, -1};
  if (cluster_.capacity_milli(m) < search.need) return false;
  search.Run();
  if (search.best.empty()) return false;
  // Lending needs preemption: lent work must be evicted when the holder is ready.
  ledger_.HoldHeadOfLine(w.id, std::move(search.best), search.best_eta, m, in_quota,
                         config_.preemption);
  return true;
}

std::optional<std::vector<Scheduler::Impl::Victim>> Scheduler::Impl::LentVictims(WorkloadRec& w,
                                                                                 Time now) {
  // Lent work on w's held nodes that may go: preemptible and past its min_runtime.
  // Protected lent work (non-preemptible work that backfilled because it ends in time) is
  // waited for. Only the held nodes are scanned: O(tasks there), not O(running work).
  std::vector<WorkloadId> lent;
  for (NodeId n : ledger_.HoldOf(w.id).nodes) {
    for (auto [vid, task] : node_tasks_[n.value()]) lent.push_back(vid);
  }
  std::sort(lent.begin(), lent.end());
  lent.erase(std::unique(lent.begin(), lent.end()), lent.end());
  std::vector<Victim> cands;
  for (WorkloadId vid : lent) {
    WorkloadRec& v = Rec(vid);
    if (v.lent_from != w.id || !Evictable(v, now)) continue;
    Victim x{&v, 3, {}, 0};
    for (const TaskRec& t : v.tasks) {
      if (!t.stopping) x.tasks.push_back(t.index);
    }
    if (x.tasks.empty()) continue;
    x.milli = v.task_milli() * static_cast<int64_t>(x.tasks.size());
    cands.push_back(std::move(x));
  }
  if (cands.empty()) return std::nullopt;
  std::sort(cands.begin(), cands.end(), CheaperVictim);
  GpuModelId m = cands.front().w->model;
  auto set = MinimalSet(w, m, cands, ReservationAccess{0});
  if (!set || set->empty()) return std::nullopt;
  return set;
}

bool Scheduler::Impl::HolderReady(WorkloadRec& w, Time now) {
  PendingReason ignored;
  if (auto placed =
          PlaceGang(w, ModelSet::Of(ledger_.HoldOf(w.id).model), w.spec.min_tasks, 0, ignored)) {
    Unallocate(w, *placed);
    return true;
  }
  return LentVictims(w, now).has_value();
}

bool Scheduler::Impl::ReclaimLent(WorkloadRec& w, Plan& plan) {
  auto set = LentVictims(w, plan.now);
  if (!set) return false;
  Evict(w, *set, plan);
  ledger_.StopLending(w.id);  // from now on the reservation is not lent any more
  return true;
}

}  // namespace gpuorch::sched
