#pragma once

// HAProxy's built-in Prometheus exporter (`http-request use-service prometheus-exporter`),
// read per backend and per server, plus the gateway's Lua counter of requests held while a
// service has no ready server (haproxy_config.h). Parsing is pure; fetching is in gateway.cc.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/prometheus_text.h"
#include "core/status.h"

namespace gpuorch::gateway {

// The exposition is read by core::ParsePrometheusText (strict; an error names the line).
using Sample = core::PromSample;
using core::ParsePrometheusText;

struct BackendStats {
  int64_t queue = 0;     // haproxy_backend_current_queue
  int64_t sessions = 0;  // haproxy_backend_current_sessions (queued requests included)
  int64_t waiting = 0;   // gpuorch_haproxy_waiting_requests: held before any server exists
  double response_time_avg_s = 0;  // haproxy_backend_response_time_average_seconds
  double total_time_avg_s = 0;     // haproxy_backend_total_time_average_seconds
  double queue_time_avg_s = 0;     // haproxy_backend_queue_time_average_seconds
  int64_t responses_total = 0;     // haproxy_backend_http_responses_total, all codes
  std::map<std::string, int64_t> server_sessions;  // haproxy_server_current_sessions
};

// The stats of every backend (label `proxy`) found in `samples`.
std::map<std::string, BackendStats> BackendStatsOf(const std::vector<Sample>& samples);

}  // namespace gpuorch::gateway
