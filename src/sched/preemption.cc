// Preemption: when entitled work does not fit, evict the cheapest set of victims.
//
// Who may be a victim (never non-preemptible work, never work younger than min_runtime):
//   class 0: an elastic task beyond min_tasks, one task per victim (taken back by a
//            resize, the workload keeps running), so a shrink stops only the tasks needed;
//   class 1: work of another queue that borrows, for an in-quota preemptor (a guarantee
//            reclaim) or, at strictly lower priority than the preemptor, for an inference
//            replica beyond its guarantee whose queue may borrow (a harvest); taken only
//            if the queue stays at or above its guarantee once it and every victim chosen
//            before it have left (and work already being evicted);
//   class 2: lower-priority work of the preemptor's own queue;
//   class 3: work that runs on GPUs lent from the preemptor's head-of-line reservation.
// Cost order: class, then priority (lowest first), then youngest first; but an inference
// preemptor takes every victim of other queues (classes 0 and 1) before any of its own
// queue's (its rank, Victim::rank). Another queue's work evicted or shrunk for an inference
// preemptor is kHarvested; for any other preemptor kReclaimGuarantee.
// Where: a preemptor that fits on one node gets its victims from one node (each node judged
// on a scratch copy of its free state); a gang is tried one rack at a time, then anywhere.
// The cheapest option wins (highest class used, then number of victims, then GPUs freed),
// and within it every victim the preemptor does not need is dropped. The one-node search
// starts where the last one succeeded and stops at an option nothing can beat (one victim
// of the cheapest class freeing no more than the need): between equally cheap options on
// different nodes the first found wins; age orders victims within a node. So victims free one
// topology domain rather than scattered GPUs. A preemptor's request counts against its
// queue's guarantee from the moment it evicts (a claim), so that preemptors of one queue
// cannot together take more than the guarantee. Tasks already stopping (for another
// preemptor, a resize or a node loss) are never offered again: each task stops for one
// preemptor, recorded in the Ledger.
#include <algorithm>
#include <map>
#include <tuple>

#include "sched/scheduler_impl.h"

namespace gpuorch::sched {

namespace {

struct Cost {
  int max_rank = 0;
  int max_cls = 0;
  size_t victims = 0;
  int64_t milli = 0;
  auto operator<=>(const Cost&) const = default;
};

Cost CostOf(const std::vector<Scheduler::Impl::Victim>& set) {
  Cost c;
  for (const auto& v : set) {
    c.max_rank = std::max(c.max_rank, v.rank);
    c.max_cls = std::max(c.max_cls, v.cls);
    c.milli += v.milli;
  }
  c.victims = set.size();
  return c;
}

}  // namespace

void Scheduler::Impl::Free(const Victim& v) {
  for (int32_t i : v.tasks) {
    for (const TaskRec& t : v.w->tasks) {
      if (t.index == i) cluster_.Release(t.node, v.w->spec.task, t.gpus, t.mig_start);
    }
  }
}

void Scheduler::Impl::Unfree(const Victim& v) {
  for (int32_t i : v.tasks) {
    for (const TaskRec& t : v.w->tasks) {
      if (t.index == i) cluster_.Allocate(t.node, v.w->spec.task, t.gpus, t.mig_start);
    }
  }
}

std::optional<std::vector<Scheduler::Impl::Victim>> Scheduler::Impl::MinimalSet(
    const WorkloadRec& w, GpuModelId m, const std::vector<Victim>& cands,
    ReservationAccess access) {
  const int64_t need = w.task_milli() * w.spec.min_tasks;
  std::vector<Victim> chosen;
  PendingReason ignored;
  bool fits = false;
  for (const Victim& c : cands) {
    // A workload may be a candidate twice (its elastic tasks, then all of it): free only
    // what is not freed yet, so that victims stay disjoint.
    Victim v = c;
    for (const Victim& earlier : chosen) {
      if (earlier.w != v.w) continue;
      std::erase_if(v.tasks, [&](int32_t i) {
        return std::find(earlier.tasks.begin(), earlier.tasks.end(), i) != earlier.tasks.end();
      });
    }
    if (v.tasks.empty()) continue;
    v.milli = v.w->task_milli() * static_cast<int64_t>(v.tasks.size());
    Free(v);
    chosen.push_back(v);
    if (cluster_.free_milli(m) < need) continue;  // cheap gate before the exact check
    auto placed = PlaceGang(w, ModelSet::Of(m), w.spec.min_tasks, access, ignored);
    if (placed) {
      Unallocate(w, *placed);
      fits = true;
      break;
    }
  }
  if (!fits) {
    for (auto it = chosen.rbegin(); it != chosen.rend(); ++it) Unfree(*it);
    return std::nullopt;
  }
  // Drop victims that are not needed, most expensive first.
  for (size_t i = chosen.size(); i-- > 0;) {
    Unfree(chosen[i]);
    auto placed = PlaceGang(w, ModelSet::Of(m), w.spec.min_tasks, access, ignored);
    if (placed) {
      Unallocate(w, *placed);
      chosen.erase(chosen.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      Free(chosen[i]);
    }
  }
  for (auto it = chosen.rbegin(); it != chosen.rend(); ++it) Unfree(*it);
  return chosen;
}

// The victims v offers to preemptor w on model m: its elastic tasks beyond min_tasks
// (class 0) and the whole workload (class 1 or 2), if it may be evicted for w at all.
void Scheduler::Impl::Candidates(const WorkloadRec& w, WorkloadRec& v, GpuModelId m, Reach reach,
                                 Time now, std::vector<Victim>& out) const {
  if (v.model != m || v.id == w.id || !Evictable(v, now)) return;
  const QueueId q = w.spec.queue;
  const bool in_quota = reach == Reach::kReclaim;
  const bool same = v.spec.queue == q;
  const bool lower = same && v.spec.priority < w.spec.priority;
  // Another queue's work is reclaimable only while that queue borrows, and harvestable
  // only at strictly lower priority (so that two replicas at equal priority never take
  // from each other); whether taking this victim would leave its queue below its guarantee
  // is checked with the victims chosen before it.
  const bool reaches = in_quota || (reach == Reach::kHarvest && v.spec.priority < w.spec.priority);
  const bool borrowed = reaches && !same && Borrowing(v.spec.queue, m, 0);
  const int rank = same && w.spec.kind == core::WorkloadKind::kInference ? 1 : 0;
  // Tasks already stopping are leaving for someone else: never offered again.
  std::vector<int32_t> staying;
  for (const TaskRec& t : v.tasks) {
    if (!t.stopping) staying.push_back(t.index);
  }
  if (staying.empty()) return;
  std::sort(staying.rbegin(), staying.rend());  // the newest elastic tasks go first
  const int32_t extra = static_cast<int32_t>(staying.size()) - v.spec.min_tasks;
  if (extra > 0 && (same ? (lower || in_quota) : borrowed)) {
    for (int32_t i = 0; i < extra; ++i) {
      out.push_back(Victim{&v, 0, {staying[i]}, v.task_milli(), rank});
    }
  }
  if (lower || borrowed) {
    const int64_t milli = v.task_milli() * static_cast<int64_t>(staying.size());
    out.push_back(Victim{&v, lower ? 2 : 1, std::move(staying), milli, rank});
  }
}

bool Scheduler::Impl::Evictable(const WorkloadRec& v, Time now) const {
  return v.state == WorkloadState::kRunning && v.spec.preemptible &&
         now - v.start_time >= v.spec.min_runtime &&
         v.start_time != now;  // bound in this cycle: never bind-then-evict
}

bool Scheduler::Impl::MayHarvest(const WorkloadRec& w) const {
  return w.spec.kind == core::WorkloadKind::kInference && w.spec.preemptible &&
         queues_[w.spec.queue.value()].spec.can_borrow;
}

bool Scheduler::Impl::KeepsHeldBack(QueueId q, GpuModelId m, int64_t need,
                                    const std::vector<Victim>& victims) const {
  const int64_t held = HeldBack(m, q);
  if (held == 0) return true;
  int64_t freed = 0;
  for (const Victim& v : victims) freed += v.milli;
  return cluster_.free_milli(m) + freed - need >= held;
}

bool Scheduler::Impl::Reclaimable(QueueId q, GpuModelId m, int64_t milli) const {
  const QueueRec& r = queues_[q.value()];
  return r.usage[m.value()] - r.evicting[m.value()] - milli >= r.guaranteed[m.value()];
}

namespace {

// The cost order of victims: rank, class, then lowest priority, then youngest, then highest
// id; one workload's elastic tasks newest first. (Later start, id and task sort first.)
auto VictimKey(int rank, int cls, const WorkloadRec& w, int32_t task) {
  return std::make_tuple(rank, cls, w.spec.priority, -w.start_time, -int64_t{w.id.value()}, -task);
}

// What ClusterState::Release does to a node's free state, on a scratch copy.
void ReleaseOnCopy(NodeState& n, const TaskRequest& t, GpuMask mask) {
  n.cpu_free += t.milli_cpu;
  n.memory_free += t.memory_mib;
  for (int j = 0; j < n.gpu_count; ++j) {
    if (!((mask >> j) & 1u)) continue;
    n.gpu_free[j] = static_cast<int16_t>(n.gpu_free[j] + t.gpu_milli);
    n.gpu_mem_free[j] =
        t.fractional() ? n.gpu_mem_free[j] + t.gpu_memory_mib : n.gpu_memory_capacity;
  }
}

}  // namespace

bool Scheduler::Impl::CheaperVictim(const Victim& a, const Victim& b) {
  return VictimKey(a.rank, a.cls, *a.w, a.tasks.front()) <
         VictimKey(b.rank, b.cls, *b.w, b.tasks.front());
}

namespace {

using Victim = Scheduler::Impl::Victim;

// A candidate on one node: a whole workload (its staying tasks), or (class 0) one of its
// elastic tasks.
struct Local {
  WorkloadRec* w;
  int cls;
  int32_t task;  // class 0: the task
  int64_t milli;
  int rank;  // see Victim::rank
};

// Whether candidate l stops task r.
bool Releases(const Local& l, const TaskRec& r) {
  return !r.stopping && (l.cls != 0 || r.index == l.task);
}

bool CheaperLocal(const Local& a, const Local& b) {
  return VictimKey(a.rank, a.cls, *a.w, a.task) < VictimKey(b.rank, b.cls, *b.w, b.task);
}

// The one-node victim search of PreemptOnOneNode, in steps.
class OneNodeSearch {
 public:
  OneNodeSearch(Scheduler::Impl& s, const WorkloadRec& w, GpuModelId m,
                Scheduler::Impl::Reach reach, Time now, ReservationAccess access)
      : s_(s), w_(w), m_(m), reach_(reach), now_(now), access_(access), t_(w.spec.task) {
    t_.models = ModelSet::Of(m);
  }

  // Scans the nodes from where the last search succeeded; the cheapest option wins.
  std::optional<std::vector<Victim>> Run() {
    const auto& nodes = s_.cluster_.nodes();
    auto& cursor = s_.preempt_cursor_;
    if (cursor.size() <= m_.value()) cursor.resize(m_.value() + 1, 0);
    const size_t start = nodes.empty() ? 0 : cursor[m_.value()] % nodes.size();
    for (size_t k = 0; k < nodes.size(); ++k) {
      const NodeState& n = nodes[(start + k) % nodes.size()];
      if (!Eligible(n)) continue;
      Collect(n);
      if (local_.empty() || !Greedy(n)) continue;
      Minimise(n);
      if (Keep(n)) break;
    }
    if (!best_node_.valid()) return std::nullopt;
    cursor[m_.value()] = best_node_.value();
    return Victims();
  }

 private:
  // Step: whether node n can hold w at all, and may hold its room.
  bool Eligible(const NodeState& n) const {
    if (!n.schedulable() || n.model != m_ || n.gpu_count < t_.gpu_count) return false;
    // A node held for another preemptor cannot hold w's room as well: look elsewhere.
    if (n.reserved_gpus != 0 && n.reserved_for != w_.id && !n.reservation_lendable) return false;
    return true;
  }

  // Step: the candidates on node n, cheapest first.
  void Collect(const NodeState& n) {
    const auto& on_node = s_.node_tasks_[n.id.value()];
    local_.clear();
    for (size_t i = 0; i < on_node.size(); ++i) {
      WorkloadRec& v = s_.Rec(on_node[i].first);
      bool seen = false;
      for (size_t j = 0; j < i && !seen; ++j) seen = on_node[j].first == v.id;
      if (seen) continue;
      scratch_.clear();
      s_.Candidates(w_, v, m_, reach_, now_, scratch_);
      for (const Victim& c : scratch_) {
        Local l{&v, c.cls, c.tasks.front(), c.milli, c.rank};
        if (c.cls == 0) {  // only elastic tasks on this node help
          bool here = false;
          for (const TaskRec& r : v.tasks) here |= r.node == n.id && r.index == l.task;
          if (!here) continue;
        }
        local_.push_back(l);
      }
    }
    std::sort(local_.begin(), local_.end(), CheaperLocal);
  }

  // Step: takes candidates in cost order until w fits on n, never taking a queue below
  // its guarantee. True if w fits.
  bool Greedy(const NodeState& n) {
    chosen_.clear();
    taken_.clear();
    for (const Local& l : local_) {
      // A workload goes at most once: as a whole, or by elastic tasks (a whole victim after
      // its own elastic tasks takes their place).
      if (std::any_of(chosen_.begin(), chosen_.end(),
                      [&](const Local& c) { return c.w == l.w && c.cls != 0; })) {
        continue;
      }
      int64_t adds = l.milli;
      if (l.cls != 0) {
        for (const Local& c : chosen_) adds -= c.w == l.w ? c.milli : 0;
      }
      if (l.w->spec.queue != w_.spec.queue && !Take(l.w->spec.queue, adds)) continue;
      if (l.cls != 0) std::erase_if(chosen_, [&](const Local& c) { return c.w == l.w; });
      chosen_.push_back(l);
      if (FitsWith(n, chosen_)) return true;
    }
    return false;
  }

  // Counts `adds` more taken from queue q if q stays at or above its guarantee.
  bool Take(QueueId q, int64_t adds) {
    auto it = std::find_if(taken_.begin(), taken_.end(),
                           [&](const auto& e) { return e.first == q.value(); });
    const int64_t already = it == taken_.end() ? 0 : it->second;
    if (!s_.Reclaimable(q, m_, already + adds)) return false;
    if (it == taken_.end()) {
      taken_.emplace_back(q.value(), adds);
    } else {
      it->second += adds;
    }
    return true;
  }

  // Step: drops every chosen victim w does not need, most expensive first.
  void Minimise(const NodeState& n) {
    for (size_t i = chosen_.size(); i-- > 0;) {
      trial_ = chosen_;
      trial_.erase(trial_.begin() + static_cast<std::ptrdiff_t>(i));
      if (FitsWith(n, trial_)) chosen_.swap(trial_);
    }
  }

  // Step: keeps n's set if it is the cheapest so far. True when nothing can beat it: one
  // victim of the cheapest rank and class that frees no more than the need.
  bool Keep(const NodeState& n) {
    Cost c;
    for (const Local& l : chosen_) {
      c.max_rank = std::max(c.max_rank, l.rank);
      c.max_cls = std::max(c.max_cls, l.cls);
      c.milli += l.milli;
    }
    c.victims = chosen_.size();
    if (best_node_.valid() && !(c < best_cost_)) return false;
    best_cost_ = c;
    best_set_ = chosen_;
    best_node_ = n.id;
    // The cheapest class any node could offer: elastic tasks (class 0) when some workload
    // has them, else borrowed work for a preemptor that reaches other queues, else lower
    // priority. An inference preemptor that reaches no other queue has only rank 1.
    const bool others = reach_ != Scheduler::Impl::Reach::kOwnQueue;
    const int cheapest_rank = !others && w_.spec.kind == core::WorkloadKind::kInference ? 1 : 0;
    const int cheapest_cls = !s_.elastic_extras_.empty() ? 0 : others ? 1 : 2;
    return c.victims == 1 &&
           std::pair(c.max_rank, c.max_cls) <= std::pair(cheapest_rank, cheapest_cls) &&
           c.milli <= w_.task_milli();
  }

  // Whether w fits on a scratch copy of n with `set` gone.
  bool FitsWith(const NodeState& n, const std::vector<Local>& set) const {
    NodeState copy = n;
    for (const Local& l : set) {
      for (const TaskRec& r : l.w->tasks) {
        if (r.node == n.id && Releases(l, r)) ReleaseOnCopy(copy, l.w->spec.task, r.gpus);
      }
    }
    return Fits(copy, t_, w_.id, access_);
  }

  // The best set as victims (a whole workload: all of its staying tasks).
  std::vector<Victim> Victims() const {
    std::vector<Victim> out;
    for (const Local& l : best_set_) {
      Victim v{l.w, l.cls, {}, l.milli, l.rank};
      for (const TaskRec& r : l.w->tasks) {
        if (Releases(l, r)) v.tasks.push_back(r.index);
      }
      out.push_back(std::move(v));
    }
    return out;
  }

  Scheduler::Impl& s_;
  const WorkloadRec& w_;
  const GpuModelId m_;
  const Scheduler::Impl::Reach reach_;
  const Time now_;
  const ReservationAccess access_;
  TaskRequest t_;
  std::vector<Local> local_, chosen_, trial_, best_set_;
  NodeId best_node_;
  Cost best_cost_;
  std::vector<std::pair<uint32_t, int64_t>> taken_;  // queue -> milli chosen
  std::vector<Victim> scratch_;
};

}  // namespace

// A preemptor that fits on one node needs victims on one node only: each node is judged on
// a scratch copy of its free state (greedy in cost order, then every unneeded victim
// dropped), without touching the cluster or allocating. O(nodes x tasks per node) at
// worst; the scan starts where the last one succeeded and stops once an option as cheap
// as any can be (one victim of the cheapest class) is found.
std::optional<std::vector<Scheduler::Impl::Victim>> Scheduler::Impl::PreemptOnOneNode(
    const WorkloadRec& w, GpuModelId m, Reach reach, Time now, ReservationAccess access) {
  return OneNodeSearch(*this, w, m, reach, now, access).Run();
}

// Whether w could have any victim on model m at all, in O(queues): most failed placements
// are not entitled to preempt, and this keeps them from scanning the cluster.
bool Scheduler::Impl::AnyVictimPossible(const WorkloadRec& w, GpuModelId m, Reach reach) {
  std::erase_if(elastic_extras_, [&](WorkloadId id) {
    const WorkloadRec* v = Find(id);
    return v == nullptr || v->state != WorkloadState::kRunning ||
           v->staying_tasks() <= v->spec.min_tasks;
  });
  if (!elastic_extras_.empty()) return true;
  const QueueRec& own = queues_[w.spec.queue.value()];
  if (!own.running_priorities.empty() && own.running_priorities.begin()->first < w.spec.priority) {
    return true;
  }
  if (reach == Reach::kOwnQueue) return false;
  for (size_t i = 0; i < queues_.size(); ++i) {
    const QueueRec& r = queues_[i];
    if (r.present && r.leaf && QueueId(static_cast<uint32_t>(i)) != w.spec.queue &&
        Borrowing(QueueId(static_cast<uint32_t>(i)), m, 0) &&
        (reach == Reach::kReclaim || (!r.running_priorities.empty() &&
                                      r.running_priorities.begin()->first < w.spec.priority))) {
      return true;
    }
  }
  return false;
}

namespace {

// The cheapest victim set found so far, and where.
struct Choice {
  std::optional<std::vector<Victim>> set;
  Cost cost;
  GpuModelId model;
  bool in_quota = false;
  void Consider(std::optional<std::vector<Victim>> s, GpuModelId m, bool q) {
    if (s && !s->empty() && (!set || CostOf(*s) < cost)) {
      cost = CostOf(*s);
      set = std::move(s);
      model = m;
      in_quota = q;
    }
  }
};

// Step (gangs): the victims gang w may take on model m, in cost order. A borrower's
// victims are allowed, cheapest first, while its queue stays at or above its guarantee
// with all of them gone (a workload's elastic tasks and the workload as a whole are
// counted once).
std::vector<Victim> AllowedGangVictims(Scheduler::Impl& s, const WorkloadRec& w, GpuModelId m,
                                       Scheduler::Impl::Reach reach, Time now) {
  std::vector<Victim> cands;
  for (WorkloadId vid : s.running_) s.Candidates(w, s.Rec(vid), m, reach, now, cands);
  std::sort(cands.begin(), cands.end(), Scheduler::Impl::CheaperVictim);
  std::map<uint32_t, int64_t> taken;
  std::map<WorkloadId, int64_t> counted;
  std::vector<Victim> allowed;
  for (Victim& v : cands) {
    if (v.w->spec.queue != w.spec.queue) {
      int64_t& already = taken[v.w->spec.queue.value()];
      int64_t& of_w = counted[v.w->id];
      const int64_t adds = v.cls == 0 ? v.milli : std::max<int64_t>(0, v.milli - of_w);
      if (!s.Reclaimable(v.w->spec.queue, m, already + adds)) continue;
      already += adds;
      of_w += adds;
    }
    allowed.push_back(std::move(v));
  }
  return allowed;
}

// Step (gangs): the allowed victims of each rack (a victim is listed in every rack it
// has tasks to stop in), so that victims free one domain.
std::vector<std::vector<Victim>> VictimsByRack(const ClusterState& c,
                                               const std::vector<Victim>& allowed) {
  std::vector<uint32_t> rack_of(c.nodes().size(), UINT32_MAX);
  for (const NodeState& n : c.nodes()) {
    if (n.present) rack_of[n.id.value()] = n.rack;
  }
  std::vector<std::vector<Victim>> per(c.rack_count());
  for (const Victim& v : allowed) {
    uint32_t last = UINT32_MAX;
    for (const TaskRec& t : v.w->tasks) {
      uint32_t r = rack_of[t.node.value()];
      if (r == UINT32_MAX || r == last) continue;
      if (std::find(v.tasks.begin(), v.tasks.end(), t.index) == v.tasks.end()) continue;
      if (!per[r].empty() && per[r].back().w == v.w && per[r].back().cls == v.cls &&
          per[r].back().tasks == v.tasks) {
        continue;  // the same victim, on another node of this rack
      }
      per[r].push_back(v);
      last = r;
    }
  }
  return per;
}

}  // namespace

// Tries every model w may use: one node's victims for a one-node preemptor, otherwise one
// rack at a time, then anywhere; the cheapest set wins and its eviction starts.
bool Scheduler::Impl::Preempt(WorkloadRec& w, Plan& plan, ReservationAccess access) {
  if (!config_.preemption) return false;
  if (w.spec.task.gpu_count == 0) return false;  // CPU-only work does not preempt
  const QueueId q = w.spec.queue;
  const int64_t need = w.task_milli() * w.spec.min_tasks;
  const bool one_node =
      w.spec.min_tasks == 1 &&
      !(w.spec.topology.required && w.spec.topology.level == core::TopologyLevel::kNvlink);
  Choice best;
  for (uint32_t mi = 0; mi < cluster_.model_bound(); ++mi) {
    const GpuModelId m(mi);
    if (!w.spec.task.models.Accepts(m) || cluster_.capacity_milli(m) < need) continue;
    if (!WithinLimit(q, m, need)) continue;
    // In quota for CPU and memory too where the queue guarantees them (as in the cycle).
    const bool in_quota =
        InQuota(q, m, need) && HostInQuota(q, w.spec.task.milli_cpu * w.spec.min_tasks,
                                           w.spec.task.memory_mib * w.spec.min_tasks);
    const Reach reach = in_quota        ? Reach::kReclaim
                        : MayHarvest(w) ? Reach::kHarvest
                                        : Reach::kOwnQueue;
    if (!AnyVictimPossible(w, m, reach)) continue;
    // A harvest borrows: what the victims do not free comes from idle GPUs, which may not
    // eat into the unused guarantee of queues that do not lend (as in the cycle).
    auto consider = [&](std::optional<std::vector<Victim>> set) {
      if (set && reach == Reach::kHarvest && !KeepsHeldBack(q, m, need, *set)) return;
      best.Consider(std::move(set), m, in_quota);
    };
    if (one_node) {
      consider(PreemptOnOneNode(w, m, reach, plan.now, access));
      continue;
    }
    const std::vector<Victim> allowed = AllowedGangVictims(*this, w, m, reach, plan.now);
    if (allowed.empty()) continue;
    for (const std::vector<Victim>& rack : VictimsByRack(cluster_, allowed)) {
      if (!rack.empty()) consider(MinimalSet(w, m, rack, access));
    }
    if (!best.set) consider(MinimalSet(w, m, allowed, access));
  }
  if (!best.set) return false;
  StartEviction(w, *best.set, best.model, best.in_quota ? need : 0, access, plan);
  return true;
}

// Step: evicts `victims` for w. Where w will run once they are gone, those GPUs (free
// ones included) are held for it from now on, so that nothing placed later takes the
// free part of its room; an in-quota preemptor claims `claim` of its guarantee.
void Scheduler::Impl::StartEviction(WorkloadRec& w, const std::vector<Victim>& victims,
                                    GpuModelId m, int64_t claim, ReservationAccess access,
                                    Plan& plan) {
  // A one-task preemptor whose victims share a node runs there: its room is found on that
  // node only (a policy that draws at random could otherwise pick another node).
  std::vector<NodeId> victim_nodes;
  for (const Victim& v : victims) {
    for (const TaskRec& t : v.w->tasks) {
      if (std::find(v.tasks.begin(), v.tasks.end(), t.index) != v.tasks.end() &&
          std::find(victim_nodes.begin(), victim_nodes.end(), t.node) == victim_nodes.end()) {
        victim_nodes.push_back(t.node);
      }
    }
  }
  for (const Victim& v : victims) Free(v);
  std::optional<std::vector<TaskPlacement>> target;
  const bool nvlink =
      w.spec.topology.required && w.spec.topology.level == core::TopologyLevel::kNvlink;
  if (w.spec.min_tasks == 1 && victim_nodes.size() == 1 && !nvlink) {
    TaskRequest t = w.spec.task;
    t.models = ModelSet::Of(m);
    if (auto p =
            ChooseNode(cluster_, *policy_, node_choice_, t, w.id, access, rng_, &victim_nodes)) {
      target = std::vector<TaskPlacement>{*p};
    }
  } else {
    PendingReason ignored;
    target = PlaceGang(w, ModelSet::Of(m), w.spec.min_tasks, access, ignored);
    if (target) Unallocate(w, *target);
  }
  for (auto it = victims.rbegin(); it != victims.rend(); ++it) Unfree(*it);
  ledger_.StartPreemption(w.id);  // a head-of-line reservation gives way to the victims' GPUs
  Evict(w, victims, plan);
  if (target) {
    for (const TaskPlacement& p : *target) ledger_.HoldGpus(w.id, p.node, p.gpus);
  }
  if (claim > 0) ledger_.AddClaim(w.id, w.spec.queue, m, claim);
}

void Scheduler::Impl::Evict(WorkloadRec& w, const std::vector<Victim>& victims, Plan& plan) {
  auto whole = [&](const WorkloadRec* r) {
    return std::any_of(victims.begin(), victims.end(),
                       [&](const Victim& v) { return v.w == r && v.cls != 0; });
  };
  for (const Victim& v : victims) {
    WorkloadRec& r = *v.w;
    if (v.cls == 0 && whole(&r)) continue;  // the whole workload goes anyway
    // Another queue's work taken for an inference replica is harvested, whether the
    // replica reclaims its guarantee or harvests beyond it (see Candidates).
    const bool harvested =
        r.spec.queue != w.spec.queue && w.spec.kind == core::WorkloadKind::kInference;
    EvictionReason reason = v.cls == 3   ? EvictionReason::kReservationReady
                            : v.cls == 2 ? EvictionReason::kPriority
                            : r.spec.queue == w.spec.queue && r.spec.priority < w.spec.priority
                                ? EvictionReason::kPriority
                            : harvested ? EvictionReason::kHarvested
                                        : EvictionReason::kReclaimGuarantee;
    for (TaskRec& t : r.tasks) {
      if (std::find(v.tasks.begin(), v.tasks.end(), t.index) == v.tasks.end()) continue;
      GPUORCH_CHECK(!t.stopping);  // Candidates offers staying tasks only
      MarkStopping(r, t);
      ledger_.Link(w.id, r.id, t.index);
    }
    if (v.cls == 0) {
      // One resize per workload: its elastic tasks chosen one by one stop together.
      if (!plan.resizes.empty() && plan.resizes.back().workload == r.id &&
          plan.resizes.back().preemptor == w.id) {
        plan.resizes.back().tasks.insert(plan.resizes.back().tasks.end(), v.tasks.begin(),
                                         v.tasks.end());
      } else {
        plan.resizes.push_back(Resize{r.id, v.tasks, reason, w.id, r.spec.grace_period});
      }
    } else {
      // Tasks that were already stopping (a resize for someone else) keep their preemptor;
      // the workload as a whole now leaves.
      for (TaskRec& t : r.tasks) MarkStopping(r, t);
      r.state = WorkloadState::kEvicting;
      plan.evictions.push_back(Eviction{r.id, reason, w.id, r.spec.grace_period});
    }
  }
}

}  // namespace gpuorch::sched
