#pragma once

// The gateway's loop (`gpuorch gateway`, docs/inference.md): each tick it reads the services
// from the control plane, HAProxy's state from its runtime API and exporter, applies the
// reconciler's commands (reconcile.h), pushes each service's load to the control plane and
// keeps a snapshot of its own metrics.
#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "gateway/haproxy_config.h"
#include "gateway/haproxy_metrics.h"
#include "gateway/reconcile.h"
#include "gateway/runtime_api.h"

namespace gpuorch::gateway {

// What the gateway needs from the control plane (the CLI implements it over the REST API;
// tests in process). Called from the gateway's loop thread only.
class ControlPlane {
 public:
  virtual ~ControlPlane() = default;
  // GET /v1/services.
  virtual core::Result<std::vector<Service>> ListServices() = 0;
  // POST /v1/workloads/{id}/load with `body`.
  virtual core::Status PushLoad(int64_t service_id, const nlohmann::json& body) = 0;
};

// The services of a GET /v1/services answer (docs/api.md; contract of issue 10). An error
// names the service and member that is not as promised.
core::Result<std::vector<Service>> ParseServices(const nlohmann::json& body);

// The load body of one service: in_flight = its backend's current sessions (which in HAProxy
// include the requests queued in the backend) + the requests held by the Lua action;
// replicas = current sessions per replica workload (0 for a listed replica without a
// server).
// `servers`: `show servers state` of the service's backend as read before `stats` was.
// "drained" lists the replicas HAProxy sent no new request when their sessions were read:
// their server was in drain or maintenance, or absent. The server stops a draining replica
// only on such a count of 0 (docs/inference.md, "Replica lifecycle").
nlohmann::json LoadBody(const Service& service, const BackendStats& stats,
                        const std::vector<ServerState>& servers = {});

struct GatewayOptions {
  std::string metrics_url;  // HAProxy's exporter, e.g. http://127.0.0.1:8405/metrics
  std::string waiting_url;  // the Lua counter; "" = metrics_url's host + /gpuorch/waiting
};

class Gateway {
 public:
  Gateway(ControlPlane& control_plane, const RuntimeApi& haproxy, GatewayOptions options);

  // One round. Returns the first problem met (the round goes on past a failed command and
  // the next round retries); problems are also counted in the metrics.
  core::Status Tick();

  // The gateway's own /metrics (Prometheus text) as of the last tick. Thread-safe.
  std::string RenderMetrics() const;

 private:
  core::Result<Observed> ObserveHaproxy(std::map<std::string, BackendStats>& stats);

  ControlPlane& control_plane_;
  const RuntimeApi& haproxy_;
  GatewayOptions options_;
  std::string map_file_;  // found with `show map` on the first tick

  mutable std::mutex mu_;
  std::string metrics_;  // the services' part, rendered at the end of each tick
  int64_t errors_ = 0;
  int64_t ticks_ = 0;
};

// GET `url` (http://host:port/path) with a short timeout; the body of a 200 answer.
core::Result<std::string> HttpGet(const std::string& url);

}  // namespace gpuorch::gateway
