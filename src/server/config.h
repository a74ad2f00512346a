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
  // Priority classes the queue may submit with. Empty: every preemptible class, so that
  // only the queues an administrator lists a class for may submit non-preemptible work.
  std::vector<std::string> allowed_priorities;
  // The Unix user the queue's tasks run as on the nodes (docs/agent.md, "Task isolation");
  // empty: the parent's, and at the top the agent's default task user.
  std::string run_as;
  // How the queue's fractional requests share a GPU when a submission does not say
  // (docs/partitioning.md): "timeslice", "mps", "mig" or "any"; empty: the parent's, and at
  // the top "timeslice".
  std::string sharing;
  // Idle reclaim (docs/inference.md, "Idle reclaim"): work of `kinds` whose allocated GPUs
  // all stayed under gpu_idle_util_pct for `after_s` is evicted when `evict` and it is
  // preemptible; any other work of the queue idle that long is reported (AllocatedIdle).
  // after_s 0: no policy here (the nearest ancestor's applies).
  struct IdleReclaim {
    int64_t after_s = 0;
    std::vector<std::string> kinds;
    bool evict = false;
  };
  IdleReclaim idle_reclaim;
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
  // MIG (docs/partitioning.md): the engine changes layouts of GPUs in MIG mode to make the
  // instances requests need; false: static MIG, only the instances the GPUs have are used.
  bool mig_reconfigure = true;
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
  // Idle detection (docs/observability.md): a task whose GPUs' measured utilization stays
  // under `gpu_idle_util_pct` for `gpu_idle_after` (s, m, h, d) holds allocated-idle GPUs.
  double gpu_idle_util_pct = 5;
  int64_t gpu_idle_after_s = 600;
  std::string default_priority = "normal";
  std::vector<PriorityClass> priority_classes = {
      {"production", 100, false}, {"normal", 50, true}, {"opportunistic", 0, true}};
  std::vector<QueueConfig> queues = {DefaultQueue()};
  // The leaf queue of a submission that names none and whose token names no default queue
  // ("": there is none, and a queue is required). Defaults to "default" when that queue
  // exists.
  std::string default_queue = "default";
  // Security (docs/security.md). /metrics answers without a token unless this is false.
  bool metrics_public = true;
  // The audit log (DATA/audit.log) is rotated at this size; this many old files are kept.
  int64_t audit_max_bytes = 64 << 20;
  int64_t audit_keep = 5;
  // Per-token request rate limit (RateLimiter): a bucket of `rate_limit_burst` requests per
  // token, refilled at `rate_limit_per_s` (0: no limit). Tokens of the roles in
  // `rate_limit_exempt_roles` are not limited: agents (their traffic is paced by the
  // heartbeat protocol, and one join token may serve a whole cluster) and administrators.
  double rate_limit_per_s = 50;
  double rate_limit_burst = 200;
  std::vector<std::string> rate_limit_exempt_roles = {"admin", "agent"};
  // TLS for the API (docs/security.md), PEM files; relative paths are relative to the
  // server's working directory. `cert` and `key` together turn TLS on. `client_ca` adds
  // mutual TLS for agents: their register, watch and heartbeat requests then need a client
  // certificate from that CA naming the node they act as (CN "node:NAME"), besides their
  // token. YAML: `tls: {cert: F, key: F, client_ca: F}`.
  struct Tls {
    std::string cert;
    std::string key;
    std::string client_ca;
    bool on() const { return !cert.empty(); }
  } tls;
  // `gpuorch server --insecure-no-auth` (not a YAML key): every request acts as an
  // administrator. Refused unless `listen` is a loopback address.
  bool insecure_no_auth = false;

  const PriorityClass* FindPriority(const std::string& name) const;
  const QueueConfig* FindQueue(const std::string& name) const;
  // A queue no other queue names as its parent (workloads live in leaves).
  bool IsLeafQueue(const std::string& name) const;
  // Whether queue `queue` may submit with priority class `priority` (both must exist).
  bool AllowsPriority(const std::string& queue, const std::string& priority) const;
  // Whether one of the queue's allowed classes is non-preemptible.
  bool AllowsNonPreemptible(const std::string& queue) const;
  // The queue's allowed classes, comma-separated (for error messages).
  std::string AllowedPriorities(const std::string& queue) const;
  // Task logs (GET /v1/workloads/{id}/logs): the most the server fetches from an agent and
  // holds for one request; a longer log is answered in part, marked truncated.
  int64_t max_log_bytes = 4 << 20;
  // Host names an agent may register as its log address besides the address it connects
  // from: exact names, or "*.suffix" for every name ending in ".suffix". Any other host is
  // replaced by the connecting address, so the server only ever fetches logs from a node.
  std::vector<std::string> agent_hosts;

  // The user `queue`'s tasks run as: its own run_as, else its nearest ancestor's; empty when
  // none says.
  std::string RunAsOf(const std::string& queue) const;
  // The default sharing of `queue`'s fractions: its own, else its nearest ancestor's, else
  // "timeslice".
  std::string SharingOf(const std::string& queue) const;
  // The idle-reclaim policy of `queue`: its own, else its nearest ancestor's; null for none.
  const QueueConfig::IdleReclaim* IdleReclaimOf(const std::string& queue) const;
  // True when `host` is allowed by agent_hosts.
  bool AgentHostAllowed(const std::string& host) const;
};

// Parses YAML text. Errors name the field: "queues[1].quota[0].guaranteed: must be >= 0".
core::Result<ServerConfig> ParseConfig(const std::string& yaml_text);
core::Result<ServerConfig> LoadConfig(const std::string& path);
// Whether the TLS fields fit together (cert and key both or neither; client_ca needs them).
core::Status CheckTls(const ServerConfig::Tls& tls);

}  // namespace gpuorch::server
