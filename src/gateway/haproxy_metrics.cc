#include "gateway/haproxy_metrics.h"

#include <cmath>
#include <cstdlib>
#include <sstream>

namespace gpuorch::gateway {

core::Result<std::vector<Sample>> ParsePrometheusText(const std::string& text) {
  std::vector<Sample> out;
  std::istringstream in(text);
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.empty() || line[0] == '#') continue;
    auto bad = [&](const std::string& what) {
      return core::Status::Invalid("metrics line " + std::to_string(n) + ": " + what + ": '" +
                                   line + "'");
    };
    Sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (s.name.empty()) return bad("no metric name");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find('=', i);
        if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"')
          return bad("bad label");
        std::string key = line.substr(i, eq - i);
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            value += line[j] == 'n' ? '\n' : line[j];
          } else {
            value += line[j];
          }
        }
        if (j >= line.size()) return bad("unterminated label value");
        s.labels[key] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) return bad("unterminated labels");
      ++i;
    }
    while (i < line.size() && line[i] == ' ') ++i;
    const std::string value = line.substr(i, line.find(' ', i) - i);
    if (value == "NaN") {
      s.value = 0;
    } else {
      char* end = nullptr;
      s.value = std::strtod(value.c_str(), &end);
      if (value.empty() || end != value.c_str() + value.size()) return bad("bad value");
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::map<std::string, BackendStats> BackendStatsOf(const std::vector<Sample>& samples) {
  std::map<std::string, BackendStats> out;
  for (const Sample& s : samples) {
    auto proxy = s.labels.find("proxy");
    if (proxy == s.labels.end()) continue;
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
