#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/status.h"

namespace httplib {
class Server;
}

namespace gpuorch::agent {

// The agent's GPU telemetry endpoint (docs/observability.md): GET /metrics answers the
// latest exposition (dcgm-exporter's names, agent/telemetry.h), as text/plain version 0.0.4.
// Like dcgm-exporter it needs no credential: it holds no secret, and it binds to loopback
// unless told otherwise (--metrics-listen). Serves on its own threads from Start() until
// destruction; Publish() may be called from any thread.
class MetricsServer {
 public:
  static core::Result<std::unique_ptr<MetricsServer>> Start(const std::string& listen);
  ~MetricsServer();
  const std::string& address() const { return address_; }
  void Publish(std::string exposition);

 private:
  MetricsServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string address_;
  std::mutex mu_;
  std::string exposition_;  // guarded by mu_
};

}  // namespace gpuorch::agent
