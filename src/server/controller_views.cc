// The controller's read side and persistence format: JSON views for the API, and loading a
// store back into a running controller after a restart. Views read the records and the
// EngineSnapshot of the last cycle, never the engine itself (metrics: controller_metrics.cc).
#include <algorithm>
#include <chrono>
#include <ctime>
#include <iterator>
#include <map>
#include <utility>

#include "core/mig.h"
#include "log/logging.h"
#include "server/audit_log.h"
#include "server/controller.h"

namespace gpuorch::server {

using core::Status;

namespace {

// Unset times (0) are "".
std::string Iso(int64_t ms) { return ms <= 0 ? std::string() : IsoTimeMs(ms); }

Json TimeOrNull(int64_t ms) { return ms > 0 ? Json(Iso(ms)) : Json(nullptr); }

std::string KindName(core::WorkloadKind k) { return core::ToString(k); }

}  // namespace

Json Controller::WorkloadJson(const WorkloadRecord& w, const Access& access) const {
  // Whether the caller may see the id of workload `id` (of another queue, perhaps).
  auto sees = [&](int64_t id) {
    auto it = workloads_.find(id);
    return it != workloads_.end() && access.Reads(it->second.parsed.queue_name);
  };
  Json tasks = Json::array();
  for (const TaskRecord& t : w.tasks) {
    tasks.push_back(Json{{"task", t.task},
                         {"node", t.node},
                         {"gpus", t.gpus},
                         {"gpu_milli", t.gpu_milli},
                         {"state", t.stopping && t.state != "exited" ? "stopping" : t.state},
                         {"exit_code", t.exit_code ? Json(*t.exit_code) : Json(nullptr)}});
    if (t.mig_start >= 0) {
      tasks.back()["mig"] = Json{{"start", t.mig_start}, {"profile", t.mig_profile}};
    }
    if (t.state != "exited" && t.state != "lost") {
      tasks.back()["gpu_util_pct"] = t.gpu_util_pct >= 0 ? Json(t.gpu_util_pct) : Json(nullptr);
      tasks.back()["gpu_memory_used_mib"] =
          t.gpu_memory_used_mib >= 0 ? Json(t.gpu_memory_used_mib) : Json(nullptr);
      if (t.idle) tasks.back()["gpu_idle"] = true;
    }
    if (w.parsed.service_of > 0 && t.state != "exited" && t.state != "lost") {
      tasks.back()["port"] = t.port > 0 ? Json(t.port) : Json(nullptr);
      tasks.back()["ready"] = t.ready;
    }
    if (t.exit_code) {
      tasks.back()["cpu_user_ms"] = t.cpu_user_ms;
      tasks.back()["cpu_system_ms"] = t.cpu_system_ms;
      tasks.back()["max_rss_kib"] = t.max_rss_kib;
      if (t.memory_peak_kib > 0) tasks.back()["memory_peak_kib"] = t.memory_peak_kib;
    }
  }
  Json events = Json::array();
  for (const WorkloadEvent& e : w.events) {
    std::string message = e.message;
    if (e.about >= 0 && !sees(e.about)) {
      const std::string id = "workload " + std::to_string(e.about);
      if (!e.redacted.empty()) {
        message = e.redacted;
      } else if (size_t at = message.find(id); at != std::string::npos) {
        message.replace(at, id.size(), "a workload of another queue");
      }
    }
    events.push_back(Json{{"time", Iso(e.time_ms)}, {"type", e.type}, {"message", message}});
  }
  Json spec = w.parsed.CanonicalSpec();
  if (!access.SeesEnv(w.parsed.queue_name) && spec.contains("env") && spec["env"].is_object()) {
    for (auto& [k, v] : spec["env"].items()) v = "(hidden)";
  }
  Json j{{"id", w.id},
         {"name", w.parsed.spec.name},
         {"queue", w.parsed.queue_name},
         {"user", w.user},
         {"kind", KindName(w.parsed.spec.kind)},
         {"priority", w.parsed.priority_name},
         {"state", w.state},
         {"spec", spec},
         {"submitted_at", TimeOrNull(w.submitted_ms)},
         {"started_at", TimeOrNull(w.started_ms)},
         {"finished_at", TimeOrNull(w.finished_ms)},
         {"attempt", w.attempt},
         {"tasks", tasks},
         {"events", events}};
  if (w.state == "Pending") {
    j["reason"] = w.reason.empty() ? "Queued" : w.reason;
    j["estimated_start"] = TimeOrNull(w.estimated_start_ms);
    Json waiting_for(nullptr);
    if (auto it = workloads_.find(w.waiting_for); w.waiting_for >= 0 && it != workloads_.end() &&
                                                  access.Reads(it->second.parsed.queue_name)) {
      waiting_for = Json{{"id", w.waiting_for}, {"name", it->second.parsed.spec.name}};
    }
    j["waiting_for"] = waiting_for;
  }
  if (w.allocated_idle) j["conditions"] = Json::array({"AllocatedIdle"});
  if (w.parsed.service) j["service"] = ServiceJson(w, access);
  if (w.parsed.service_of > 0) {
    j["service_of"] = w.parsed.service_of;
    j["replica"] = w.parsed.replica;
    j["ready"] = ReplicaReady(w);
    j["draining"] = w.draining_since_ms > 0;
  }
  return j;
}

bool Controller::GetWorkload(int64_t id, Json& out, ApiError& error, const Access& access) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = workloads_.find(id);
  if (it == workloads_.end() || !access.Reads(it->second.parsed.queue_name)) {
    error = ApiError{404, "id", "id: no workload " + std::to_string(id)};
    return false;
  }
  out = WorkloadJson(it->second, access);
  return true;
}

Json Controller::ListWorkloads(const std::string& queue, const std::string& state,
                               const std::string& kind, const Access& access, int64_t limit,
                               int64_t after, int64_t service) {
  // Read kListChunk records at a time under the lock, as Metrics() does: a list of every
  // workload (no limit) would otherwise hold the lock while it builds every one of them,
  // finished ones included, stalling heartbeats, submissions and Steps meanwhile. Each record
  // is looked at once (ids only grow), as it is when its chunk is read: a list taken while
  // workloads change is not one atomic snapshot (a state filter sees each workload's state
  // at its chunk).
  constexpr size_t kListChunk = 1024;
  Json list = Json::array();
  int64_t cursor = after;  // the last workload looked at
  bool stopped = false;    // the page filled before the last workload
  for (bool done = false; !done;) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = workloads_.upper_bound(cursor);
    for (size_t looked = 0;; ++it, ++looked) {
      if (it == workloads_.end()) {
        done = true;
        break;
      }
      if (limit > 0 && static_cast<int64_t>(list.size()) >= limit) {
        // The last one looked at was the last listed: a page never names a workload the
        // caller may not read.
        done = stopped = true;
        break;
      }
      if (looked == kListChunk) break;  // let the others in, then go on after `cursor`
      cursor = it->first;
      const WorkloadRecord& w = it->second;
      if (!queue.empty() && w.parsed.queue_name != queue) continue;
      if (!access.Reads(w.parsed.queue_name)) continue;
      if (!state.empty() && w.state != state) continue;
      if (!kind.empty() && KindName(w.parsed.spec.kind) != kind) continue;
      if (service > 0 && w.parsed.service_of != service) continue;
      Json j = WorkloadJson(w, access);
      j.erase("events");
      list.push_back(std::move(j));
    }
  }
  Json out = {{"workloads", std::move(list)}};
  if (stopped) out["continue"] = std::to_string(cursor);
  return out;
}

Json Controller::QueueJson(const QueueConfig& q) const {
  core::QueueId id = queue_ids_.at(q.name);
  Json quota = Json::array();
  std::vector<std::string> names;
  for (uint32_t m = 0; m < models_.size(); ++m) names.push_back(models_.Name(core::GpuModelId(m)));
  for (uint32_t m = 0; m < models_.size(); ++m) {
    const QuotaConfig* entry = nullptr;
    for (const QuotaConfig& e : q.quota) {
      if (e.model == names[m]) entry = &e;
      if (e.model == "*" && entry == nullptr) entry = &e;
    }
    const std::vector<int64_t>& usage = snapshot_.queue_gpu_milli[id.value()];
    int64_t used = m < usage.size() ? usage[m] : 0;
    if (entry == nullptr && used == 0) continue;
    quota.push_back(Json{{"model", names[m]},
                         {"guaranteed_milli", entry ? entry->guaranteed_milli : 0},
                         {"limit_milli", entry && entry->limit_milli >= 0 ? Json(entry->limit_milli)
                                                                          : Json(nullptr)},
                         {"used_milli", used}});
  }
  int pending = 0, running = 0;
  Json by_reason = Json::object();  // pending workloads by their reason
  for (const auto& [wid, w] : workloads_) {
    if (w.parsed.queue_name != q.name) continue;
    if (w.state == "Pending") {
      ++pending;
      Json& n = by_reason[w.reason.empty() ? "Queued" : w.reason];
      n = n.is_null() ? 1 : n.get<int>() + 1;
    }
    running += w.state == "Running" || w.state == "Preempted";
  }
  auto opt = [](int64_t v) { return v >= 0 ? Json(v) : Json(nullptr); };
  const Json cpu = {{"guaranteed_milli", opt(q.cpu_quota.guaranteed)},
                    {"limit_milli", opt(q.cpu_quota.limit)},
                    {"used_milli", snapshot_.queue_cpu_milli[id.value()]}};
  const Json memory = {{"guaranteed_mib", opt(q.memory_quota.guaranteed)},
                       {"limit_mib", opt(q.memory_quota.limit)},
                       {"used_mib", snapshot_.queue_memory_mib[id.value()]}};
  return Json{{"name", q.name},
              {"parent", q.parent.empty() ? Json(nullptr) : Json(q.parent)},
              {"weight", q.weight},
              {"can_borrow", q.can_borrow},
              {"can_lend", q.can_lend},
              {"leaf", leaf_queues_.count(q.name) > 0},
              {"quota", quota},
              {"cpu_quota", cpu},
              {"memory_quota", memory},
              {"pending", pending},
              {"pending_by_reason", by_reason},
              {"running", running}};
}

Json Controller::ListQueues(const Access& access) {
  std::lock_guard<std::mutex> lock(mu_);
  Json list = Json::array();
  for (const QueueConfig& q : config_.queues) {
    if (access.Reads(q.name)) list.push_back(QueueJson(q));
  }
  return Json{{"queues", list}};
}

bool Controller::GetQueue(const std::string& name, Json& out, ApiError& error,
                          const Access& access) {
  std::lock_guard<std::mutex> lock(mu_);
  const QueueConfig* q = config_.FindQueue(name);
  if (q == nullptr || !access.Reads(name)) {
    error = ApiError{404, "name", "name: no queue " + name};
    return false;
  }
  out = QueueJson(*q);
  return true;
}

Json Controller::NodeJson(const NodeRecord& n, const Access& access) const {
  // A node registered since the last cycle has nothing allocated yet.
  static const EngineSnapshot::NodeUse kUnused;
  const EngineSnapshot::NodeUse& s =
      n.id.value() < snapshot_.nodes.size() ? snapshot_.nodes[n.id.value()] : kUnused;
  Json gpus = Json::array();
  const Json& reg = n.registration.value("gpus", Json::array());
  for (int j = 0; j < n.spec.gpu_count; ++j) {
    const auto u = static_cast<size_t>(j);
    Json g = j < static_cast<int>(reg.size()) ? reg[u] : Json::object();
    g["used_milli"] = u < s.gpu_used_milli.size() ? s.gpu_used_milli[u] : 0;
    // Telemetry (null until the agent sent a sample; docs/observability.md).
    const NodeRecord::GpuTelemetry* t = u < n.gpu_telemetry.size() ? &n.gpu_telemetry[u] : nullptr;
    g["util_pct"] = t != nullptr && t->util_pct >= 0 ? Json(t->util_pct) : Json(nullptr);
    g["memory_used_mib"] =
        t != nullptr && t->memory_used_mib >= 0 ? Json(t->memory_used_mib) : Json(nullptr);
    g["healthy"] = !((n.unhealthy_gpus >> j) & 1u);
    if ((n.unhealthy_gpus >> j) & 1u) g["health"] = t != nullptr ? t->health : "unhealthy";
    g["holders"] = Json::array();
    // MIG (docs/partitioning.md): the mode, the layout the agent reported, and a change
    // asked of it that it has not reported yet.
    const bool mig = (n.spec.mig_gpus >> j) & 1u;
    g["mode"] = mig ? "mig" : "whole";
    if (mig && n.spec.mig_model != nullptr) {
      g["mig_layout"] = core::FormatLayout(*n.spec.mig_model, n.spec.mig_layouts[u]);
      Json instances = Json::array();
      for (const core::MigInstance& i : n.spec.mig_layouts[u].view()) {
        instances.push_back(Json{{"profile", n.spec.mig_model->profiles[i.profile].name},
                                 {"start", i.start},
                                 {"holders", Json::array()}});
      }
      g["mig_instances"] = std::move(instances);
      if (auto d = n.mig_desired.find(j); d != n.mig_desired.end()) {
        g["mig_pending_layout"] = d->second.layout;
      }
    }
    gpus.push_back(std::move(g));
  }
  // Who holds each GPU: the live tasks bound to it.
  if (auto on = on_node_.find(n.name); on != on_node_.end()) {
    for (int64_t id : on->second) {
      const WorkloadRecord& w = workloads_.at(id);
      for (const TaskRecord& t : w.tasks) {
        if (t.node != n.name || t.state == "exited" || t.state == "lost") continue;
        for (int j : t.gpus) {
          if (j < 0 || j >= n.spec.gpu_count) continue;
          Json& holders = gpus[static_cast<size_t>(j)]["holders"];
          if (!access.Reads(w.parsed.queue_name)) {
            holders.push_back(Json{{"other_queue", true}, {"gpu_milli", t.gpu_milli}});
            continue;
          }
          holders.push_back(Json{{"workload", w.id},
                                 {"name", w.parsed.spec.name},
                                 {"queue", w.parsed.queue_name},
                                 {"task", t.task},
                                 {"gpu_milli", t.gpu_milli}});
          if (t.mig_start < 0) continue;
          holders.back()["mig_start"] = t.mig_start;
          holders.back()["mig_profile"] = t.mig_profile;
          // And under the instance it runs on.
          if (Json& g = gpus[static_cast<size_t>(j)]; g.contains("mig_instances")) {
            for (Json& i : g["mig_instances"]) {
              if (i["start"] == t.mig_start) i["holders"].push_back(holders.back());
            }
          }
        }
      }
    }
  }
  const std::string metrics_address = n.registration.value("metrics_address", "");
  std::string status = n.down ? "Down" : n.drained ? "Draining" : "Ready";
  return Json{{"name", n.name},
              {"status", status},
              {"zone", n.spec.zone},
              {"rack", n.spec.rack},
              {"backend", n.registration.value("backend", "")},
              {"address", n.registration.value("address", "")},
              {"cpu_milli", n.spec.milli_cpu},
              {"memory_mib", n.spec.memory_mib},
              {"cpu_used_milli", s.cpu_used},
              {"last_heartbeat", Iso(n.last_heartbeat_wall_ms)},
              {"telemetry", n.registration.value("telemetry", "")},
              {"metrics_url",
               metrics_address.empty() ? std::string() : "http://" + metrics_address + "/metrics"},
              {"last_telemetry", Iso(n.telemetry_wall_ms)},
              {"gpus", gpus}};
}

Json Controller::ListNodes(int64_t limit, const std::string& after, const Access& access) {
  std::lock_guard<std::mutex> lock(mu_);
  Json list = Json::array();
  if (limit <= 0) {
    for (const auto& [name, n] : nodes_) list.push_back(NodeJson(n, access));
    return Json{{"nodes", list}};
  }
  auto it = after.empty() ? nodes_.begin() : nodes_.upper_bound(after);
  for (; it != nodes_.end() && static_cast<int64_t>(list.size()) < limit; ++it) {
    list.push_back(NodeJson(it->second, access));
  }
  Json out = {{"nodes", list}};
  if (it != nodes_.end()) out["continue"] = std::prev(it)->first;
  // Counts by (status, model): GPUs on one node share one model (core::NodeSpec), so a
  // node counts once, under its model. Integers only per node: this runs on every page, and
  // at 10,000 nodes a string or JSON lookup per node would cost more than the page itself.
  struct Count {
    int64_t nodes = 0, gpus = 0, used_milli = 0;
  };
  std::map<std::pair<int, int64_t>, Count> counts;  // (status, model id or -1)
  static const char* const kStatus[] = {"Down", "Draining", "Ready"};
  int64_t total_gpus = 0;
  for (const auto& [name, n] : nodes_) {
    const int status = n.down ? 0 : n.drained ? 1 : 2;
    const int64_t model = n.spec.gpu_count > 0 && n.spec.gpu_model.valid()
                              ? static_cast<int64_t>(n.spec.gpu_model.value())
                              : -1;
    Count& t = counts[{status, model}];
    ++t.nodes;
    t.gpus += n.spec.gpu_count;
    total_gpus += n.spec.gpu_count;
    if (n.id.value() < snapshot_.nodes.size()) {
      for (int64_t used : snapshot_.nodes[n.id.value()].gpu_used_milli) t.used_milli += used;
    }
  }
  // Ordered by status, then model name, as the few groups are shown.
  std::map<std::pair<std::string, std::string>, Count> named;
  for (const auto& [key, c] : counts) {
    named[{kStatus[key.first],
           key.second < 0 ? std::string()
                          : models_.Name(core::GpuModelId(static_cast<uint32_t>(key.second)))}] = c;
  }
  Json groups = Json::array();
  for (const auto& [key, c] : named) {
    groups.push_back(Json{{"status", key.first},
                          {"model", key.second},
                          {"nodes", c.nodes},
                          {"gpus", c.gpus},
                          {"gpus_used_milli", c.used_milli}});
  }
  // The engine gauges of the last computation (at most a second old; none before the first
  // cycle), as /metrics has them: gpuorch_gpus_idle_while_waiting, gpuorch_fragmented_gpus.
  Json models = Json::array();
  for (const ModelSummary& m : model_summary_) {
    models.push_back(Json{{"model", m.model},
                          {"gpus_idle_while_waiting", m.idle_while_waiting},
                          {"fragmented_gpus", m.fragmented_milli / 1000.0}});
  }
  out["summary"] = Json{{"nodes", static_cast<int64_t>(nodes_.size())},
                        {"gpus", total_gpus},
                        {"groups", std::move(groups)},
                        {"models", std::move(models)}};
  return out;
}

bool Controller::SetDrain(const std::string& name, bool drain, Json& out, ApiError& error) {
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = nodes_.find(name);
    if (it == nodes_.end()) {
      error = ApiError{404, "name", "name: no node " + name};
      return false;
    }
    NodeRecord& n = it->second;
    if (n.drained != drain) log::Info(drain ? "node_drain" : "node_undrain", {{"node", name}});
    n.drained = drain;
    if (!n.down) {
      Enqueue(EngineEvent::Node(name));
      Kick();
    }
    dirty_nodes_.insert(name);
    out = NodeJson(n);
    ticket = committer_->Enqueue(TakeDirty());
  }
  if (Status s = committer_->Wait(ticket); !s.ok()) {
    error = ApiError{500, "", "store: " + s.message()};
    return false;
  }
  return true;
}

bool Controller::LogTarget(int64_t id, int32_t task, std::string& address, std::string& path,
                           std::string& secret, ApiError& error, const Access& access) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = workloads_.find(id);
  if (it == workloads_.end() || !access.Reads(it->second.parsed.queue_name)) {
    error = ApiError{404, "id", "id: no workload " + std::to_string(id)};
    return false;
  }
  const WorkloadRecord& w = it->second;
  for (const TaskRecord& t : w.tasks) {
    if (t.task != task) continue;
    auto n = nodes_.find(t.node);
    if (n == nodes_.end()) break;
    address = n->second.registration.value("address", "");
    secret = n->second.registration.value("log_secret", "");
    path = "/v1/tasks/" + std::to_string(id) + "/" + std::to_string(task) + "/" +
           std::to_string(w.attempt) + "/logs";
    if (address.empty() || secret.empty()) {
      // Logs are fetched only from the node itself and only with its agent's credential.
      error = ApiError{502, "",
                       "node " + t.node + ": its agent registered no log endpoint" +
                           (address.empty() ? "" : " secret (an agent too old)")};
      return false;
    }
    return true;
  }
  error = ApiError{404, "task",
                   "task: workload " + std::to_string(id) + " has no task " + std::to_string(task) +
                       " in its current attempt"};
  return false;
}

// ---- Persistence format.

store::StoredWorkload Controller::ToStored(const WorkloadRecord& w) const {
  Json tasks = Json::array();
  for (const TaskRecord& t : w.tasks) {
    tasks.push_back(Json{{"task", t.task},
                         {"node", t.node},
                         {"gpus", t.gpus},
                         {"gpu_milli", t.gpu_milli},
                         {"state", t.state},
                         {"exit_code", t.exit_code ? Json(*t.exit_code) : Json(nullptr)},
                         {"stopping", t.stopping},
                         {"cpu_user_ms", t.cpu_user_ms},
                         {"cpu_system_ms", t.cpu_system_ms},
                         {"max_rss_kib", t.max_rss_kib},
                         {"memory_peak_kib", t.memory_peak_kib},
                         {"model", t.model},
                         {"bound_ms", t.bound_ms},
                         {"released", t.released}});
    if (t.mig_start >= 0) {
      tasks.back()["mig_start"] = t.mig_start;
      tasks.back()["mig_profile"] = t.mig_profile;
    }
  }
  Json events = Json::array();
  for (const WorkloadEvent& e : w.events) {
    events.push_back(Json{{"time_ms", e.time_ms}, {"type", e.type}, {"message", e.message}});
    if (e.about >= 0) events.back()["about"] = e.about;
    if (!e.redacted.empty()) events.back()["redacted"] = e.redacted;
  }
  Json status{{"state", w.state},
              {"user", w.user},
              {"reason", w.reason},
              {"attempt", w.attempt},
              {"submitted_ms", w.submitted_ms},
              {"started_ms", w.started_ms},
              {"finished_ms", w.finished_ms},
              {"cancel_requested", w.cancel_requested},
              {"failed", w.failed},
              {"tasks", tasks},
              {"events", events}};
  if (w.draining_since_ms > 0) status["draining_since_ms"] = w.draining_since_ms;
  if (auto sv = services_.find(w.id); sv != services_.end() && sv->second.pinned) {
    status["pinned"] = *sv->second.pinned;
  }
  return store::StoredWorkload{w.id, w.state, w.parsed.canonical_json, status.dump()};
}

Status Controller::Load() {
  auto nodes = store_->LoadNodes();
  if (!nodes.ok()) return nodes.status();
  for (const store::StoredNode& sn : *nodes) {
    Json reg = Json::parse(sn.json, nullptr, false);
    if (reg.is_discarded()) return Status::Invalid("store: node " + sn.name + ": corrupt JSON");
    bool drained = reg.value("drained", false);
    const std::string owner = reg.value("owner", "");
    reg.erase("drained");
    reg.erase("owner");
    Json out;
    ApiError err;
    if (!Register(reg, out, err, owner)) {
      return Status::Invalid("store: node " + sn.name + ": " + err.message);
    }
    // After a restart agents may be in their retry backoff (at most 4 s): give them that
    // long on top of the timeout before their nodes count as Down.
    nodes_.at(sn.name).last_heartbeat_ms += kRestartGraceMs;
    if (drained) nodes_.at(sn.name).drained = true;  // the engine hears it in DrainInbox
  }
  auto stored = store_->LoadWorkloads();
  if (!stored.ok()) return stored.status();
  auto usage_id = store_->MaxUsageId();
  if (!usage_id.ok()) return usage_id.status();
  next_usage_id_ = *usage_id + 1;
  // No other thread runs yet: Load is the engine's owner, and adopts work onto the nodes
  // Register queued for it.
  std::lock_guard<std::mutex> lock(mu_);
  DrainInbox();
  for (const store::StoredWorkload& sw : *stored) {
    next_id_ = std::max(next_id_, sw.id + 1);
    Json spec = Json::parse(sw.spec_json, nullptr, false);
    Json st = Json::parse(sw.status_json, nullptr, false);
    if (spec.is_discarded() || st.is_discarded()) {
      return Status::Invalid("store: workload " + std::to_string(sw.id) + ": corrupt JSON");
    }
    WorkloadRecord w;
    w.id = sw.id;
    w.state = st.value("state", "Pending");
    w.reason = st.value("reason", "");
    w.attempt = st.value("attempt", 0);
    w.submitted_ms = st.value("submitted_ms", int64_t{0});
    w.started_ms = st.value("started_ms", int64_t{0});
    w.finished_ms = st.value("finished_ms", int64_t{0});
    w.queued_since_ms = w.submitted_ms;
    w.cancel_requested = st.value("cancel_requested", false);
    w.failed = st.value("failed", false);
    w.user = st.value("user", "");
    w.draining_since_ms = st.value("draining_since_ms", int64_t{0});
    for (const Json& e : st.value("events", Json::array())) {
      if (!e.is_object()) continue;
      w.events.push_back(WorkloadEvent{e.value("time_ms", int64_t{0}), e.value("type", ""),
                                       e.value("message", ""), e.value("about", int64_t{-1}),
                                       e.value("redacted", "")});
    }
    for (const Json& t : st.value("tasks", Json::array())) {
      TaskRecord r;
      r.task = t.value("task", 0);
      r.node = t.value("node", "");
      r.gpus = t.value("gpus", std::vector<int>{});
      r.gpu_milli = t.value("gpu_milli", 1000);
      r.state = t.value("state", "assigned");
      if (t.contains("exit_code") && t["exit_code"].is_number_integer()) {
        r.exit_code = t["exit_code"].get<int>();
      }
      r.stopping = t.value("stopping", false);
      r.cpu_user_ms = t.value("cpu_user_ms", int64_t{0});
      r.cpu_system_ms = t.value("cpu_system_ms", int64_t{0});
      r.max_rss_kib = t.value("max_rss_kib", int64_t{0});
      r.memory_peak_kib = t.value("memory_peak_kib", int64_t{0});
      r.mig_start = t.value("mig_start", -1);
      r.mig_profile = t.value("mig_profile", "");
      // Records written before accounting existed: a live task counts from the workload's
      // start; one that had ended then is not accounted.
      r.bound_ms = t.value("bound_ms", w.started_ms);
      r.released = t.value("released", r.state == "exited" || r.state == "lost");
      r.model = t.value("model", "");
      if (auto n = nodes_.find(r.node);
          r.model.empty() && n != nodes_.end() && n->second.spec.gpu_count > 0) {
        r.model = models_.Name(n->second.spec.gpu_model);
      }
      w.tasks.push_back(r);
    }
    // A replica names its service, which no submission may (ParseWorkload refuses it).
    const Json service_of = spec.contains("service") ? spec["service"] : Json();
    const Json replica = spec.contains("replica") ? spec["replica"] : Json();
    spec.erase("service");
    spec.erase("replica");
    ApiError err;
    const bool parsed = ParseWorkload(spec, config_, leaf_queues_, models_, w.parsed, err);
    if (service_of.is_number_integer()) {
      spec["service"] = service_of;
      spec["replica"] = replica;
      w.parsed.canonical_json = spec.dump();
      w.parsed.service_of = service_of.get<int64_t>();
      w.parsed.replica = replica.is_number_integer() ? replica.get<int32_t>() : 0;
    }
    if (!parsed) {
      // The config changed under it (e.g. its queue is gone): it cannot run any more.
      if (!w.terminal()) {
        w.state = "Failed";
        w.finished_ms = Now();
        w.events.push_back(
            WorkloadEvent{Now(), "Failed", "no longer valid after restart: " + err.message});
        dirty_.insert(w.id);
      }
      w.parsed.canonical_json = spec.dump();
      w.parsed.queue_name = spec.value("queue", "");
      w.parsed.spec.name = spec.value("name", "");
      workloads_.emplace(w.id, std::move(w));
      continue;
    }
    w.parsed.spec.submit_time = w.submitted_ms;
    if (w.terminal()) {
      workloads_.emplace(w.id, std::move(w));
      continue;
    }
    if (w.parsed.service) {  // a service never enters the engine; its replicas do
      const int64_t id = w.id;
      const std::optional<int32_t> pinned =
          st.contains("pinned") && st["pinned"].is_number_integer()
              ? std::optional<int32_t>(st["pinned"].get<int32_t>())
              : std::nullopt;
      StartService(workloads_.emplace(id, std::move(w)).first->second);
      if (pinned && autoscaler_.Pin(services_.at(id).slot, *pinned).ok()) {
        services_.at(id).pinned = pinned;
      }
      continue;
    }
    std::vector<sched::TaskBinding> live;
    for (const TaskRecord& t : w.tasks) {
      auto n = nodes_.find(t.node);
      if (t.state == "exited" || t.state == "lost" || n == nodes_.end()) continue;
      sched::GpuMask mask = 0;
      for (int j : t.gpus) mask = static_cast<sched::GpuMask>(mask | (1u << j));
      live.push_back(sched::TaskBinding{t.task, n->second.id, mask, t.gpu_milli,
                                        static_cast<int8_t>(t.mig_start)});
    }
    bool adopted = false;
    if ((w.state == "Running" || w.state == "Preempted") && !live.empty()) {
      adopted = engine_
                    ->Adopt(core::WorkloadId(static_cast<uint32_t>(w.id)), w.parsed.spec, live,
                            w.started_ms)
                    .ok();
      if (adopted) {
        for (const TaskRecord& t : w.tasks) on_node_[t.node].insert(w.id);
      }
    }
    if (!adopted) {
      if (w.state != "Pending") {
        ReleaseAll(w);  // held, as far as anyone knows, until this restart
        w.state = "Pending";
        ++w.attempt;
        w.tasks.clear();
        dirty_.insert(w.id);
      }
      (void)engine_->Submit(core::WorkloadId(static_cast<uint32_t>(w.id)), w.parsed.spec);
    }
    if (!w.parsed.unknown_models.empty()) unknown_models_.insert(w.id);
    workloads_.emplace(w.id, std::move(w));
  }
  // Replicas join their services (whatever order the store gave); replica numbers go on
  // after every replica the store still holds, ended ones included.
  for (auto& [id, w] : workloads_) {
    auto sv = services_.find(w.parsed.service_of);
    if (w.parsed.service_of == 0 || sv == services_.end()) continue;
    sv->second.next_replica = std::max(sv->second.next_replica, w.parsed.replica + 1);
    if (w.terminal()) continue;
    sv->second.replicas.insert(id);
    sv->second.desired += !w.cancel_requested && w.draining_since_ms == 0;
  }
  for (auto& [id, st] : services_) st.hold_until_ms = Now() + kRestartHoldMs;
  // A replica whose service did not come back (it no longer parses, or ended) has nobody to
  // scale, drain or stop it: it stops.
  for (auto& [id, w] : workloads_) {
    if (w.parsed.service_of > 0 && !w.terminal() && !w.cancel_requested &&
        !services_.count(w.parsed.service_of)) {
      CancelLocked(w, "its service " + std::to_string(w.parsed.service_of) + " is gone");
    }
  }
  return Status::Ok();
}

}  // namespace gpuorch::server
