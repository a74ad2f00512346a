#include "gateway/haproxy_metrics.h"

#include <cmath>
#include <cstdlib>
#include <sstream>

namespace gpuorch::gateway {

std::map<std::string, BackendStats> BackendStatsOf(const std::vector<Sample>& samples) {
  std::map<std::string, BackendStats> out;
  for (const Sample& s : samples) {
    auto proxy = s.labels.find("proxy");
    if (proxy == s.labels.end() || !std::isfinite(s.value)) continue;
    // A count out of range (NaN, Inf, absurd) is read as 0 rather than cast (undefined).
    const auto count = std::isfinite(s.value) && s.value >= 0 && s.value < 1e15
                           ? static_cast<int64_t>(s.value)
                           : int64_t{0};
    if (s.name == "haproxy_backend_current_queue") {
      out[proxy->second].queue = count;
    } else if (s.name == "haproxy_backend_current_sessions") {
      out[proxy->second].sessions = count;
    } else if (s.name == "gpuorch_haproxy_waiting_requests") {
      out[proxy->second].waiting = count;
    } else if (s.name == "haproxy_backend_response_time_average_seconds") {
      out[proxy->second].response_time_avg_s = s.value;
    } else if (s.name == "haproxy_backend_total_time_average_seconds") {
      out[proxy->second].total_time_avg_s = s.value;
    } else if (s.name == "haproxy_backend_queue_time_average_seconds") {
      out[proxy->second].queue_time_avg_s = s.value;
    } else if (s.name == "haproxy_backend_http_responses_total") {
      out[proxy->second].responses_total += count;
    } else if (s.name == "haproxy_server_current_sessions") {
      auto server = s.labels.find("server");
      if (server != s.labels.end()) out[proxy->second].server_sessions[server->second] = count;
    }
  }
  return out;
}

}  // namespace gpuorch::gateway
