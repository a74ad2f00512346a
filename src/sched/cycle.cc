// The scheduling cycle: order pending work (in-quota by priority and age, then borrowers by
// weighted dominant share), place each workload as a gang, preempt for entitled work,
// reserve for the head-of-line workload that cannot start, grow elastic workloads from idle
// capacity, and explain every workload left pending.
#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <unordered_map>

#include "sched/estimate.h"
#include "sched/fair_share.h"
#include "sched/scheduler_impl.h"

namespace gpuorch::sched {

namespace {

// Workloads with equal keys get the same placement answer within a cycle: once one fails,
// capacity only shrinks until the cycle ends, so the others fail too (Borg's equivalence
// classes; Kubernetes' pod signatures).
struct ShapeKey {
  uint32_t queue;
  int32_t gpu_count, gpu_milli;
  int64_t gpu_memory, cpu, memory;
  uint64_t models;
  int32_t min_tasks;
  uint8_t level;
  bool required, preemptible, lent;
  bool inference;  // an inference replica may harvest where other work may not preempt
  bool operator==(const ShapeKey&) const = default;
};

struct ShapeHash {
  size_t operator()(const ShapeKey& k) const {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    mix(k.queue);
    mix(static_cast<uint64_t>(k.gpu_count) << 32 | static_cast<uint32_t>(k.gpu_milli));
    mix(static_cast<uint64_t>(k.gpu_memory));
    mix(static_cast<uint64_t>(k.cpu));
    mix(static_cast<uint64_t>(k.memory));
    mix(k.models);
    mix(static_cast<uint64_t>(k.min_tasks));
    mix(uint64_t{k.inference} << 11 | uint64_t{k.level} << 3 | uint64_t{k.required} << 2 |
        uint64_t{k.preemptible} << 1 | uint64_t{k.lent});
    return static_cast<size_t>(h);
  }
};

// The key of a shape with its CPU and memory left out (see CycleContext::no_fit).
ShapeKey WithoutHost(ShapeKey k) {
  k.cpu = k.memory = 0;
  return k;
}

bool Waits(PendingReason r) {
  return r == PendingReason::kNoFit || r == PendingReason::kTopologyUnsatisfiable ||
         r == PendingReason::kPreempting || r == PendingReason::kReserved ||
         r == PendingReason::kBlockedByReservation;
}

ShapeKey KeyOf(const WorkloadRec& w, bool may_use_lent) {
  const TaskRequest& t = w.spec.task;
  return ShapeKey{w.spec.queue.value(),
                  t.gpu_count,
                  t.gpu_milli,
                  t.gpu_memory_mib,
                  t.milli_cpu,
                  t.memory_mib,
                  t.models.bits(),
                  w.spec.min_tasks,
                  static_cast<uint8_t>(w.spec.topology.level),
                  w.spec.topology.required,
                  w.spec.preemptible,
                  may_use_lent,
                  w.spec.kind == core::WorkloadKind::kInference};
}

// Pending work in order: priority, then age, then id.
bool ByPriorityAge(const WorkloadRec* a, const WorkloadRec* b) {
  if (a->spec.priority != b->spec.priority) return a->spec.priority > b->spec.priority;
  if (a->spec.submit_time != b->spec.submit_time) return a->spec.submit_time < b->spec.submit_time;
  return a->id < b->id;
}

}  // namespace

// The standing of one workload in this cycle.
struct Scheduler::Impl::Entitlement {
  // Models it may run on now, in the order to try them: in-quota first, then borrowed.
  std::vector<GpuModelId> in_quota, borrow;
  // Lent GPUs go to work that can be evicted when the holder is ready, or that ends
  // before the reservation is due (EASY backfill).
  bool may_use_lent = false;
  // The reservations of others it may take: lent ones if it may use lent GPUs, and a
  // borrower's reservation does not stand in the way of in-quota work.
  ReservationAccess Access(bool entitled) const {
    return static_cast<ReservationAccess>((may_use_lent ? kUseLent : 0) |
                                          (entitled ? kUseBorrowed : 0));
  }
  GpuModelId first_model() const { return in_quota.empty() ? borrow.front() : in_quota.front(); }
};

// What one cycle carries from workload to workload.
struct Scheduler::Impl::CycleContext {
  Plan& plan;
  Time now;
  // Shapes that failed this cycle, and why (see ShapeKey).
  std::unordered_map<ShapeKey, PendingReason, ShapeHash> failed;
  // Dominance: per shape without its CPU and memory (cpu = memory = 0 in the key), the
  // (CPU, memory) of those that found no fit anywhere (kNoFit), the minimal ones only. A
  // workload asking at least as much CPU and memory as one of them finds none either:
  // capacity only shrinks until the cycle ends. This is what answers most of a backlog
  // when every workload asks for its own CPU and memory, and no two shapes are equal.
  std::unordered_map<ShapeKey, std::vector<std::pair<int64_t, int64_t>>, ShapeHash> no_fit;
  // MIG requests that found no instance and no layout change this cycle, and why: (compute
  // slices, GPU memory, CPU, memory, models, reservation access, and the workload when it
  // holds a reservation of its own). Free room only shrinks in a cycle.
  std::map<std::tuple<int, int64_t, int64_t, int64_t, uint64_t, int, uint32_t>, PendingReason>
      mig_failed;

  bool Dominated(const ShapeKey& host_free, int64_t cpu, int64_t memory) const {
    auto it = no_fit.find(host_free);
    if (it == no_fit.end()) return false;
    for (const auto& [c, m] : it->second) {
      if (c <= cpu && m <= memory) return true;
    }
    return false;
  }
  void AddNoFit(const ShapeKey& host_free, int64_t cpu, int64_t memory) {
    std::vector<std::pair<int64_t, int64_t>>& frontier = no_fit[host_free];
    std::erase_if(frontier, [&](const auto& e) { return e.first >= cpu && e.second >= memory; });
    frontier.emplace_back(cpu, memory);
  }
  // Head-of-line reservations: work that ends before the earliest of them is due may use
  // their lent GPUs (EASY backfill against every holder at once).
  Time hol_eta = INT64_MAX;
};

// One cycle: ready holders first, then in-quota work by priority and age, then borrowers
// by share; then FinishCycle.
Plan Scheduler::Impl::Cycle(Time now) {
  Plan plan;
  plan.now = now;
  Decay(now);
  plan.evictions = std::move(queued_evictions_);
  queued_evictions_.clear();

  CycleContext ctx{plan, now, {}, {}, {}, INT64_MAX};
  for (WorkloadId h : ledger_.holders()) {
    ctx.hol_eta = std::min(ctx.hol_eta, ledger_.HoldOf(h).eta);
  }
  const std::vector<WorkloadRec*> closed = AttemptReadyHolders(ctx);

  // In-quota work: priority, then age, then id.
  std::vector<WorkloadRec*> ordered;
  ordered.reserve(pending_.size());
  for (WorkloadId id : pending_) ordered.push_back(&Rec(id));
  std::sort(ordered.begin(), ordered.end(), ByPriorityAge);
  std::vector<std::vector<WorkloadRec*>> over(queues_.size());
  for (WorkloadRec* w : ordered) {
    if (InQuotaNow(*w)) {
      Attempt(ctx, *w);
    } else {
      over[w->spec.queue.value()].push_back(w);  // keeps priority/age order
    }
  }
  // Borrowers: hierarchical DRF (see BorrowerOrder). From the root down, the child with the
  // lowest weighted dominant share among its siblings that has borrowers below it, down to
  // a leaf, whose next workload (by priority and age) goes.
  std::vector<QueueId> parents(queues_.size());
  std::vector<size_t> waiting(queues_.size());
  for (uint32_t q = 0; q < queues_.size(); ++q) {
    if (queues_[q].present) parents[q] = queues_[q].spec.parent;
    waiting[q] = over[q].size();
  }
  const BorrowerOrder::ShareFn share = [this](uint32_t q) { return Share(QueueId(q)); };
  BorrowerOrder order(parents, waiting, share);
  std::vector<size_t> next(queues_.size(), 0);
  while (std::optional<uint32_t> q = order.Pop()) {
    Attempt(ctx, *over[*q][next[*q]++]);
    order.Done(share);
  }

  FinishCycle(plan, closed);
  plan.stats.node_groups = cluster_.group_count();
  return plan;
}

// Step: head-of-line holders that can start now (or once their lent work leaves).
// Such a holder lends nothing this cycle (what it lent now would be taken back at once),
// and an in-quota one goes first. A borrower keeps its place: in-quota work could reclaim
// it in the same cycle. Returns the holders whose lending was closed.
std::vector<WorkloadRec*> Scheduler::Impl::AttemptReadyHolders(CycleContext& c) {
  std::vector<WorkloadRec*> ready, closed;
  for (WorkloadId h : ledger_.holders()) {
    WorkloadRec& r = Rec(h);
    if (!HolderReady(r, c.now)) continue;
    const Hold& hold = ledger_.HoldOf(h);
    if (hold.lends) ledger_.SetLending(h, false), closed.push_back(&r);
    if (hold.in_quota) ready.push_back(&r);
  }
  std::sort(ready.begin(), ready.end(), ByPriorityAge);
  for (WorkloadRec* h : ready) Attempt(c, *h);
  return closed;
}

// Step: whether w is entitled to run in quota on some model now (its own claim counts
// as part of the guarantee it is entitled to).
bool Scheduler::Impl::InQuotaNow(const WorkloadRec& w) const {
  const int64_t cpu = w.spec.task.milli_cpu * w.spec.min_tasks;
  const int64_t memory = w.spec.task.memory_mib * w.spec.min_tasks;
  if (!HostWithinLimit(w.spec.queue, cpu, memory) || !HostInQuota(w.spec.queue, cpu, memory)) {
    return false;
  }
  if (w.spec.task.gpu_count == 0) return true;
  const int64_t need = w.task_milli() * w.spec.min_tasks;
  const ClaimRec claim = ledger_.ClaimOf(w.id);
  for (uint32_t mi = 0; mi < cluster_.model_bound(); ++mi) {
    GpuModelId m(mi);
    const int64_t own = claim.model == m ? claim.milli : 0;
    if (w.spec.task.models.Accepts(m) && cluster_.capacity_milli(m) > 0 &&
        InQuota(w.spec.queue, m, need - own) && WithinLimit(w.spec.queue, m, need)) {
      return true;
    }
  }
  return false;
}

// Step: the end of a cycle. Holders lend again, elastic work grows, every pending
// workload is explained and start times are estimated.
void Scheduler::Impl::FinishCycle(Plan& plan, const std::vector<WorkloadRec*>& closed) {
  for (WorkloadRec* h : closed) {
    const Hold& hold = ledger_.HoldOf(h->id);
    if (hold.kind == HoldKind::kHeadOfLine && hold.lends) ledger_.SetLending(h->id, true);
  }
  if (config_.elastic) Grow(plan);

  if (config_.explain_pending) {
    for (WorkloadId id : pending_) {
      const WorkloadRec& w = Rec(id);
      plan.pending.push_back(PendingExplanation{id, w.reason, -1, WorkloadId()});
    }
    std::sort(plan.pending.begin(), plan.pending.end(),
              [](const auto& a, const auto& b) { return a.workload < b.workload; });
    EstimateStarts(*this, cycle_order_, plan);
  }
  cycle_order_.clear();
}

// Step: the models w may run on now (see Entitlement), or why none.
void Scheduler::Impl::EntitledModels(const WorkloadRec& w, Entitlement& e,
                                     PendingReason& why) const {
  const QueueRec& q = queues_[w.spec.queue.value()];
  const int64_t need = w.task_milli() * w.spec.min_tasks;
  // CPU and memory count against the queue tree's CPU and memory quotas, for GPU work too.
  const int64_t cpu = w.spec.task.milli_cpu * w.spec.min_tasks;
  const int64_t memory = w.spec.task.memory_mib * w.spec.min_tasks;
  const bool host_ok = HostWithinLimit(w.spec.queue, cpu, memory);
  const bool host_in_quota = HostInQuota(w.spec.queue, cpu, memory);
  if (w.spec.task.gpu_count == 0) {
    // CPU-only: no GPU quota applies; the (optional) CPU and memory quotas decide.
    if (!host_ok) {
      why = PendingReason::kOverLimit;
    } else if (host_in_quota) {
      e.in_quota.push_back(GpuModelId());
    } else if (q.spec.can_borrow && w.spec.preemptible) {
      e.borrow.push_back(GpuModelId());
    } else {
      why = PendingReason::kWaitingForQuota;
    }
    return;
  }
  bool any_model = false, any_limit = false;
  for (uint32_t mi = 0; mi < cluster_.model_bound(); ++mi) {
    GpuModelId m(mi);
    if (!w.spec.task.models.Accepts(m) || cluster_.capacity_milli(m) == 0) {
      continue;
    }
    any_model = true;
    if (!host_ok || !WithinLimit(w.spec.queue, m, need)) continue;
    any_limit = true;
    if (host_in_quota && InQuota(w.spec.queue, m, need)) {
      e.in_quota.push_back(m);
    } else if (q.spec.can_borrow && w.spec.preemptible) {
      // Borrowing may not eat into the unused guarantee of queues that do not lend.
      int64_t held = HeldBack(m, w.spec.queue);
      if (held == 0 || cluster_.free_milli(m) - need >= held) e.borrow.push_back(m);
    }
  }
  why = !any_model   ? PendingReason::kModelUnavailable
        : !any_limit ? PendingReason::kOverLimit
                     : PendingReason::kWaitingForQuota;
}

// One pending workload: place it, or else wait for its victims, preempt, reserve, or
// say what blocks it.
void Scheduler::Impl::Attempt(CycleContext& c, WorkloadRec& w) {
  cycle_order_.push_back(w.id);
  ++c.plan.stats.attempts;
  const TaskRequest& t = w.spec.task;
  // A preemptor's own claim must not count against itself.
  const ClaimRec claim = ledger_.ClaimOf(w.id);
  ledger_.Unclaim(w.id);
  Entitlement e;
  e.may_use_lent = (config_.preemption && w.spec.preemptible) ||
                   (!ledger_.holders().empty() && w.spec.runtime_estimate > 0 &&
                    c.now + w.spec.runtime_estimate <= c.hol_eta);
  PendingReason why = PendingReason::kNoFit;
  EntitledModels(w, e, why);
  if (e.in_quota.empty() && e.borrow.empty()) {
    w.reason = why;
    return;
  }
  // MIG: instances, not the whole-GPU machinery (no preemption, reservation or shape cache).
  // `any` falls back to a time-sliced fraction when no instance can be had.
  // `any` tries MIG only while it holds nothing and waits for no victim: a preemptor or a
  // holder (from an earlier fraction attempt) keeps the fraction's path.
  if (t.sharing == core::Sharing::kMig ||
      (t.mig() && ledger_.KindOf(w.id) == HoldKind::kNone && ledger_.Leaving(w.id) == 0)) {
    if (AttemptMig(c, w, e) || t.sharing == core::Sharing::kMig) return;
  }
  const ShapeKey key = KeyOf(w, e.may_use_lent);
  const bool holds = ledger_.KindOf(w.id) != HoldKind::kNone || ledger_.Leaving(w.id) > 0;
  if (!holds) {
    if (auto it = c.failed.find(key); it != c.failed.end()) {
      ++c.plan.stats.shape_cache_hits;
      w.reason = it->second;
      return;
    }
    // A larger shape than one that fits nowhere fits nowhere either; unless it does not fit
    // the empty cluster, which says more (kUnschedulable, below).
    if (c.Dominated(WithoutHost(key), t.milli_cpu, t.memory_mib) && FitsEmptyCluster(w)) {
      ++c.plan.stats.shape_cache_hits;
      ++c.plan.stats.dominated;
      w.reason = PendingReason::kNoFit;
      return;
    }
  }
  ++c.plan.stats.placements_tried;
  PendingReason reason = PendingReason::kNoFit;
  if (TryPlace(c.plan, w, e, reason)) return;
  // Does not fit. While victims are still leaving for it, it waits: nothing more is
  // evicted for it (whatever its hold), and its claim stands. Unless the cluster changed
  // under it (a node drained, a GPU turned unhealthy) so that it cannot run at all: then
  // its victims keep stopping, for nobody, and it is Unschedulable (below).
  if (ledger_.Leaving(w.id) > 0) {
    if (FitsEmptyCluster(w)) {
      if (claim.milli > 0) ledger_.AddClaim(w.id, claim.queue, claim.model, claim.milli);
      w.reason = PendingReason::kPreempting;
      return;
    }
    ledger_.Forget(w.id);
  }
  // Work that could not run even on the empty cluster waits for the cluster to change,
  // and neither preempts, reserves nor blocks anyone (see Grow).
  if (!FitsEmptyCluster(w)) {
    ledger_.Release(w.id);
    w.reason = PendingReason::kUnschedulable;
    c.failed.emplace(key, w.reason);
    return;
  }
  if (WaitOrReclaim(c.plan, w, e)) return;
  if (ReserveHeadOfLine(c, w, e, reason)) return;
  ExplainBlocked(w, e, reason);
  w.reason = reason;
  c.failed.emplace(key, reason);
  if (reason == PendingReason::kNoFit) c.AddNoFit(WithoutHost(key), t.milli_cpu, t.memory_mib);
}

// Step: places w on the models it is entitled to (in-quota first) and binds it. True if
// it did; otherwise `reason` says kTopologyUnsatisfiable when some try said so.
bool Scheduler::Impl::TryPlace(Plan& plan, WorkloadRec& w, const Entitlement& e,
                               PendingReason& reason) {
  w.lent_from = WorkloadId();
  for (const auto* models : {&e.in_quota, &e.borrow}) {
    const bool entitled = models == &e.in_quota;
    const ReservationAccess access = e.Access(entitled);
    // One task: the policy chooses among the nodes of every entitled model at once. A
    // gang runs on one model: each is tried in turn.
    std::vector<ModelSet> tries;
    if (w.spec.min_tasks == 1 && !models->empty()) {
      tries.emplace_back();
      for (GpuModelId m : *models) {
        if (m.valid()) tries.back().Add(m);
      }
    } else {
      for (GpuModelId m : *models) tries.push_back(m.valid() ? ModelSet::Of(m) : ModelSet());
    }
    for (ModelSet set : tries) {
      PendingReason r = PendingReason::kNoFit;
      auto placed = PlaceGang(w, set, w.spec.min_tasks, access, r);
      if (placed) {
        BindPlaced(plan, w, entitled, *placed);
        return true;
      }
      if (r == PendingReason::kTopologyUnsatisfiable) reason = r;
    }
  }
  return false;
}

// Step: a MIG task (see mig_placer.h). A workload that started a layout change waits for
// it; nothing else is placed on that GPU meanwhile, and once it is applied the workload
// takes the idle instance like anyone else (it is usually first in line for it).
bool Scheduler::Impl::AttemptMig(CycleContext& c, WorkloadRec& w, const Entitlement& e) {
  if (auto it = mig_waits_.find(w.id); it != mig_waits_.end()) {
    const auto [node, gpu] = it->second;
    if (cluster_.Has(node) && ((cluster_.node(node).mig_reconfiguring >> gpu) & 1u)) {
      w.reason = PendingReason::kMigReconfiguring;
      return true;
    }
    mig_waits_.erase(it);
  }
  // Unschedulable when no MIG GPU of a model it may use has its profile at all: it waits for
  // the cluster to change (a node with that profile, or MIG mode on one).
  PendingReason why = PendingReason::kUnschedulable;
  const uint32_t holder = ledger_.KindOf(w.id) != HoldKind::kNone ? w.id.value() : 0;
  for (const auto* models : {&e.in_quota, &e.borrow}) {
    if (models->empty()) continue;
    const bool entitled = models == &e.in_quota;
    const ReservationAccess access = e.Access(entitled);
    TaskRequest t = w.spec.task;
    t.models = ModelSet();
    for (GpuModelId m : *models) t.models.Add(m);
    const auto key = std::make_tuple(int{t.mig_compute}, t.gpu_memory_mib, t.milli_cpu,
                                     t.memory_mib, t.models.bits(), int{access}, holder);
    if (auto f = c.mig_failed.find(key); f != c.mig_failed.end()) {
      if (f->second == PendingReason::kNoFit) why = PendingReason::kNoFit;
      continue;
    }
    ++c.plan.stats.placements_tried;
    bool exists = false;
    auto choice = ChooseMig(cluster_, t, w.id, access, mig_mix_, config_.mig_reconfigure, &exists);
    if (!choice) {
      c.mig_failed.emplace(key, exists ? PendingReason::kNoFit : PendingReason::kUnschedulable);
      if (exists) why = PendingReason::kNoFit;
      continue;
    }
    const auto mask = static_cast<GpuMask>(1u << choice->gpu);
    if (!choice->reconfigure) {
      cluster_.Allocate(choice->node, w.spec.task, mask, choice->start);
      const auto start = static_cast<int8_t>(choice->start);
      BindPlaced(c.plan, w, entitled, {TaskPlacement{choice->node, mask, start}});
      return true;
    }
    cluster_.BeginMigReconfig(choice->node, choice->gpu, choice->target);
    c.plan.reconfigs.push_back(MigReconfig{choice->node, choice->gpu, choice->target, w.id});
    mig_waits_[w.id] = {choice->node, choice->gpu};
    w.reason = PendingReason::kMigReconfiguring;
    return true;
  }
  w.reason = why;
  return false;
}

// Step: binds w where it was placed. Bound on GPUs reserved for someone else: a
// borrower's reservation is taken by in-quota work (its holder plans again); otherwise
// the capacity was lent.
void Scheduler::Impl::BindPlaced(Plan& plan, WorkloadRec& w, bool entitled,
                                 const std::vector<TaskPlacement>& placed) {
  const GpuModelId m =
      w.spec.task.gpu_count > 0 ? cluster_.node(placed.front().node).model : GpuModelId();
  std::vector<WorkloadId> outranked;
  for (const TaskPlacement& p : placed) {
    const NodeState& n = cluster_.node(p.node);
    if (!n.reserved_for.valid() || n.reserved_for == w.id || !(n.reserved_gpus & p.gpus)) {
      continue;
    }
    if (entitled && n.reservation_borrowed) {
      outranked.push_back(n.reserved_for);
    } else if (!w.lent_from.valid()) {
      w.lent_from = n.reserved_for;
    }
  }
  for (WorkloadId h : outranked) ledger_.Release(h);
  Bind(w, m, placed, plan, false);
}

// Step: w does not fit and no victim is leaving for it. A head-of-line holder takes back
// what it lent; otherwise w preempts, or keeps waiting on its reservation. True if one
// of these decided w's reason.
bool Scheduler::Impl::WaitOrReclaim(Plan& plan, WorkloadRec& w, const Entitlement& e) {
  if (ledger_.KindOf(w.id) == HoldKind::kHeadOfLine && config_.preemption && ReclaimLent(w, plan)) {
    w.reason = PendingReason::kPreempting;
    return true;
  }
  if (ledger_.KindOf(w.id) == HoldKind::kPreemption) {
    ledger_.Release(w.id);  // victims gone, still no fit
  }
  if (!e.in_quota.empty() || !e.borrow.empty()) {
    if (w.spec.task.gpu_count > 0 && Preempt(w, plan, e.Access(!e.in_quota.empty()))) {
      w.reason = PendingReason::kPreempting;
      return true;
    }
  }
  if (ledger_.KindOf(w.id) == HoldKind::kHeadOfLine) {
    w.reason = PendingReason::kReserved;
    return true;
  }
  return false;
}

// Step: a head-of-line reservation for w on its first model, if the pool has room for
// one more holder and topology is not what stops it. True if w now holds one.
bool Scheduler::Impl::ReserveHeadOfLine(CycleContext& c, WorkloadRec& w, const Entitlement& e,
                                        PendingReason reason) {
  const GpuModelId first_model = e.first_model();
  if (config_.reservations && w.spec.task.gpu_count > 0 &&
      ledger_.HoldersOn(first_model) < config_.max_reservations &&
      reason != PendingReason::kTopologyUnsatisfiable &&
      CreateHold(w, first_model, !e.in_quota.empty(), c.now)) {
    c.hol_eta = std::min(c.hol_eta, ledger_.HoldOf(w.id).eta);
    w.reason = PendingReason::kReserved;
    return true;
  }
  return false;
}

// Step: would w fit on the reserved GPUs? Then a reservation is what blocks it. Asked
// with the holders' nodes opened up for a moment (lent to w).
void Scheduler::Impl::ExplainBlocked(WorkloadRec& w, const Entitlement& e, PendingReason& reason) {
  if (ledger_.holders().empty() || e.may_use_lent) return;
  PendingReason r;
  const GpuModelId first_model = e.first_model();
  ModelSet set = first_model.valid() ? ModelSet::Of(first_model) : ModelSet();
  ledger_.WithAllLent([&] {
    if (auto placed = PlaceGang(w, set, w.spec.min_tasks, kUseLent, r)) {
      Unallocate(w, *placed);
      reason = PendingReason::kBlockedByReservation;
    }
  });
}

// Elastic tasks come from idle capacity only, and only while nothing waits for capacity, so
// growing never starts a grow-then-shrink cycle with waiting work.
void Scheduler::Impl::Grow(Plan& plan) {
  for (WorkloadId id : pending_) {
    if (Waits(Rec(id).reason)) return;
  }
  std::vector<WorkloadRec*> elastic;
  std::sort(growable_.begin(), growable_.end());
  size_t kept = 0;
  for (WorkloadId id : growable_) {
    WorkloadRec* w = Find(id);
    if (w == nullptr) continue;  // finished: its record is gone
    // Only elastic workloads grow, and tasks that ended on their own are not replaced: a
    // gang rank that finished is done, not missing.
    if (w->state == WorkloadState::kRunning && w->spec.max_tasks > w->spec.min_tasks &&
        w->live_tasks() + w->finished_tasks < w->spec.max_tasks && w->spec.task.gpu_count > 0) {
      elastic.push_back(w);
      growable_[kept++] = id;
    } else {
      w->in_growable = false;
    }
  }
  growable_.resize(kept);
  std::sort(elastic.begin(), elastic.end(), [&](const WorkloadRec* a, const WorkloadRec* b) {
    if (a->spec.priority != b->spec.priority) return a->spec.priority > b->spec.priority;
    int64_t sa = Share(a->spec.queue), sb = Share(b->spec.queue);
    if (sa != sb) return sa < sb;
    return a->id < b->id;
  });
  for (WorkloadRec* w : elastic) {
    std::vector<TaskPlacement> grown;
    const GpuModelId m = w->model;
    const QueueId q = w->spec.queue;
    const int64_t each = w->task_milli();
    while (w->live_tasks() + w->finished_tasks + static_cast<int32_t>(grown.size()) <
           w->spec.max_tasks) {
      int64_t extra = each * static_cast<int64_t>(grown.size() + 1);
      const int64_t n = static_cast<int64_t>(grown.size() + 1);
      const int64_t cpu = w->spec.task.milli_cpu * n, memory = w->spec.task.memory_mib * n;
      if (!WithinLimit(q, m, extra) || !HostWithinLimit(q, cpu, memory)) break;
      bool in_quota = InQuota(q, m, extra) && HostInQuota(q, cpu, memory);
      if (!w->spec.preemptible && !in_quota) break;
      if (!in_quota &&
          (!queues_[q.value()].spec.can_borrow || cluster_.free_milli(m) - each < HeldBack(m, q))) {
        break;
      }
      PendingReason r;
      auto p = PlaceGang(*w, ModelSet::Of(m), 1, ReservationAccess{0}, r);
      if (!p) break;
      grown.push_back(p->front());
    }
    if (grown.empty()) continue;
    Bind(*w, m, grown, plan, true);
  }
}

}  // namespace gpuorch::sched
