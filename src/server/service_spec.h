#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "autoscale/params.h"

namespace gpuorch::server {

struct ApiError;

// What makes an inference workload a service (docs/inference.md): its replica bounds, its
// autoscaler's parameters, how its replicas are probed and how long one may drain. Parsed
// from the submission's `replicas`, `autoscale`, `readiness` and `drain_timeout_s`.
struct ServiceSpec {
  autoscale::ServiceParams autoscale;  // min_replicas and max_replicas come from `replicas`
  // What the replicas' in-flight signal is: "in_flight" (the replica gauges, the load
  // balancer and pushes), "queue" (the load balancer and pushes only) or a gauge name (that
  // replica gauge, the load balancer and pushes).
  std::string metric = "in_flight";
  // The readiness probe the agents run; without one a replica is Ready once its port
  // accepts a connection.
  bool has_readiness = false;
  std::string readiness_path = "/health";
  int32_t initial_delay_s = 0;
  int32_t period_s = 1;
  // A replica being scaled down is stopped once it serves no request, or after this long.
  int64_t drain_timeout_s = 120;

  // The replicas' scrape list: the in-flight gauges and the KV-cache gauge.
  nlohmann::json Gauges() const;
  // The desired entry's `service` member (docs/api.md, "Agent protocol").
  nlohmann::json AgentJson() const;
  // The canonical form stored with the workload, read back by ParseService.
  void Canonical(nlohmann::json& out) const;
};

// Whether a submission is a service: kind inference with `replicas`.
bool IsServiceSubmission(const nlohmann::json& body);

// Parses `replicas` ({"min": 0, "max": 4}, or "MIN:MAX"), `autoscale`, `readiness` and
// `drain_timeout_s` of a service submission. Errors name the field (`autoscale.target: ...`).
bool ParseService(const nlohmann::json& body, ServiceSpec& out, ApiError& error);

}  // namespace gpuorch::server
