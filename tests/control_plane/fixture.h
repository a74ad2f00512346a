#pragma once

// Shared setup of the control-plane integration tests: short timeouts so that faults are
// detected in about a second, and a helper that starts a server with named agents.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "cluster.h"

namespace gpuorch::cptest {

// Timeouts short enough for tests, long enough for a loaded 2-core machine.
inline constexpr const char* kFastTimings = R"(
node_timeout_s: 1
heartbeat_interval_ms: 100
cycle_interval_ms: 20
)";

inline std::unique_ptr<Cluster> StartCluster(const std::string& queues_yaml,
                                             const std::vector<std::string>& agents,
                                             const std::string& timings = kFastTimings) {
  ClusterOptions options;
  options.bin = GPUORCH_BIN;
  options.config_yaml = timings + queues_yaml;
  auto c = std::make_unique<Cluster>(options);
  EXPECT_TRUE(c->StartServer()) << "server did not answer /healthz; see " << c->dir();
  for (const std::string& a : agents) {
    EXPECT_TRUE(c->StartAgent(a)) << "agent " << a << " did not become Ready";
  }
  return c;
}

// The workload's task entries, in task order.
inline Json Tasks(const Cluster& c, int64_t id) {
  Json w = c.Workload(id);
  return w.is_object() ? w.value("tasks", Json::array()) : Json::array();
}

inline std::string JoinInts(const Json& list) {
  std::string out;
  for (const Json& v : list) out += (out.empty() ? "" : ",") + std::to_string(v.get<int>());
  return out;
}

}  // namespace gpuorch::cptest
