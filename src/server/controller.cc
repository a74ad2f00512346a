#include "server/controller.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <tuple>

#include "log/logging.h"

namespace gpuorch::server {

using core::Result;
using core::Status;
using sched::WorkloadState;

namespace {

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::vector<int> MaskToList(sched::GpuMask m) {
  std::vector<int> out;
  for (int j = 0; j < 16; ++j) {
    if ((m >> j) & 1u) out.push_back(j);
  }
  return out;
}

core::WorkloadId Wid(int64_t id) { return core::WorkloadId(static_cast<uint32_t>(id)); }

}  // namespace

Controller::Controller(const ServerConfig& config, store::StateStore* store, WallClock clock)
    : config_(config),
      store_(store),
      clock_(clock ? std::move(clock) : WallClock(WallMs)),
      epoch_(clock_()) {}

Controller::~Controller() {
  // Commits still queued run their callbacks, which use the rest of the controller.
  committer_.reset();
}

Result<std::unique_ptr<Controller>> Controller::Create(const ServerConfig& config,
                                                       store::StateStore* store, WallClock clock) {
  std::unique_ptr<Controller> c(new Controller(config, store, std::move(clock)));
  sched::SchedulerConfig sc;
  sc.policy = config.policy;
  sc.mig_reconfigure = config.mig_reconfigure;
  sc.fair_share_half_life = config.fair_share_half_life_s * core::kSecond;
  auto engine = sched::Scheduler::Create(sc);
  if (!engine.ok()) return Status::Invalid("config: policy: " + engine.status().message());
  c->engine_ = std::move(engine).value();
  if (Status s = c->AddQueues(); !s.ok()) return s;
  if (Status s = c->Load(); !s.ok()) return s;
  for (const auto& [id, w] : c->workloads_) c->NoteLive(w);
#if defined(__GLIBC__)
  // Loading read every stored record whole and parsed it: hand the freed pages back, or the
  // restarted server keeps the load's peak (docs/operations.md, "Hollow nodes and scale
  // tests").
  malloc_trim(0);
#endif
  c->RefreshSnapshot(c->snapshot_, c->models_.size());
  Controller* self = c.get();
  c->committer_ = std::make_unique<store::GroupCommitter>(
      store, [self](double seconds) { self->metrics_.ObserveCommit(seconds); },
      [self](const Status& s, int attempt) {
        self->metrics_.CountCommitFailure();
        log::Error("store_commit_failed",
                   {{"error", s.message()}, {"attempt", attempt}, {"then", "retrying"}});
      });
  for (const auto& [name, id] : c->leaf_queues_) {
    c->metrics_.InitQueue(name, {core::ToString(core::WorkloadKind::kTraining),
                                 core::ToString(core::WorkloadKind::kInference),
                                 core::ToString(core::WorkloadKind::kExperiment)});
  }
  return c;
}

Status Controller::AddQueues() {
  uint32_t next = 0;
  for (const QueueConfig& q : config_.queues) {
    core::QueueSpec spec;
    spec.name = q.name;
    if (!q.parent.empty()) spec.parent = queue_ids_.at(q.parent);
    spec.weight = q.weight;
    spec.can_borrow = q.can_borrow;
    spec.can_lend = q.can_lend;
    for (const QuotaConfig& e : q.quota) {
      core::QuotaEntry entry;
      if (e.model != "*") {
        auto m = models_.Intern(e.model);
        if (!m.ok())
          return Status::Invalid("config: queues." + q.name + ": " + m.status().message());
        entry.model = *m;
      }
      entry.guaranteed = e.guaranteed_milli;
      entry.limit = e.limit_milli;
      spec.quotas.push_back(entry);
    }
    spec.cpu_quota = core::HostQuota{q.cpu_quota.guaranteed, q.cpu_quota.limit};
    spec.memory_quota = core::HostQuota{q.memory_quota.guaranteed, q.memory_quota.limit};
    core::QueueId id(next++);
    if (Status s = engine_->AddQueue(id, spec); !s.ok()) {
      return Status::Invalid("config: queues." + q.name + ": " + s.message());
    }
    queue_ids_[q.name] = id;
    leaf_queues_[q.name] = id;
    if (!q.parent.empty()) leaf_queues_.erase(q.parent);
  }
  return Status::Ok();
}

int64_t Controller::Now() {
  last_now_ = std::max(last_now_, clock_());
  return last_now_;
}

void Controller::Event(WorkloadRecord& w, const std::string& type, const std::string& message,
                       int64_t about, const std::string& redacted) {
  w.events.push_back(WorkloadEvent{Now(), type, message, about, about >= 0 ? redacted : ""});
  if (w.events.size() > 100) w.events.erase(w.events.begin());
  Dirty(w);
}

// ---- API: submissions and cancellations.

bool Controller::Submit(const Json& body, Json& out, ApiError& error, const std::string& user) {
  std::promise<std::tuple<bool, Json, ApiError>> answer;
  SubmitAsync(
      body,
      [&answer](bool ok, Json o, ApiError e) {
        answer.set_value({ok, std::move(o), std::move(e)});
      },
      user);
  bool ok = false;
  std::tie(ok, out, error) = answer.get_future().get();
  return ok;
}

void Controller::SubmitAsync(const Json& body, SubmitDone done, const std::string& user) {
  auto w = std::make_shared<WorkloadRecord>();
  std::unique_lock<std::mutex> lock(mu_);
  ApiError error;
  if (!ParseWorkload(body, config_, leaf_queues_, models_, w->parsed, error) ||
      !CheckQueuePolicy(w->parsed, config_, error)) {
    lock.unlock();
    return done(false, Json(), std::move(error));
  }
  if (w->parsed.service && !service_names_.insert(w->parsed.spec.name).second) {
    lock.unlock();
    return done(false, Json(),
                ApiError{409, "name",
                         "name: a live service is named " + w->parsed.spec.name +
                             "; a service's name routes its requests (/svc/NAME), so it must "
                             "be unique among live services: cancel that one or pick another"});
  }
  w->id = next_id_++;
  w->user = user;
  w->submitted_ms = w->queued_since_ms = Now();
  w->parsed.spec.submit_time = w->submitted_ms;
  // A service runs from its submission on: its replicas are what waits and is placed.
  if (w->parsed.service) {
    w->state = "Running";
    w->started_ms = w->submitted_ms;
  }
  // Not through Event(): the record is not in workloads_ yet, so it must not be dirty.
  w->events.push_back(WorkloadEvent{w->submitted_ms, "Submitted", "queue " + w->parsed.queue_name});
  // Durable before anyone is told it exists. Enqueued under the lock, so that ids and
  // commits (and the records' arrival below, which runs in commit order) keep one order.
  store::Batch batch;
  batch.workloads.push_back(ToStored(*w));
  committer_->EnqueueThen(std::move(batch), [this, w, done = std::move(done)](const Status& s) {
    if (!s.ok()) {
      if (w->parsed.service) {
        std::lock_guard<std::mutex> lock(mu_);
        service_names_.erase(w->parsed.spec.name);
      }
      return done(false, Json(), ApiError{500, "", "store: " + s.message()});
    }
    Json out;
    {
      // ParseWorkload checked everything the engine checks of a spec (core::WorkloadSpec's
      // Validate, a leaf queue): the engine hears of it in the next Step, and what only it
      // can refuse fails the workload there (Reject).
      log::Info("submit", {{"workload", w->id},
                           {"name", w->parsed.spec.name},
                           {"queue", w->parsed.queue_name},
                           {"kind", core::ToString(w->parsed.spec.kind)},
                           {"priority", w->parsed.priority_name},
                           {"tasks", w->parsed.spec.min_tasks},
                           {"gpus_per_task", w->parsed.spec.task.gpu_count},
                           {"gpu_milli", w->parsed.spec.task.gpu_milli}});
      std::lock_guard<std::mutex> lock(mu_);
      out = Json{{"id", w->id}, {"name", w->parsed.spec.name}, {"state", w->state}};
      const int64_t id = w->id;
      if (w->parsed.service) {
        StartService(workloads_.emplace(id, std::move(*w)).first->second);
      } else {
        Enqueue(EngineEvent::Workload(EngineEvent::Kind::kSubmit, w->id));
        task_mix_.Submitted(w->parsed.spec.task, w->parsed.spec.min_tasks);
        if (!w->parsed.unknown_models.empty()) unknown_models_.insert(w->id);
        workloads_.emplace(id, std::move(*w));
      }
      Kick();
    }
    done(true, std::move(out), ApiError{});
  });
}

bool Controller::Cancel(int64_t id, Json& out, ApiError& error, const Access& access) {
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = workloads_.find(id);
    if (it == workloads_.end() || !access.Reads(it->second.parsed.queue_name)) {
      error = ApiError{404, "id", "id: no workload " + std::to_string(id)};
      return false;
    }
    WorkloadRecord& w = it->second;
    if (!access.Writes(w.parsed.queue_name)) {
      error = ApiError{403, "id",
                       "id: this token may not cancel workloads of queue " + w.parsed.queue_name};
      return false;
    }
    if (w.terminal()) {
      error = ApiError{409, "state",
                       "state: workload " + std::to_string(id) + " is already " + w.state};
      return false;
    }
    CancelLocked(w, "by API");
    out = Json{{"id", id}, {"state", w.state}, {"queue", w.parsed.queue_name}};
    ticket = committer_->Enqueue(TakeDirty());
  }
  if (Status s = committer_->Wait(ticket); !s.ok()) {
    error = ApiError{500, "", "store: " + s.message()};
    return false;
  }
  return true;
}

void Controller::CancelLocked(WorkloadRecord& w, const std::string& by) {
  w.cancel_requested = true;
  Event(w, "CancelRequested", by);
  log::Info("cancel", {{"workload", w.id}, {"state", w.state}, {"by", by}});
  if (w.parsed.service) {
    // A service ends at once; its replicas stop as any cancelled workload does.
    for (int64_t r : services_.at(w.id).replicas) {
      auto it = workloads_.find(r);
      if (it != workloads_.end() && !it->second.terminal() && !it->second.cancel_requested) {
        CancelLocked(it->second, "its service " + std::to_string(w.id) + " was cancelled");
      }
    }
    (void)autoscaler_.RemoveService(services_.at(w.id).slot);
    free_service_slots_.push_back(services_.at(w.id).slot.value());
    services_.erase(w.id);
    service_names_.erase(w.parsed.spec.name);
    w.state = "Cancelled";
    w.finished_ms = Now();
  } else if (w.state == "Pending") {
    // A cycle under way may bind it: ApplyPlan drops binds of finished records, and the
    // engine forgets it (freeing what the cycle gave it) when the next Step drains this.
    Enqueue(EngineEvent::Workload(EngineEvent::Kind::kCancel, w.id));
    w.state = "Cancelled";
    w.reason.clear();
    w.finished_ms = Now();
  } else {
    for (TaskRecord& t : w.tasks) t.stopping = true;
    TouchNodes(w);
  }
  Dirty(w);
  Kick();
}

// ---- Agent protocol.

std::string Controller::NodeOwner(const std::string& node) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(node);
  return it == nodes_.end() ? std::string() : it->second.owner;
}

namespace {

// The log address the server will use for an agent that registered `address` from `peer`
// (docs/api.md, "Agent protocol"): its port, on the host it connected from unless the host
// it names is that one or allowed by config. Empty `peer`: a stored registration, kept.
bool LogAddress(const std::string& address, const std::string& peer, const ServerConfig& config,
                std::string& out, std::string& why) {
  if (address.empty()) {
    out.clear();
    return true;
  }
  const size_t colon = address.rfind(':');
  const std::string port = colon == std::string::npos ? "" : address.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) < 1 ||
      std::stoi(port) > 65535) {
    why = "must be host:port with a port in 1..65535";
    return false;
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (peer.empty() || host == peer || config.AgentHostAllowed(host)) {
    out = address;
  } else {
    out = (peer.find(':') != std::string::npos ? "[" + peer + "]" : peer) + ":" + port;
  }
  return true;
}

}  // namespace

bool Controller::Register(const Json& b, Json& out, ApiError& error, const std::string& owner,
                          const std::function<bool(const std::string&)>& may_replace,
                          const std::string& peer) {
  auto fail = [&](const std::string& field, const std::string& why) {
    error = ApiError{400, field, field + ": " + why};
    return false;
  };
  if (!b.is_object()) return fail("", "body must be a JSON object");
  static const std::set<std::string> kFields = {"name",
                                                "address",
                                                "zone",
                                                "rack",
                                                "cpu_milli",
                                                "memory_mib",
                                                "backend",
                                                "nvlink_domain_gpus",
                                                "gpus",
                                                "log_secret",
                                                "metrics_address",
                                                "telemetry"};
  for (const auto& [k, v] : b.items()) {
    if (!kFields.count(k)) return fail(k, "unknown field");
  }
  if (!b.contains("name") || !b["name"].is_string() || b["name"].get<std::string>().empty()) {
    return fail("name", "required string");
  }
  core::NodeSpec spec;
  spec.name = b["name"].get<std::string>();
  auto str = [&](const char* k, std::string& v) {
    if (b.contains(k)) {
      if (!b[k].is_string()) return fail(k, "must be a string");
      v = b[k].get<std::string>();
    }
    return true;
  };
  auto num = [&](const char* k, int64_t& v) {
    if (b.contains(k)) {
      if (!b[k].is_number_integer() || b[k].get<int64_t>() < 0) {
        return fail(k, "must be a non-negative integer");
      }
      v = b[k].get<int64_t>();
    }
    return true;
  };
  std::string address, backend, log_secret, metrics_address, telemetry;
  int64_t nvlink = 0;
  if (!str("zone", spec.zone) || !str("rack", spec.rack) || !str("address", address) ||
      !str("backend", backend) || !num("cpu_milli", spec.milli_cpu) ||
      !num("memory_mib", spec.memory_mib) || !num("nvlink_domain_gpus", nvlink) ||
      !str("log_secret", log_secret) || !str("metrics_address", metrics_address) ||
      !str("telemetry", telemetry)) {
    return false;
  }
  // Shown to operators (metrics_url) and written into Prometheus targets, never fetched by
  // the server: a host:port is all it must be.
  if (!metrics_address.empty() && (metrics_address.size() > 255 ||
                                   metrics_address.find_first_of("/ \t@?#") != std::string::npos ||
                                   metrics_address.rfind(':') == std::string::npos)) {
    return fail("metrics_address", "must be host:port");
  }
  if (telemetry != "" && telemetry != "nvml" && telemetry != "emulated") {
    return fail("telemetry", "must be nvml or emulated");
  }
  if (!log_secret.empty() &&
      (log_secret.size() < 32 || log_secret.size() > 256 ||
       log_secret.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)) {
    return fail("log_secret", "must be 32..256 hex digits");
  }
  std::string bad_address, log_address;
  if (!LogAddress(address, peer, config_, log_address, bad_address)) {
    return fail("address", bad_address);
  }
  address = log_address;
  spec.nvlink_domain_gpus = static_cast<int32_t>(std::min<int64_t>(nvlink, 16));
  std::lock_guard<std::mutex> lock(mu_);
  const uint32_t known_models = models_.size();
  if (b.contains("gpus")) {
    const Json& gpus = b["gpus"];
    if (!gpus.is_array() || gpus.size() > 16) return fail("gpus", "must be a list of at most 16");
    for (size_t i = 0; i < gpus.size(); ++i) {
      std::string f = "gpus[" + std::to_string(i) + "]";
      const Json& g = gpus[i];
      if (!g.is_object() || !g.contains("model") || !g["model"].is_string()) {
        return fail(f + ".model", "required string");
      }
      if (!g.contains("index") || !g["index"].is_number_integer() ||
          g["index"].get<int64_t>() != static_cast<int64_t>(i)) {
        return fail(f + ".index", "GPUs must be listed by index 0..n-1");
      }
      auto m = models_.Intern(g["model"].get<std::string>());
      if (!m.ok()) return fail(f + ".model", m.status().message());
      if (i > 0 && *m != spec.gpu_model) return fail(f + ".model", "one GPU model per node");
      spec.gpu_model = *m;
      int64_t mem = g.value("memory_mib", int64_t{0});
      spec.gpu_memory_mib = i == 0 ? mem : std::min(spec.gpu_memory_mib, mem);
      std::string field, why;
      if (!ParseMigGpu(g, i, g["model"].get<std::string>(), spec, field, why)) {
        return fail(field, why);
      }
    }
    spec.gpu_count = static_cast<int32_t>(gpus.size());
  }
  if (Status s = spec.Validate(); !s.ok()) return fail("", s.message());
  auto it = nodes_.find(spec.name);
  if (it != nodes_.end() && !it->second.owner.empty() && it->second.owner != owner &&
      !(may_replace && may_replace(it->second.owner))) {
    error = ApiError{
        409, "name",
        "name: node " + spec.name + " is registered by another token (" + it->second.owner + ")"};
    return false;
  }
  if (it == nodes_.end()) {
    NodeRecord n;
    n.name = spec.name;
    n.id = core::NodeId(static_cast<uint32_t>(node_names_.size()));
    n.spec = spec;
    node_names_.push_back(n.name);
    it = nodes_.emplace(n.name, std::move(n)).first;
  } else {
    NodeRecord& n = it->second;
    spec.status = n.drained ? core::NodeStatus::kDraining : core::NodeStatus::kReady;
    // The engine's own check (ClusterState::CheckUpdate), against its usage as of the last
    // cycle: a node may not shrink below what is allocated on it.
    if (n.id.value() < snapshot_.nodes.size() && snapshot_.nodes[n.id.value()].present) {
      const EngineSnapshot::NodeUse& use = snapshot_.nodes[n.id.value()];
      bool gpus_in_use = false;
      for (int32_t u : use.gpu_used_milli) gpus_in_use |= u != 0;
      std::string why;
      if (spec.milli_cpu < use.cpu_used || spec.memory_mib < use.memory_used) {
        why = "node " + spec.name + ": capacity below what is allocated";
      } else if (gpus_in_use &&
                 (spec.gpu_count != n.spec.gpu_count || spec.gpu_model != n.spec.gpu_model ||
                  spec.gpu_memory_mib != n.spec.gpu_memory_mib)) {
        why = "node " + spec.name + ": GPUs change while GPUs are in use";
      }
      if (!why.empty()) {
        error = ApiError{409, "gpus", "gpus: " + why};
        return false;
      }
    }
    n.spec = spec;
    n.down = false;
    n.mig_desired.clear();  // a (re)started agent reported its layouts; nothing is asked yet
  }
  NodeRecord& n = it->second;
  log::Info("node_up", {{"node", n.name},
                        {"why", "registered"},
                        {"address", address},
                        {"gpus", spec.gpu_count},
                        {"model", spec.gpu_count > 0 ? models_.Name(spec.gpu_model) : ""},
                        {"backend", backend}});
  n.registration = b;
  n.registration["address"] = address;
  // A (re)started agent samples afresh; a GPU it found unhealthy is healthy again after the
  // restart (docs/observability.md, "Health").
  n.gpu_telemetry.clear();
  n.telemetry_wall_ms = 0;
  n.unhealthy_gpus = 0;
  if (n.owner != owner) {
    n.owner = owner;
    dirty_nodes_.insert(n.name);
  }
  n.last_heartbeat_ms = SteadyMs();
  n.last_heartbeat_wall_ms = Now();
  Enqueue(EngineEvent::Node(n.name));
  ReportRegisteredLayouts(n);
  if (models_.size() != known_models) ResolveUnknownModels();
  dirty_nodes_.insert(n.name);
  Kick();
  out = Json{{"node", n.name}, {"heartbeat_interval_ms", IntervalLocked()}};
  return true;
}

bool Controller::Heartbeat(const std::string& node, const Json& b, Json& out, ApiError& error) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) {
    error = ApiError{404, "node", "node: unknown node " + node + " (register first)"};
    return false;
  }
  NodeRecord& n = it->second;
  if (!b.is_object() || (b.contains("tasks") && !b["tasks"].is_array())) {
    error = ApiError{400, "tasks", "tasks: must be a list"};
    return false;
  }
  n.last_heartbeat_ms = SteadyMs();
  n.last_heartbeat_wall_ms = Now();
  if (!n.heard) {
    n.heard = true;
    ++nodes_heard_;
  }
  if (n.down) {
    n.down = false;
    log::Info("node_up", {{"node", n.name}, {"why", "heard from again"}});
    Enqueue(EngineEvent::Node(n.name));
    Kick();
  }
  for (const Json& r : b.value("tasks", Json::array())) {
    if (!r.is_object() || !r.contains("workload") || !r["workload"].is_number_integer()) continue;
    auto w = workloads_.find(r["workload"].get<int64_t>());
    if (w == workloads_.end()) continue;
    WorkloadRecord& rec = w->second;
    if (r.value("attempt", -1) != rec.attempt) continue;  // an old attempt: not desired
    int32_t task = r.value("task", -1);
    for (TaskRecord& t : rec.tasks) {
      if (t.task != task || t.node != node || t.state == "exited" || t.state == "lost") continue;
      std::string st = r.value("state", "");
      if (st == "running" && t.state == "assigned") {
        t.state = "running";
        Dirty(rec);
      }
      if (st == "running" && rec.parsed.service_of > 0) {
        if (auto sv = r.find("service"); sv != r.end()) IngestServiceReport(rec, t, *sv);
      } else if (st == "exited") {
        auto usage = [&r](const char* k) {
          const auto v = r.find(k);
          return v != r.end() && v->is_number_integer() ? std::max<int64_t>(v->get<int64_t>(), 0)
                                                        : int64_t{0};
        };
        t.cpu_user_ms = usage("cpu_user_ms");
        t.cpu_system_ms = usage("cpu_system_ms");
        t.max_rss_kib = usage("max_rss_kib");
        t.memory_peak_kib = usage("memory_peak_kib");
        OnTaskExited(rec, t, r.value("exit_code", -1));
        Kick();
      }
      break;
    }
  }
  if (auto t = b.find("telemetry"); t != b.end()) IngestTelemetry(n, *t);
  if (auto m = b.find("mig"); m != b.end()) IngestMigReports(n, *m);
  out = DesiredJson(node);
  // What the heartbeat changed (exits, finished workloads) is durable before the agent hears
  // back: the agent forgets an exited task once it is no longer desired.
  store::Batch batch = TakeDirty();
  if (batch.empty()) return true;
  uint64_t ticket = committer_->Enqueue(std::move(batch));
  lock.unlock();
  if (Status s = committer_->Wait(ticket); !s.ok()) {
    error = ApiError{500, "", "store: " + s.message()};
    return false;
  }
  return true;
}

Json Controller::DesiredJson(const std::string& node) {
  Json desired = Json::array();
  for (int64_t id : on_node_[node]) {
    const WorkloadRecord& w = workloads_.at(id);
    if (!w.published || w.state != "Running") continue;
    for (const TaskRecord& t : w.tasks) {
      if (t.node != node || t.stopping || t.state == "exited" || t.state == "lost") continue;
      desired.push_back(Json{{"workload", w.id},
                             {"task", t.task},
                             {"attempt", w.attempt},
                             {"command", w.parsed.command},
                             {"env", TaskEnv(w, t)},
                             {"workdir", w.parsed.workdir},
                             {"gpus", t.gpus},
                             {"gpu_milli", t.gpu_milli},
                             {"grace_period_ms", w.parsed.spec.grace_period},
                             {"run_as", config_.RunAsOf(w.parsed.queue_name)},
                             {"cpu_milli", w.parsed.spec.task.milli_cpu},
                             {"memory_mib", w.parsed.spec.task.memory_mib},
                             {"gpu_memory_mib", w.parsed.spec.task.gpu_memory_mib},
                             {"name", w.parsed.spec.name},
                             {"queue", w.parsed.queue_name}});
      if (auto sv = workloads_.find(w.parsed.service_of);
          sv != workloads_.end() && sv->second.parsed.service) {
        desired.back()["service"] = sv->second.parsed.service->AgentJson();
      }
      if (t.mig_start >= 0) desired.back()["mig"] = TaskMigJson(t);
      if (w.parsed.spec.task.sharing == core::Sharing::kMps) desired.back()["sharing"] = "mps";
    }
  }
  // The interval grows with the cluster; agents registered early hear it here.
  const NodeRecord& n = nodes_.at(node);
  Json out{{"desired", desired},
           {"epoch", epoch_},
           {"version", n.desired_version},
           {"heartbeat_interval_ms", IntervalLocked()}};
  if (!n.mig_desired.empty()) out["mig_layouts"] = MigDesiredJson(n);
  return out;
}

bool Controller::WatchDesired(const std::string& node, int64_t epoch, int64_t after,
                              int64_t wait_ms, std::function<void(Json)> done, WatchTicket& ticket,
                              ApiError& error) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) {
    error = ApiError{404, "node", "node: unknown node " + node + " (register first)"};
    return false;
  }
  NodeRecord& n = it->second;
  n.last_heartbeat_ms = SteadyMs();
  n.last_heartbeat_wall_ms = Now();
  ticket = WatchTicket{node, 0, std::clamp<int64_t>(wait_ms, 0, TimeoutLocked() / 2)};
  if (shutdown_ || epoch != epoch_ || n.desired_version != after || ticket.wait_ms == 0) {
    done(DesiredJson(node));
    return true;
  }
  ticket.id = next_watch_++;
  n.watches.push_back(NodeRecord::HeldWatch{ticket.id, after, std::move(done)});
  ++held_watches_;
  return true;
}

void Controller::ExpireWatch(const WatchTicket& ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(ticket.node);
  if (it == nodes_.end()) return;
  NodeRecord& n = it->second;
  std::function<void(Json)> done = TakeWatch(n, ticket.id);
  if (!done) return;
  n.last_heartbeat_wall_ms = Now();
  done(DesiredJson(n.name));
}

void Controller::CancelWatch(const WatchTicket& ticket) {
  std::function<void(Json)> dropped;  // destroyed after the lock is released
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(ticket.node);
  if (it == nodes_.end()) return;
  NodeRecord& n = it->second;
  dropped = TakeWatch(n, ticket.id);
}

std::function<void(Json)> Controller::TakeWatch(NodeRecord& n, uint64_t id) {
  for (size_t i = 0; i < n.watches.size(); ++i) {
    if (n.watches[i].id != id) continue;
    std::function<void(Json)> done = std::move(n.watches[i].done);
    n.watches.erase(n.watches.begin() + static_cast<std::ptrdiff_t>(i));
    --held_watches_;
    n.last_heartbeat_ms = SteadyMs();  // it was held until now: contact until now
    return done;
  }
  return {};
}

void Controller::AnswerWatches(NodeRecord& n, bool all) {
  if (n.watches.empty()) return;
  Json answer;  // the same list for every watch answered now: built once
  std::vector<NodeRecord::HeldWatch> keep;
  for (NodeRecord::HeldWatch& w : n.watches) {
    if (!all && w.after == n.desired_version) {
      keep.push_back(std::move(w));
      continue;
    }
    if (answer.is_null()) answer = DesiredJson(n.name);
    w.done(answer);
    --held_watches_;
  }
  n.watches = std::move(keep);
  n.last_heartbeat_ms = SteadyMs();
  n.last_heartbeat_wall_ms = Now();
}

int64_t Controller::HeldWatches() {
  std::lock_guard<std::mutex> lock(mu_);
  return held_watches_;
}

int64_t Controller::NodesHeard() {
  std::lock_guard<std::mutex> lock(mu_);
  return nodes_heard_;
}

int64_t Controller::IntervalLocked() const {
  const int64_t nodes = static_cast<int64_t>(nodes_.size());
  const int64_t per_s = config_.max_heartbeats_per_second;
  return std::max(config_.heartbeat_interval_ms, (nodes * 1000 + per_s - 1) / per_s);
}

int64_t Controller::TimeoutLocked() const {
  // At the configured interval, the configured timeout; every millisecond the interval grew
  // adds kTimeoutIntervals. With node_timeout >= 2 * heartbeat_interval (the config's rule)
  // the timeout stays at least two intervals.
  return config_.node_timeout_ms +
         kTimeoutIntervals * (IntervalLocked() - config_.heartbeat_interval_ms);
}

int64_t Controller::HeartbeatIntervalMs() {
  std::lock_guard<std::mutex> lock(mu_);
  return IntervalLocked();
}

int64_t Controller::NodeTimeoutMs() {
  std::lock_guard<std::mutex> lock(mu_);
  return TimeoutLocked();
}

bool Controller::NodeTimedOut(const NodeRecord& n, int64_t steady_ms) const {
  return !n.down && n.watches.empty() && steady_ms - n.last_heartbeat_ms > TimeoutLocked();
}

void Controller::TouchNodes(const WorkloadRecord& w, const std::string& except) {
  for (const TaskRecord& t : w.tasks) {
    if (t.node == except) continue;
    auto n = nodes_.find(t.node);
    if (n == nodes_.end()) continue;
    ++n->second.desired_version;
    AnswerWatches(n->second, false);
  }
}

void Controller::Kick() {
  work_ = true;
  work_cv_.notify_one();
}

void Controller::WaitForWork(int64_t max_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  work_cv_.wait_for(lock, std::chrono::milliseconds(max_ms), [this] { return work_ || shutdown_; });
  work_ = false;
}

void Controller::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutdown_ = true;
  work_cv_.notify_all();
  for (auto& [name, n] : nodes_) AnswerWatches(n, true);
}

void Controller::Flush() {
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    store::Batch batch = TakeDirty();
    if (batch.empty()) return;
    ticket = committer_->Enqueue(std::move(batch));
  }
  (void)committer_->Wait(ticket);
}

Json Controller::TaskEnv(const WorkloadRecord& w, const TaskRecord& t) const {
  Json env = w.parsed.env;
  int local = 0;
  std::string master;
  for (const TaskRecord& o : w.tasks) {
    if (o.task == t.task) break;
    if (o.node == t.node) ++local;
  }
  if (!w.tasks.empty()) {
    auto n = nodes_.find(w.tasks.front().node);
    if (n != nodes_.end()) {
      std::string addr = n->second.registration.value("address", "");
      master = addr.substr(0, addr.rfind(':'));
    }
  }
  env["RANK"] = std::to_string(t.task);
  env["LOCAL_RANK"] = std::to_string(local);
  env["WORLD_SIZE"] = std::to_string(w.tasks.size());
  env["MASTER_ADDR"] = master.empty() ? "127.0.0.1" : master;
  env["MASTER_PORT"] = std::to_string(20000 + w.id % 20000);
  env["GPUORCH_WORKLOAD"] = std::to_string(w.id);
  env["GPUORCH_TASK"] = std::to_string(t.task);
  env["GPUORCH_ATTEMPT"] = std::to_string(w.attempt);
  return env;
}

void Controller::OnTaskExited(WorkloadRecord& w, TaskRecord& t, int exit_code) {
  t.state = "exited";
  t.exit_code = exit_code;
  Release(w, t);
  Dirty(w);
  Event(w, "TaskExited", "task " + std::to_string(t.task) + " exit " + std::to_string(exit_code));
  const bool evicting = w.state == "Preempted";
  if (exit_code != 0 && !t.stopping && !evicting && !w.cancel_requested) {
    // A task failed on its own: the workload fails, its other tasks are stopped.
    w.failed = true;
    for (TaskRecord& o : w.tasks) o.stopping = true;
    // The other tasks' nodes must stop them; the reporting node hears it in its answer.
    // (An exit that changes nothing for the others wakes no watch.)
    TouchNodes(w, t.node);
  }
  Enqueue(EngineEvent::Workload(EngineEvent::Kind::kTaskFinished, w.id, t.task));
  // The record moves now, as the engine will when the event reaches it: the agent forgets
  // an exit once it is no longer desired, so the outcome is committed before it hears back.
  // With every task exited, a running workload is finished and an evicted one goes back to
  // the queue (Scheduler::TaskFinished). A running workload that lost a node is left to the
  // engine, which alone knows whether it shrank or is being evicted: DrainInbox syncs it.
  bool live = false, lost = false;
  for (const TaskRecord& o : w.tasks) {
    live |= o.state != "exited" && o.state != "lost";
    lost |= o.state == "lost";
  }
  if (live) return;
  if (w.state == "Preempted") {
    if (w.cancel_requested) {
      Unindex(w);
      w.state = "Cancelled";
      w.finished_ms = Now();
    } else {
      Requeue(w, "evicted");
    }
  } else if (w.state == "Running" && !lost) {
    Unindex(w);  // its tasks leave the nodes' desired lists for good
    w.state = w.cancel_requested ? "Cancelled" : w.failed ? "Failed" : "Succeeded";
    w.finished_ms = Now();
    Event(w, w.state, "");
    log::Info("finish", {{"workload", w.id}, {"state", w.state}, {"exit_code", exit_code}});
  }
}

// Brings the record and the engine in line after events that may have ended, requeued or
// shrunk the workload (cycle thread). Where the record moved first (a cancellation, every
// task exited), the engine follows; where only the engine knows (a lost node), the record.
void Controller::SyncFromEngine(WorkloadRecord& w) {
  WorkloadState s = engine_->state(Wid(w.id));
  if (w.terminal()) {
    // E.g. its last task exited while a cycle under way evicted or grew it.
    if (s != WorkloadState::kFinished) (void)engine_->Cancel(Wid(w.id));
    return;
  }
  if (w.state == "Pending") {
    if (s == WorkloadState::kPending) return;
    // Requeued by its exits while the engine still counts tasks of it (a growth a cycle
    // under way gave it), or finished where the record requeues (an eviction the engine
    // did not know of, after a restart): it enters the engine's queue afresh.
    if (s != WorkloadState::kFinished) (void)engine_->Cancel(Wid(w.id));
    if (Status st = engine_->Submit(Wid(w.id), w.parsed.spec); !st.ok()) Reject(w, st.message());
    return;
  }
  if (s == WorkloadState::kPending && (w.state == "Running" || w.state == "Preempted")) {
    if (w.cancel_requested) {
      (void)engine_->Cancel(Wid(w.id));
      Unindex(w);
      w.state = "Cancelled";
      w.finished_ms = Now();
      return;
    }
    Requeue(w, w.state == "Preempted" ? "evicted" : "lost its node");
  } else if (s == WorkloadState::kFinished && !w.terminal()) {
    if (w.state == "Preempted" && !w.cancel_requested) {
      // Evicted while the engine thought it ran (after a restart): back to the queue.
      if (engine_->Submit(Wid(w.id), w.parsed.spec).ok()) Requeue(w, "evicted");
      return;
    }
    Unindex(w);  // its tasks leave the nodes' desired lists for good
    w.state = w.cancel_requested ? "Cancelled" : w.failed ? "Failed" : "Succeeded";
    w.finished_ms = Now();
    Event(w, w.state, "");
    log::Info("finish", {{"workload", w.id}, {"state", w.state}});
  }
}

void Controller::Requeue(WorkloadRecord& w, const std::string& why) {
  TouchNodes(w);
  Unindex(w);
  ReleaseAll(w);  // the tasks are forgotten below
  w.state = "Pending";
  w.estimated_start_ms = w.waiting_for = -1;  // until the next cycle estimates again
  ++w.attempt;
  w.tasks.clear();
  w.queued_since_ms = Now();
  Event(w, "Requeued", why);
  log::Info("requeue", {{"workload", w.id}, {"why", why}, {"attempt", w.attempt}});
}

// ---- The controller loop.

void Controller::MarkNodeDown(NodeRecord& n) {
  n.down = true;
  log::Warn("node_down", {{"node", n.name},
                          {"why", "no heartbeat"},
                          {"silent_ms", SteadyMs() - n.last_heartbeat_ms},
                          {"timeout_ms", TimeoutLocked()},
                          {"workloads", on_node_[n.name].size()}});
  core::NodeSpec spec = n.spec;
  spec.status = core::NodeStatus::kDown;
  (void)engine_->UpdateNode(n.id, spec);  // Step runs this on the cycle thread
  // A copy: requeueing a workload (SyncFromEngine) removes it from on_node_.
  const std::set<int64_t> on_node = on_node_[n.name];
  for (int64_t id : on_node) {
    WorkloadRecord& w = workloads_.at(id);
    for (TaskRecord& t : w.tasks) {
      if (t.node == n.name && t.state != "exited") {
        t.state = "lost";
        Release(w, t);  // the engine frees what it held now
      }
    }
    Event(w, "NodeLost", "node " + n.name + " stopped sending heartbeats");
    SyncFromEngine(w);
  }
  dirty_nodes_.insert(n.name);
}

void Controller::SetCycleHookForTesting(std::function<void()> hook) {
  std::lock_guard<std::mutex> step(step_mu_);
  cycle_hook_ = std::move(hook);
}

void Controller::Reject(WorkloadRecord& w, const std::string& why) {
  Unindex(w);
  w.state = "Failed";
  w.failed = true;
  w.finished_ms = Now();
  Event(w, "Failed", "refused by the scheduler: " + why);
  log::Warn("reject", {{"workload", w.id}, {"why", why}});
}

void Controller::SyncNode(NodeRecord& n) {
  core::NodeSpec spec = n.spec;
  // What the node's telemetry says (controller_telemetry.cc): no new work on those GPUs.
  spec.unhealthy_gpus = static_cast<uint16_t>(n.unhealthy_gpus);
  spec.status = n.down      ? core::NodeStatus::kDown
                : n.drained ? core::NodeStatus::kDraining
                            : core::NodeStatus::kReady;
  Status s = n.in_engine ? engine_->UpdateNode(n.id, spec) : engine_->AddNode(n.id, spec);
  if (!s.ok()) {
    // Register checked this against the usage of the last cycle; only a bind of the cycle
    // that ran meanwhile can make the engine refuse. It keeps the node as it was.
    log::Warn("node_update_refused",
              {{"node", n.name}, {"why", s.message()}, {"outcome", "the engine kept its spec"}});
    return;
  }
  n.in_engine = true;
}

void Controller::ResolveUnknownModels() {
  for (auto it = unknown_models_.begin(); it != unknown_models_.end();) {
    auto w = workloads_.find(*it);
    if (w == workloads_.end() || w->second.terminal()) {
      it = unknown_models_.erase(it);
      continue;
    }
    ParsedWorkload& p = w->second.parsed;
    const core::ModelSet set =
        ResolveModels(p.CanonicalSpec().value("gpu_models", std::vector<std::string>{}), models_,
                      p.unknown_models);
    if (set != p.spec.task.models) {
      p.spec.task.models = set;
      Enqueue(EngineEvent::Workload(EngineEvent::Kind::kModels, w->first));
    }
    it = p.unknown_models.empty() ? unknown_models_.erase(it) : std::next(it);
  }
}

void Controller::DrainInbox() {
  std::set<int64_t> touched;
  for (const EngineEvent& e : inbox_) {
    switch (e.kind) {
      case EngineEvent::Kind::kSubmit: {
        WorkloadRecord& w = workloads_.at(e.workload);
        if (w.terminal()) break;  // cancelled before the engine heard of it
        if (Status st = engine_->Submit(Wid(w.id), w.parsed.spec); !st.ok())
          Reject(w, st.message());
        break;
      }
      case EngineEvent::Kind::kCancel:
        (void)engine_->Cancel(Wid(e.workload));
        touched.insert(e.workload);
        break;
      case EngineEvent::Kind::kTaskFinished:
        (void)engine_->TaskFinished(Wid(e.workload), e.task);
        touched.insert(e.workload);
        break;
      case EngineEvent::Kind::kSyncNode:
        SyncNode(nodes_.at(e.node));
        break;
      case EngineEvent::Kind::kMigLayout:
        MigLayoutToEngine(e);
        break;
      case EngineEvent::Kind::kModels: {
        // The engine keeps the spec it was given: a pending workload is given the new one
        // (its place in the queue is by priority and submit time, which stay). Running work
        // keeps its placement; a requeue submits the record's spec, the new one.
        const WorkloadRecord& w = workloads_.at(e.workload);
        if (w.terminal() || engine_->state(Wid(w.id)) != WorkloadState::kPending) break;
        if (engine_->Cancel(Wid(w.id)).ok()) {
          if (Status st = engine_->Submit(Wid(w.id), w.parsed.spec); !st.ok()) {
            Reject(workloads_.at(e.workload), st.message());
          }
        }
        break;
      }
    }
  }
  inbox_.clear();
  for (int64_t id : touched) SyncFromEngine(workloads_.at(id));
}

void Controller::RefreshSnapshot(EngineSnapshot& snap, size_t models) const {
  const size_t queues = queue_ids_.size();
  snap.queue_gpu_milli.resize(queues);
  snap.queue_cpu_milli.resize(queues);
  snap.queue_memory_mib.resize(queues);
  for (uint32_t q = 0; q < queues; ++q) {
    snap.queue_gpu_milli[q].resize(models);
    for (uint32_t m = 0; m < models; ++m) {
      snap.queue_gpu_milli[q][m] = engine_->QueueUsage(core::QueueId(q), core::GpuModelId(m));
    }
    snap.queue_cpu_milli[q] = engine_->QueueCpuUsage(core::QueueId(q));
    snap.queue_memory_mib[q] = engine_->QueueMemoryUsage(core::QueueId(q));
  }
  const sched::ClusterState& c = engine_->cluster();
  snap.model_capacity_milli.resize(models);
  snap.model_free_milli.resize(models);
  for (uint32_t m = 0; m < models; ++m) {
    snap.model_capacity_milli[m] = c.capacity_milli(core::GpuModelId(m));
    snap.model_free_milli[m] = c.free_milli(core::GpuModelId(m));
  }
  snap.nodes.resize(c.nodes().size());
  for (size_t i = 0; i < c.nodes().size(); ++i) {
    const sched::NodeState& s = c.nodes()[i];
    EngineSnapshot::NodeUse& u = snap.nodes[i];
    u.present = s.present;
    if (!s.present) {
      u.gpu_used_milli.clear();
      u.cpu_used = u.memory_used = 0;
      continue;
    }
    u.gpu_used_milli.resize(static_cast<size_t>(s.gpu_count));
    for (int j = 0; j < s.gpu_count; ++j) u.gpu_used_milli[j] = core::kMilliGpu - s.gpu_free[j];
    u.cpu_used = s.cpu_capacity - s.cpu_free;
    u.memory_used = s.memory_capacity - s.memory_free;
  }
  snap.typical_tasks = engine_->policy().typical_tasks();
}

void Controller::Step() {
  // The engine is this thread's: API handlers only queue events for it (DrainInbox).
  std::lock_guard<std::mutex> step(step_mu_);
  int64_t now = 0;
  size_t models = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ReconcileServices(Now());
    DrainInbox();
    if (const int64_t steady = SteadyMs(); steady >= next_timeout_scan_ms_) {
      // Every later deadline is at least now + timeout (a node without a watch now was
      // last heard of by now; one that drops its watch later is heard of then).
      const int64_t timeout = TimeoutLocked();
      next_timeout_scan_ms_ = steady + timeout;
      for (auto& [name, n] : nodes_) {
        if (!n.in_engine) continue;
        if (NodeTimedOut(n, steady)) {
          MarkNodeDown(n);
          work_ = true;  // what it ran is pending again: cycle once more right away
        } else if (!n.down && n.watches.empty()) {
          next_timeout_scan_ms_ =
              std::min(next_timeout_scan_ms_, n.last_heartbeat_ms + timeout + 1);
        }
      }
    }
    // The policy forgets its score memo with every new mix, so only a material change of
    // the mix reaches it (TaskMix::kMinChangePpm), at most once per cycle.
    if (auto typical = task_mix_.TakeIfChanged()) engine_->SetTypicalTasks(std::move(*typical));
    now = Now();
    models = models_.size();
  }
  // The cycle plans without mu_: the API serves meanwhile, and what it changes reaches the
  // engine in the next Step. ApplyPlan then skips what those changes made stale.
  if (cycle_hook_) cycle_hook_();
  auto start = std::chrono::steady_clock::now();
  sched::Plan plan = engine_->Cycle(now);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  RefreshSnapshot(spare_snapshot_, models);

  uint64_t ticket = 0;
  std::vector<int64_t> unpublished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    metrics_.ObserveCycle(secs);
    ApplyPlan(plan);
    std::swap(snapshot_, spare_snapshot_);
    for (int64_t id : dirty_) {
      if (!workloads_.at(id).published) unpublished.push_back(id);
    }
    std::vector<int64_t> collected = CollectFinished(now);
    store::Batch batch = TakeDirty();
    batch.deleted_workloads = std::move(collected);
    if (!batch.empty()) ticket = committer_->Enqueue(std::move(batch));
  }
  // While the writer commits.
  UpdateEngineGauges(plan, models);
  if (ticket == 0) return;
  Status s = committer_->Wait(ticket);
  std::lock_guard<std::mutex> lock(mu_);
  if (!s.ok()) {
    // Nothing unpersisted may reach an agent; try again next round.
    for (int64_t id : unpublished) dirty_.insert(id);
    return;
  }
  for (int64_t id : unpublished) {
    WorkloadRecord& w = workloads_.at(id);
    if (w.published) continue;
    w.published = true;
    TouchNodes(w);  // wakes the nodes' watches: the binds reach the agents now
  }
}

// The plan was made on the engine's state at the start of the Step; records the API or the
// agents changed meanwhile are ahead of it. A bind or growth of a workload that was
// cancelled or whose tasks all exited is dropped (the engine forgets it when the event that
// changed the record reaches it), as are evictions and resizes of work no longer running.
void Controller::ApplyPlan(const sched::Plan& plan) {
  ApplyReconfigs(plan);
  for (const sched::Bind& b : plan.binds) {
    WorkloadRecord& w = workloads_.at(b.workload.value());
    if (w.state != (b.elastic ? "Running" : "Pending")) continue;
    if (!b.elastic) {
      w.state = "Running";
      w.reason.clear();
      w.started_ms = plan.now;
      w.tasks.clear();
      metrics_.ObserveWait(w.parsed.queue_name, core::ToString(w.parsed.spec.kind),
                           static_cast<double>(plan.now - w.queued_since_ms) / 1000.0);
    }
    for (const sched::TaskBinding& tb : b.tasks) {
      TaskRecord t;
      t.task = tb.task;
      t.node = node_names_[tb.node.value()];
      t.gpus = MaskToList(tb.gpus);
      t.gpu_milli = tb.gpu_milli;
      SetTaskMig(t, tb);
      t.bound_ms = plan.now;
      if (const NodeRecord& n = nodes_.at(t.node); n.spec.gpu_count > 0) {
        t.model = models_.Name(n.spec.gpu_model);
      }
      w.tasks.push_back(t);
      on_node_[t.node].insert(w.id);
    }
    w.published = false;
    Event(w, b.elastic ? "Grown" : "Bound",
          std::to_string(b.tasks.size()) + " task(s) on " + node_names_[b.tasks[0].node.value()]);
    if (log::Enabled(log::Level::kInfo)) {
      Json placement = Json::array();
      for (const sched::TaskBinding& tb : b.tasks) {
        placement.push_back(Json{{"task", tb.task},
                                 {"node", node_names_[tb.node.value()]},
                                 {"gpus", MaskToList(tb.gpus)},
                                 {"gpu_milli", tb.gpu_milli}});
      }
      log::Info(b.elastic ? "grow" : "bind",
                {{"workload", w.id},
                 {"queue", w.parsed.queue_name},
                 {"waited_s", static_cast<double>(plan.now - w.queued_since_ms) / 1000.0},
                 {"tasks", placement}});
    }
  }
  for (const sched::Eviction& e : plan.evictions) {
    WorkloadRecord& w = workloads_.at(e.workload.value());
    if (w.state != "Running" && w.state != "Preempted") continue;
    w.state = "Preempted";
    for (TaskRecord& t : w.tasks) t.stopping = true;
    TouchNodes(w);
    metrics_.CountPreemption(sched::ToString(e.reason), w.parsed.queue_name);
    const std::string reason = sched::ToString(e.reason);
    Event(w, "Evicted",
          e.preemptor.valid()
              ? "preempted by " + std::to_string(e.preemptor.value()) + ": " + reason
              : reason,
          e.preemptor.valid() ? static_cast<int64_t>(e.preemptor.value()) : -1,
          "preempted by a workload of another queue: " + reason);
    if (auto p = workloads_.find(e.preemptor.valid() ? int64_t{e.preemptor.value()} : -1);
        p != workloads_.end()) {
      Event(p->second, "Preempting",
            "evicting " + std::to_string(w.id) + " (queue " + w.parsed.queue_name + "): " + reason,
            w.id, "evicting a workload of another queue: " + reason);
    }
    log::Info("evict", {{"workload", w.id},
                        {"queue", w.parsed.queue_name},
                        {"reason", reason},
                        {"preemptor", e.preemptor.valid() ? Json(e.preemptor.value()) : Json()},
                        {"grace_ms", e.grace_period}});
  }
  for (const sched::Resize& r : plan.resizes) {
    WorkloadRecord& w = workloads_.at(r.workload.value());
    if (w.state != "Running" && w.state != "Preempted") continue;
    for (TaskRecord& t : w.tasks) {
      if (std::find(r.tasks.begin(), r.tasks.end(), t.task) != r.tasks.end()) t.stopping = true;
    }
    TouchNodes(w);
    metrics_.CountPreemption(sched::ToString(r.reason), w.parsed.queue_name);
    Event(w, "Shrunk",
          std::to_string(r.tasks.size()) + " task(s) preempted by " +
              std::to_string(r.preemptor.value()) + ": " + sched::ToString(r.reason),
          static_cast<int64_t>(r.preemptor.value()),
          std::to_string(r.tasks.size()) +
              " task(s) preempted by a workload of another queue: " + sched::ToString(r.reason));
    log::Info("shrink", {{"workload", w.id},
                         {"queue", w.parsed.queue_name},
                         {"tasks", r.tasks},
                         {"reason", sched::ToString(r.reason)},
                         {"preemptor", r.preemptor.value()}});
  }
  for (const sched::PendingExplanation& p : plan.pending) {
    WorkloadRecord& w = workloads_.at(p.workload.value());
    if (w.state != "Pending") continue;
    std::string reason = sched::ToString(p.reason);
    if (w.reason != reason) {
      log::Debug("pending",
                 {{"workload", w.id},
                  {"reason", reason},
                  {"waiting_for", p.waiting_for.valid() ? Json(p.waiting_for.value()) : Json()}});
      w.reason = reason;
      Dirty(w);
    }
    w.estimated_start_ms = p.estimated_start;
    w.waiting_for = p.waiting_for.valid() ? int64_t{p.waiting_for.value()} : -1;
  }
}

void Controller::Unindex(const WorkloadRecord& w) {
  for (const TaskRecord& t : w.tasks) {
    auto it = on_node_.find(t.node);
    if (it != on_node_.end()) it->second.erase(w.id);
  }
}

void Controller::NoteLive(const WorkloadRecord& w) {
  int32_t live = 0;
  if (!w.terminal()) {
    for (const TaskRecord& t : w.tasks) {
      live += !t.stopping && t.state != "exited" && t.state != "lost";
    }
  }
  task_mix_.SetLive(w.id, w.parsed.spec.task, live);
}

std::vector<sched::TypicalTask> Controller::TypicalTasks() {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_.typical_tasks;
}

store::Batch Controller::TakeDirty() {
  store::Batch batch;
  // Every change of a record's tasks (bind, growth, exit, eviction, shrink, requeue, node
  // loss, cancellation) marks it dirty, so the task mix learns them all here.
  for (int64_t id : dirty_) {
    WorkloadRecord& w = workloads_.at(id);
    // However it ended, a finished workload holds nothing any more.
    if (w.terminal()) ReleaseAll(w);
    NoteLive(w);
    batch.workloads.push_back(ToStored(w));
  }
  batch.usage = std::move(released_);
  released_.clear();
  for (const std::string& n : dirty_nodes_) {
    const NodeRecord& r = nodes_.at(n);
    Json j = r.registration;
    j["drained"] = r.drained;
    if (!r.owner.empty()) j["owner"] = r.owner;
    batch.nodes.push_back(store::StoredNode{n, j.dump()});
  }
  dirty_.clear();
  dirty_nodes_.clear();
  return batch;
}

}  // namespace gpuorch::server
