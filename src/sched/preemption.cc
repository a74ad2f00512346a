// Preemption: when entitled work does not fit, evict the cheapest set of victims.
//
// Who may be a victim (never non-preemptible work, never work younger than min_runtime):
//   class 0: elastic tasks beyond min_tasks (taken back by a resize, the workload keeps
//            running);
//   class 1: work of another queue that is borrowing (its queue uses more than its guarantee
//            of that model, counting victims already chosen), for an in-quota preemptor;
//   class 2: lower-priority work of the preemptor's own queue;
//   class 3: work that runs on GPUs lent from the preemptor's head-of-line reservation.
// Cost order: class, then priority (lowest first), then youngest first. Candidates are
// tried per topology domain, narrowest first (a node when the need fits one node, then a
// rack, then the cluster), so that victims free one domain rather than scattered GPUs; the
// cheapest option wins (highest class used, then number of victims, then GPUs freed), and
// within it every victim the preemptor does not need is dropped.
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
    auto placed = PlaceGang(w, m, w.spec.min_tasks, may_use_lent, ignored);
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
    auto placed = PlaceGang(w, m, w.spec.min_tasks, may_use_lent, ignored);
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

bool Scheduler::Impl::Preempt(WorkloadRec& w, Plan& plan) {
  if (!config_.preemption) return false;
  const QueueId q = w.spec.queue;
  const int64_t need = w.task_milli() * w.spec.min_tasks;
  if (w.spec.task.gpu_count == 0) return false;  // CPU-only work does not preempt
  std::optional<std::vector<Victim>> best;
  Cost best_cost;
  for (uint32_t mi = 0; mi < cluster_.model_bound(); ++mi) {
    GpuModelId m(mi);
    if (!w.spec.task.models.Accepts(m) || cluster_.capacity_milli(m) == 0) continue;
    if (cluster_.capacity_milli(m) < need || !WithinLimit(q, m, need)) continue;
    const bool in_quota = InQuota(q, m, need);
    std::vector<Victim> cands;
    for (WorkloadId vid : running_) {
      WorkloadRec& v = workloads_[vid.value()];
      if (v.state != WorkloadState::kRunning || v.model != m || !v.spec.preemptible) continue;
      if (plan.now - v.start_time < v.spec.min_runtime || v.id == w.id) continue;
      const bool lower = v.spec.queue == q && v.spec.priority < w.spec.priority;
      const bool borrowed = in_quota && v.spec.queue != q && Borrowing(v.spec.queue, m, 0);
      int32_t extra = v.live_tasks() - v.spec.min_tasks;
      if (extra > 0 && (lower || borrowed || in_quota)) {
        Victim e{&v, 0, {}, 0};
        std::vector<int32_t> idx;
        for (const TaskRec& t : v.tasks) idx.push_back(t.index);
        std::sort(idx.rbegin(), idx.rend());
        e.tasks.assign(idx.begin(), idx.begin() + extra);
        e.milli = v.task_milli() * extra;
        cands.push_back(std::move(e));
      }
      if (lower || borrowed) {
        Victim whole{&v, lower ? 2 : 1, {}, v.task_milli() * v.live_tasks()};
        for (const TaskRec& t : v.tasks) whole.tasks.push_back(t.index);
        cands.push_back(std::move(whole));
      }
    }
    if (cands.empty()) continue;
    std::sort(cands.begin(), cands.end(), [](const Victim& a, const Victim& b) {
      if (a.cls != b.cls) return a.cls < b.cls;
      if (a.w->spec.priority != b.w->spec.priority) return a.w->spec.priority < b.w->spec.priority;
      if (a.w->start_time != b.w->start_time) return a.w->start_time > b.w->start_time;
      return a.w->id > b.w->id;
    });
    // A borrower is a victim only while its queue still borrows after the victims before it.
    std::map<uint32_t, int64_t> taken;
    std::vector<Victim> allowed;
    for (Victim& v : cands) {
      if (v.cls == 1) {
        int64_t& t = taken[v.w->spec.queue.value()];
        if (!Borrowing(v.w->spec.queue, m, t)) continue;
        t += v.milli;
      }
      allowed.push_back(std::move(v));
    }
    // Narrowest domain first: per node when the need fits on one node, then per rack.
    const int32_t per_node = static_cast<int32_t>(core::kMaxGpusPerNode) * core::kMilliGpu;
    std::vector<std::vector<NodeId>> domains;
    if (need <= per_node) {
      for (const NodeState& n : cluster_.nodes()) {
        if (n.schedulable() && n.model == m) domains.push_back({n.id});
      }
    } else {
      for (uint32_t r = 0; r < cluster_.rack_count(); ++r)
        domains.push_back(cluster_.rack_nodes(r));
    }
    std::vector<uint32_t> on_domain;  // scratch: node -> domain index
    for (int pass = 0; pass < 2 && !best; ++pass) {
      if (pass == 0) {
        on_domain.assign(cluster_.nodes().size(), UINT32_MAX);
        for (uint32_t d = 0; d < domains.size(); ++d) {
          for (NodeId n : domains[d]) on_domain[n.value()] = d;
        }
        std::vector<std::vector<Victim>> per(domains.size());
        for (const Victim& v : allowed) {
          std::vector<uint32_t> touched;
          for (const TaskRec& t : v.w->tasks) {
            if (std::find(v.tasks.begin(), v.tasks.end(), t.index) == v.tasks.end()) continue;
            uint32_t d = on_domain[t.node.value()];
            if (d != UINT32_MAX && std::find(touched.begin(), touched.end(), d) == touched.end()) {
              touched.push_back(d);
              per[d].push_back(v);
            }
          }
        }
        for (uint32_t d = 0; d < domains.size(); ++d) {
          if (per[d].empty()) continue;
          auto set = MinimalSet(w, m, per[d], false);
          if (set && (!best || CostOf(*set) < best_cost)) {
            best_cost = CostOf(*set);
            best = std::move(set);
          }
        }
      } else {
        // Fall back to victims anywhere (scattered), still minimal.
        auto set = MinimalSet(w, m, allowed, false);
        if (set && (!best || CostOf(*set) < best_cost)) {
          best_cost = CostOf(*set);
          best = std::move(set);
        }
      }
    }
  }
  if (!best || best->empty()) return false;
  Evict(w, *best, plan);
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
