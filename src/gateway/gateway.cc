#include "gateway/gateway.h"

#include <httplib.h>

#include <algorithm>
#include <set>
#include <sstream>

namespace gpuorch::gateway {
namespace {

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? 'n' : c;
  }
  return out;
}

}  // namespace

core::Result<std::string> HttpGet(const std::string& url) {
  if (url.rfind("http://", 0) != 0)
    return core::Status::Invalid(url + ": expected http://HOST:PORT/PATH");
  const size_t slash = url.find('/', 7);
  httplib::Client client(url.substr(0, slash));
  client.set_connection_timeout(2);
  client.set_read_timeout(5);
  auto res = client.Get(slash == std::string::npos ? "/" : url.substr(slash));
  if (!res) return core::Status::Precondition(url + ": " + httplib::to_string(res.error()));
  if (res->status != 200)
    return core::Status::Precondition(url + ": HTTP " + std::to_string(res->status));
  return res->body;
}

core::Result<std::vector<Service>> ParseServices(const nlohmann::json& body) {
  if (!body.is_object() || !body.contains("services") || !body["services"].is_array())
    return core::Status::Invalid("GET /v1/services: expected {\"services\": [...]}");
  std::vector<Service> out;
  for (const nlohmann::json& j : body["services"]) {
    if (!j.is_object() || !j.contains("id") || !j["id"].is_number_integer() ||
        !j.contains("name") || !j["name"].is_string())
      return core::Status::Invalid("GET /v1/services: a service without an id and a name");
    const std::string where = "GET /v1/services: service " + j["name"].get<std::string>();
    Service s;
    s.id = j["id"].get<int64_t>();
    s.name = j["name"].get<std::string>();
    const nlohmann::json replicas = j.contains("service") && j["service"].is_object()
                                        ? j["service"].value("replicas", nlohmann::json::array())
                                        : nlohmann::json::array();
    if (!replicas.is_array())
      return core::Status::Invalid(where + ": service.replicas: not a list");
    for (const nlohmann::json& r : replicas) {
      if (!r.is_object() || !r.contains("workload") || !r["workload"].is_number_integer())
        return core::Status::Invalid(where + ": service.replicas[].workload is required");
      Replica rep;
      rep.workload = r["workload"].get<int64_t>();
      const nlohmann::json addr = r.value("address", nlohmann::json());
      rep.address = addr.is_string() ? addr.get<std::string>() : "";
      rep.ready = r.contains("ready") && r["ready"].is_boolean() && r["ready"].get<bool>();
      rep.draining =
          r.contains("draining") && r["draining"].is_boolean() && r["draining"].get<bool>();
      // A replica without an address (not placed yet, or emulated with port 0) cannot be
      // routed to; it counts only in the replica gauges.
      if (rep.address.empty() || rep.address.rfind(":0") == rep.address.size() - 2)
        rep.ready = false;
      s.replicas.push_back(std::move(rep));
    }
    out.push_back(std::move(s));
  }
  return out;
}

nlohmann::json LoadBody(const Service& service, const BackendStats& stats,
                        const std::vector<ServerState>& servers) {
  nlohmann::json replicas = nlohmann::json::object();
  for (const Replica& r : service.replicas) replicas[std::to_string(r.workload)] = 0;
  // A replica takes new requests while one of its servers is ready.
  std::set<int64_t> routed;
  for (const ServerState& s : servers) {
    if (s.ready()) routed.insert(WorkloadOfServer(s.name));
  }
  nlohmann::json drained = nlohmann::json::array();
  for (const Replica& r : service.replicas) {
    if (!routed.count(r.workload)) drained.push_back(r.workload);
  }
  for (const auto& [server, sessions] : stats.server_sessions) {
    const int64_t w = WorkloadOfServer(server);
    if (w < 0) continue;
    const std::string key = std::to_string(w);
    replicas[key] = replicas.value(key, int64_t{0}) + sessions;
  }
  // The load balancer's own source, apart from what external gateways push
  // (docs/autoscale.md, "Signals").
  return {{"in_flight", stats.sessions + stats.waiting},
          {"source", "load_balancer"},
          {"replicas", replicas},
          {"drained", drained}};
}

Gateway::Gateway(ControlPlane& control_plane, const RuntimeApi& haproxy, GatewayOptions options)
    : control_plane_(control_plane), haproxy_(haproxy), options_(std::move(options)) {
  if (options_.waiting_url.empty()) {
    const size_t slash = options_.metrics_url.find('/', 7);
    options_.waiting_url = options_.metrics_url.substr(0, slash) + "/gpuorch/waiting";
  }
}

core::Result<Observed> Gateway::ObserveHaproxy(std::map<std::string, BackendStats>& stats) {
  Observed o;
  auto backends = haproxy_.Run("show backend");
  if (!backends.ok()) return backends.status();
  for (const std::string& b : ParseBackends(*backends)) {
    if (b.rfind("svc_", 0) == 0) o.slots.push_back(b);
  }
  // svc_10 after svc_9: slots are numbered.
  std::sort(o.slots.begin(), o.slots.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  });
  if (o.slots.empty())
    return core::Status::Precondition(
        "haproxy has no svc_K backends: start it with the configuration of `gpuorch gateway "
        "--write-config`");
  if (map_file_.empty()) {
    auto maps = haproxy_.Run("show map");
    if (!maps.ok()) return maps.status();
    for (const std::string& f : ParseMapFiles(*maps)) {
      if (f.size() >= std::string(kRoutesMapName).size() &&
          f.compare(f.size() - std::string(kRoutesMapName).size(), std::string::npos,
                    kRoutesMapName) == 0)
        map_file_ = f;
    }
    if (map_file_.empty())
      return core::Status::Precondition(std::string("haproxy has no map file named ") +
                                        kRoutesMapName);
  }
  auto map = haproxy_.Run("show map " + map_file_);
  if (!map.ok()) return map.status();
  auto routes = ParseMapEntries(*map);
  if (!routes.ok()) return routes.status();
  o.routes = std::move(routes).value();
  auto state = haproxy_.Run("show servers state");
  if (!state.ok()) return state.status();
  auto servers = ParseServersState(*state);
  if (!servers.ok()) return servers.status();
  for (ServerState& s : servers.value()) {
    if (s.backend.rfind("svc_", 0) == 0) o.servers.push_back(std::move(s));
  }

  std::vector<Sample> samples;
  for (const std::string& url : {options_.metrics_url, options_.waiting_url}) {
    auto text = HttpGet(url + (url == options_.metrics_url ? "?scope=backend&scope=server" : ""));
    if (!text.ok()) return text.status();
    auto parsed = ParsePrometheusText(*text);
    if (!parsed.ok()) return core::Status::Invalid(url + ": " + parsed.status().message());
    samples.insert(samples.end(), parsed->begin(), parsed->end());
  }
  stats = BackendStatsOf(samples);
  for (const auto& [backend, st] : stats) {
    for (const auto& [server, n] : st.server_sessions) o.sessions[{backend, server}] = n;
  }
  return o;
}

core::Status Gateway::Tick() {
  core::Status first = core::Status::Ok();
  auto note = [&](const core::Status& s) {
    if (s.ok()) return;
    if (first.ok()) first = s;
    std::lock_guard lock(mu_);
    ++errors_;
  };
  auto services = control_plane_.ListServices();
  std::map<std::string, BackendStats> stats;
  auto observed = ObserveHaproxy(stats);
  if (!services.ok() || !observed.ok()) {
    note(services.ok() ? observed.status() : services.status());
    std::lock_guard lock(mu_);
    ++ticks_;
    return first;
  }
  const Plan plan = Reconcile(*services, *observed, map_file_);
  for (const std::string& p : plan.problems) note(core::Status::Precondition(p));
  for (const std::string& command : plan.commands) note(haproxy_.Apply(command));

  std::ostringstream m;
  m << "# HELP gpuorch_service_request_duration_seconds Average time to the replica's response "
       "over the backend's last 1024 requests (HAProxy's rtime).\n"
       "# TYPE gpuorch_service_request_duration_seconds gauge\n";
  std::ostringstream queue_time, in_flight, waiting, replicas;
  for (const Service& s : *services) {
    auto b = plan.backend_of.find(s.id);
    const BackendStats st =
        b != plan.backend_of.end() && stats.count(b->second) ? stats[b->second] : BackendStats{};
    const std::string labels =
        "{service=\"" + Escape(s.name) + "\",id=\"" + std::to_string(s.id) + "\"";
    m << "gpuorch_service_request_duration_seconds" << labels << "} " << st.response_time_avg_s
      << '\n';
    queue_time << "gpuorch_service_queue_duration_seconds" << labels << "} " << st.queue_time_avg_s
               << '\n';
    in_flight << "gpuorch_service_in_flight" << labels << "} " << st.sessions + st.waiting << '\n';
    waiting << "gpuorch_service_waiting_requests" << labels << "} " << st.waiting << '\n';
    int ready = 0, draining = 0, not_ready = 0;
    for (const Replica& r : s.replicas) {
      (r.draining ? draining : r.ready ? ready : not_ready)++;
    }
    replicas << "gpuorch_gateway_servers" << labels << ",state=\"ready\"} " << ready << '\n'
             << "gpuorch_gateway_servers" << labels << ",state=\"draining\"} " << draining << '\n'
             << "gpuorch_gateway_servers" << labels << ",state=\"not_ready\"} " << not_ready
             << '\n';
    if (b != plan.backend_of.end()) {
      std::vector<ServerState> servers;
      for (const ServerState& srv : observed->servers) {
        if (srv.backend == b->second) servers.push_back(srv);
      }
      note(control_plane_.PushLoad(s.id, LoadBody(s, st, servers)));
    }
  }
  m << "# HELP gpuorch_service_queue_duration_seconds Average time requests spent in the "
       "backend's queue (HAProxy's qtime).\n"
       "# TYPE gpuorch_service_queue_duration_seconds gauge\n"
    << queue_time.str()
    << "# HELP gpuorch_service_in_flight Requests queued, held or being served at the gateway.\n"
       "# TYPE gpuorch_service_in_flight gauge\n"
    << in_flight.str()
    << "# HELP gpuorch_service_waiting_requests Requests held until the service has a ready "
       "replica (scale from zero).\n"
       "# TYPE gpuorch_service_waiting_requests gauge\n"
    << waiting.str()
    << "# HELP gpuorch_gateway_servers The service's replicas as the gateway routes them: "
       "ready (enabled in its HAProxy backend), draining, not_ready (not routed); from the "
       "server's list at this tick.\n"
       "# TYPE gpuorch_gateway_servers gauge\n"
    << replicas.str();
  std::lock_guard lock(mu_);
  metrics_ = m.str();
  ++ticks_;
  return first;
}

std::string Gateway::RenderMetrics() const {
  std::lock_guard lock(mu_);
  return metrics_ +
         "# HELP gpuorch_gateway_errors_total Failed reads, commands and pushes of the "
         "gateway.\n# TYPE gpuorch_gateway_errors_total counter\ngpuorch_gateway_errors_total " +
         std::to_string(errors_) +
         "\n# HELP gpuorch_gateway_ticks_total Rounds of the gateway's loop.\n"
         "# TYPE gpuorch_gateway_ticks_total counter\ngpuorch_gateway_ticks_total " +
         std::to_string(ticks_) + "\n";
}

}  // namespace gpuorch::gateway
