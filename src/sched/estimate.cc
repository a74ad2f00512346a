#include "sched/estimate.h"

#include <algorithm>
#include <limits>

#include "sched/scheduler_impl.h"

namespace gpuorch::sched {

CapacityProfile::CapacityProfile(Time now, int64_t free_now, std::vector<Release> releases)
    : now_(now) {
  for (Release& r : releases) r.at = std::max(r.at, now + 1);
  std::sort(releases.begin(), releases.end(), [](const Release& a, const Release& b) {
    if (a.at != b.at) return a.at < b.at;
    return a.by < b.by;
  });
  steps_.reserve(releases.size() + 1);
  steps_.push_back(Step{now, free_now, WorkloadId()});
  for (const Release& r : releases) {
    if (steps_.back().at == r.at) {
      steps_.back().free += r.milli;
    } else {
      steps_.push_back(Step{r.at, steps_.back().free + r.milli, r.by});
    }
  }
}

Time CapacityProfile::Earliest(int64_t milli, Duration duration, WorkloadId* by) const {
  const Duration key = duration > 0 ? duration : std::numeric_limits<Duration>::max();
  Time floor = now_ + 1;
  for (const Floor& f : floors_) {
    if (f.milli <= milli && f.duration <= key) floor = std::max(floor, f.at);
  }
  const Time found = Scan(milli, duration, floor, by);
  const Floor remember{milli, key, found < 0 ? std::numeric_limits<Time>::max() : found};
  if (floors_.size() < kFloors) {
    floors_.push_back(remember);
  } else {
    floors_[next_floor_++ % kFloors] = remember;
  }
  return found;
}

Time CapacityProfile::Scan(int64_t milli, Duration duration, Time floor, WorkloadId* by) const {
  // Two pointers: a candidate start fails at the first step inside its window with too
  // little free, and no start before that step can succeed either, so the scan resumes
  // after it. O(steps).
  auto it = std::lower_bound(steps_.begin() + 1, steps_.end(), floor,
                             [](const Step& s, Time t) { return s.at < t; });
  size_t i = static_cast<size_t>(it - steps_.begin());
  while (i < steps_.size()) {
    if (steps_[i].free < milli) {
      ++i;
      continue;
    }
    const Time start = steps_[i].at;
    const Time end = duration > 0 ? start + duration : std::numeric_limits<Time>::max();
    size_t j = i + 1;
    while (j < steps_.size() && steps_[j].at < end && steps_[j].free >= milli) ++j;
    if (j == steps_.size() || steps_[j].at >= end) {
      if (by != nullptr) *by = steps_[i].by;
      return start;
    }
    i = j + 1;
  }
  return -1;
}

size_t CapacityProfile::Split(Time at, WorkloadId by) {
  if (at <= now_) return 0;
  auto it = std::lower_bound(steps_.begin(), steps_.end(), at,
                             [](const Step& s, Time t) { return s.at < t; });
  if (it != steps_.end() && it->at == at) return static_cast<size_t>(it - steps_.begin());
  const auto index = static_cast<size_t>(it - steps_.begin());
  steps_.insert(it, Step{at, std::prev(it)->free, by});
  return index;
}

void CapacityProfile::Take(Time from, Duration duration, int64_t milli, WorkloadId by) {
  const size_t a = Split(from, WorkloadId());
  const size_t b = duration > 0 ? Split(from + duration, by) : steps_.size();
  for (size_t k = a; k < b; ++k) steps_[k].free -= milli;
}

void CapacityProfile::Add(Time at, int64_t milli, WorkloadId by) {
  floors_.clear();  // more room: earlier answers are no floor any more
  for (size_t k = Split(std::max(at, now_ + 1), by); k < steps_.size(); ++k) {
    steps_[k].free += milli;
  }
}

namespace {

// Where a preemptor's victims stand: when the last of them is due to be gone, and which.
struct VictimsDue {
  WorkloadId preemptor;
  Time due = 0;
  WorkloadId last;
};

// Expected ends are rounded up to a whole minute, as Slurm's backfill does (bf_resolution,
// 60 s by default): a timeline then has at most one step per minute of its horizon, which
// bounds the cost of every query, and a start estimate means nothing to the second.
constexpr Duration kResolution = core::kMinute;

Time RoundUp(Time t) { return t <= 0 ? t : (t + kResolution - 1) / kResolution * kResolution; }

// How long work starting at `start` holds its GPUs on the timeline (<= 0: for ever).
Duration Span(Time start, Duration runtime) {
  return runtime > 0 ? RoundUp(start + runtime) - start : 0;
}

bool WaitsForCapacity(PendingReason r) {
  return r == PendingReason::kNoFit || r == PendingReason::kTopologyUnsatisfiable ||
         r == PendingReason::kBlockedByReservation;
}

// When head-of-line holder `w` is expected to start: the last expected end of the other
// tasks on its reserved nodes. Lent work is evicted once the rest has gone, so it adds only
// its grace period. -1 when a task there has no runtime estimate, or nothing is reserved.
Time HolderEta(const Scheduler::Impl& s, const WorkloadRec& w, Time now, WorkloadId& last) {
  Time eta = now;
  Duration lent_grace = 0;
  bool any = false;
  for (NodeId n : s.ledger_.HoldOf(w.id).nodes) {
    if (!s.cluster_.Has(n) || s.cluster_.node(n).reserved_for != w.id) continue;
    any = true;
    for (auto [wid, task] : s.node_tasks_[n.value()]) {
      const WorkloadRec& r = s.Rec(wid);
      if (r.id == w.id) continue;
      Time end;
      if (r.lent_from == w.id && s.config_.preemption && r.spec.preemptible) {
        lent_grace = std::max(lent_grace, r.spec.grace_period);
        continue;
      } else if (s.ledger_.PreemptorOf(r.id, task).valid()) {
        end = std::max(now, r.stop_due);
      } else if (r.spec.runtime_estimate > 0) {
        end = std::max(now, r.start_time + r.spec.runtime_estimate);
      } else {
        return -1;
      }
      if (end > eta || !last.valid()) {
        eta = std::max(eta, end);
        last = r.id;
      }
    }
  }
  return any ? eta + lent_grace : -1;
}

}  // namespace

void EstimateStarts(Scheduler::Impl& s, const std::vector<WorkloadId>& order, Plan& plan) {
  const Time now = plan.now;
  // Victims chosen by this cycle leave when their grace periods end.
  for (const Eviction& e : plan.evictions) {
    if (WorkloadRec* r = s.Find(e.workload); r != nullptr && e.preemptor.valid()) {
      r->stop_due = now + e.grace_period;
    }
  }
  for (const Resize& z : plan.resizes) {
    if (WorkloadRec* r = s.Find(z.workload)) r->stop_due = now + z.grace_period;
  }
  if (s.config_.estimate_limit <= 0 || plan.pending.empty()) return;

  // Timelines: what running work frees when it is expected to end. Stopping tasks are not
  // counted: what they free is held for their preemptor.
  const uint32_t models = s.cluster_.model_bound();
  std::vector<std::vector<CapacityProfile::Release>> releases(models);
  std::vector<VictimsDue> victims;
  for (WorkloadId id : s.running_) {
    const WorkloadRec& r = s.Rec(id);
    for (const TaskRec& t : r.tasks) {
      const WorkloadId p = t.stopping ? s.ledger_.PreemptorOf(r.id, t.index) : WorkloadId();
      if (p.valid()) victims.push_back(VictimsDue{p, std::max(now, r.stop_due), r.id});
    }
    if (r.state != WorkloadState::kRunning || r.spec.task.gpu_count == 0 ||
        r.spec.runtime_estimate <= 0 || !r.model.valid() || r.model.value() >= models) {
      continue;
    }
    int64_t tasks = 0;
    for (const TaskRec& t : r.tasks) tasks += t.stopping ? 0 : 1;
    if (tasks == 0) continue;
    releases[r.model.value()].push_back(CapacityProfile::Release{
        RoundUp(r.start_time + r.spec.runtime_estimate), tasks * r.task_milli(), r.id});
  }
  // Per preemptor, the victim due last (ties: the lowest id).
  std::sort(victims.begin(), victims.end(), [](const VictimsDue& a, const VictimsDue& b) {
    if (a.preemptor != b.preemptor) return a.preemptor < b.preemptor;
    if (a.due != b.due) return a.due > b.due;
    return a.last < b.last;
  });
  // Free GPUs already held for a preemptor are its own, not anyone's to take.
  std::vector<int64_t> free_now(models);
  for (uint32_t m = 0; m < models; ++m) free_now[m] = s.cluster_.free_milli(GpuModelId(m));
  for (WorkloadId id : s.pending_) {
    const WorkloadRec& w = s.Rec(id);
    const Hold& hold = s.ledger_.HoldOf(w.id);
    if (hold.kind != HoldKind::kPreemption) continue;
    for (NodeId n : hold.nodes) {
      if (!s.cluster_.Has(n)) continue;
      const NodeState& ns = s.cluster_.node(n);
      if (ns.reserved_for != w.id || !ns.schedulable() || ns.model.value() >= models) continue;
      // free_milli counts healthy GPUs only, and so does this.
      const GpuMask held = ns.reserved_gpus & ns.healthy_gpus();
      for (int g = 0; g < ns.gpu_count; ++g) {
        if (held >> g & 1) free_now[ns.model.value()] -= ns.gpu_free[g];
      }
    }
  }
  std::vector<CapacityProfile> profiles;
  profiles.reserve(models);
  for (uint32_t m = 0; m < models; ++m) {
    profiles.emplace_back(now, free_now[m], std::move(releases[m]));
  }

  // The first estimate_limit workloads of the cycle's order that are still pending.
  std::vector<WorkloadRec*> todo;
  for (WorkloadId id : order) {
    if (todo.size() >= static_cast<size_t>(s.config_.estimate_limit)) break;
    WorkloadRec* w = s.Find(id);
    if (w != nullptr && w->state == WorkloadState::kPending) todo.push_back(w);
  }
  auto explanation = [&](WorkloadId id) -> PendingExplanation* {
    auto it =
        std::lower_bound(plan.pending.begin(), plan.pending.end(), id,
                         [](const PendingExplanation& p, WorkloadId x) { return p.workload < x; });
    return it != plan.pending.end() && it->workload == id ? &*it : nullptr;
  };
  auto model_of = [&](const WorkloadRec& w) {
    if (const GpuModelId c = s.ledger_.ClaimOf(w.id).model; c.valid()) return c;
    for (NodeId n : s.ledger_.HoldOf(w.id).nodes) {
      if (s.cluster_.Has(n)) return s.cluster_.node(n).model;
    }
    return GpuModelId();
  };

  // Claims first (preemptors, then holders' reservations), in the cycle's order.
  std::vector<std::pair<GpuModelId, WorkloadId>> holders;  // model reserved -> holder
  for (WorkloadRec* w : todo) {
    PendingExplanation* p = explanation(w->id);
    if (p == nullptr) continue;
    const int64_t need = w->task_milli() * w->spec.min_tasks;
    const GpuModelId m = model_of(*w);
    const bool on_model = m.valid() && m.value() < models;
    if (p->reason == PendingReason::kPreempting) {
      auto it = std::lower_bound(victims.begin(), victims.end(), w->id,
                                 [](const VictimsDue& v, WorkloadId x) { return v.preemptor < x; });
      if (it == victims.end() || it->preemptor != w->id) continue;
      p->estimated_start = it->due;
      p->waiting_for = it->last;
      if (on_model && w->spec.runtime_estimate > 0) {
        profiles[m.value()].Add(RoundUp(it->due + w->spec.runtime_estimate), need, w->id);
      }
    } else if (p->reason == PendingReason::kReserved &&
               s.ledger_.KindOf(w->id) == HoldKind::kHeadOfLine) {
      if (on_model) holders.emplace_back(m, w->id);
      WorkloadId last;
      const Time eta = HolderEta(s, *w, now, last);
      if (eta < 0) continue;
      p->estimated_start = eta;
      p->waiting_for = last;
      if (on_model) profiles[m.value()].Take(eta, Span(eta, w->spec.runtime_estimate), need, w->id);
    }
  }
  // Then the rest, in the cycle's order: each takes its room, so later work comes after it.
  for (WorkloadRec* w : todo) {
    PendingExplanation* p = explanation(w->id);
    if (p == nullptr || !WaitsForCapacity(p->reason) || w->spec.task.gpu_count == 0) continue;
    const int64_t need = w->task_milli() * w->spec.min_tasks;
    Time best = -1;
    GpuModelId best_model;
    WorkloadId best_by;
    for (uint32_t m = 0; m < models; ++m) {
      if (!w->spec.task.models.Accepts(GpuModelId(m)) ||
          s.cluster_.capacity_milli(GpuModelId(m)) == 0) {
        continue;
      }
      WorkloadId by;
      const Time t = profiles[m].Earliest(need, w->spec.runtime_estimate, &by);
      if (t >= 0 && (best < 0 || t < best)) {
        best = t;
        best_model = GpuModelId(m);
        best_by = by;
      }
    }
    if (best < 0) continue;
    profiles[best_model.value()].Take(best, Span(best, w->spec.runtime_estimate), need, w->id);
    p->estimated_start = best;
    p->waiting_for = best_by;
    if (p->reason == PendingReason::kBlockedByReservation) {
      for (auto [m, holder] : holders) {
        if (w->spec.task.models.Accepts(m)) {
          p->waiting_for = holder;
          break;
        }
      }
    }
  }
}

}  // namespace gpuorch::sched
