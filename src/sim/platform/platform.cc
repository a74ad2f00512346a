// The platform experiment's driver (platform.h): jobs and replicas in, engine plans applied,
// per-minute accounting out. docs/platform.md defines every metric.
#include "sim/platform/platform.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <memory>
#include <queue>
#include <tuple>

#include "autoscale/autoscaler.h"
#include "sched/scheduler.h"
#include "sim/replay/free_index.h"

namespace gpuorch::sim::platform {

using core::Duration;
using core::Result;
using core::Status;
using core::Time;

const char* ToString(Policy p) {
  switch (p) {
    case Policy::kStatic:
      return "static";
    case Policy::kPoolNoAutoscale:
      return "pool-no-autoscale";
    case Policy::kGpuorch:
      return "gpuorch";
  }
  return "?";
}

bool ParsePolicy(std::string_view s, Policy& p) {
  for (Policy c : kPolicies) {
    if (s == ToString(c)) return p = c, true;
  }
  return false;
}

ServiceDemand MakeServiceDemand(const std::string& name, const CapacityProfile& capacity,
                                double rho_max, const Demand& demand) {
  ServiceDemand d;
  d.name = name;
  d.capacity = capacity;
  d.rho_max = rho_max;
  const size_t seconds = demand.requests.size();
  d.load.resize(seconds);
  const size_t minutes = seconds / 60;
  d.needed.assign(minutes, 0);
  d.requests.assign(minutes, 0);
  double prompt = 0, output = 0, requests = 0;
  for (size_t s = 0; s < seconds; ++s) {
    d.load[s] =
        static_cast<float>(ReplicaLoad(capacity, demand.prompt_tokens[s], demand.output_tokens[s]));
    prompt += demand.prompt_tokens[s];
    output += demand.output_tokens[s];
    requests += demand.requests[s];
  }
  for (size_t m = 0; m < minutes; ++m) {
    double p = 0, o = 0, r = 0;
    for (size_t s = m * 60; s < m * 60 + 60; ++s) {
      p += demand.prompt_tokens[s];
      o += demand.output_tokens[s];
      r += demand.requests[s];
    }
    d.requests[m] = r;
    d.needed[m] = NeededReplicas(ReplicaLoad(capacity, p / 60, o / 60), rho_max);
    d.peak_needed = std::max(d.peak_needed, d.needed[m]);
  }
  if (requests > 0) {
    d.mean_prompt = prompt / requests;
    d.mean_output = output / requests;
  }
  return d;
}

int32_t Partitions::inference_nodes() const {
  int32_t n = 0;
  for (int32_t s : service_nodes) n += s;
  return n;
}

int32_t Partitions::training_nodes() const {
  int32_t n = 0;
  for (int32_t t : team_nodes) n += t;
  return n;
}

Result<Partitions> PlanPartitions(const PlatformConfig& config,
                                  const std::vector<ServiceDemand>& services) {
  const ClusterConfig& cl = config.cluster;
  const int32_t node_gpus = cl.nodes.front().gpu_count;
  for (const core::NodeSpec& n : cl.nodes) {
    if (n.gpu_count != node_gpus || n.gpu_model != cl.nodes.front().gpu_model) {
      return Status::Invalid("cluster: the platform experiment needs identical nodes (" + n.name +
                             " differs from " + cl.nodes.front().name + ")");
    }
  }
  Partitions p;
  for (const ServiceDemand& s : services) {
    const int64_t per_node = node_gpus / s.capacity.gpus_per_replica;
    const int64_t nodes = (std::max<int64_t>(s.peak_needed, 1) + per_node - 1) / per_node;
    if (nodes > static_cast<int64_t>(cl.nodes.size())) {
      return Status::Invalid("inference.services." + s.name + ": its peak of " +
                             std::to_string(s.peak_needed) + " replicas needs " +
                             std::to_string(nodes) + " nodes, more than the cluster's " +
                             std::to_string(cl.nodes.size()) + " (lower rate_scale)");
    }
    p.service_nodes.push_back(static_cast<int32_t>(nodes));
  }
  p.experiment_nodes = config.experiments.nodes;
  const int32_t total = static_cast<int32_t>(cl.nodes.size());
  const int32_t left = total - p.inference_nodes() - p.experiment_nodes;
  const auto& teams = config.training.teams;
  if (left < static_cast<int32_t>(teams.size())) {
    return Status::Invalid("cluster: " + std::to_string(total) + " nodes; inference needs " +
                           std::to_string(p.inference_nodes()) + " at its peak and experiments " +
                           std::to_string(p.experiment_nodes) + ", which leaves " +
                           std::to_string(left) + " for " + std::to_string(teams.size()) +
                           " training teams (lower rate_scale or experiments.nodes)");
  }
  double share_sum = 0;
  for (const TeamConfig& t : teams) share_sum += t.share;
  std::vector<std::pair<double, size_t>> rem;
  int32_t given = 0;
  for (size_t i = 0; i < teams.size(); ++i) {
    const double exact = left * teams[i].share / share_sum;
    const int32_t n = std::max(1, static_cast<int32_t>(std::floor(exact)));
    p.team_nodes.push_back(n);
    given += n;
    rem.emplace_back(-(exact - std::floor(exact)), i);
  }
  std::sort(rem.begin(), rem.end());
  for (size_t k = 0; given < left; ++k, ++given) ++p.team_nodes[rem[k % rem.size()].second];
  for (size_t k = 0; given > left; ++k) {
    size_t i = rem[rem.size() - 1 - k % rem.size()].second;
    if (p.team_nodes[i] > 1) --p.team_nodes[i], --given;
  }
  return p;
}

namespace {

constexpr Time kMinute = 60 * core::kSecond;

enum class UnitKind : uint8_t { kTraining, kExperiment, kReplica };
enum class UState : uint8_t { kPending, kRunning, kTail, kEvicting, kDraining, kDone };

struct Unit {
  UnitKind kind = UnitKind::kTraining;
  uint32_t ref = 0;  // job index, or service index for a replica
  uint32_t pool = 0;
  uint32_t local = 0;  // the engine's WorkloadId in its pool
  UState state = UState::kPending;
  int32_t tasks = 1, gpus_per_task = 1, gpu_milli = 1000;
  Duration remaining = 0;
  Time run_start = 0;
  uint32_t epoch = 0;
  bool started = false;
  bool ready = false;
  bool warm = false;      // a replica of the initial set: Ready when bound
  bool remove = false;    // a replica to cancel when its eviction ends
  bool was_tail = false;  // evicted during its idle tail: its work is done
  bool tail_cut = false;  // its idle tail is cut short by idle reclaim
  std::vector<sched::TaskBinding> bound;
  int64_t milli() const { return int64_t{tasks} * gpus_per_task * gpu_milli; }
};

enum class EventType : uint8_t { kFinish, kTailEnd, kEvictionDone, kReady, kDrainDone, kWithdraw };
struct Event {
  Time t;
  uint64_t seq;
  EventType type;
  uint32_t unit;
  uint32_t epoch;
  bool operator>(const Event& o) const { return std::tie(t, seq) > std::tie(o.t, o.seq); }
};

struct Pool {
  std::unique_ptr<sched::Scheduler> engine;
  std::vector<uint32_t> node_global;
  std::vector<uint32_t> unit_of;  // engine WorkloadId -> unit
  int32_t node_gpus = 0;
  bool dirty = false;
};

// Accounting classes of allocated GPUs.
enum Cls : int { kInference = 0, kTraining = 1, kExperiment = 2, kIdleHeld = 3, kClasses = 4 };

using Shape = std::tuple<int32_t, int32_t, int32_t>;

class Runner {
 public:
  Runner(const PlatformInput& in, Policy policy)
      : in_(in), cfg_(*in.config), services_(*in.services), work_(*in.work), policy_(policy) {}

  Status Setup();
  Status Run();
  PolicyResult Take() { return std::move(r_); }

 private:
  Status MakePool(int32_t first_node, int32_t nodes, const std::vector<int64_t>& guarantees);
  uint32_t QueueOf(const Unit& u) const;
  uint32_t PoolOf(const Unit& u) const;
  Status Submit(uint32_t unit, Time now);
  Status Apply(Pool& p, const sched::Plan& plan, Time now);
  Status CycleUntilQuiet(Pool& p, Time now);
  Status HandleEvent(const Event& e);
  Status Autoscale(Time now);
  Status Reconcile(uint32_t service, int32_t desired, Time now);
  Status NewReplica(uint32_t service, Time now, bool warm);
  void Bind(Unit& u, const std::vector<sched::TaskBinding>& tasks);
  void Release(Unit& u);
  void SetClass(Unit& u, int cls, int sign);
  int ClassOf(const Unit& u) const;
  void SetReady(Unit& u, bool ready);
  void AddPending(const Unit& u, int sign);
  void Advance(Time to);
  void FlushMinute(int64_t minute);
  autoscale::ServiceParams ParamsOf(uint32_t s) const {
    const auto& services = cfg_.inference.services;
    return s < services.size() ? services[s].Autoscale(cfg_.inference) : cfg_.inference.autoscale;
  }
  bool Measured(Time t) const { return t >= measure_from_ && t < horizon_; }
  void Push(Time t, EventType type, uint32_t unit) {
    events_.push(Event{t, seq_++, type, unit, units_[unit].epoch});
  }

  const PlatformInput& in_;
  const PlatformConfig& cfg_;
  const std::vector<ServiceDemand>& services_;
  const Workloads& work_;
  Policy policy_;
  PolicyResult r_;
  Time horizon_ = 0;       // the end of the measured window
  Time measure_from_ = 0;  // its start (after the warm-up)
  int64_t first_minute_ = 0;
  Time next_cycle_ = 0;
  std::vector<Pool> pools_;
  std::vector<Unit> units_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  uint64_t seq_ = 0;
  autoscale::Autoscaler scaler_;
  FreeIndex free_;
  std::map<Shape, std::pair<int64_t, int64_t>> pending_shapes_;  // -> units, milli
  std::array<int64_t, kClasses> alloc_{};                        // milli-GPU now
  std::vector<int64_t> held_;                                    // per service, milli-GPU
  std::vector<int32_t> ready_count_, min_ready_;
  std::vector<std::vector<uint32_t>> replicas_of_;  // per service: its replica units
  int64_t runnable_ = 0;
  bool shapes_changed_ = true;  // pending work or free GPUs changed since runnable_
  // Accumulated over the current minute: milli-GPU x ms.
  std::array<double, kClasses> acc_{};
  double acc_free_ = 0, acc_iww_ = 0;
  std::vector<double> acc_held_;
  Time now_ = 0;
  int64_t training_left_ = 0;
  std::vector<Time> first_start_;
};

uint32_t Runner::QueueOf(const Unit& u) const {
  if (policy_ == Policy::kStatic) return 0;
  const uint32_t teams = static_cast<uint32_t>(cfg_.training.teams.size());
  switch (u.kind) {
    case UnitKind::kReplica:
      return 0;
    case UnitKind::kTraining:
      return 1 + work_.jobs[u.ref].team;
    case UnitKind::kExperiment:
      return 1 + teams;
  }
  return 0;
}

uint32_t Runner::PoolOf(const Unit& u) const {
  if (policy_ != Policy::kStatic) return 0;
  const uint32_t svc = static_cast<uint32_t>(services_.size());
  const uint32_t teams = static_cast<uint32_t>(cfg_.training.teams.size());
  switch (u.kind) {
    case UnitKind::kReplica:
      return u.ref;
    case UnitKind::kTraining:
      return svc + work_.jobs[u.ref].team;
    case UnitKind::kExperiment:
      return svc + teams;
  }
  return 0;
}

Status Runner::MakePool(int32_t first_node, int32_t nodes, const std::vector<int64_t>& guarantees) {
  sched::SchedulerConfig sc;
  sc.seed = cfg_.seed;
  sc.explain_pending = false;  // the simulator reads no explanations
  if (policy_ == Policy::kStatic) {
    // Strict arrival order inside each partition, nothing evicted (as `sim replay`'s static).
    sc.preemption = false;
    sc.reservations = false;
  }
  auto engine = sched::Scheduler::Create(sc);
  if (!engine.ok()) return engine.status();
  Pool p;
  p.engine = std::move(engine).value();
  for (int32_t k = 0; k < nodes; ++k) {
    const uint32_t n = static_cast<uint32_t>(first_node + k);
    const auto id = core::NodeId(static_cast<uint32_t>(p.node_global.size()));
    if (Status s = p.engine->AddNode(id, cfg_.cluster.nodes[n]); !s.ok()) return s;
    p.node_global.push_back(n);
    p.node_gpus = cfg_.cluster.nodes[n].gpu_count;
  }
  std::vector<std::string> names;
  if (policy_ == Policy::kStatic) {
    names.push_back("partition");
  } else {
    names.push_back("inference");
    for (const TeamConfig& t : cfg_.training.teams) names.push_back(t.name);
    names.push_back("experiments");
  }
  for (size_t q = 0; q < guarantees.size(); ++q) {
    core::QueueSpec spec;
    spec.name = names[q];
    spec.quotas.push_back(core::QuotaEntry{core::GpuModelId(), guarantees[q], core::kUnlimited});
    if (Status s = p.engine->AddQueue(core::QueueId(static_cast<uint32_t>(q)), spec); !s.ok()) {
      return s;
    }
  }
  pools_.push_back(std::move(p));
  return Status::Ok();
}

Status Runner::Setup() {
  const Partitions& part = in_.partitions;
  const int32_t node_gpus = cfg_.cluster.nodes.front().gpu_count;
  const int64_t per_node = int64_t{node_gpus} * core::kMilliGpu;
  measure_from_ = int64_t{cfg_.warmup_days} * 86400 * core::kSecond;
  horizon_ = measure_from_ + int64_t{cfg_.days} * 86400 * core::kSecond;
  first_minute_ = measure_from_ / kMinute;
  r_.policy = policy_;
  r_.capacity_gpus = cfg_.cluster.total_gpus();
  for (const core::NodeSpec& n : cfg_.cluster.nodes)
    free_.AddNode(n.gpu_model.value(), n.gpu_count);
  if (policy_ == Policy::kStatic) {
    int32_t next = 0;
    auto add = [&](int32_t nodes) -> Status {
      Status s = MakePool(next, nodes, {int64_t{nodes} * per_node});
      next += nodes;
      return s;
    };
    for (int32_t n : part.service_nodes) {
      if (Status s = add(n); !s.ok()) return s;
    }
    for (int32_t n : part.team_nodes) {
      if (Status s = add(n); !s.ok()) return s;
    }
    if (Status s = add(part.experiment_nodes); !s.ok()) return s;
  } else {
    std::vector<int64_t> g = {int64_t{part.inference_nodes()} * per_node};
    for (int32_t n : part.team_nodes) g.push_back(int64_t{n} * per_node);
    g.push_back(int64_t{part.experiment_nodes} * per_node);
    if (Status s = MakePool(0, static_cast<int32_t>(cfg_.cluster.nodes.size()), g); !s.ok()) {
      return s;
    }
  }
  const size_t ns = services_.size();
  held_.assign(ns, 0);
  replicas_of_.resize(ns);
  ready_count_.assign(ns, 0);
  min_ready_.assign(ns, 0);
  acc_held_.assign(ns, 0);
  const int64_t minutes = (horizon_ - measure_from_) / kMinute;
  r_.minutes.resize(static_cast<size_t>(minutes));
  r_.ready.assign(ns, std::vector<int32_t>(static_cast<size_t>(minutes), 0));
  r_.missed.assign(ns, 0);
  r_.missed_by_one.assign(ns, 0);
  r_.held.assign(ns, std::vector<float>(static_cast<size_t>(minutes), 0));
  units_.reserve(work_.jobs.size() + 1024);
  for (uint32_t j = 0; j < work_.jobs.size(); ++j) {
    const PlatformJob& job = work_.jobs[j];
    Unit u;
    u.kind = job.cls == JobClass::kTraining ? UnitKind::kTraining : UnitKind::kExperiment;
    u.ref = j;
    u.tasks = job.tasks;
    u.gpus_per_task = job.gpus_per_task;
    u.gpu_milli = job.gpu_milli;
    u.remaining = job.work;
    u.pool = PoolOf(u);
    units_.push_back(u);
  }
  first_start_.assign(work_.jobs.size(), -1);
  // The initial replicas, warm: the peak for the fixed policies, the first minute's need
  // for the autoscaled one.
  for (uint32_t s = 0; s < ns; ++s) {
    const ServiceDemand& d = services_[s];
    int32_t n = d.peak_needed;
    if (policy_ == Policy::kGpuorch) {
      const autoscale::ServiceParams params = ParamsOf(s);
      n = std::max(params.min_replicas, d.needed.empty() ? 0 : d.needed[0]);
      if (Status st = scaler_.AddService(autoscale::ServiceId(s), params, 0, n); !st.ok()) {
        return Status::Invalid("inference.autoscale: " + st.message());
      }
    }
    for (int32_t k = 0; k < n; ++k) {
      if (Status st = NewReplica(s, 0, true); !st.ok()) return st;
    }
  }
  return Status::Ok();
}

int Runner::ClassOf(const Unit& u) const {
  if (u.state == UState::kTail || (u.state == UState::kEvicting && u.was_tail)) return kIdleHeld;
  switch (u.kind) {
    case UnitKind::kReplica:
      return kInference;
    case UnitKind::kTraining:
      return kTraining;
    case UnitKind::kExperiment:
      return kExperiment;
  }
  return kTraining;
}

void Runner::SetClass(Unit& u, int cls, int sign) {
  alloc_[cls] += sign * u.milli();
  if (u.kind == UnitKind::kReplica) held_[u.ref] += sign * u.milli();
}

void Runner::SetReady(Unit& u, bool ready) {
  if (u.ready == ready) return;
  u.ready = ready;
  int32_t& c = ready_count_[u.ref];
  c += ready ? 1 : -1;
  min_ready_[u.ref] = std::min(min_ready_[u.ref], c);
}

void Runner::AddPending(const Unit& u, int sign) {
  shapes_changed_ = true;
  auto& e = pending_shapes_[{u.tasks, u.gpus_per_task, u.gpu_milli}];
  e.first += sign;
  e.second += sign * u.milli();
  if (e.first == 0) pending_shapes_.erase({u.tasks, u.gpus_per_task, u.gpu_milli});
}

Status Runner::NewReplica(uint32_t service, Time now, bool warm) {
  const CapacityProfile& c = services_[service].capacity;
  Unit u;
  u.kind = UnitKind::kReplica;
  u.ref = service;
  u.tasks = 1;
  u.gpus_per_task = c.gpus_per_replica;
  u.warm = warm;
  u.pool = PoolOf(u);
  units_.push_back(u);
  replicas_of_[service].push_back(static_cast<uint32_t>(units_.size() - 1));
  return Submit(static_cast<uint32_t>(units_.size() - 1), now);
}

Status Runner::Submit(uint32_t unit, Time now) {
  Unit& u = units_[unit];
  Pool& p = pools_[u.pool];
  // A gang its partition can never hold (only under `static`) is infeasible.
  if (int64_t{p.node_gpus / u.gpus_per_task} * static_cast<int64_t>(p.node_global.size()) <
      u.tasks) {
    u.state = UState::kDone;
    if (u.kind == UnitKind::kTraining) {
      --training_left_;
      if (Measured(now)) ++r_.training_infeasible;
    }
    return Status::Ok();
  }
  core::WorkloadSpec w;
  w.queue = core::QueueId(QueueOf(u));
  w.preemptible = true;
  w.min_tasks = w.max_tasks = u.tasks;
  w.task.gpu_count = u.gpus_per_task;
  w.task.gpu_milli = u.gpu_milli;
  w.submit_time = now;
  w.grace_period = int64_t{cfg_.grace_period_s} * core::kSecond;
  switch (u.kind) {
    case UnitKind::kReplica:
      w.name = services_[u.ref].name;
      w.kind = core::WorkloadKind::kInference;
      w.priority = cfg_.inference.priority;
      break;
    case UnitKind::kTraining:
      w.name = "train";
      w.kind = core::WorkloadKind::kTraining;
      w.priority = cfg_.training.priority;
      w.runtime_estimate = u.remaining;
      break;
    case UnitKind::kExperiment:
      w.name = "exp";
      w.kind = core::WorkloadKind::kExperiment;
      w.priority = cfg_.experiments.priority;
      w.runtime_estimate = u.remaining;
      break;
  }
  if (policy_ == Policy::kStatic) w.priority = 0;
  u.local = static_cast<uint32_t>(p.unit_of.size());
  if (Status s = p.engine->Submit(core::WorkloadId(u.local), w); !s.ok()) {
    return Status::Invalid(w.name + ": " + s.message());
  }
  p.unit_of.push_back(unit);
  p.dirty = true;
  u.state = UState::kPending;
  AddPending(u, +1);
  if (u.kind == UnitKind::kExperiment) {
    Push(now + static_cast<Duration>(cfg_.experiments.max_wait_h * 3600 * core::kSecond),
         EventType::kWithdraw, unit);
  }
  return Status::Ok();
}

void Runner::Bind(Unit& u, const std::vector<sched::TaskBinding>& tasks) {
  const Pool& p = pools_[u.pool];
  shapes_changed_ = true;
  u.bound = tasks;
  for (const sched::TaskBinding& b : tasks) {
    free_.Apply(p.node_global[b.node.value()], b.gpus, b.gpu_milli, -1);
  }
}

void Runner::Release(Unit& u) {
  const Pool& p = pools_[u.pool];
  shapes_changed_ = true;
  for (const sched::TaskBinding& b : u.bound) {
    free_.Apply(p.node_global[b.node.value()], b.gpus, b.gpu_milli, +1);
  }
  u.bound.clear();
  SetClass(u, ClassOf(u), -1);
}

Status Runner::Apply(Pool& p, const sched::Plan& plan, Time now) {
  for (const sched::Bind& b : plan.binds) {
    GPUORCH_CHECK(!b.elastic);
    const uint32_t id = p.unit_of[b.workload.value()];
    Unit& u = units_[id];
    AddPending(u, -1);
    Bind(u, b.tasks);
    u.state = UState::kRunning;
    u.run_start = now;
    SetClass(u, ClassOf(u), +1);
    if (u.kind == UnitKind::kReplica) {
      if (u.warm) {
        SetReady(u, true);
        u.warm = false;  // a restart after an eviction loads the model again
      } else {
        Push(now + int64_t{cfg_.inference.startup_s} * core::kSecond, EventType::kReady, id);
      }
      continue;
    }
    if (!u.started && u.kind == UnitKind::kTraining) first_start_[u.ref] = now;
    u.started = true;
    Push(now + u.remaining, EventType::kFinish, id);
  }
  for (const sched::Eviction& e : plan.evictions) {
    const uint32_t id = p.unit_of[e.workload.value()];
    Unit& u = units_[id];
    GPUORCH_CHECK(u.state == UState::kRunning || u.state == UState::kTail ||
                  u.state == UState::kDraining);
    if (Measured(now)) ++r_.preemptions[sched::ToString(e.reason)];
    const Duration ran = now - u.run_start;
    if (u.state == UState::kTail) {
      u.was_tail = true;  // its work is done: nothing lost
    } else if (u.state == UState::kDraining) {
      u.remove = true;  // it was leaving anyway
    } else if (u.kind == UnitKind::kReplica) {
      SetReady(u, false);
    } else {
      const Duration kept = cfg_.checkpoint_on_sigterm ? ran : 0;
      if (u.kind == UnitKind::kExperiment && Measured(now)) {
        // Within the measured window only, like the work it is compared with.
        const double m = static_cast<double>(u.milli());
        const Duration ran_in = now - std::max(u.run_start, measure_from_);
        const Duration lost_in = std::min(ran - kept, ran_in);
        const Duration grace_in = std::min(e.grace_period, horizon_ - now);
        r_.experiment_lost += m * static_cast<double>(lost_in + grace_in);
        r_.experiment_lost_without_checkpoint += m * static_cast<double>(ran_in + grace_in);
      }
      u.remaining -= kept;
    }
    ++u.epoch;
    SetClass(u, ClassOf(u), -1);
    u.state = UState::kEvicting;
    SetClass(u, ClassOf(u), +1);
    Push(now + e.grace_period, EventType::kEvictionDone, id);
  }
  GPUORCH_CHECK(plan.resizes.empty());
  return Status::Ok();
}

Status Runner::CycleUntilQuiet(Pool& p, Time now) {
  for (int i = 0; i < 64; ++i) {
    sched::Plan plan = p.engine->Cycle(now);
    ++r_.cycles;
    if (Status s = Apply(p, plan, now); !s.ok()) return s;
    if (plan.evictions.empty()) break;
  }
  p.dirty = false;
  return Status::Ok();
}

Status Runner::HandleEvent(const Event& e) {
  Unit& u = units_[e.unit];
  if (e.epoch != u.epoch || u.state == UState::kDone) return Status::Ok();
  Pool& p = pools_[u.pool];
  const core::WorkloadId id(u.local);
  const Time t = e.t;
  auto finish = [&]() -> Status {
    if (Status s = p.engine->WorkloadFinished(id); !s.ok()) return s;
    Release(u);
    u.state = UState::kDone;
    p.dirty = true;
    return Status::Ok();
  };
  switch (e.type) {
    case EventType::kFinish: {
      if (u.state != UState::kRunning) return Status::Ok();
      const PlatformJob& job = work_.jobs[u.ref];
      if (u.kind == UnitKind::kExperiment && Measured(t)) ++r_.experiments_finished;
      if (u.kind == UnitKind::kExperiment && job.idle_tail > 0) {
        SetClass(u, ClassOf(u), -1);
        u.state = UState::kTail;
        SetClass(u, ClassOf(u), +1);
        Duration tail = job.idle_tail;
        const Duration after = int64_t{cfg_.idle_reclaim_after_s} * core::kSecond;
        if (policy_ == Policy::kGpuorch && after > 0 && tail > after) {
          tail = after;
          u.tail_cut = true;
        }
        Push(t + tail, EventType::kTailEnd, e.unit);
        return Status::Ok();
      }
      if (u.kind == UnitKind::kTraining && Measured(job.arrival)) {
        r_.training_jct_ms.push_back(t - job.arrival);
        r_.training_delay_ms.push_back(first_start_[u.ref] - job.arrival);
        ++r_.training_finished;
      }
      if (u.kind == UnitKind::kTraining) {
        --training_left_;
        r_.end = std::max(r_.end, t);
      }
      return finish();
    }
    case EventType::kTailEnd:
      if (u.state != UState::kTail) return Status::Ok();
      if (u.tail_cut && Measured(t)) ++r_.preemptions["IdleReclaim"];
      return finish();
    case EventType::kReady:
      if (u.state == UState::kRunning) SetReady(u, true);
      return Status::Ok();
    case EventType::kDrainDone:
      if (u.state != UState::kDraining) return Status::Ok();
      if (Status s = p.engine->Cancel(id); !s.ok()) return s;
      Release(u);
      u.state = UState::kDone;
      p.dirty = true;
      return Status::Ok();
    case EventType::kEvictionDone: {
      if (u.state != UState::kEvicting) return Status::Ok();
      if (Status s = p.engine->EvictionCompleted(id); !s.ok()) return s;
      Release(u);
      p.dirty = true;
      if (u.was_tail || u.remove) {
        if (Status s = p.engine->Cancel(id); !s.ok()) return s;
        u.state = UState::kDone;
        return Status::Ok();
      }
      u.state = UState::kPending;
      AddPending(u, +1);
      return Status::Ok();
    }
    case EventType::kWithdraw:
      if (u.state != UState::kPending || u.started) return Status::Ok();
      if (Status s = p.engine->Cancel(id); !s.ok()) return s;
      AddPending(u, -1);
      u.state = UState::kDone;
      if (Measured(t)) ++r_.experiments_withdrawn;
      p.dirty = true;
      return Status::Ok();
  }
  return Status::Ok();
}

Status Runner::Reconcile(uint32_t service, int32_t desired, Time now) {
  // Live replicas, in the order they go when scaling down: pending first, then starting,
  // then Ready ones, newest first.
  std::vector<uint32_t>& mine = replicas_of_[service];
  std::erase_if(mine, [&](uint32_t i) { return units_[i].state == UState::kDone; });
  std::vector<uint32_t> live;
  for (auto it = mine.rbegin(); it != mine.rend(); ++it) {  // newest first
    const Unit& u = units_[*it];
    if (u.remove) continue;
    if (u.state == UState::kPending || u.state == UState::kRunning ||
        u.state == UState::kEvicting) {
      live.push_back(*it);
    }
  }
  const int32_t n = static_cast<int32_t>(live.size());
  if (n == desired) return Status::Ok();
  for (int32_t k = n; k < desired; ++k) {
    if (Status s = NewReplica(service, now, false); !s.ok()) return s;
  }
  if (desired >= n) return Status::Ok();
  std::stable_sort(live.begin(), live.end(), [&](uint32_t a, uint32_t b) {
    auto rank = [&](const Unit& u) {
      return u.state == UState::kPending ? 0 : u.state == UState::kEvicting ? 1 : u.ready ? 3 : 2;
    };
    return rank(units_[a]) < rank(units_[b]);
  });
  for (int32_t k = 0; k < n - desired; ++k) {
    Unit& u = units_[live[static_cast<size_t>(k)]];
    Pool& p = pools_[u.pool];
    const core::WorkloadId id(u.local);
    p.dirty = true;
    if (u.state == UState::kEvicting) {
      u.remove = true;
    } else if (u.state == UState::kPending) {
      if (Status s = p.engine->Cancel(id); !s.ok()) return s;
      AddPending(u, -1);
      u.state = UState::kDone;
    } else if (!u.ready) {
      if (Status s = p.engine->Cancel(id); !s.ok()) return s;
      Release(u);
      u.state = UState::kDone;
    } else {
      SetReady(u, false);
      u.state = UState::kDraining;
      Push(now + int64_t{cfg_.inference.drain_s} * core::kSecond, EventType::kDrainDone,
           live[static_cast<size_t>(k)]);
    }
  }
  return Status::Ok();
}

Status Runner::Autoscale(Time now) {
  const size_t second = static_cast<size_t>(now / core::kSecond);
  for (uint32_t s = 0; s < services_.size(); ++s) {
    const ServiceDemand& d = services_[s];
    const double target = ParamsOf(s).target;
    const autoscale::ServiceId id(s);
    // Offered concurrency (Little's law on the second's arrivals): the work that arrived,
    // at the calibrated target (a replica at rho_max carries `target` in flight). Requests
    // queued behind too few replicas are not added (docs/platform.md).
    const double in_flight = d.load[second] / d.rho_max * target;
    if (Status st = scaler_.Observe(id, autoscale::Source::kPushedInFlight, in_flight, now);
        !st.ok()) {
      return st;
    }
    if (Status st = scaler_.SetReady(id, ready_count_[s]); !st.ok()) return st;
    auto decision = scaler_.Decide(id, now);
    if (!decision.ok()) return decision.status();
    if (Status st = Reconcile(s, decision->desired, now); !st.ok()) return st;
  }
  return Status::Ok();
}

void Runner::Advance(Time to) {
  const Time from = std::max(now_, measure_from_), end = std::min(to, horizon_);
  if (end <= from) {
    now_ = std::max(now_, to);
    return;
  }
  const double dt = static_cast<double>(end - from);
  int64_t used = 0;
  for (int c = 0; c < kClasses; ++c) {
    acc_[c] += static_cast<double>(alloc_[c]) * dt;
    used += alloc_[c];
  }
  const int64_t free = r_.capacity_gpus * core::kMilliGpu - used;
  acc_free_ += static_cast<double>(free) * dt;
  acc_iww_ += static_cast<double>(std::min(free, runnable_)) * dt;
  for (size_t s = 0; s < held_.size(); ++s) acc_held_[s] += static_cast<double>(held_[s]) * dt;
  now_ = std::max(now_, to);
}

void Runner::FlushMinute(int64_t run_minute) {
  if (run_minute < first_minute_) {
    for (size_t s = 0; s < services_.size(); ++s) min_ready_[s] = ready_count_[s];
    return;
  }
  const int64_t minute = run_minute - first_minute_;
  const double norm = static_cast<double>(kMinute) * core::kMilliGpu;  // -> mean GPUs
  MinuteRow& row = r_.minutes[static_cast<size_t>(minute)];
  row.inference = static_cast<float>(acc_[kInference] / norm);
  row.training = static_cast<float>(acc_[kTraining] / norm);
  row.experiment = static_cast<float>(acc_[kExperiment] / norm);
  row.idle_held = static_cast<float>(acc_[kIdleHeld] / norm);
  row.free = static_cast<float>(acc_free_ / norm);
  row.idle_while_waiting = static_cast<float>(acc_iww_ / norm);
  double over = 0;
  for (size_t s = 0; s < services_.size(); ++s) {
    const ServiceDemand& d = services_[s];
    const double held = acc_held_[s] / norm;  // GPUs
    const int32_t needed = d.needed[static_cast<size_t>(run_minute)];
    over += std::max(0.0, held - static_cast<double>(needed) * d.capacity.gpus_per_replica);
    r_.ready[s][static_cast<size_t>(minute)] = min_ready_[s];
    r_.held[s][static_cast<size_t>(minute)] = static_cast<float>(held);
    if (min_ready_[s] >= needed) {
      ++r_.slo_minutes;
    } else {
      ++r_.missed[s];
      if (needed - min_ready_[s] == 1) ++r_.missed_by_one[s];
    }
    ++r_.service_minutes;
    const double req = d.requests[static_cast<size_t>(run_minute)];
    r_.requests += req;
    if (min_ready_[s] < needed && needed > 0) {
      // The minute's requests beyond what its fewest Ready replicas serve at rho_max.
      r_.requests_waiting += req * (1.0 - static_cast<double>(min_ready_[s]) / needed);
    }
    r_.replica_minutes += held / d.capacity.gpus_per_replica;
    min_ready_[s] = ready_count_[s];
    acc_held_[s] = 0;
  }
  row.overprovisioned = static_cast<float>(over);
  const double m = static_cast<double>(kMinute) * core::kMilliGpu;
  r_.idle_held += row.idle_held * m;
  r_.idle_while_waiting += row.idle_while_waiting * m;
  r_.idle_nothing_to_run += (row.free - row.idle_while_waiting) * m;
  r_.overprovisioned += over * m;
  r_.experiment_work += acc_[kExperiment];
  acc_.fill(0);
  acc_free_ = acc_iww_ = 0;
}

Status Runner::Run() {
  const auto& jobs = work_.jobs;
  for (const PlatformJob& j : jobs) training_left_ += j.cls == JobClass::kTraining ? 1 : 0;
  size_t next_job = 0;
  const bool autoscaled = policy_ == Policy::kGpuorch;
  Time next_tick = 0;  // autoscaler decisions, once per simulated second
  Time next_minute = kMinute;
  for (Pool& p : pools_) {
    if (Status s = CycleUntilQuiet(p, 0); !s.ok()) return s;
  }
  min_ready_ = ready_count_;
  const Duration period = int64_t{cfg_.scheduling_period_s} * core::kSecond;
  next_cycle_ = 0;
  while (true) {
    Time t = next_job < jobs.size() ? jobs[next_job].arrival : INT64_MAX;
    if (!events_.empty()) t = std::min(t, events_.top().t);
    if (next_minute <= horizon_) t = std::min(t, next_minute);
    if (autoscaled && next_tick < horizon_) t = std::min(t, next_tick);
    const bool dirty =
        std::any_of(pools_.begin(), pools_.end(), [](const Pool& p) { return p.dirty; });
    if (dirty) t = std::min(t, next_cycle_);
    if (t == INT64_MAX) break;
    if (t >= horizon_ && next_minute > horizon_ && training_left_ <= 0) break;
    Advance(t);
    if (t == next_minute && t <= horizon_) {
      FlushMinute(t / kMinute - 1);
      next_minute += kMinute;
    }
    while (!events_.empty() && events_.top().t == t) {
      const Event e = events_.top();
      events_.pop();
      if (Status s = HandleEvent(e); !s.ok()) return s;
    }
    while (next_job < jobs.size() && jobs[next_job].arrival == t) {
      if (Status s = Submit(static_cast<uint32_t>(next_job), t); !s.ok()) return s;
      ++next_job;
    }
    if (autoscaled && t == next_tick && t < horizon_) {
      if (Status s = Autoscale(t); !s.ok()) return s;
      next_tick += core::kSecond;
    }
    // Scheduling cycles run at most once per period (a control plane's cycle), for every
    // pool that had an event since its last one.
    if (t >= next_cycle_) {
      for (Pool& p : pools_) {
        if (p.dirty) {
          if (Status s = CycleUntilQuiet(p, t); !s.ok()) return s;
        }
      }
      next_cycle_ = (t / period + 1) * period;
    }
    if (shapes_changed_) {
      runnable_ = 0;
      for (const auto& [shape, count] : pending_shapes_) {
        const auto& [tasks, g, milli] = shape;
        if (free_.Fits(tasks, g, milli, UINT32_MAX)) runnable_ += count.second;
      }
      shapes_changed_ = false;
    }
  }
  r_.capacity = static_cast<double>(r_.capacity_gpus) * core::kMilliGpu *
                static_cast<double>(horizon_ - measure_from_);
  r_.idle = r_.idle_held + r_.idle_while_waiting + r_.idle_nothing_to_run + r_.overprovisioned;
  for (const PlatformJob& j : jobs) {
    if (Measured(j.arrival))
      (j.cls == JobClass::kTraining ? r_.training_jobs : r_.experiments) += 1;
  }
  std::sort(r_.training_jct_ms.begin(), r_.training_jct_ms.end());
  std::sort(r_.training_delay_ms.begin(), r_.training_delay_ms.end());
  return Status::Ok();
}

}  // namespace

Result<PolicyResult> RunPolicy(const PlatformInput& input, Policy policy) {
  Runner r(input, policy);
  if (Status s = r.Setup(); !s.ok()) return s;
  if (Status s = r.Run(); !s.ok()) return s;
  return r.Take();
}

}  // namespace gpuorch::sim::platform
