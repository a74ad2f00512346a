#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "server/audit_log.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/controller.h"
#include "server/http_server.h"
#include "server/rate_limit.h"
#include "server/route_policy.h"
#include "store/state_store.h"

namespace gpuorch::server {

// `gpuorch server`: the store, the controller with its loop thread, and the HTTP API on an
// event-driven HttpServer (a few I/O threads whatever the number of connections; handlers
// on a small worker pool; agents' watches held without a thread). Every route but
// /healthz (and /metrics, unless configured otherwise) needs a token; each route's
// policy (server/route_policy.h) says who may call it, and every mutating request is in
// the audit log before it is answered (docs/security.md).
class Server {
 public:
  static core::Result<std::unique_ptr<Server>> Create(const ServerConfig& config);
  ~Server();

  // Binds the listen address; returns the port actually bound (for ":0").
  core::Result<int> Bind();
  // Serves until Stop() is called from another thread or a signal handler's thread.
  void Serve();
  void Stop();
  Controller& controller() { return *controller_; }
  TokenRegistry& tokens() { return *tokens_; }
  // Connections open now.
  int64_t connections() const;

  // What the router hands a route: the path's segments that its "*" segments matched
  // (m[0], ...) and the authenticated caller.
  struct Captures {
    std::vector<std::string> segments;
    Principal caller;
    // The queue the request touched, for its audit entry; the handler sets it.
    std::shared_ptr<std::string> audit_queue = std::make_shared<std::string>();
    const std::string& operator[](size_t i) const { return segments[i]; }
  };
  using RouteHandler = std::function<void(const HttpRequest&, const Captures&, HttpRespond)>;

 private:
  explicit Server(const ServerConfig& config);
  void Routes();
  void Dispatch(const HttpRequest& req, HttpRespond respond);
  // `pattern`: "/v1/workloads/*/cancel"; each "*" matches one non-empty segment, and a last
  // "**" the rest of the path, one segment or more ("/ui/**": "/ui/", "/ui/a/b").
  void Route(const std::string& method, const std::string& pattern, RouteHandler fn);

  struct RouteEntry {
    std::string method;
    std::string pattern;  // the metrics' `route` label
    std::vector<std::string> segments;
    RouteHandler fn;
    const RoutePolicy* policy;
  };
  // First start: writes an administrator's token to DATA/admin.token (0600).
  core::Status Bootstrap();
  // What `caller` may see and do with workloads, by queue.
  static Access AccessOf(const Principal& caller);
  // A refusal for a heartbeat or watch as `node`, whose name another valid token holds.
  bool NodeHeldByOther(const std::string& node, const Principal& caller);
  // Whether the caller's role is in rate_limit_exempt_roles.
  bool RateExempt(const Principal& caller) const;
  // Mutual TLS (tls.client_ca): a request acting as agent of `node` (register, watch,
  // heartbeat) needs a verified client certificate with CN "node:<node>", whatever its
  // token. True, with the 403 in `refusal`, when it has none or another node's.
  bool CertRefuses(const HttpRequest& req, const std::string& node, HttpResponse& refusal) const;
  void TokenRoutes();
  // The web dashboard's static files under /ui/ (ui.cc): public, GET only.
  void UiRoutes();

  ServerConfig config_;
  std::unique_ptr<store::StateStore> store_;
  std::unique_ptr<TokenRegistry> tokens_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<RateLimiter> limiter_;
  std::atomic<uint64_t> next_request_{1};
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<HttpServer> http_;
  std::vector<RouteEntry> routes_;
  std::atomic<bool> stop_{false};
  std::thread loop_;
};

// Splits "host:port"; the port must be 0..65535.
core::Status ParseHostPort(const std::string& s, std::string& host, int& port);
// Whether a listen host is a loopback address (127.0.0.0/8, ::1, localhost).
bool IsLoopbackHost(const std::string& host);

}  // namespace gpuorch::server
