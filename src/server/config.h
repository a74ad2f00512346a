#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace gpuorch::server {

struct PriorityClass {
  std::string name;
  int32_t value = 0;
  bool preemptible = true;
};

struct QuotaConfig {
  std::string model;  // "*" = every model without an entry of its own
  int64_t guaranteed_milli = 0;
  int64_t limit_milli = -1;  // -1 = unlimited
};

// CPU (milli-CPU) or memory (MiB) quota of a queue; -1 = not set (no guarantee: the resource
// does not decide whether work is in quota; no limit: unlimited).
struct HostQuotaConfig {
  int64_t guaranteed = -1;
  int64_t limit = -1;
};

struct QueueConfig {
  std::string name;
  std::string parent;
  int32_t weight = 1;
  bool can_borrow = true;
  bool can_lend = true;
  std::vector<QuotaConfig> quota;
  HostQuotaConfig cpu_quota;     // cpu_quota: {guaranteed_milli, limit_milli}
  HostQuotaConfig memory_quota;  // memory_quota: {guaranteed_mib, limit_mib}
};

// The queue a server has when its configuration names none.
inline QueueConfig DefaultQueue() {
  QueueConfig q;
  q.name = "default";
  return q;
}

// The server's configuration (YAML). Every field has a default, so an empty file (or none)
// gives a working single-queue server on loopback.
struct ServerConfig {
  std::string listen = "127.0.0.1:7480";
  std::string data = "gpuorch-data";
  std::string policy = "gpuorch";
  // The minimum node timeout and heartbeat interval: both grow with the cluster so that
  // its heartbeats stay within max_heartbeats_per_second (Controller::HeartbeatIntervalMs).
  int64_t node_timeout_ms = 10'000;
  int64_t heartbeat_interval_ms = 500;
  int64_t max_heartbeats_per_second = 50;
  int64_t cycle_interval_ms = 50;  // the longest wait between cycles
  // HTTP (HttpServer): event-loop threads, handler threads, and the connection limits.
  int64_t io_threads = 2;
  int64_t worker_threads = 8;
  int64_t max_connections = 25'000;  // two per agent plus clients
  int64_t idle_timeout_s = 600;      // above the longest heartbeat interval agents are told
  int64_t fair_share_half_life_s = 3600;
  int64_t max_body_bytes = 1 << 20;
  // How long a finished (Succeeded, Failed, Cancelled) workload stays, in memory and in the
  // store, before it is garbage-collected; 0 keeps them all. YAML: `finished_retention:
  // 7d` (s, m, h, d) or a number of seconds.
  int64_t finished_retention_s = 7 * 86'400;
  std::string default_priority = "normal";
  std::vector<PriorityClass> priority_classes = {
      {"production", 100, false}, {"normal", 50, true}, {"opportunistic", 0, true}};
  std::vector<QueueConfig> queues = {DefaultQueue()};

  const PriorityClass* FindPriority(const std::string& name) const;
  const QueueConfig* FindQueue(const std::string& name) const;
};

// Parses YAML text. Errors name the field: "queues[1].quota[0].guaranteed: must be >= 0".
core::Result<ServerConfig> ParseConfig(const std::string& yaml_text);
core::Result<ServerConfig> LoadConfig(const std::string& path);

}  // namespace gpuorch::server
