#include "server/server.h"

#include <fcntl.h>
#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "log/logging.h"
#include "server/certs.h"
#include "server/token.h"

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

// 50 -> "50", 2.5 -> "2.5".
std::string FormatRate(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
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

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Writes `text` to `path` with mode 0600, durably, replacing what was there.
Status WriteSecretFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Invalid("cannot write " + tmp + ": " + std::strerror(errno));
  const bool ok = ::fchmod(fd, 0600) == 0 &&
                  ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  const std::string why = std::strerror(errno);
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::Invalid("cannot write " + path + ": " + why);
  }
  return Status::Ok();
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

bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
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
  auto token_store = store::OpenSqliteTokenStore(config.data + "/gpuorch.db");
  if (!token_store.ok()) return token_store.status();
  auto tokens = TokenRegistry::Open(std::move(token_store).value());
  if (!tokens.ok()) return tokens.status();
  s->tokens_ = std::move(tokens).value();
  if (config.insecure_no_auth) {
    std::string host;
    int port = 0;
    if (Status st = ParseHostPort(config.listen, host, port); !st.ok()) return st;
    if (!IsLoopbackHost(host)) {
      return Status::Invalid("--insecure-no-auth: refused: the server listens on " + host +
                             ", not on a loopback address (127.0.0.1, ::1)");
    }
    std::fprintf(stderr,
                 "gpuorch server: WARNING: --insecure-no-auth: NO AUTHENTICATION. Every request "
                 "on %s acts as an administrator. For local experiments only.\n",
                 config.listen.c_str());
  } else if (Status st = s->Bootstrap(); !st.ok()) {
    return st;
  }
  auto audit =
      AuditLog::Open(config.data + "/audit.log", config.audit_max_bytes, config.audit_keep);
  if (!audit.ok()) return audit.status();
  s->audit_ = std::move(audit).value();
  s->limiter_ = std::make_unique<RateLimiter>(config.rate_limit_per_s, config.rate_limit_burst);
  auto controller = Controller::Create(config, s->store_.get());
  if (!controller.ok()) return controller.status();
  s->controller_ = std::move(controller).value();
  HttpOptions o;
  o.io_threads = static_cast<int>(config.io_threads);
  o.worker_threads = static_cast<int>(config.worker_threads);
  o.max_body_bytes = config.max_body_bytes;
  o.max_connections = config.max_connections;
  o.idle_timeout_ms = config.idle_timeout_s * 1000;
  o.tls_cert_file = config.tls.cert;
  o.tls_key_file = config.tls.key;
  o.tls_client_ca_file = config.tls.client_ca;
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

Status Server::Bootstrap() {
  if (!tokens_->empty()) return Status::Ok();
  // The file is written before the token is stored: a crash in between leaves no token,
  // and the next start writes a new one.
  const std::string path = config_.data + "/admin.token";
  Principal admin;
  admin.name = "bootstrap-admin";
  admin.role = Role::kAdmin;
  auto token = tokens_->CreateToken(
      admin, WallMs(), [&path](const std::string& t) { return WriteSecretFile(path, t + "\n"); });
  if (!token.ok()) return token.status();
  std::fprintf(stderr,
               "gpuorch server: first start: an administrator's token is in %s (mode 0600); "
               "use it with: export GPUORCH_TOKEN=$(cat %s)\n",
               path.c_str(), path.c_str());
  return Status::Ok();
}

Access Server::AccessOf(const Principal& caller) {
  if (caller.admin()) return {};
  auto p = std::make_shared<const Principal>(caller);
  return Access{[p](const std::string& q) { return p->ReadsQueue(q); },
                [p](const std::string& q) { return p->WritesQueue(q); },
                [p](const std::string& q) { return p->SeesEnv(q); }};
}

bool Server::RateExempt(const Principal& caller) const {
  const std::string_view role = RoleName(caller.role);
  return std::find(config_.rate_limit_exempt_roles.begin(), config_.rate_limit_exempt_roles.end(),
                   role) != config_.rate_limit_exempt_roles.end();
}

bool Server::NodeHeldByOther(const std::string& node, const Principal& caller) {
  if (caller.admin()) return false;
  const std::string owner = controller_->NodeOwner(node);
  return !owner.empty() && owner != caller.accessor && tokens_->Valid(owner);
}

bool Server::CertRefuses(const HttpRequest& req, const std::string& node,
                         HttpResponse& refusal) const {
  if (config_.tls.client_ca.empty()) return false;
  std::string why;
  if (req.client_cn.empty()) {
    why =
        "certificate: this server requires agents to present a client certificate (mutual "
        "TLS: gpuorch agent --tls-cert, --tls-key); none was presented";
  } else if (req.client_cn != NodeCommonName(node)) {
    why = "certificate: the client certificate is for '" + req.client_cn + "', not '" +
          NodeCommonName(node) + "'";
  } else {
    return false;
  }
  refusal = ReplyError(ApiError{403, "certificate", why});
  return true;
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
  const RoutePolicy* policy = FindRoutePolicy(method, pattern);
  if (policy == nullptr) {
    // Default deny, enforced at start: a route nobody wrote a policy for never serves.
    std::fprintf(stderr, "gpuorch server: route %s %s has no policy (route_policy.cc)\n",
                 method.c_str(), pattern.c_str());
    std::abort();
  }
  routes_.push_back(RouteEntry{method, pattern, Split(pattern), std::move(fn), policy});
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
      // A last segment "**" takes the rest of the path (one segment or more, "" included).
      const bool rest = !r.segments.empty() && r.segments.back() == "**";
      if (r.method != method ||
          (rest ? segments.size() < r.segments.size() : r.segments.size() != segments.size())) {
        continue;
      }
      captures.segments.clear();
      bool match = true;
      for (size_t i = 0; i < r.segments.size() && match; ++i) {
        if (rest && i + 1 == r.segments.size()) {
          std::string tail = segments[i];
          for (size_t j = i + 1; j < segments.size(); ++j) tail += "/" + segments[j];
          captures.segments.push_back(std::move(tail));
        } else if (r.segments[i] == "*") {
          match = !segments[i].empty();
          captures.segments.push_back(segments[i]);
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
  respond = std::move(timed);
  const RoutePolicy* policy = route != nullptr ? route->policy : nullptr;
  if (policy != nullptr &&
      (policy->public_route || (policy->pattern == "/metrics" && config_.metrics_public))) {
    return route->fn(req, captures, std::move(respond));
  }

  // Everything else needs a token, and what changes state is audited before it is answered.
  auto audit = std::make_shared<AuditEntry>();
  audit->time_ms = WallMs();
  audit->verb = policy != nullptr ? policy->verb : "unknown";
  audit->resource = req.path;
  audit->request_id = std::to_string(controller_->epoch()) + "-" +
                      std::to_string(next_request_.fetch_add(1, std::memory_order_relaxed));
  audit->source = req.peer;
  const AuditMode mode = policy != nullptr ? policy->audit
                         : method == "GET" ? AuditMode::kNone
                                           : AuditMode::kAlways;
  HttpRespond answer = [this, audit, mode, queue = captures.audit_queue,
                        respond = std::move(respond)](HttpResponse res) {
    res.headers.emplace_back("X-Request-Id", audit->request_id);
    const bool allowed = res.status != 401 && res.status != 403;
    if (mode == AuditMode::kAlways || (mode == AuditMode::kDenials && !allowed)) {
      AuditEntry e = *audit;
      e.allowed = allowed;
      e.status = res.status;
      e.queue = *queue;
      if (Status s = audit_->Append(e); !s.ok()) {
        std::fprintf(stderr, "gpuorch server: %s\n", s.message().c_str());
        res = ReplyError(ApiError{500, "", s.message() + " (the request may have taken effect)"});
      }
    }
    respond(std::move(res));
  };
  if (config_.insecure_no_auth) {
    captures.caller = InsecurePrincipal();
  } else {
    auto caller = tokens_->Authenticate(req.authorization);
    if (!caller.ok()) {
      HttpResponse r = ReplyError(ApiError{401, "authorization", caller.status().message()});
      r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"gpuorch\"");
      return answer(std::move(r));
    }
    captures.caller = std::move(caller).value();
  }
  audit->accessor = captures.caller.accessor;
  audit->role = std::string(RoleName(captures.caller.role));
  if (limiter_->enabled() && !RateExempt(captures.caller)) {
    // Per token; without tokens (--insecure-no-auth), per client address.
    const std::string& key = captures.caller.accessor.empty() ? req.peer : captures.caller.accessor;
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now().time_since_epoch())
                               .count();
    if (RateDecision d = limiter_->Take(key, now_ms); !d.allowed) {
      HttpResponse r = ReplyError(
          ApiError{429, "",
                   "rate limit: this token may send " + FormatRate(config_.rate_limit_per_s) +
                       " requests per second (bursts of " + FormatRate(config_.rate_limit_burst) +
                       "); retry in " + std::to_string(d.retry_after_ms) + " ms"});
      r.headers.emplace_back("Retry-After", std::to_string((d.retry_after_ms + 999) / 1000));
      return answer(std::move(r));
    }
  }
  if (route == nullptr) return answer(ReplyError(ApiError{404, "", "no such endpoint"}));
  if (!policy->allows(captures.caller, captures.segments)) {
    return answer(
        ReplyError(ApiError{403, "authorization",
                            "authorization: a " + std::string(RoleName(captures.caller.role)) +
                                " token (" + captures.caller.name + ") may not " + policy->verb +
                                (captures.segments.empty() ? "" : " " + captures.segments[0])}));
  }
  route->fn(req, captures, std::move(answer));
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
          auto heard = GaugeFamily("gpuorch_nodes_heard",
                                   "Nodes whose agent has heartbeated this server process (after "
                                   "a restart: nodes back, their tasks reported).");
          AddSample(heard, {}, static_cast<double>(c.NodesHeard()));
          auto timeout =
              GaugeFamily("gpuorch_node_timeout_seconds", "Silence after which a node is Down.");
          AddSample(timeout, {}, static_cast<double>(c.NodeTimeoutMs()) / 1000.0);
          std::vector<prometheus::MetricFamily> extra;
          for (auto* f : {&connections, &watches, &heard, &interval, &timeout}) {
            extra.push_back(std::move(*f));
          }
          return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                              c.Metrics(std::move(extra))};
        }));
  // Answered once the submission is durable, from the store's writer: no worker waits for
  // the commit, so a burst of submissions shares commits. The answer hops to a worker,
  // where the audit line is written (concurrent answers share its sync), so the store's
  // writer never waits for the audit log.
  Route("POST", "/v1/workloads",
        [this, &c](const HttpRequest& req, const Captures& m, HttpRespond respond) {
          Json body;
          HttpResponse bad;
          if (!Body(req, body, bad)) return respond(std::move(bad));
          // No queue named: the token's default queue, else the server's.
          if (body.is_object() && !body.contains("queue")) {
            const std::string q = m.caller.DefaultQueue(config_);
            if (!q.empty()) body["queue"] = q;
          }
          if (body.is_object() && body.contains("queue") && body["queue"].is_string()) {
            const std::string q = body["queue"].get<std::string>();
            *m.audit_queue = q;
            if (!m.caller.WritesQueue(q)) {
              return respond(ReplyError(
                  ApiError{403, "queue", "queue: this token may not submit to queue " + q}));
            }
          }
          // The token's name is the workload's user for accounting.
          c.SubmitAsync(
              body,
              [this, respond](bool ok, Json out, ApiError e) {
                HttpResponse res = ok ? Reply(201, out) : ReplyError(e);
                http_->RunAfter(
                    std::chrono::milliseconds(0),
                    [respond, res = std::move(res)]() mutable { respond(std::move(res)); });
              },
              m.caller.name);
        });
  Route("GET", "/v1/workloads", Sync([&c](const HttpRequest& req, const Captures& m) {
          for (const auto& [k, v] : req.params) {
            if (k != "queue" && k != "state" && k != "kind" && k != "limit" && k != "continue" &&
                k != "service") {
              return ReplyError(ApiError{400, k, k + ": unknown filter"});
            }
          }
          int64_t limit = 0, after = 0;
          if (req.HasParam("limit") &&
              (!IdParam(req.Param("limit"), limit) || limit < 1 || limit > 10000)) {
            return ReplyError(ApiError{400, "limit", "limit: must be a number in 1..10000"});
          }
          if (req.HasParam("continue")) {
            if (limit == 0) {
              return ReplyError(ApiError{400, "continue", "continue: only with limit"});
            }
            if (!IdParam(req.Param("continue"), after)) {
              return ReplyError(ApiError{
                  400, "continue", "continue: not a value from a previous page's \"continue\""});
            }
          }
          int64_t service = 0;
          if (req.HasParam("service") && (!IdParam(req.Param("service"), service) || service < 1)) {
            return ReplyError(ApiError{400, "service", "service: must be a workload number"});
          }
          return Reply(200,
                       c.ListWorkloads(req.Param("queue"), req.Param("state"), req.Param("kind"),
                                       AccessOf(m.caller), limit, after, service));
        }));
  Route("GET", "/v1/services", Sync([&c](const HttpRequest&, const Captures& m) {
          return Reply(200, c.ListServices(AccessOf(m.caller)));
        }));
  auto bad_id = [] { return ReplyError(ApiError{400, "id", "id: must be a workload number"}); };
  Route("GET", "/v1/workloads/*", Sync([&c, bad_id](const HttpRequest&, const Captures& m) {
          int64_t id;
          Json out;
          ApiError e;
          if (!IdParam(m[0], id)) return bad_id();
          if (!c.GetWorkload(id, out, e, AccessOf(m.caller))) return ReplyError(e);
          return Reply(200, out);
        }));
  auto cancel = Sync([&c, bad_id](const HttpRequest&, const Captures& m) {
    int64_t id;
    Json out;
    ApiError e;
    if (!IdParam(m[0], id)) return bad_id();
    if (!c.Cancel(id, out, e, AccessOf(m.caller))) return ReplyError(e);
    *m.audit_queue = out.value("queue", "");
    return Reply(200, out);
  });
  // Service load reports and pinned sizes (docs/inference.md): a JSON body for a service.
  using ServiceCall = bool (Controller::*)(int64_t, const Json&, Json&, ApiError&, const Access&);
  auto service_post = [&c, bad_id](ServiceCall call) {
    return Sync([&c, bad_id, call](const HttpRequest& req, const Captures& m) {
      int64_t id;
      Json body, out;
      HttpResponse bad;
      ApiError e;
      if (!IdParam(m[0], id)) return bad_id();
      if (!Body(req, body, bad)) return bad;
      if (!(c.*call)(id, body, out, e, AccessOf(m.caller))) return ReplyError(e);
      return Reply(200, out);
    });
  };
  Route("POST", "/v1/workloads/*/load", service_post(&Controller::PushLoad));
  Route("POST", "/v1/workloads/*/scale", service_post(&Controller::Scale));
  Route("POST", "/v1/workloads/*/cancel", cancel);
  Route("DELETE", "/v1/workloads/*", cancel);
  // The log is fetched from the node's agent on a worker thread (at most 12 s: connect and
  // read timeouts), so a slow agent holds one worker, never the event loop. Only from the
  // address registered for the node (Register checks it), with the agent's log secret, and
  // never more than max_log_bytes: the rest is left on the node, and the answer says so.
  Route("GET", "/v1/workloads/*/logs",
        Sync([this, &c, bad_id](const HttpRequest& req, const Captures& m) {
          int64_t id;
          if (!IdParam(m[0], id)) return bad_id();
          for (const auto& [k, v] : req.params) {
            if (k != "task" && k != "stream" && k != "offset" && k != "tail") {
              return ReplyError(ApiError{400, k, k + ": unknown parameter"});
            }
          }
          std::string task_s = req.HasParam("task") ? req.Param("task") : "0";
          std::string stream = req.HasParam("stream") ? req.Param("stream") : "stdout";
          int64_t task = 0, offset = 0, tail = 0;
          if (!IdParam(task_s, task) || task > 100000) {
            return ReplyError(ApiError{400, "task", "task: must be a task number"});
          }
          if (stream != "stdout" && stream != "stderr") {
            return ReplyError(ApiError{400, "stream", "stream: must be stdout or stderr"});
          }
          for (auto [name, value] :
               {std::pair<const char*, int64_t*>{"offset", &offset}, {"tail", &tail}}) {
            if (req.HasParam(name) && !IdParam(req.Param(name), *value)) {
              return ReplyError(
                  ApiError{400, name, std::string(name) + ": must be a non-negative byte count"});
            }
          }
          if (req.HasParam("offset") && req.HasParam("tail")) {
            return ReplyError(ApiError{400, "tail", "tail: not with offset"});
          }
          std::string address, path, secret;
          ApiError e;
          if (!c.LogTarget(id, static_cast<int32_t>(task), address, path, secret, e,
                           AccessOf(m.caller))) {
            return ReplyError(e);
          }
          const int64_t cap = config_.max_log_bytes;
          path += "?stream=" + stream + "&limit=" + std::to_string(cap);
          if (req.HasParam("offset")) path += "&offset=" + std::to_string(offset);
          if (req.HasParam("tail")) path += "&tail=" + std::to_string(tail);
          httplib::Client agent("http://" + address);
          agent.set_connection_timeout(2, 0);
          agent.set_read_timeout(10, 0);
          agent.set_follow_location(false);
          int status = 0;
          httplib::Headers got;
          std::string body;
          bool over = false;
          auto r = agent.Get(
              path, httplib::Headers{{"Authorization", "Bearer " + secret}},
              [&](const httplib::Response& res) {
                status = res.status;
                got = res.headers;
                return true;
              },
              [&](const char* data, size_t n) {
                // The agent was asked for at most `cap` bytes; hold no more whatever it sends.
                const size_t room = static_cast<size_t>(cap) - body.size();
                body.append(data, std::min(n, room));
                over = n > room;
                return !over;
              });
          if (!r && !over) {
            return ReplyError(ApiError{502, "", "agent at " + address + " did not answer"});
          }
          if (status == 401) {
            return ReplyError(
                ApiError{502, "", "agent at " + address + " refused the server's log credential"});
          }
          auto header = [&got](const char* name) {
            auto it = got.find(name);
            return it == got.end() ? std::string() : it->second;
          };
          HttpResponse out{status, header("Content-Type"), std::move(body)};
          if (out.content_type.empty()) out.content_type = "text/plain";
          if (status == 200) {
            int64_t size = 0, start = 0;
            (void)IdParam(header("X-Gpuorch-Log-Size"), size);
            (void)IdParam(header("X-Gpuorch-Log-Offset"), start);
            const bool truncated =
                over || start + static_cast<int64_t>(out.body.size()) < size || start > 0;
            out.headers = {{"X-Gpuorch-Log-Size", std::to_string(size)},
                           {"X-Gpuorch-Log-Offset", std::to_string(start)},
                           {"X-Gpuorch-Log-Truncated", truncated ? "true" : "false"}};
          }
          return out;
        }));
  Route("GET", "/v1/queues", Sync([&c](const HttpRequest&, const Captures& m) {
          return Reply(200, c.ListQueues(AccessOf(m.caller)));
        }));
  Route("GET", "/v1/queues/*", Sync([&c](const HttpRequest&, const Captures& m) {
          Json out;
          ApiError e;
          if (!c.GetQueue(m[0], out, e, AccessOf(m.caller))) return ReplyError(e);
          return Reply(200, out);
        }));
  // Accounting: each caller sees the queues it reads (Controller::Usage).
  Route("GET", "/v1/usage", Sync([&c](const HttpRequest& req, const Captures& m) {
          UsageRequest request;
          ApiError e;
          if (!ParseUsageRequest(req.params, request, e)) return ReplyError(e);
          Json out;
          if (!c.Usage(request, out, e, AccessOf(m.caller))) return ReplyError(e);
          return Reply(200, out);
        }));
  Route("GET", "/v1/nodes", Sync([&c](const HttpRequest& req, const Captures& m) {
          int64_t limit = 0;
          for (const auto& [k, v] : req.params) {
            if (k != "limit" && k != "after" && k != "continue") {
              return ReplyError(ApiError{400, k, k + ": unknown parameter"});
            }
          }
          // `continue` (as for workloads) and `after` (its first name) are the same cursor.
          const std::string after =
              req.HasParam("continue") ? req.Param("continue") : req.Param("after");
          if (req.HasParam("limit") &&
              (!IdParam(req.Param("limit"), limit) || limit < 1 || limit > 10000)) {
            return ReplyError(ApiError{400, "limit", "limit: must be a number in 1..10000"});
          }
          for (const char* cursor : {"after", "continue"}) {
            if (req.HasParam(cursor) && limit == 0) {
              return ReplyError(ApiError{400, cursor, std::string(cursor) + ": only with limit"});
            }
          }
          return Reply(200, c.ListNodes(limit, after, AccessOf(m.caller)));
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
  Route("POST", "/v1/agents/register", Sync([this, &c](const HttpRequest& req, const Captures& m) {
          Json body, out;
          ApiError e;
          HttpResponse bad;
          if (!Body(req, body, bad)) return bad;
          if (body.is_object() && body.contains("name") && body["name"].is_string()) {
            const std::string name = body["name"].get<std::string>();
            if (!m.caller.ActsAsNode(name)) {
              return ReplyError(
                  ApiError{403, "name", "name: this token may not register node " + name});
            }
            if (CertRefuses(req, name, bad)) return bad;
          } else if (CertRefuses(req, "", bad)) {
            return bad;
          }
          // A name held by a revoked token may be taken over; an administrator may take any.
          const bool admin = m.caller.admin();
          auto may_replace = [this, admin](const std::string& owner) {
            return admin || !tokens_->Valid(owner);
          };
          // The log address is checked against the connecting address: without one, no
          // registration (an empty peer means a trusted, stored registration).
          if (req.peer.empty()) {
            return ReplyError(ApiError{400, "", "register: the connecting address is unknown"});
          }
          if (!c.Register(body, out, e, m.caller.accessor, may_replace, req.peer)) {
            return ReplyError(e);
          }
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
          if (HttpResponse refusal; CertRefuses(req, m[0], refusal)) return respond(refusal);
          if (NodeHeldByOther(m[0], m.caller)) {
            return respond(ReplyError(
                ApiError{403, "node", "node: " + m[0] + " is registered by another token"}));
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
  Route("POST", "/v1/agents/*/heartbeat",
        Sync([this, &c](const HttpRequest& req, const Captures& m) {
          Json body, out;
          ApiError e;
          HttpResponse bad;
          if (CertRefuses(req, m[0], bad)) return bad;
          if (NodeHeldByOther(m[0], m.caller)) {
            return ReplyError(
                ApiError{403, "node", "node: " + m[0] + " is registered by another token"});
          }
          if (!Body(req, body, bad)) return bad;
          if (!c.Heartbeat(m[0], body, out, e)) return ReplyError(e);
          return Reply(200, out);
        }));
  TokenRoutes();
  UiRoutes();
}

// Tokens and the audit log: administrators only (route_policy.cc), except /self.
void Server::TokenRoutes() {
  Route("GET", "/v1/tokens/self",
        Sync([](const HttpRequest&, const Captures& m) { return Reply(200, m.caller.ToJson()); }));
  Route("GET", "/v1/tokens",
        Sync([this](const HttpRequest&, const Captures&) { return Reply(200, tokens_->List()); }));
  Route("POST", "/v1/tokens", Sync([this](const HttpRequest& req, const Captures&) {
          Json body, out;
          ApiError e;
          HttpResponse bad;
          if (!Body(req, body, bad)) return bad;
          if (!tokens_->Create(body, config_, WallMs(), out, e)) return ReplyError(e);
          return Reply(201, out);
        }));
  auto revoke = Sync([this](const HttpRequest&, const Captures& m) {
    Json out;
    ApiError e;
    if (!tokens_->Revoke(m[0], WallMs(), out, e)) return ReplyError(e);
    return Reply(200, out);
  });
  Route("POST", "/v1/tokens/*/revoke", revoke);
  Route("DELETE", "/v1/tokens/*", revoke);
  Route("GET", "/v1/audit", Sync([this](const HttpRequest& req, const Captures&) {
          for (const auto& [k, v] : req.params) {
            if (k != "since" && k != "limit") {
              return ReplyError(ApiError{400, k, k + ": unknown parameter"});
            }
          }
          const std::string since = req.Param("since");
          if (!since.empty() && !IsIsoTimeMs(since)) {
            return ReplyError(
                ApiError{400, "since", "since: expected a time like 2026-12-02T13:00:00.000Z"});
          }
          int64_t limit = 1000;
          if (req.HasParam("limit") &&
              (!IdParam(req.Param("limit"), limit) || limit < 1 || limit > 100000)) {
            return ReplyError(ApiError{400, "limit", "limit: must be a number in 1..100000"});
          }
          return Reply(200, audit_->Read(since, limit));
        }));
}

}  // namespace gpuorch::server
