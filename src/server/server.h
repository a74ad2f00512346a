#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "server/config.h"
#include "server/controller.h"
#include "server/http_server.h"
#include "store/state_store.h"

namespace gpuorch::server {

// `gpuorch server`: the store, the controller with its loop thread, and the HTTP API on an
// event-driven HttpServer (a few I/O threads whatever the number of connections; handlers
// on a small worker pool; agents' watches held without a thread).
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
  // Connections open now.
  int64_t connections() const;

  // The path's segments that a route's "*" segments matched.
  using Captures = std::vector<std::string>;
  using RouteHandler = std::function<void(const HttpRequest&, const Captures&, HttpRespond)>;

 private:
  explicit Server(const ServerConfig& config);
  void Routes();
  void Dispatch(const HttpRequest& req, HttpRespond respond);
  // `pattern`: "/v1/workloads/*/cancel"; each "*" matches one non-empty segment.
  void Route(const std::string& method, const std::string& pattern, RouteHandler fn);

  struct RouteEntry {
    std::string method;
    std::string pattern;  // the metrics' `route` label
    std::vector<std::string> segments;
    RouteHandler fn;
  };

  ServerConfig config_;
  std::unique_ptr<store::StateStore> store_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<HttpServer> http_;
  std::vector<RouteEntry> routes_;
  std::atomic<bool> stop_{false};
  std::thread loop_;
};

// Splits "host:port"; the port must be 0..65535.
core::Status ParseHostPort(const std::string& s, std::string& host, int& port);

}  // namespace gpuorch::server
