// The replay driver: trace events in, sched::Scheduler plans applied, metrics out. See
// replay.h for the contract and docs/simulator.md for the policies and the metrics.
#include "sim/replay/replay.h"

#include <algorithm>
#include <map>
#include <memory>
#include <queue>
#include <set>
#include <tuple>

#include "sched/scheduler.h"
#include "sim/replay/free_index.h"

namespace gpuorch::sim {

using core::Duration;
using core::Result;
using core::Status;
using core::Time;

const char* ToString(ReplayPolicy p) {
  switch (p) {
    case ReplayPolicy::kStatic:
      return "static";
    case ReplayPolicy::kFifo:
      return "fifo";
    case ReplayPolicy::kGpuorch:
      return "gpuorch";
  }
  return "?";
}

bool ParseReplayPolicy(std::string_view s, ReplayPolicy& p) {
  for (ReplayPolicy c : {ReplayPolicy::kStatic, ReplayPolicy::kFifo, ReplayPolicy::kGpuorch}) {
    if (s == ToString(c)) return p = c, true;
  }
  return false;
}

namespace {

// One engine over a set of nodes: the whole cluster, or one tenant's partition (static).
struct Pool {
  std::unique_ptr<sched::Scheduler> engine;
  std::vector<uint32_t> node_global;  // engine NodeId -> cluster node index
  std::vector<uint32_t> job_of;       // engine WorkloadId -> trace job index
  bool dirty = false;
};

enum class JobState : uint8_t { kFuture, kPending, kRunning, kEvicting, kDone, kInfeasible };

struct Job {
  uint32_t pool = 0;
  uint32_t local = 0;  // engine WorkloadId in its pool
  uint32_t queue = 0;  // tenant's queue index (QueuesConfig)
  uint32_t model = UINT32_MAX;
  JobState state = JobState::kFuture;
  Duration remaining = 0;
  Time run_start = 0;
  uint32_t epoch = 0;  // bumped on eviction so the stale completion event is ignored
  Time entitled_since = -1;
  std::vector<sched::TaskBinding> tasks;
};

enum class EventType : uint8_t { kFinish, kEvictionDone };
struct Event {
  Time t;
  uint64_t seq;
  EventType type;
  uint32_t job;
  uint32_t epoch;
  bool operator>(const Event& o) const { return std::tie(t, seq) > std::tie(o.t, o.seq); }
};

using ShapeKey = std::tuple<int32_t, int32_t, int32_t, uint32_t>;  // tasks, gpus, milli, model

class Replayer {
 public:
  Replayer(const Trace& trace, const ClusterConfig& cluster, const QueuesConfig& queues,
           const ReplayOptions& o)
      : trace_(trace), cluster_(cluster), queues_(queues), o_(o) {}

  Status Setup();
  Status Run();
  ReplayResult TakeResult() { return std::move(r_); }

 private:
  Status MakePool(const std::vector<uint32_t>& nodes, const std::vector<uint32_t>& queue_ids);
  bool Feasible(const Pool& p, const TraceJob& j, uint32_t model) const;
  Status Submit(uint32_t j, Time now);
  Status CycleUntilQuiet(Pool& p, Time now);
  Status Apply(Pool& p, const sched::Plan& plan, Time now);
  void Release(Job& job);
  void AddPending(uint32_t j);
  void RemovePending(uint32_t j);
  void UpdateEntitlement(uint32_t q, Time now);
  void Advance(Time to);

  const Trace& trace_;
  const ClusterConfig& cluster_;
  const QueuesConfig& queues_;
  const ReplayOptions& o_;
  ReplayResult r_;
  std::vector<Pool> pools_;
  std::vector<uint32_t> pool_of_queue_;
  std::vector<Job> jobs_;
  FreeIndex free_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  uint64_t seq_ = 0;
  std::map<ShapeKey, std::pair<int64_t, int64_t>> pending_shapes_;  // -> jobs, milli
  int64_t waiting_milli_ = 0;
  // Per tenant queue: pending jobs in engine order, usage, and who is entitled now.
  std::vector<std::set<std::tuple<int32_t, Time, uint32_t>>> pending_of_;
  std::vector<int64_t> used_;
  std::vector<std::vector<uint32_t>> entitled_;
  std::vector<char> tenant_dirty_;
  Time now_ = 0;
  Segment rate_;
};

Status Replayer::MakePool(const std::vector<uint32_t>& nodes,
                          const std::vector<uint32_t>& queue_ids) {
  sched::SchedulerConfig cfg;
  cfg.policy = o_.placement;
  cfg.seed = o_.seed;
  cfg.max_reservations = o_.max_reservations;
  if (o_.policy != ReplayPolicy::kGpuorch) {
    // How most platforms run today (Kueue's BestEffortFIFO, the Kubernetes default): strict
    // arrival order, a job that does not fit is skipped, nothing is ever evicted.
    cfg.preemption = false;
    cfg.reservations = false;
  }
  auto engine = sched::Scheduler::Create(cfg);
  if (!engine.ok()) return engine.status();
  Pool p;
  p.engine = std::move(engine).value();
  int64_t capacity = 0;
  for (uint32_t n : nodes) {
    const auto id = core::NodeId(static_cast<uint32_t>(p.node_global.size()));
    if (Status s = p.engine->AddNode(id, cluster_.nodes[n]); !s.ok()) return s;
    p.node_global.push_back(n);
    capacity += int64_t{cluster_.nodes[n].gpu_count} * core::kMilliGpu;
  }
  if (o_.policy == ReplayPolicy::kGpuorch) {
    for (uint32_t q : queue_ids) {
      const TenantQueue& t = queues_.queues[q];
      core::QueueSpec spec;
      spec.name = t.name;
      spec.weight = t.weight;
      spec.can_borrow = t.can_borrow;
      spec.can_lend = t.can_lend;
      if (!t.parent.empty())
        spec.parent = core::QueueId(static_cast<uint32_t>(queues_.Find(t.parent)));
      spec.quotas.push_back(core::QuotaEntry{core::GpuModelId(), t.guarantee_milli, t.limit_milli});
      if (Status s = p.engine->AddQueue(core::QueueId(q), spec); !s.ok()) {
        return Status::Invalid("queue " + t.name + ": " + s.message());
      }
    }
  } else {
    // One FIFO queue entitled to the whole pool, so that ordering is by arrival alone.
    core::QueueSpec spec;
    spec.name = "fifo";
    spec.quotas.push_back(core::QuotaEntry{core::GpuModelId(), capacity, core::kUnlimited});
    if (Status s = p.engine->AddQueue(core::QueueId(0), spec); !s.ok()) return s;
  }
  pools_.push_back(std::move(p));
  return Status::Ok();
}

Status Replayer::Setup() {
  const size_t nq = queues_.queues.size();
  std::vector<uint32_t> queue_of_tenant(trace_.tenants.size());
  for (uint32_t t = 0; t < trace_.tenants.size(); ++t) {
    const int q = queues_.Find(trace_.tenants[t]);
    if (q < 0) return Status::Invalid("tenant " + trace_.tenants[t] + ": no queue of that name");
    if (!queues_.IsLeaf(static_cast<size_t>(q))) {
      return Status::Invalid("tenant " + trace_.tenants[t] +
                             ": its queue has child queues (work goes to leaves)");
    }
    queue_of_tenant[t] = static_cast<uint32_t>(q);
  }
  for (const core::NodeSpec& n : cluster_.nodes) free_.AddNode(n.gpu_model.value(), n.gpu_count);
  r_.capacity_milli = cluster_.total_gpus() * core::kMilliGpu;
  pool_of_queue_.assign(nq, 0);
  std::vector<uint32_t> all_queues(nq);
  for (uint32_t q = 0; q < nq; ++q) all_queues[q] = q;
  if (o_.policy == ReplayPolicy::kStatic) {
    // Owned nodes go to their owner; the rest is divided by guarantee (largest remainder).
    std::vector<std::vector<uint32_t>> part(nq);
    std::vector<uint32_t> unowned;
    for (uint32_t n = 0; n < cluster_.nodes.size(); ++n) {
      if (cluster_.owners[n].empty()) {
        unowned.push_back(n);
        continue;
      }
      const int q = queues_.Find(cluster_.owners[n]);
      if (q < 0 || !queues_.IsLeaf(static_cast<size_t>(q))) {
        return Status::Invalid("node " + cluster_.nodes[n].name + ": owner " + cluster_.owners[n] +
                               " has no leaf queue");
      }
      part[static_cast<size_t>(q)].push_back(n);
    }
    // Partitions are the leaves: an inner queue's guarantee is its children's.
    int64_t total_g = 0, leaves = 0;
    for (size_t q = 0; q < nq; ++q) {
      if (!queues_.IsLeaf(q)) continue;
      total_g += queues_.queues[q].guarantee_milli;
      ++leaves;
    }
    const int64_t un = static_cast<int64_t>(unowned.size());
    std::vector<int64_t> share(nq), rem(nq);
    int64_t given = 0;
    for (size_t q = 0; q < nq; ++q) {
      if (!queues_.IsLeaf(q)) continue;
      const int64_t num = total_g > 0 ? un * queues_.queues[q].guarantee_milli : un;
      const int64_t den = total_g > 0 ? total_g : leaves;
      share[q] = num / den;
      rem[q] = num % den;
      given += share[q];
    }
    std::vector<size_t> by_rem;
    for (size_t q = 0; q < nq; ++q) {
      if (queues_.IsLeaf(q)) by_rem.push_back(q);
    }
    std::stable_sort(by_rem.begin(), by_rem.end(),
                     [&](size_t a, size_t b) { return rem[a] > rem[b]; });
    for (size_t i = 0; given < un; ++i, ++given) ++share[by_rem[i % by_rem.size()]];
    size_t next = 0;
    for (size_t q = 0; q < nq; ++q) {
      for (int64_t k = 0; k < share[q]; ++k) part[q].push_back(unowned[next++]);
      pool_of_queue_[q] = static_cast<uint32_t>(pools_.size());
      if (Status s = MakePool(part[q], {}); !s.ok()) return s;
    }
  } else {
    std::vector<uint32_t> nodes(cluster_.nodes.size());
    for (uint32_t n = 0; n < nodes.size(); ++n) nodes[n] = n;
    if (Status s = MakePool(nodes, all_queues); !s.ok()) return s;
  }
  jobs_.resize(trace_.jobs.size());
  r_.jobs.resize(trace_.jobs.size());
  for (uint32_t i = 0; i < trace_.jobs.size(); ++i) {
    const TraceJob& tj = trace_.jobs[i];
    Job& j = jobs_[i];
    j.queue = queue_of_tenant[tj.tenant];
    j.pool = pool_of_queue_[j.queue];
    j.remaining = tj.duration;
    if (tj.model != UINT32_MAX) {
      const core::GpuModelId m = cluster_.models.Find(trace_.models[tj.model]);
      j.model = m.valid() ? m.value() : UINT32_MAX - 1;  // absent: infeasible below
    }
  }
  pending_of_.resize(nq);
  used_.assign(nq, 0);
  entitled_.resize(nq);
  tenant_dirty_.assign(nq, 0);
  return Status::Ok();
}

bool Replayer::Feasible(const Pool& p, const TraceJob& j, uint32_t model) const {
  if (model == UINT32_MAX - 1) return false;
  int64_t slots = 0;
  for (uint32_t n : p.node_global) {
    const core::NodeSpec& s = cluster_.nodes[n];
    if (model != UINT32_MAX && s.gpu_model.value() != model) continue;
    slots += s.gpu_count / j.gpus_per_task;
  }
  return slots >= j.tasks;
}

void Replayer::AddPending(uint32_t j) {
  const TraceJob& tj = trace_.jobs[j];
  auto& e = pending_shapes_[{tj.tasks, tj.gpus_per_task, tj.gpu_milli, jobs_[j].model}];
  e.first += 1;
  e.second += tj.total_milli();
  waiting_milli_ += tj.total_milli();
  const Job& job = jobs_[j];
  const int32_t prio = o_.policy == ReplayPolicy::kGpuorch ? tj.priority : 0;
  pending_of_[job.queue].emplace(-prio, tj.arrival, j);
  tenant_dirty_[job.queue] = 1;
}

void Replayer::RemovePending(uint32_t j) {
  const TraceJob& tj = trace_.jobs[j];
  auto it = pending_shapes_.find({tj.tasks, tj.gpus_per_task, tj.gpu_milli, jobs_[j].model});
  if (--it->second.first == 0) {
    pending_shapes_.erase(it);
  } else {
    it->second.second -= tj.total_milli();
  }
  waiting_milli_ -= tj.total_milli();
  const Job& job = jobs_[j];
  const int32_t prio = o_.policy == ReplayPolicy::kGpuorch ? tj.priority : 0;
  pending_of_[job.queue].erase({-prio, tj.arrival, j});
  tenant_dirty_[job.queue] = 1;
}

Status Replayer::Submit(uint32_t j, Time now) {
  const TraceJob& tj = trace_.jobs[j];
  Job& job = jobs_[j];
  Pool& p = pools_[job.pool];
  if (!Feasible(p, tj, job.model)) {
    job.state = JobState::kInfeasible;
    r_.jobs[j].infeasible = true;
    return Status::Ok();
  }
  core::WorkloadSpec w;
  w.name = tj.name;
  w.kind = tj.kind;
  w.queue = core::QueueId(o_.policy == ReplayPolicy::kGpuorch ? job.queue : 0);
  w.priority = o_.policy == ReplayPolicy::kGpuorch ? tj.priority : 0;
  w.preemptible = tj.preemptible;
  w.min_tasks = w.max_tasks = tj.tasks;
  w.task.gpu_count = tj.gpus_per_task;
  w.task.gpu_milli = tj.gpu_milli;
  if (job.model != UINT32_MAX) w.task.models = core::ModelSet::Of(core::GpuModelId(job.model));
  w.submit_time = now;
  w.runtime_estimate = EstimateRuntime(o_.estimates, j, tj.duration);
  w.grace_period = o_.grace_period;
  job.local = static_cast<uint32_t>(p.job_of.size());
  if (Status s = p.engine->Submit(core::WorkloadId(job.local), w); !s.ok()) {
    return Status::Invalid("job " + tj.name + ": " + s.message());
  }
  p.job_of.push_back(j);
  p.dirty = true;
  job.state = JobState::kPending;
  AddPending(j);
  return Status::Ok();
}

void Replayer::Release(Job& job) {
  const Pool& p = pools_[job.pool];
  int64_t milli = 0;
  for (const sched::TaskBinding& b : job.tasks) {
    free_.Apply(p.node_global[b.node.value()], b.gpus, b.gpu_milli, +1);
    milli += int64_t{std::popcount(b.gpus)} * b.gpu_milli;
  }
  used_[job.queue] -= milli;
  tenant_dirty_[job.queue] = 1;
  job.tasks.clear();
}

Status Replayer::Apply(Pool& p, const sched::Plan& plan, Time now) {
  GPUORCH_CHECK(plan.resizes.empty());  // replayed jobs are not elastic
  for (const sched::Bind& b : plan.binds) {
    GPUORCH_CHECK(!b.elastic);
    const uint32_t j = p.job_of[b.workload.value()];
    Job& job = jobs_[j];
    RemovePending(j);
    job.tasks = b.tasks;
    for (const sched::TaskBinding& t : b.tasks) {
      free_.Apply(p.node_global[t.node.value()], t.gpus, t.gpu_milli, -1);
      used_[job.queue] += int64_t{std::popcount(t.gpus)} * t.gpu_milli;
    }
    job.state = JobState::kRunning;
    job.run_start = now;
    JobOutcome& out = r_.jobs[j];
    if (out.first_start < 0) out.first_start = now;
    if (job.entitled_since >= 0) {
      const Duration waited = now - job.entitled_since;
      out.entitled_wait = std::max(out.entitled_wait, waited);
      if (waited > o_.grace_period) out.violated = true;
      job.entitled_since = -1;
    }
    events_.push(Event{now + job.remaining, seq_++, EventType::kFinish, j, job.epoch});
  }
  for (const sched::Eviction& e : plan.evictions) {
    const uint32_t j = p.job_of[e.workload.value()];
    Job& job = jobs_[j];
    GPUORCH_CHECK(job.state == JobState::kRunning);
    const Duration ran = now - job.run_start;
    Duration kept = 0;
    if (o_.restart == RestartMode::kCheckpoint) {
      kept =
          o_.checkpoint_interval > 0 ? ran / o_.checkpoint_interval * o_.checkpoint_interval : ran;
    }
    job.remaining -= kept;
    GPUORCH_CHECK(job.remaining > 0);
    r_.lost += trace_.jobs[j].total_milli() * (ran - kept + e.grace_period);
    ++r_.preemptions;
    ++r_.jobs[j].preemptions;
    ++job.epoch;
    job.state = JobState::kEvicting;
    events_.push(Event{now + e.grace_period, seq_++, EventType::kEvictionDone, j, job.epoch});
  }
  return Status::Ok();
}

// Evictions can leave more to do at the same instant (the engine starts one preemption per
// shape and queue per cycle), so cycle again until a cycle changes nothing.
Status Replayer::CycleUntilQuiet(Pool& p, Time now) {
  for (int i = 0; i < 64; ++i) {
    sched::Plan plan = p.engine->Cycle(now);
    ++r_.cycles;
    if (Status s = Apply(p, plan, now); !s.ok()) return s;
    if (plan.evictions.empty()) break;
  }
  p.dirty = false;
  return Status::Ok();
}

// Which pending jobs of queue q are in quota now: walking them in the engine's order
// (priority, then arrival), a job is in quota when the queue's usage plus the in-quota jobs
// before it plus itself stays within the guarantee. Such a job must start within the grace
// period (the time victims need to leave).
void Replayer::UpdateEntitlement(uint32_t q, Time now) {
  const int64_t g = queues_.queues[q].guarantee_milli;
  int64_t s = used_[q];
  std::vector<uint32_t> now_in;
  for (const auto& [neg_prio, arrival, j] : pending_of_[q]) {
    if (s >= g) break;
    const int64_t d = trace_.jobs[j].total_milli();
    if (s + d <= g) {
      now_in.push_back(j);
      s += d;
    }
  }
  for (uint32_t j : entitled_[q]) {
    if (jobs_[j].state != JobState::kPending) continue;
    if (std::find(now_in.begin(), now_in.end(), j) == now_in.end()) jobs_[j].entitled_since = -1;
  }
  for (uint32_t j : now_in) {
    if (jobs_[j].entitled_since < 0) jobs_[j].entitled_since = now;
  }
  entitled_[q] = std::move(now_in);
}

void Replayer::Advance(Time to) {
  const Duration dt = to - now_;
  if (dt <= 0) return;
  r_.busy += rate_.busy_milli * dt;
  r_.waiting += rate_.waiting_milli * dt;
  r_.idle_while_waiting +=
      std::min(r_.capacity_milli - rate_.busy_milli, rate_.runnable_milli) * dt;
  now_ = to;
}

Status Replayer::Run() {
  size_t next_arrival = 0;
  const auto& tj = trace_.jobs;
  while (next_arrival < tj.size() || !events_.empty()) {
    Time t = next_arrival < tj.size() ? tj[next_arrival].arrival : INT64_MAX;
    if (!events_.empty()) t = std::min(t, events_.top().t);
    Advance(t);
    // Completions and eviction deadlines first, so arrivals see the freed GPUs.
    while (!events_.empty() && events_.top().t == t) {
      const Event e = events_.top();
      events_.pop();
      Job& job = jobs_[e.job];
      if (e.epoch != job.epoch) continue;  // a completion overtaken by an eviction
      Pool& p = pools_[job.pool];
      const core::WorkloadId id(job.local);
      if (e.type == EventType::kFinish) {
        GPUORCH_CHECK(job.state == JobState::kRunning);
        if (Status s = p.engine->WorkloadFinished(id); !s.ok()) return s;
        Release(job);
        job.state = JobState::kDone;
        r_.jobs[e.job].finish = t;
      } else {
        if (Status s = p.engine->EvictionCompleted(id); !s.ok()) return s;
        Release(job);
        job.state = JobState::kPending;
        AddPending(e.job);
      }
      p.dirty = true;
      r_.end = t;
    }
    while (next_arrival < tj.size() && tj[next_arrival].arrival == t) {
      if (Status s = Submit(static_cast<uint32_t>(next_arrival), t); !s.ok()) return s;
      ++next_arrival;
    }
    for (Pool& p : pools_) {
      if (!p.dirty) continue;
      if (Status s = CycleUntilQuiet(p, t); !s.ok()) return s;
    }
    for (uint32_t q = 0; q < tenant_dirty_.size(); ++q) {
      if (tenant_dirty_[q]) UpdateEntitlement(q, t), tenant_dirty_[q] = 0;
    }
    Segment seg{t, free_.busy_milli(), waiting_milli_, 0};
    for (const auto& [shape, count] : pending_shapes_) {
      const auto& [tasks, g, milli, model] = shape;
      if (free_.Fits(tasks, g, milli, model)) seg.runnable_milli += count.second;
    }
    rate_ = seg;
    if (r_.segments.empty() || r_.segments.back().busy_milli != seg.busy_milli ||
        r_.segments.back().waiting_milli != seg.waiting_milli ||
        r_.segments.back().runnable_milli != seg.runnable_milli) {
      r_.segments.push_back(seg);
    }
    r_.end = std::max(r_.end, t);
  }
  // Work still waiting at the end never started (it can never fit its pool).
  for (uint32_t j = 0; j < jobs_.size(); ++j) {
    if (jobs_[j].state == JobState::kPending && jobs_[j].entitled_since >= 0 &&
        r_.end - jobs_[j].entitled_since > o_.grace_period) {
      r_.jobs[j].violated = true;
    }
  }
  return Status::Ok();
}

}  // namespace

Result<ReplayResult> RunReplay(const Trace& trace, const ClusterConfig& cluster,
                               const QueuesConfig& queues, const ReplayOptions& options) {
  if (Status s = options.estimates.Validate(); !s.ok()) return s;
  Replayer r(trace, cluster, queues, options);
  if (Status s = r.Setup(); !s.ok()) return s;
  if (Status s = r.Run(); !s.ok()) return s;
  ReplayResult out = r.TakeResult();
  out.policy = options.policy;
  return out;
}

}  // namespace gpuorch::sim
