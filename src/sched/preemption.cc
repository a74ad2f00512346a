// Preemption: when entitled work does not fit, evict the cheapest set of victims.
//
// Who may be a victim (never non-preemptible work, never work younger than min_runtime):
//   class 0: elastic tasks beyond min_tasks (taken back by a resize, the workload keeps
//            running);
//   class 1: work of another queue that borrows, for an in-quota preemptor. Which of a
//            queue's workloads borrow: in the queue's order (priority, then age), those
//            past its guarantee; the ones inside it are never victims of a reclaim, and a
//            victim is taken only while its queue still borrows (counting work already
//            being evicted and victims already chosen);
//   class 2: lower-priority work of the preemptor's own queue;
//   class 3: work that runs on GPUs lent from the preemptor's head-of-line reservation.
// Cost order: class, then priority (lowest first), then youngest first.
// Where: a preemptor that fits on one node gets its victims from one node (each node judged
// on a scratch copy of its free state); a gang is tried one rack at a time, then anywhere.
// The cheapest option wins (highest class used, then number of victims, then GPUs freed),
// and within it every victim the preemptor does not need is dropped. The one-node search
// starts where the last one succeeded and stops at an option nothing can beat (one victim
// of the cheapest class freeing no more than the need): between equally cheap options on
// different nodes the first found wins; age orders victims within a node. So victims free one
// topology domain rather than scattered GPUs. A preemptor's request counts against its
// queue's guarantee from the moment it evicts (a claim), so that preemptors of one queue
// cannot together take more than the guarantee.
#include <algorithm>
#include <map>

#include "sched/scheduler_impl.h"

namespace gpuorch::sched {

namespace {

struct Cost {
  int max_cls = 0;
  size_t victims = 0;
  int64_t milli = 0;
  auto operator<=>(const Cost&) const = default;
};

Cost CostOf(const std::vector<Scheduler::Impl::Victim>& set) {
  Cost c;
  for (const auto& v : set) {
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
      if (t.index == i) cluster_.Release(t.node, v.w->spec.task, t.gpus);
    }
  }
}

void Scheduler::Impl::Unfree(const Victim& v) {
  for (int32_t i : v.tasks) {
    for (const TaskRec& t : v.w->tasks) {
      if (t.index == i) cluster_.Allocate(t.node, v.w->spec.task, t.gpus);
    }
  }
}

std::optional<std::vector<Scheduler::Impl::Victim>> Scheduler::Impl::MinimalSet(
    const WorkloadRec& w, GpuModelId m, const std::vector<Victim>& cands, bool may_use_lent) {
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
    auto placed = PlaceGang(w, ModelSet::Of(m), w.spec.min_tasks, may_use_lent, ignored);
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
    auto placed = PlaceGang(w, ModelSet::Of(m), w.spec.min_tasks, may_use_lent, ignored);
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
void Scheduler::Impl::Candidates(const WorkloadRec& w, WorkloadRec& v, GpuModelId m, bool in_quota,
                                 Time now, std::vector<Victim>& out) const {
  if (v.state != WorkloadState::kRunning || v.model != m || !v.spec.preemptible) return;
  if (now - v.start_time < v.spec.min_runtime || v.id == w.id) return;
  const QueueId q = w.spec.queue;
  const bool same = v.spec.queue == q;
  const bool lower = same && v.spec.priority < w.spec.priority;
  // Another queue's work is reclaimable only if it is one of that queue's borrowing
  // workloads (see ClassifyBorrowers) and, when chosen, the queue still borrows.
  const bool borrowed = in_quota && !same && v.borrowing && Borrowing(v.spec.queue, m, 0);
  const int32_t extra = v.live_tasks() - v.spec.min_tasks;
  if (extra > 0 && (same ? (lower || in_quota) : borrowed)) {
    Victim e{&v, 0, {}, v.task_milli() * extra};
    for (const TaskRec& t : v.tasks) e.tasks.push_back(t.index);
    std::sort(e.tasks.rbegin(), e.tasks.rend());
    e.tasks.resize(static_cast<size_t>(extra));
    out.push_back(std::move(e));
  }
  if (lower || borrowed) {
    Victim whole{&v, lower ? 2 : 1, {}, v.task_milli() * v.live_tasks()};
    for (const TaskRec& t : v.tasks) whole.tasks.push_back(t.index);
    out.push_back(std::move(whole));
  }
}

namespace {

bool CheaperVictim(const Scheduler::Impl::Victim& a, const Scheduler::Impl::Victim& b) {
  if (a.cls != b.cls) return a.cls < b.cls;
  if (a.w->spec.priority != b.w->spec.priority) return a.w->spec.priority < b.w->spec.priority;
  if (a.w->start_time != b.w->start_time) return a.w->start_time > b.w->start_time;
  return a.w->id > b.w->id;
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

// A preemptor that fits on one node needs victims on one node only: each node is judged on
// a scratch copy of its free state (greedy in cost order, then every unneeded victim
// dropped), without touching the cluster or allocating. O(nodes x tasks per node) at
// worst; the scan starts where the last one succeeded and stops once an option as cheap
// as any can be (one victim of the cheapest class) is found.
std::optional<std::vector<Scheduler::Impl::Victim>> Scheduler::Impl::PreemptOnOneNode(
    const WorkloadRec& w, GpuModelId m, bool in_quota, Time now, bool may_use_lent) {
  TaskRequest t = w.spec.task;
  t.models = ModelSet::Of(m);
  const int cheapest_possible = in_quota ? 1 : 2;
  const int64_t need = w.task_milli();
  // A candidate on one node: a whole workload, or (class 0) its elastic tasks, which are
  // the tasks with index >= min_extra.
  struct Local {
    WorkloadRec* w;
    int cls;
    int32_t min_extra;
    int64_t milli;
  };
  auto releases = [](const Local& l, const TaskRec& r) {
    return l.cls != 0 || r.index >= l.min_extra;
  };
  std::vector<Local> local, chosen, trial, best_set;
  NodeId best_node;
  Cost best_cost;
  std::vector<std::pair<uint32_t, int64_t>> taken;  // queue -> milli chosen (borrowing check)
  std::vector<Victim> scratch;
  auto fits_with = [&](const NodeState& n, const std::vector<Local>& set) {
    NodeState copy = n;
    for (const Local& l : set) {
      for (const TaskRec& r : l.w->tasks) {
        if (r.node == n.id && releases(l, r)) ReleaseOnCopy(copy, l.w->spec.task, r.gpus);
      }
    }
    return Fits(copy, t, w.id, may_use_lent);
  };
  const auto& nodes = cluster_.nodes();
  if (preempt_cursor_.size() <= m.value()) preempt_cursor_.resize(m.value() + 1, 0);
  const size_t start = nodes.empty() ? 0 : preempt_cursor_[m.value()] % nodes.size();
  for (size_t k = 0; k < nodes.size(); ++k) {
    const NodeState& n = nodes[(start + k) % nodes.size()];
    if (!n.schedulable() || n.model != m || n.gpu_count < t.gpu_count) continue;
    const auto& on_node = node_tasks_[n.id.value()];
    if (on_node.empty()) continue;
    local.clear();
    for (size_t i = 0; i < on_node.size(); ++i) {
      WorkloadRec& v = workloads_[on_node[i].first.value()];
      bool seen = false;
      for (size_t j = 0; j < i && !seen; ++j) seen = on_node[j].first == v.id;
      if (seen) continue;
      scratch.clear();
      Candidates(w, v, m, in_quota, now, scratch);
      for (const Victim& c : scratch) {
        Local l{&v, c.cls, 0, c.milli};
        if (c.cls == 0) {  // only elastic tasks on this node help
          l.min_extra = *std::min_element(c.tasks.begin(), c.tasks.end());
          int64_t here = 0;
          for (const TaskRec& r : v.tasks) here += r.node == n.id && r.index >= l.min_extra;
          if (here == 0) continue;
          l.milli = v.task_milli() * here;
        }
        local.push_back(l);
      }
    }
    if (local.empty()) continue;
    std::sort(local.begin(), local.end(), [](const Local& a, const Local& b) {
      if (a.cls != b.cls) return a.cls < b.cls;
      if (a.w->spec.priority != b.w->spec.priority) return a.w->spec.priority < b.w->spec.priority;
      if (a.w->start_time != b.w->start_time) return a.w->start_time > b.w->start_time;
      return a.w->id > b.w->id;
    });
    chosen.clear();
    taken.clear();
    bool fits = false;
    for (const Local& l : local) {
      if (std::any_of(chosen.begin(), chosen.end(), [&](const Local& c) { return c.w == l.w; })) {
        continue;  // already going as a whole or by its elastic tasks
      }
      if (l.w->spec.queue != w.spec.queue) {  // never below its guarantee
        auto it = std::find_if(taken.begin(), taken.end(),
                               [&](const auto& e) { return e.first == l.w->spec.queue.value(); });
        int64_t already = it == taken.end() ? 0 : it->second;
        if (!Borrowing(l.w->spec.queue, m, already)) continue;
        if (it == taken.end()) {
          taken.emplace_back(l.w->spec.queue.value(), l.milli);
        } else {
          it->second += l.milli;
        }
      }
      chosen.push_back(l);
      if (fits_with(n, chosen)) {
        fits = true;
        break;
      }
    }
    if (!fits) continue;
    for (size_t i = chosen.size(); i-- > 0;) {
      trial = chosen;
      trial.erase(trial.begin() + static_cast<std::ptrdiff_t>(i));
      if (fits_with(n, trial)) chosen.swap(trial);
    }
    Cost c;
    for (const Local& l : chosen) c.max_cls = std::max(c.max_cls, l.cls), c.milli += l.milli;
    c.victims = chosen.size();
    if (!best_node.valid() || c < best_cost) {
      best_cost = c;
      best_set = chosen;
      best_node = n.id;
      // Nothing can beat one victim of the cheapest class that frees no more than the need.
      if (c.victims == 1 && c.max_cls <= cheapest_possible && c.milli <= need) break;
    }
  }
  if (!best_node.valid()) return std::nullopt;
  preempt_cursor_[m.value()] = best_node.value();
  std::vector<Victim> out;
  for (const Local& l : best_set) {
    Victim v{l.w, l.cls, {}, l.milli};
    for (const TaskRec& r : l.w->tasks) {
      if (l.cls != 0 || (r.node == best_node && r.index >= l.min_extra)) v.tasks.push_back(r.index);
    }
    out.push_back(std::move(v));
  }
  return out;
}

// Marks, once per cycle, the running workloads that borrow: per queue and model, in the
// queue's own order (priority, then age), those whose cumulative usage passes the
// guarantee. Reclaim takes only these, so the oldest work inside a guarantee is safe even
// while the queue as a whole borrows (KAI-Scheduler and YuniKorn classify the same way).
void Scheduler::Impl::ClassifyBorrowers() {
  if (classified_cycle_ == cycle_count_) return;
  classified_cycle_ = cycle_count_;
  std::vector<WorkloadRec*> live;
  for (WorkloadId id : running_) {
    WorkloadRec& w = workloads_[id.value()];
    w.borrowing = false;
    if (w.state == WorkloadState::kRunning && w.spec.task.gpu_count > 0) live.push_back(&w);
  }
  std::sort(live.begin(), live.end(), [](const WorkloadRec* a, const WorkloadRec* b) {
    if (a->spec.queue != b->spec.queue) return a->spec.queue < b->spec.queue;
    if (a->model != b->model) return a->model < b->model;
    if (a->spec.priority != b->spec.priority) return a->spec.priority > b->spec.priority;
    if (a->start_time != b->start_time) return a->start_time < b->start_time;
    return a->id < b->id;
  });
  int64_t used = 0;
  for (size_t i = 0; i < live.size(); ++i) {
    WorkloadRec& w = *live[i];
    if (i == 0 || w.spec.queue != live[i - 1]->spec.queue || w.model != live[i - 1]->model) {
      used = 0;
    }
    used += w.task_milli() * w.live_tasks();
    w.borrowing = used > queues_[w.spec.queue.value()].guaranteed[w.model.value()];
  }
}

// Whether w could have any victim on model m at all, in O(queues): most failed placements
// are not entitled to preempt, and this keeps them from scanning the cluster.
bool Scheduler::Impl::AnyVictimPossible(const WorkloadRec& w, GpuModelId m, bool in_quota) {
  std::erase_if(elastic_extras_, [&](WorkloadId id) {
    const WorkloadRec& v = workloads_[id.value()];
    return !v.present || v.state != WorkloadState::kRunning || v.live_tasks() <= v.spec.min_tasks;
  });
  if (!elastic_extras_.empty()) return true;
  const QueueRec& own = queues_[w.spec.queue.value()];
  if (!own.running_priorities.empty() && own.running_priorities.begin()->first < w.spec.priority) {
    return true;
  }
  if (!in_quota) return false;
  for (size_t i = 0; i < queues_.size(); ++i) {
    const QueueRec& r = queues_[i];
    if (r.present && r.leaf && QueueId(static_cast<uint32_t>(i)) != w.spec.queue &&
        Borrowing(QueueId(static_cast<uint32_t>(i)), m, 0)) {
      return true;
    }
  }
  return false;
}

bool Scheduler::Impl::Preempt(WorkloadRec& w, Plan& plan, bool may_use_lent) {
  if (!config_.preemption) return false;
  if (w.spec.task.gpu_count == 0) return false;  // CPU-only work does not preempt
  ClassifyBorrowers();
  const QueueId q = w.spec.queue;
  const int64_t need = w.task_milli() * w.spec.min_tasks;
  const bool one_node =
      w.spec.min_tasks == 1 &&
      !(w.spec.topology.required && w.spec.topology.level == core::TopologyLevel::kNvlink);
  std::optional<std::vector<Victim>> best;
  Cost best_cost;
  GpuModelId best_model;
  bool best_in_quota = false;
  GpuModelId m;
  bool in_quota = false;
  auto consider = [&](std::optional<std::vector<Victim>> set) {
    if (set && !set->empty() && (!best || CostOf(*set) < best_cost)) {
      best_cost = CostOf(*set);
      best = std::move(set);
      best_model = m;
      best_in_quota = in_quota;
    }
  };
  for (uint32_t mi = 0; mi < cluster_.model_bound(); ++mi) {
    m = GpuModelId(mi);
    if (!w.spec.task.models.Accepts(m) || cluster_.capacity_milli(m) < need) continue;
    if (!WithinLimit(q, m, need)) continue;
    // In quota for CPU and memory too where the queue guarantees them (as in the cycle).
    in_quota = InQuota(q, m, need) && HostInQuota(q, w.spec.task.milli_cpu * w.spec.min_tasks,
                                                  w.spec.task.memory_mib * w.spec.min_tasks);
    if (!AnyVictimPossible(w, m, in_quota)) continue;
    if (one_node) {
      consider(PreemptOnOneNode(w, m, in_quota, plan.now, may_use_lent));
      continue;
    }
    // Gangs: candidates in cost order; a borrower is a victim only while its queue still
    // borrows after the victims before it.
    std::vector<Victim> cands;
    for (WorkloadId vid : running_) {
      Candidates(w, workloads_[vid.value()], m, in_quota, plan.now, cands);
    }
    if (cands.empty()) continue;
    std::sort(cands.begin(), cands.end(), CheaperVictim);
    std::map<uint32_t, int64_t> taken;
    std::vector<Victim> allowed;
    for (Victim& v : cands) {
      if (v.w->spec.queue != q) {  // never below its guarantee
        int64_t& already = taken[v.w->spec.queue.value()];
        if (!Borrowing(v.w->spec.queue, m, already)) continue;
        already += v.milli;
      }
      allowed.push_back(std::move(v));
    }
    // One rack at a time first, so that victims free one domain; then anywhere.
    std::vector<uint32_t> rack_of(cluster_.nodes().size(), UINT32_MAX);
    for (const NodeState& n : cluster_.nodes()) {
      if (n.present) rack_of[n.id.value()] = n.rack;
    }
    std::vector<std::vector<Victim>> per(cluster_.rack_count());
    for (const Victim& v : allowed) {
      uint32_t last = UINT32_MAX;
      for (const TaskRec& t : v.w->tasks) {
        uint32_t r = rack_of[t.node.value()];
        if (r == UINT32_MAX || r == last) continue;
        if (std::find(v.tasks.begin(), v.tasks.end(), t.index) == v.tasks.end()) continue;
        if (!per[r].empty() && per[r].back().w == v.w && per[r].back().cls == v.cls) continue;
        per[r].push_back(v);
        last = r;
      }
    }
    for (uint32_t r = 0; r < per.size(); ++r) {
      if (!per[r].empty()) consider(MinimalSet(w, m, per[r], may_use_lent));
    }
    if (!best) consider(MinimalSet(w, m, allowed, may_use_lent));
  }
  if (!best) return false;
  Evict(w, *best, plan);
  if (best_in_quota) Claim(w, best_model, need);
  return true;
}

void Scheduler::Impl::Evict(WorkloadRec& w, const std::vector<Victim>& victims, Plan& plan) {
  auto whole = [&](const WorkloadRec* r) {
    return std::any_of(victims.begin(), victims.end(),
                       [&](const Victim& v) { return v.w == r && v.cls != 0; });
  };
  for (const Victim& v : victims) {
    WorkloadRec& r = *v.w;
    if (v.cls == 0 && whole(&r)) continue;  // the whole workload goes anyway
    r.evicted_for = w.id;
    EvictionReason reason = v.cls == 3   ? EvictionReason::kReservationReady
                            : v.cls == 2 ? EvictionReason::kPriority
                            : r.spec.queue == w.spec.queue && r.spec.priority < w.spec.priority
                                ? EvictionReason::kPriority
                                : EvictionReason::kReclaimGuarantee;
    for (TaskRec& t : r.tasks) {
      if (v.cls == 0 && std::find(v.tasks.begin(), v.tasks.end(), t.index) == v.tasks.end()) {
        continue;
      }
      MarkStopping(r, t);
    }
    if (v.cls == 0) {
      plan.resizes.push_back(Resize{r.id, v.tasks, reason, w.id, r.spec.grace_period});
    } else {
      r.state = WorkloadState::kEvicting;
      plan.evictions.push_back(Eviction{r.id, reason, w.id, r.spec.grace_period});
    }
    ++w.victims_outstanding;
  }
}

bool Scheduler::Impl::ReclaimLent(WorkloadRec& w, Plan& plan) {
  std::vector<Victim> cands;
  for (WorkloadId vid : running_) {
    WorkloadRec& v = workloads_[vid.value()];
    if (v.state != WorkloadState::kRunning || v.lent_from != w.id) continue;
    Victim x{&v, 3, {}, v.task_milli() * v.live_tasks()};
    for (const TaskRec& t : v.tasks) x.tasks.push_back(t.index);
    cands.push_back(std::move(x));
  }
  if (cands.empty()) return false;
  std::sort(cands.begin(), cands.end(), [](const Victim& a, const Victim& b) {
    if (a.w->spec.priority != b.w->spec.priority) return a.w->spec.priority < b.w->spec.priority;
    if (a.w->start_time != b.w->start_time) return a.w->start_time > b.w->start_time;
    return a.w->id > b.w->id;
  });
  GpuModelId m = cands.front().w->model;
  auto set = MinimalSet(w, m, cands, false);
  if (!set || set->empty()) return false;
  Evict(w, *set, plan);
  // From now on the reservation is not lent any more.
  for (NodeId n : w.held_nodes) {
    const NodeState& s = cluster_.node(n);
    if (s.reserved_for == w.id) cluster_.Reserve(n, s.reserved_gpus, w.id, false);
  }
  return true;
}

}  // namespace gpuorch::sched
