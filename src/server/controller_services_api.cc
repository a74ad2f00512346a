// The inference services' API and views (docs/inference.md, docs/api.md): a service's JSON,
// the list a gateway polls, load reports, pinning, and the service gauges. The replica
// lifecycle they feed is controller_services.cc.
#include <cmath>
#include <cstdlib>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "server/controller.h"

namespace gpuorch::server {

using core::Status;

Json Controller::ServiceJson(const WorkloadRecord& svc, const Access& access) const {
  auto st = services_.find(svc.id);
  if (st == services_.end()) {
    return Json{{"desired", 0}, {"ready", 0}, {"pinned", nullptr}, {"replicas", Json::array()}};
  }
  Json replicas = Json::array();
  int32_t ready = 0;
  for (int64_t id : st->second.replicas) {
    auto it = workloads_.find(id);
    if (it == workloads_.end()) continue;
    const WorkloadRecord& r = it->second;
    const TaskRecord* t = r.primary();
    Json address(nullptr);
    if (t != nullptr && t->port > 0) {
      if (auto n = nodes_.find(t->node); n != nodes_.end()) {
        const std::string a = n->second.registration.value("address", "");
        const std::string host = a.substr(0, a.rfind(':'));
        if (!host.empty()) address = host + ":" + std::to_string(t->port);
      }
    }
    const bool is_ready = ReplicaReady(r);
    ready += is_ready;
    replicas.push_back(Json{{"workload", r.id},
                            {"replica", r.parsed.replica},
                            {"state", r.cancel_requested && !r.terminal() ? "Stopping" : r.state},
                            {"node", t != nullptr ? Json(t->node) : Json(nullptr)},
                            {"address", address},
                            {"ready", is_ready},
                            {"draining", r.draining_since_ms > 0}});
  }
  const autoscale::Decision& d = st->second.last;
  (void)access;  // a service's replicas are of its own queue: the caller reads them all
  return Json{{"desired", st->second.desired},
              {"ready", ready},
              {"pinned", st->second.pinned ? Json(*st->second.pinned) : Json(nullptr)},
              {"mode", autoscale::ModeName(d.mode)},
              {"bound", autoscale::BoundName(d.bound)},
              {"in_flight", d.stable_in_flight},
              {"in_flight_panic", d.panic_in_flight},
              {"kv_cache", d.stable_kv_cache},
              {"replicas", replicas}};
}

void Controller::ServiceSamples(prometheus::MetricFamily& replicas,
                                prometheus::MetricFamily& in_flight) const {
  for (const auto& [id, st] : services_) {
    const WorkloadRecord& svc = workloads_.at(id);
    const Labels labels = {{"service", svc.parsed.spec.name},
                           {"id", std::to_string(id)},
                           {"queue", svc.parsed.queue_name}};
    int64_t ready = 0, pending = 0, starting = 0, draining = 0, evicting = 0;
    for (int64_t r : st.replicas) {
      auto it = workloads_.find(r);
      if (it == workloads_.end() || it->second.terminal() || it->second.cancel_requested) continue;
      const WorkloadRecord& w = it->second;
      if (w.draining_since_ms > 0) {
        ++draining;
      } else if (w.state == "Preempted") {
        ++evicting;
      } else if (ReplicaReady(w)) {
        ++ready;
      } else if (w.state == "Pending") {
        ++pending;
      } else {
        ++starting;
      }
    }
    auto add = [&](const char* state, int64_t n) {
      Labels l = labels;
      l.emplace_back("state", state);
      AddSample(replicas, l, static_cast<double>(n));
    };
    add("desired", st.desired);
    add("ready", ready);
    add("pending", pending);
    add("starting", starting);
    add("draining", draining);
    add("evicting", evicting);
    AddSample(in_flight, labels, st.last.stable_in_flight);
  }
}

Json Controller::ListServices(const Access& access) {
  std::lock_guard<std::mutex> lock(mu_);
  Json list = Json::array();
  for (const auto& [id, st] : services_) {
    const WorkloadRecord& w = workloads_.at(id);
    if (!access.Reads(w.parsed.queue_name)) continue;
    list.push_back(Json{{"id", id},
                        {"name", w.parsed.spec.name},
                        {"queue", w.parsed.queue_name},
                        {"state", w.state},
                        {"service", ServiceJson(w, access)}});
  }
  return Json{{"services", std::move(list)}};
}

WorkloadRecord* Controller::FindService(int64_t id, const Access& access, ApiError& error) {
  auto it = workloads_.find(id);
  if (it == workloads_.end() || !access.Reads(it->second.parsed.queue_name)) {
    error = ApiError{404, "id", "id: no workload " + std::to_string(id)};
    return nullptr;
  }
  WorkloadRecord& w = it->second;
  if (!w.parsed.service) {
    error = ApiError{
        400, "id",
        "id: workload " + std::to_string(id) + " is not a service (kind inference with replicas)"};
    return nullptr;
  }
  if (!access.Writes(w.parsed.queue_name)) {
    error = ApiError{403, "id",
                     "id: this token may not change services of queue " + w.parsed.queue_name};
    return nullptr;
  }
  if (w.terminal() || !services_.count(id)) {
    error = ApiError{409, "state", "state: service " + std::to_string(id) + " is " + w.state};
    return nullptr;
  }
  return &w;
}

bool Controller::PushLoad(int64_t id, const Json& body, Json& out, ApiError& error,
                          const Access& access) {
  std::lock_guard<std::mutex> lock(mu_);
  WorkloadRecord* svc = FindService(id, access, error);
  if (svc == nullptr) return false;
  auto bad = [&error](const std::string& field, const std::string& why) {
    error = ApiError{400, field, field + ": " + why};
    return false;
  };
  if (!body.is_object()) return bad("", "body must be a JSON object");
  for (const auto& [k, v] : body.items()) {
    if (k != "in_flight" && k != "source" && k != "replicas" && k != "drained") {
      return bad(k, "unknown field");
    }
  }
  if (!body.contains("in_flight") || !body["in_flight"].is_number() ||
      !std::isfinite(body["in_flight"].get<double>()) || body["in_flight"].get<double>() < 0 ||
      body["in_flight"].get<double>() > 1e9) {
    return bad("in_flight", "required: a number in 0..1e9");
  }
  if (body.contains("source") && !body["source"].is_string()) {
    return bad("source", "must be load_balancer or pushed");
  }
  const std::string source = body.value("source", "pushed");
  if (source != "load_balancer" && source != "pushed") {
    return bad("source", "must be load_balancer or pushed");
  }
  std::vector<std::pair<int64_t, int64_t>> sessions;
  if (body.contains("replicas")) {
    const Json& r = body["replicas"];
    if (!r.is_object()) return bad("replicas", "must be an object of replica id -> sessions");
    for (const auto& [k, v] : r.items()) {
      char* end = nullptr;
      const long long rid = std::strtoll(k.c_str(), &end, 10);
      if (k.empty() || *end != '\0' || rid <= 0) return bad("replicas." + k, "not a workload id");
      if (!v.is_number_integer() || v.get<int64_t>() < 0) {
        return bad("replicas." + k, "must be a session count >= 0");
      }
      sessions.emplace_back(rid, v.get<int64_t>());
    }
  }
  std::set<int64_t> drained;
  if (body.contains("drained")) {
    const Json& d = body["drained"];
    if (!d.is_array()) return bad("drained", "must be a list of replica workload ids");
    for (const Json& v : d) {
      if (!v.is_number_integer()) return bad("drained", "must be a list of replica workload ids");
      drained.insert(v.get<int64_t>());
    }
  }
  ServiceState& st = services_.at(id);
  const int64_t now = Now();
  const double in_flight = body["in_flight"].get<double>();
  (void)autoscaler_.Observe(st.slot,
                            source == "load_balancer" ? autoscale::Source::kLoadBalancer
                                                      : autoscale::Source::kPushedInFlight,
                            in_flight, now);
  if (body.contains("replicas")) {
    st.gateway_ms = now;
    for (const auto& [rid, n] : sessions) {
      if (!st.replicas.count(rid)) continue;
      WorkloadRecord& r = workloads_.at(rid);
      r.gateway_sessions = n;
      r.gateway_ms = now;
      r.gateway_drained = drained.count(rid) > 0;
    }
  }
  // Traffic for a service at zero: decide now rather than at the next tick.
  if (in_flight > 0 && st.desired == 0) {
    st.tick_now = true;
    Kick();
  }
  out = Json{{"id", id}, {"desired", st.desired}};
  return true;
}

bool Controller::Scale(int64_t id, const Json& body, Json& out, ApiError& error,
                       const Access& access) {
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    WorkloadRecord* svc = FindService(id, access, error);
    if (svc == nullptr) return false;
    ServiceState& st = services_.at(id);
    const autoscale::ServiceParams& p = svc->parsed.service->autoscale;
    if (!body.is_object() || body.size() != 1 ||
        !(body.contains("replicas") || body.contains("auto"))) {
      error = ApiError{400, "replicas", "replicas: give {\"replicas\": N} or {\"auto\": true}"};
      return false;
    }
    if (body.contains("auto")) {
      if (body["auto"] != true) {
        error = ApiError{400, "auto", "auto: must be true"};
        return false;
      }
      (void)autoscaler_.Unpin(st.slot);
      st.pinned.reset();
      Event(*svc, "Unpinned", "autoscaling on");
    } else {
      const Json& n = body["replicas"];
      if (!n.is_number_integer() || n.get<int64_t>() < p.min_replicas ||
          n.get<int64_t>() > p.max_replicas) {
        error = ApiError{400, "replicas",
                         "replicas: must be an integer in " + std::to_string(p.min_replicas) +
                             ".." + std::to_string(p.max_replicas) + " (the service's replicas)"};
        return false;
      }
      const auto pinned = n.get<int32_t>();
      if (Status s = autoscaler_.Pin(st.slot, pinned); !s.ok()) {
        error = ApiError{400, "replicas", "replicas: " + s.message()};
        return false;
      }
      st.pinned = pinned;
      Event(*svc, "Pinned", std::to_string(pinned) + " replicas, autoscaling off");
    }
    st.tick_now = true;
    Dirty(*svc);
    Kick();
    out = Json{{"id", id}, {"pinned", st.pinned ? Json(*st.pinned) : Json(nullptr)}};
    ticket = committer_->Enqueue(TakeDirty());
  }
  if (Status s = committer_->Wait(ticket); !s.ok()) {
    error = ApiError{500, "", "store: " + s.message()};
    return false;
  }
  return true;
}

}  // namespace gpuorch::server
