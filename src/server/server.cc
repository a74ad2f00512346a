#include "server/server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <filesystem>

#include "log/logging.h"

namespace gpuorch::server {

using core::Result;
using core::Status;

namespace {

HttpResponse Reply(int code, const Json& body) {
  return HttpResponse{code, "application/json", body.dump()};
}

HttpResponse ReplyError(const ApiError& e) { return Reply(e.code, e.ToJson()); }

// Parses the body as JSON; false (and `error` set) when it is not.
bool Body(const HttpRequest& req, Json& out, HttpResponse& error) {
  out = Json::parse(req.body, nullptr, false);
  if (out.is_discarded()) {
    error = ReplyError(ApiError{400, "", "body: not valid JSON"});
    return false;
  }
  return true;
}

bool IdParam(const std::string& s, int64_t& id) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  id = std::stoll(s);
  return true;
}

std::vector<std::string> Split(const std::string& path) {
  std::vector<std::string> out;
  size_t i = 0;
  if (path.empty() || path[0] != '/') return {""};  // matches nothing
  while (i < path.size()) {
    size_t next = path.find('/', i + 1);
    if (next == std::string::npos) next = path.size();
    out.push_back(path.substr(i + 1, next - i - 1));
    i = next;
  }
  return out;
}

// A handler that answers at once.
using SyncHandler = std::function<HttpResponse(const HttpRequest&, const Server::Captures&)>;
Server::RouteHandler Sync(SyncHandler fn) {
  return [fn = std::move(fn)](const HttpRequest& req, const Server::Captures& m,
                              HttpRespond respond) { respond(fn(req, m)); };
}

// A refused request, with the field at fault from the API error body.
void LogRefusal(const std::string& method, const std::string& path, int code,
                const std::string& body) {
  if (!log::Enabled(log::Level::kWarn)) return;
  const Json j = Json::parse(body, nullptr, false);
  const Json e = j.is_object() && j.contains("error") ? j["error"] : Json::object();
  log::Warn("refused", {{"method", method},
                        {"path", path},
                        {"code", code},
                        {"field", e.is_object() ? e.value("field", "") : ""},
                        {"error", e.is_object() ? e.value("message", "") : body}});
}

// The configuration the server runs with, once at start-up.
void LogConfig(const ServerConfig& c) {
  Json queues = Json::array();
  for (const QueueConfig& q : c.queues) {
    Json quota = Json::array();
    for (const QuotaConfig& e : q.quota) {
      quota.push_back(Json{{"model", e.model},
                           {"guaranteed_milli", e.guaranteed_milli},
                           {"limit_milli", e.limit_milli}});
    }
    queues.push_back(Json{{"name", q.name},
                          {"parent", q.parent},
                          {"weight", q.weight},
                          {"can_borrow", q.can_borrow},
                          {"can_lend", q.can_lend},
                          {"quota", quota}});
  }
  Json priorities = Json::array();
  for (const PriorityClass& p : c.priority_classes) {
    priorities.push_back(
        Json{{"name", p.name}, {"value", p.value}, {"preemptible", p.preemptible}});
  }
  log::Info("config", {{"listen", c.listen},
                       {"data", c.data},
                       {"policy", c.policy},
                       {"node_timeout_ms", c.node_timeout_ms},
                       {"heartbeat_interval_ms", c.heartbeat_interval_ms},
                       {"max_heartbeats_per_second", c.max_heartbeats_per_second},
                       {"cycle_interval_ms", c.cycle_interval_ms},
                       {"io_threads", c.io_threads},
                       {"worker_threads", c.worker_threads},
                       {"max_connections", c.max_connections},
                       {"fair_share_half_life_s", c.fair_share_half_life_s},
                       {"default_priority", c.default_priority},
                       {"priority_classes", priorities},
                       {"queues", queues}});
}

}  // namespace

Status ParseHostPort(const std::string& s, std::string& host, int& port) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos) return Status::Invalid("listen: expected HOST:PORT, got " + s);
  host = s.substr(0, colon);
  std::string p = s.substr(colon + 1);
  if (host.empty() || p.empty() || p.size() > 5 ||
      p.find_first_not_of("0123456789") != std::string::npos || std::stoi(p) > 65535) {
    return Status::Invalid("listen: expected HOST:PORT with a port in 0..65535, got " + s);
  }
  port = std::stoi(p);
  return Status::Ok();
}

Server::Server(const ServerConfig& config) : config_(config) {}

Server::~Server() {
  Stop();
  if (controller_) controller_->Shutdown();
  if (loop_.joinable()) loop_.join();
  // The HTTP server first: its workers may still run handlers that use the controller.
  // The controller holds no watch by now (Shutdown answered them all).
  http_.reset();
  controller_.reset();
}

Result<std::unique_ptr<Server>> Server::Create(const ServerConfig& config) {
  std::unique_ptr<Server> s(new Server(config));
  std::error_code ec;
  std::filesystem::create_directories(config.data, ec);
  if (ec) return Status::Invalid("data: cannot create " + config.data + ": " + ec.message());
  auto store = store::OpenSqliteStore(config.data + "/gpuorch.db");
  if (!store.ok()) return store.status();
  s->store_ = std::move(store).value();
  auto controller = Controller::Create(config, s->store_.get());
  if (!controller.ok()) return controller.status();
  s->controller_ = std::move(controller).value();
  HttpOptions o;
  o.io_threads = static_cast<int>(config.io_threads);
  o.worker_threads = static_cast<int>(config.worker_threads);
  o.max_body_bytes = config.max_body_bytes;
  o.max_connections = config.max_connections;
  o.idle_timeout_ms = config.idle_timeout_s * 1000;
  o.error_body = [](int status, const std::string& field, const std::string& message) {
    return ReplyError(ApiError{status, field, message});
  };
  Server* self = s.get();
  o.on_stop = [self] { self->controller_->Shutdown(); };  // held watches answer now
  s->http_ = std::make_unique<HttpServer>(std::move(o),
                                          [self](const HttpRequest& req, HttpRespond respond) {
                                            self->Dispatch(req, std::move(respond));
                                          });
  s->Routes();
  LogConfig(config);
  return s;
}

Result<int> Server::Bind() {
  std::string host;
  int port = 0;
  if (Status st = ParseHostPort(config_.listen, host, port); !st.ok()) return st;
  return http_->Bind(host, port);
}

void Server::Serve() {
  loop_ = std::thread([this] {
    // A cycle as soon as something changed, at least every cycle_interval_ms (timers:
    // node timeouts, grace periods, fair-share decay). Under load the cycle and its commit
    // take a while and the changes that arrive meanwhile form the next batch.
    while (!stop_) {
      controller_->Step();
      controller_->WaitForWork(config_.cycle_interval_ms);
    }
  });
  http_->Run();
  stop_ = true;
  controller_->Shutdown();  // wakes the loop (on_stop did it already unless Run never ran)
  if (loop_.joinable()) loop_.join();
  controller_->Flush();  // whatever the API has shown is on disk before we exit
}

void Server::Stop() {
  // Async-signal-safe: `gpuorch server` calls it from its SIGTERM handler. The HTTP
  // server's I/O thread then shuts the controller down (on_stop).
  stop_ = true;
  if (http_) http_->Stop();
}

int64_t Server::connections() const { return http_->connections(); }

void Server::Route(const std::string& method, const std::string& pattern, RouteHandler fn) {
  routes_.push_back(RouteEntry{method, pattern, Split(pattern), std::move(fn)});
}

void Server::Dispatch(const HttpRequest& req, HttpRespond respond) {
  static const char* kMethods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
  bool known = false;
  for (const char* m : kMethods) known = known || req.method == m;
  const std::string method = !known ? "other" : req.method == "HEAD" ? "GET" : req.method;
  const RouteEntry* route = nullptr;
  Captures captures;
  if (known) {
    const std::vector<std::string> segments = Split(req.path);
    for (const RouteEntry& r : routes_) {
      if (r.method != method || r.segments.size() != segments.size()) continue;
      captures.clear();
      bool match = true;
      for (size_t i = 0; i < segments.size() && match; ++i) {
        if (r.segments[i] == "*") {
          match = !segments[i].empty();
          captures.push_back(segments[i]);
        } else {
          match = r.segments[i] == segments[i];
        }
      }
      if (match) {
        route = &r;
        break;
      }
    }
  }
  // Every answer is timed under its route's pattern (never the raw path: ids would make a
  // series each) and every refusal is logged with the field at fault.
  const std::string pattern = route != nullptr ? route->pattern : "unmatched";
  auto once = std::make_shared<std::atomic<bool>>(false);
  HttpRespond timed = [this, respond = std::move(respond), once, method, pattern, path = req.path,
                       start = std::chrono::steady_clock::now()](HttpResponse res) {
    if (once->exchange(true)) return;
    const int code = res.status;
    std::string body;
    if (code >= 400) body = res.body;
    respond(std::move(res));
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    controller_->metrics().ObserveRequest(method, pattern, code, secs);
    if (code >= 400) LogRefusal(method, path, code, body);
  };
  if (!known) return timed(ReplyError(ApiError{400, "", "method: not supported"}));
  if (route == nullptr) return timed(ReplyError(ApiError{404, "", "no such endpoint"}));
  route->fn(req, captures, std::move(timed));
}

void Server::Routes() {
  Controller& c = *controller_;
  Route("GET", "/healthz", Sync([](const HttpRequest&, const Captures&) {
          return HttpResponse{200, "text/plain", "ok\n"};
        }));
  Route("GET", "/metrics", Sync([this, &c](const HttpRequest&, const Captures&) {
          auto connections = GaugeFamily("gpuorch_http_connections", "Open HTTP connections.");
          AddSample(connections, {}, static_cast<double>(http_->connections()));
          auto watches = GaugeFamily("gpuorch_watches_held", "Agents' watches held now.");
          AddSample(watches, {}, static_cast<double>(c.HeldWatches()));
          auto interval = GaugeFamily("gpuorch_heartbeat_interval_seconds",
                                      "The heartbeat interval agents are told.");
          AddSample(interval, {}, static_cast<double>(c.HeartbeatIntervalMs()) / 1000.0);
          auto timeout =
              GaugeFamily("gpuorch_node_timeout_seconds", "Silence after which a node is Down.");
          AddSample(timeout, {}, static_cast<double>(c.NodeTimeoutMs()) / 1000.0);
          std::vector<prometheus::MetricFamily> extra;
          for (auto* f : {&connections, &watches, &interval, &timeout}) {
            extra.push_back(std::move(*f));
          }
          return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                              c.Metrics(std::move(extra))};
        }));
  Route("POST", "/v1/workloads", Sync([&c](const HttpRequest& req, const Captures&) {
          Json body, out;
          ApiError e;
          HttpResponse bad;
          if (!Body(req, body, bad)) return bad;
          if (!c.Submit(body, out, e)) return ReplyError(e);
          return Reply(201, out);
        }));
  Route("GET", "/v1/workloads", Sync([&c](const HttpRequest& req, const Captures&) {
          for (const auto& [k, v] : req.params) {
            if (k != "queue" && k != "state" && k != "kind") {
              return ReplyError(ApiError{400, k, k + ": unknown filter"});
            }
          }
          return Reply(200,
                       c.ListWorkloads(req.Param("queue"), req.Param("state"), req.Param("kind")));
        }));
  auto bad_id = [] { return ReplyError(ApiError{400, "id", "id: must be a workload number"}); };
  Route("GET", "/v1/workloads/*", Sync([&c, bad_id](const HttpRequest&, const Captures& m) {
          int64_t id;
          Json out;
          ApiError e;
          if (!IdParam(m[0], id)) return bad_id();
          if (!c.GetWorkload(id, out, e)) return ReplyError(e);
          return Reply(200, out);
        }));
  auto cancel = Sync([&c, bad_id](const HttpRequest&, const Captures& m) {
    int64_t id;
    Json out;
    ApiError e;
    if (!IdParam(m[0], id)) return bad_id();
    if (!c.Cancel(id, out, e)) return ReplyError(e);
    return Reply(200, out);
  });
  Route("POST", "/v1/workloads/*/cancel", cancel);
  Route("DELETE", "/v1/workloads/*", cancel);
  // The log is fetched from the node's agent on a worker thread (at most 12 s: connect and
  // read timeouts), so a slow agent holds one worker, never the event loop.
  Route("GET", "/v1/workloads/*/logs",
        Sync([&c, bad_id](const HttpRequest& req, const Captures& m) {
          int64_t id;
          if (!IdParam(m[0], id)) return bad_id();
          std::string task_s = req.HasParam("task") ? req.Param("task") : "0";
          std::string stream = req.HasParam("stream") ? req.Param("stream") : "stdout";
          int64_t task = 0;
          if (!IdParam(task_s, task) || task > 100000) {
            return ReplyError(ApiError{400, "task", "task: must be a task number"});
          }
          if (stream != "stdout" && stream != "stderr") {
            return ReplyError(ApiError{400, "stream", "stream: must be stdout or stderr"});
          }
          std::string address, path;
          ApiError e;
          if (!c.LogTarget(id, static_cast<int32_t>(task), address, path, e)) {
            return ReplyError(e);
          }
          httplib::Client agent("http://" + address);
          agent.set_connection_timeout(2, 0);
          agent.set_read_timeout(10, 0);
          auto r = agent.Get(path + "?stream=" + stream);
          if (!r) return ReplyError(ApiError{502, "", "agent at " + address + " did not answer"});
          std::string type = r->get_header_value("Content-Type");
          return HttpResponse{r->status, type.empty() ? "text/plain" : type, r->body};
        }));
  Route("GET", "/v1/queues",
        Sync([&c](const HttpRequest&, const Captures&) { return Reply(200, c.ListQueues()); }));
  Route("GET", "/v1/queues/*", Sync([&c](const HttpRequest&, const Captures& m) {
          Json out;
          ApiError e;
          if (!c.GetQueue(m[0], out, e)) return ReplyError(e);
          return Reply(200, out);
        }));
  Route("GET", "/v1/nodes", Sync([&c](const HttpRequest& req, const Captures&) {
          int64_t limit = 0;
          for (const auto& [k, v] : req.params) {
            if (k != "limit" && k != "after") {
              return ReplyError(ApiError{400, k, k + ": unknown parameter"});
            }
          }
          if (req.HasParam("limit") &&
              (!IdParam(req.Param("limit"), limit) || limit < 1 || limit > 10000)) {
            return ReplyError(ApiError{400, "limit", "limit: must be a number in 1..10000"});
          }
          if (req.HasParam("after") && limit == 0) {
            return ReplyError(ApiError{400, "after", "after: only with limit"});
          }
          return Reply(200, c.ListNodes(limit, req.Param("after")));
        }));
  for (bool drain : {true, false}) {
    Route("POST", drain ? "/v1/nodes/*/drain" : "/v1/nodes/*/undrain",
          Sync([&c, drain](const HttpRequest&, const Captures& m) {
            Json out;
            ApiError e;
            if (!c.SetDrain(m[0], drain, out, e)) return ReplyError(e);
            return Reply(200, out);
          }));
  }
  Route("POST", "/v1/agents/register", Sync([&c](const HttpRequest& req, const Captures&) {
          Json body, out;
          ApiError e;
          HttpResponse bad;
          if (!Body(req, body, bad)) return bad;
          if (!c.Register(body, out, e)) return ReplyError(e);
          return Reply(200, out);
        }));
  // The long poll: the controller holds the answer (no thread waits) until the node's list
  // changes, or a timer on the event loop expires it.
  Route("GET", "/v1/agents/*/desired",
        [this, &c](const HttpRequest& req, const Captures& m, HttpRespond respond) {
          int64_t values[3] = {0, 0, 0};
          const char* names[3] = {"epoch", "after", "wait_ms"};
          for (const auto& [k, v] : req.params) {
            if (k != names[0] && k != names[1] && k != names[2]) {
              return respond(ReplyError(ApiError{400, k, k + ": unknown parameter"}));
            }
          }
          for (int i = 0; i < 3; ++i) {
            if (req.HasParam(names[i]) && !IdParam(req.Param(names[i]), values[i])) {
              return respond(ReplyError(ApiError{
                  400, names[i], std::string(names[i]) + ": must be a non-negative integer"}));
            }
          }
          WatchTicket ticket;
          ApiError e;
          // `respond` only queues the write, as the controller requires of `done`.
          if (!c.WatchDesired(
                  m[0], values[0], values[1], values[2],
                  [respond](Json out) { respond(Reply(200, out)); }, ticket, e)) {
            return respond(ReplyError(e));
          }
          if (ticket.id == 0) return;
          http_->RunAfter(std::chrono::milliseconds(ticket.wait_ms),
                          [&c, ticket] { c.ExpireWatch(ticket); });
          // An agent that dies while its watch is held stops counting as alive at once.
          req.watch_peer([&c, ticket] { c.CancelWatch(ticket); });
        });
  Route("POST", "/v1/agents/*/heartbeat", Sync([&c](const HttpRequest& req, const Captures& m) {
          Json body, out;
          ApiError e;
          HttpResponse bad;
          if (!Body(req, body, bad)) return bad;
          if (!c.Heartbeat(m[0], body, out, e)) return ReplyError(e);
          return Reply(200, out);
        }));
}

}  // namespace gpuorch::server
