#include "sched/scheduler.h"

#include <algorithm>
#include <bit>
#include <string>

#include "sched/scheduler_impl.h"

namespace gpuorch::sched {

using core::NodeStatus;

const char* ToString(WorkloadState s) {
  switch (s) {
    case WorkloadState::kPending:
      return "Pending";
    case WorkloadState::kRunning:
      return "Running";
    case WorkloadState::kEvicting:
      return "Evicting";
    case WorkloadState::kFinished:
      return "Finished";
  }
  return "?";
}

namespace {

template <typename Id>
std::string Named(const char* what, Id id) {
  return std::string(what) + " " + std::to_string(id.value());
}

}  // namespace

Scheduler::Impl::Impl(const SchedulerConfig& config, std::unique_ptr<PlacementPolicy> policy)
    : config_(config), policy_(std::move(policy)), rng_(config.seed ^ 0x6770756f726368ull) {}

WorkloadRec* Scheduler::Impl::Find(WorkloadId id) {
  if (!id.valid()) return nullptr;
  auto it = slot_of_.find(id);
  return it == slot_of_.end() ? nullptr : &workloads_[it->second];
}

const WorkloadRec* Scheduler::Impl::Find(WorkloadId id) const {
  return const_cast<Impl*>(this)->Find(id);
}

Status Scheduler::Impl::AddQueue(QueueId id, const QueueSpec& spec, bool update) {
  if (!id.valid() || id.value() > 1'000'000) return Status::Invalid("queue.id: out of range");
  if (Status s = spec.Validate(); !s.ok()) return s;
  bool exists = id.value() < queues_.size() && queues_[id.value()].present;
  if (update && !exists) return Status::NotFound(Named("queue", id) + ": unknown");
  if (!update && exists) return Status::Exists("queue " + spec.name + ": already added");
  std::vector<QueueId> ancestors;
  for (QueueId p = spec.parent; p.valid();) {
    if (p == id || p.value() >= queues_.size() || !queues_[p.value()].present) {
      return Status::Invalid("queue.parent: unknown queue or a cycle");
    }
    ancestors.push_back(p);
    p = queues_[p.value()].spec.parent;
  }
  for (const core::QuotaEntry& e : spec.quotas) {
    if (e.model.valid() && e.model.value() >= kMaxGpuModels) {
      return Status::Invalid("queue.quota.model: unknown model id");
    }
  }
  if (update && queues_[id.value()].spec.parent != spec.parent) {
    return Status::Invalid("queue.parent: cannot change on update");
  }
  if (Status s = CheckNestedGuarantees(id, spec); !s.ok()) return s;
  if (id.value() >= queues_.size()) queues_.resize(id.value() + 1);
  QueueRec& q = queues_[id.value()];
  if (!update) {
    q = QueueRec{};
    if (spec.parent.valid()) {
      QueueRec& parent = queues_[spec.parent.value()];
      if (parent.leaf) {
        for (const WorkloadRec& w : workloads_) {
          if (w.present && w.spec.queue == spec.parent) {
            return Status::Precondition("queue.parent: has workloads, cannot become inner");
          }
        }
      }
      parent.leaf = false;
    }
  }
  q.present = true;
  q.spec = spec;
  q.ancestors = std::move(ancestors);
  for (uint32_t m = 0; m < kMaxGpuModels; ++m) {
    const core::QuotaEntry* e = spec.QuotaFor(GpuModelId(m));
    q.guaranteed[m] = e ? e->guaranteed : 0;
    q.limit[m] = e ? e->limit : core::kUnlimited;
  }
  for (size_t h : {kCpu, kMemory}) {
    const core::HostQuota& hq = h == kCpu ? spec.cpu_quota : spec.memory_quota;
    q.host_guaranteed[h] = hq.guaranteed;
    q.host_limit[h] = hq.limit;
  }
  return Status::Ok();
}

Status Scheduler::Impl::AddNode(NodeId id, const core::NodeSpec& spec) {
  if (Status s = cluster_.AddNode(id, spec); !s.ok()) return s;
  ++nodes_version_;
  if (id.value() >= node_tasks_.size()) node_tasks_.resize(id.value() + 1);
  return Status::Ok();
}

Status Scheduler::Impl::UpdateNode(NodeId id, const core::NodeSpec& spec) {
  if (!cluster_.Has(id)) return Status::NotFound("node " + spec.name + ": unknown");
  // Validate before acting: a refused call changes nothing. Going down releases every
  // allocation first, so the capacity checks of ClusterState::UpdateNode cannot refuse then.
  if (Status s = spec.Validate(); !s.ok()) return s;
  const NodeState& cur = cluster_.node(id);
  const GpuMask was_unhealthy = cur.unhealthy_gpus;
  const bool going_down = spec.status == NodeStatus::kDown && cur.status != NodeStatus::kDown;
  if (!going_down) {
    if (Status s = cluster_.CheckUpdate(id, spec); !s.ok()) return s;
  }
  ++nodes_version_;
  if (going_down) LoseNode(id);
  // A head-of-line hold on a node that stops being schedulable, or whose held GPUs turn
  // unhealthy, is planned again (it may never fit there now).
  const GpuMask turned_bad = static_cast<GpuMask>(spec.unhealthy_gpus & ~was_unhealthy);
  if ((spec.status != NodeStatus::kReady || (cur.reserved_gpus & turned_bad) != 0) &&
      cur.reserved_gpus != 0) {
    if (ledger_.KindOf(cur.reserved_for) == HoldKind::kHeadOfLine) {
      ledger_.Release(cur.reserved_for);
    }
  }
  Status s = cluster_.UpdateNode(id, spec);
  GPUORCH_CHECK(s.ok());
  if ((was_unhealthy & ~spec.unhealthy_gpus) != 0) ledger_.GpusRecovered(id);
  return s;
}

Status Scheduler::Impl::RemoveNode(NodeId id) {
  if (!cluster_.Has(id)) return Status::NotFound(Named("node", id) + ": unknown");
  ++nodes_version_;
  LoseNode(id);
  return cluster_.RemoveNode(id);
}

// A node is gone: its tasks are lost. A gang that drops below min_tasks is stopped as a
// whole and requeued; an elastic workload that keeps min_tasks just shrinks.
void Scheduler::Impl::LoseNode(NodeId id) {
  std::vector<std::pair<WorkloadId, int32_t>> lost = node_tasks_[id.value()];
  for (auto [wid, task] : lost) {
    WorkloadRec* w = Find(wid);
    if (w == nullptr) continue;
    auto it = std::find_if(w->tasks.begin(), w->tasks.end(),
                           [&, task = task](const TaskRec& t) { return t.index == task; });
    if (it == w->tasks.end()) continue;
    TaskRec t = *it;
    w->tasks.erase(it);
    ReleaseTask(*w, t);
    if (w->state == WorkloadState::kRunning && w->live_tasks() < w->spec.min_tasks) {
      if (w->tasks.empty()) {
        RemoveRunning(*w);
        w->state = WorkloadState::kPending;
        AddPending(*w);
      } else {
        w->state = WorkloadState::kEvicting;
        for (TaskRec& r : w->tasks) MarkStopping(*w, r);
        queued_evictions_.push_back(
            Eviction{wid, EvictionReason::kNodeLost, WorkloadId(), w->spec.grace_period});
      }
    } else if (w->state == WorkloadState::kEvicting && w->tasks.empty()) {
      Status s = EvictionCompleted(wid);
      (void)s;
    }
  }
  // A reservation on the lost node is gone too. A head-of-line holder plans its whole
  // reservation again (the rest may no longer be enough); a preemptor keeps the rest.
  ledger_.LoseNode(id);
}

Status Scheduler::Impl::Submit(WorkloadId id, const WorkloadSpec& spec) {
  if (!id.valid()) return Status::Invalid("workload.id: out of range");
  if (Status s = spec.Validate(); !s.ok()) return s;
  QueueId q = spec.queue;
  if (q.value() >= queues_.size() || !queues_[q.value()].present) {
    return Status::NotFound("workload.queue: unknown queue " + std::to_string(q.value()));
  }
  if (!queues_[q.value()].leaf) return Status::Invalid("workload.queue: not a leaf queue");
  if (Find(id) != nullptr) return Status::Exists("workload " + spec.name + ": already submitted");
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(workloads_.size());
    workloads_.emplace_back();
  }
  slot_of_.emplace(id, slot);
  mig_mix_.Add(spec.task, +1);
  WorkloadRec& w = workloads_[slot];
  w = WorkloadRec{};
  w.present = true;
  w.id = id;
  w.spec = spec;
  w.next_task_index = 0;
  AddPending(w);
  return Status::Ok();
}

void Scheduler::Impl::AddPending(WorkloadRec& w) {
  w.pending_pos = pending_.size();
  pending_.push_back(w.id);
}

void Scheduler::Impl::RemovePending(WorkloadRec& w) {
  if (w.pending_pos == SIZE_MAX) return;
  WorkloadId last = pending_.back();
  pending_[w.pending_pos] = last;
  Rec(last).pending_pos = w.pending_pos;
  pending_.pop_back();
  w.pending_pos = SIZE_MAX;
}

void Scheduler::Impl::AddRunning(WorkloadRec& w) {
  w.running_pos = running_.size();
  running_.push_back(w.id);
  if (w.spec.preemptible) ++queues_[w.spec.queue.value()].running_priorities[w.spec.priority];
}

void Scheduler::Impl::RemoveRunning(WorkloadRec& w) {
  if (w.running_pos == SIZE_MAX) return;
  if (w.spec.preemptible) {
    auto& counts = queues_[w.spec.queue.value()].running_priorities;
    if (--counts[w.spec.priority] == 0) counts.erase(w.spec.priority);
  }
  WorkloadId last = running_.back();
  running_[w.running_pos] = last;
  Rec(last).running_pos = w.running_pos;
  running_.pop_back();
  w.running_pos = SIZE_MAX;
}

void Scheduler::Impl::ReleaseTask(WorkloadRec& w, const TaskRec& t) {
  ListGrowable(w);
  auto& on_node = node_tasks_[t.node.value()];
  on_node.erase(std::find(on_node.begin(), on_node.end(), std::make_pair(w.id, t.index)));
  Charge(w, w.model, -1);
  if (w.spec.task.gpu_count > 0 && t.stopping) {
    queues_[w.spec.queue.value()].evicting[w.model.value()] -= w.task_milli();
  }
  // The task is gone: its preemptor (if it stopped for one) waits for one task fewer.
  const WorkloadId preemptor = ledger_.Unlink(w.id, t.index);
  if (!cluster_.Has(t.node)) return;
  cluster_.Release(t.node, w.spec.task, t.gpus, t.mig_start);
  // What a victim frees is held for its preemptor until the preemptor binds.
  WorkloadRec* p = Find(preemptor);
  // A preemptor's claim outranks a lendable head-of-line reservation (that holder reserves
  // again later if it still waits); a head-of-line holder reclaiming lent GPUs keeps its
  // reservation and its place among the holders, and the freed GPUs join it.
  if (p != nullptr && p->state == WorkloadState::kPending && t.gpus != 0 &&
      ledger_.HoldGpus(p->id, t.node, t.gpus)) {
    ledger_.MarkPreemptor(p->id);
  }
}

void Scheduler::Impl::MarkStopping(WorkloadRec& w, TaskRec& t) {
  if (t.stopping) return;
  t.stopping = true;
  if (w.spec.task.gpu_count > 0) {
    queues_[w.spec.queue.value()].evicting[w.model.value()] += w.task_milli();
  }
}

void Scheduler::Impl::Finish(WorkloadRec& w) {
  for (const TaskRec& t : w.tasks) ReleaseTask(w, t);
  w.tasks.clear();
  RemovePending(w);
  RemoveRunning(w);
  ledger_.Drop(w.id);  // its links, claim and hold drain
  mig_mix_.Add(w.spec.task, -1);
  mig_waits_.erase(w.id);
  const WorkloadId id = w.id;
  const uint32_t slot = slot_of_.at(id);
  slot_of_.erase(id);
  workloads_[slot] = WorkloadRec{};  // frees the spec's and the tasks' memory
  free_slots_.push_back(slot);
}

Status Scheduler::Impl::Cancel(WorkloadId id) {
  WorkloadRec* w = Find(id);
  if (w == nullptr) return Status::NotFound(Named("workload", id) + ": unknown");
  Finish(*w);
  return Status::Ok();
}

Status Scheduler::Impl::WorkloadFinished(WorkloadId id) { return Cancel(id); }

Status Scheduler::Impl::TaskFinished(WorkloadId id, int32_t task) {
  WorkloadRec* w = Find(id);
  if (w == nullptr) return Status::NotFound(Named("workload", id) + ": unknown");
  auto it = std::find_if(w->tasks.begin(), w->tasks.end(),
                         [&](const TaskRec& t) { return t.index == task; });
  if (it == w->tasks.end()) {
    return Status::NotFound("task " + std::to_string(task) + " of " + w->spec.name +
                            ": not running");
  }
  TaskRec t = *it;
  w->tasks.erase(it);
  if (!t.stopping) ++w->finished_tasks;
  ReleaseTask(*w, t);
  if (w->tasks.empty()) {
    if (w->state == WorkloadState::kEvicting) return EvictionCompleted(id);
    Finish(*w);
  }
  return Status::Ok();
}

Status Scheduler::Impl::EvictionCompleted(WorkloadId id) {
  WorkloadRec* w = Find(id);
  if (w == nullptr) return Status::NotFound(Named("workload", id) + ": unknown");
  if (w->state != WorkloadState::kEvicting) {
    return Status::Precondition("workload " + w->spec.name + ": not being evicted");
  }
  for (const TaskRec& t : w->tasks) ReleaseTask(*w, t);
  w->tasks.clear();
  RemoveRunning(*w);
  w->state = WorkloadState::kPending;
  w->next_task_index = 0;
  w->finished_tasks = 0;
  AddPending(*w);
  return Status::Ok();
}

Status Scheduler::Impl::Adopt(WorkloadId id, const WorkloadSpec& spec,
                              const std::vector<TaskBinding>& tasks, Time start_time) {
  if (tasks.empty()) return Status::Invalid("adopt.tasks: a running workload has tasks");
  if (static_cast<int32_t>(tasks.size()) > spec.max_tasks) {
    return Status::Invalid("adopt.tasks: more than max_tasks");
  }
  GpuModelId model;
  for (const TaskBinding& t : tasks) {
    if (!cluster_.Has(t.node)) {
      return Status::NotFound("adopt.tasks.node: unknown node " + std::to_string(t.node.value()));
    }
    if (spec.task.gpu_count > 0) {
      GpuModelId m = cluster_.node(t.node).model;
      if (model.valid() && m != model) return Status::Invalid("adopt.tasks: GPU models differ");
      model = m;
      if (std::popcount(t.gpus) != spec.task.gpu_count ||
          (t.gpus & ~cluster_.node(t.node).all_gpus())) {
        return Status::Invalid("adopt.tasks.gpus: do not match the request or the node");
      }
      // A MIG task names its instance; `any` may run on one or as a fraction.
      if ((t.mig_start >= 0 && !spec.task.mig()) ||
          (t.mig_start < 0 && spec.task.sharing == core::Sharing::kMig)) {
        return Status::Invalid("adopt.tasks.mig_start: a MIG task names its instance, others none");
      }
    }
  }
  if (Status s = Submit(id, spec); !s.ok()) return s;
  WorkloadRec& w = Rec(id);
  // Check capacity task by task and roll back on the first one that does not fit.
  std::vector<TaskPlacement> placed;
  for (const TaskBinding& t : tasks) {
    const NodeState& n = cluster_.node(t.node);
    bool fits =
        n.present && n.cpu_free >= spec.task.milli_cpu && n.memory_free >= spec.task.memory_mib;
    for (int j = 0; fits && j < n.gpu_count; ++j) {
      if (!((t.gpus >> j) & 1u)) continue;
      if (t.mig_start >= 0) {
        // The instance must exist, be idle and be large enough.
        const MigNodeState& m = cluster_.mig(t.node);
        const auto l = m.layout[j].view();
        auto i = std::find_if(l.begin(), l.end(),
                              [&](const core::MigInstance& x) { return x.start == t.mig_start; });
        fits = ((n.mig_gpus >> j) & 1u) && i != l.end() && !((m.busy[j] >> t.mig_start) & 1u) &&
               m.model->profiles[i->profile].compute_slices == spec.task.mig_compute &&
               m.model->profiles[i->profile].memory_mib >= spec.task.gpu_memory_mib;
        continue;
      }
      fits = !((n.mig_gpus >> j) & 1u) && n.gpu_free[j] >= spec.task.gpu_milli &&
             (!spec.task.fractional() || n.gpu_mem_free[j] >= spec.task.gpu_memory_mib);
    }
    if (!fits) {
      Unallocate(w, placed);
      Finish(w);
      return Status::Precondition("adopt.tasks: task " + std::to_string(t.task) +
                                  " does not fit node " + std::to_string(t.node.value()));
    }
    cluster_.Allocate(t.node, spec.task, t.gpus, t.mig_start);
    placed.push_back(TaskPlacement{t.node, t.gpus, t.mig_start});
  }
  RemovePending(w);
  w.state = WorkloadState::kRunning;
  w.start_time = start_time;
  w.model = model;
  AddRunning(w);
  for (const TaskBinding& t : tasks) {
    w.tasks.push_back(TaskRec{t.task, t.node, t.gpus, false, t.mig_start});
    w.next_task_index = std::max(w.next_task_index, t.task + 1);
    node_tasks_[t.node.value()].emplace_back(id, t.task);
    Charge(w, model, +1);
  }
  return Status::Ok();
}

void Scheduler::Impl::Bind(WorkloadRec& w, GpuModelId m, const std::vector<TaskPlacement>& placed,
                           Plan& plan, bool elastic) {
  sched::Bind bind;
  bind.workload = w.id;
  bind.elastic = elastic;
  if (!elastic) {
    RemovePending(w);
    // Its hold and claim drain; victims still stopping now stop for nobody.
    ledger_.Drop(w.id);
    w.state = WorkloadState::kRunning;
    w.start_time = plan.now;
    w.model = m;
    AddRunning(w);
  }
  for (const TaskPlacement& p : placed) {
    TaskRec t{w.next_task_index++, p.node, p.gpus, false, p.mig_start};
    w.tasks.push_back(t);
    node_tasks_[p.node.value()].emplace_back(w.id, t.index);
    Charge(w, m, +1);
    bind.tasks.push_back(TaskBinding{t.index, p.node, p.gpus, w.spec.task.gpu_milli, p.mig_start});
  }
  plan.binds.push_back(std::move(bind));
  ListGrowable(w);
  if (elastic) elastic_extras_.push_back(w.id);
}

// ---- public API: thin forwarding.

core::Result<std::unique_ptr<Scheduler>> Scheduler::Create(const SchedulerConfig& config) {
  if (config.fair_share_half_life <= 0) {
    return Status::Invalid("scheduler.fair_share_half_life: must be > 0");
  }
  auto impl = std::make_unique<Impl>(config, nullptr);
  auto policy = MakePolicy(config.policy, &impl->rng_);
  if (!policy.ok()) return policy.status();
  PolicySetup setup = std::move(policy).value();
  impl->policy_ = std::move(setup.policy);
  impl->node_choice_ = setup.choice;
  return std::unique_ptr<Scheduler>(new Scheduler(std::move(impl)));
}

Scheduler::Scheduler(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Scheduler::~Scheduler() = default;

Status Scheduler::AddQueue(QueueId id, const QueueSpec& spec) {
  return impl_->AddQueue(id, spec, false);
}
Status Scheduler::UpdateQueue(QueueId id, const QueueSpec& spec) {
  return impl_->AddQueue(id, spec, true);
}
Status Scheduler::AddNode(NodeId id, const core::NodeSpec& spec) {
  return impl_->AddNode(id, spec);
}
Status Scheduler::UpdateNode(NodeId id, const core::NodeSpec& spec) {
  return impl_->UpdateNode(id, spec);
}
Status Scheduler::RemoveNode(NodeId id) { return impl_->RemoveNode(id); }
Status Scheduler::Submit(WorkloadId id, const WorkloadSpec& spec) {
  return impl_->Submit(id, spec);
}

Status Scheduler::MigLayoutApplied(NodeId id, int gpu, const core::MigLayout& layout) {
  Status s = impl_->cluster_.MigLayoutApplied(id, gpu, layout);
  if (s.ok()) ++impl_->nodes_version_;
  return s;
}
Status Scheduler::Cancel(WorkloadId id) { return impl_->Cancel(id); }
Status Scheduler::TaskFinished(WorkloadId id, int32_t task) {
  return impl_->TaskFinished(id, task);
}
Status Scheduler::WorkloadFinished(WorkloadId id) { return impl_->WorkloadFinished(id); }
Status Scheduler::EvictionCompleted(WorkloadId id) { return impl_->EvictionCompleted(id); }
Status Scheduler::Adopt(WorkloadId id, const WorkloadSpec& spec,
                        const std::vector<TaskBinding>& tasks, Time start_time) {
  return impl_->Adopt(id, spec, tasks, start_time);
}
void Scheduler::SetTypicalTasks(std::vector<TypicalTask> tasks) {
  impl_->policy_->SetTypicalTasks(std::move(tasks));
  impl_->score_cache_.Clear();
}
Plan Scheduler::Cycle(Time now) { return impl_->Cycle(now); }
const ClusterState& Scheduler::cluster() const { return impl_->cluster_; }
const PlacementPolicy& Scheduler::policy() const { return *impl_->policy_; }

WorkloadState Scheduler::state(WorkloadId id) const {
  const WorkloadRec* w = impl_->Find(id);
  return w == nullptr ? WorkloadState::kFinished : w->state;
}

int64_t Scheduler::QueueUsage(QueueId q, GpuModelId m) const {
  if (q.value() >= impl_->queues_.size() || m.value() >= kMaxGpuModels) return 0;
  return impl_->queues_[q.value()].usage[m.value()];
}

int64_t Scheduler::QueueEvicting(QueueId q, GpuModelId m) const {
  if (q.value() >= impl_->queues_.size() || m.value() >= kMaxGpuModels) return 0;
  return impl_->queues_[q.value()].evicting[m.value()];
}

Scheduler::Holds Scheduler::holds() const {
  Holds h;
  for (const NodeState& n : impl_->cluster_.nodes())
    h.reserved_nodes += n.present && n.reserved_gpus;
  h.victim_links = impl_->ledger_.links();
  h.claimed_milli = impl_->ledger_.claimed_total();
  h.holders = impl_->ledger_.holders().size();
  return h;
}

size_t Scheduler::workload_records() const { return impl_->slot_of_.size(); }
size_t Scheduler::workload_capacity() const { return impl_->workloads_.size(); }

int64_t Scheduler::QueueCpuUsage(QueueId q) const {
  if (q.value() >= impl_->queues_.size()) return 0;
  return impl_->queues_[q.value()].host_usage[kCpu];
}

int64_t Scheduler::QueueMemoryUsage(QueueId q) const {
  if (q.value() >= impl_->queues_.size()) return 0;
  return impl_->queues_[q.value()].host_usage[kMemory];
}

std::vector<TaskBinding> Scheduler::Placement(WorkloadId id) const {
  std::vector<TaskBinding> out;
  const WorkloadRec* w = impl_->Find(id);
  if (w == nullptr) return out;
  for (const TaskRec& t : w->tasks) {
    out.push_back(TaskBinding{t.index, t.node, t.gpus, w->spec.task.gpu_milli, t.mig_start});
  }
  return out;
}

}  // namespace gpuorch::sched
