#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/gpu.h"
#include "agent/log_server.h"
#include "agent/metrics_server.h"
#include "agent/mig.h"
#include "agent/mps.h"
#include "agent/node_session.h"
#include "agent/protocol.h"
#include "agent/runner.h"
#include "agent/service_probe.h"
#include "agent/telemetry.h"
#include "core/status.h"

namespace httplib {
class Client;
}

namespace gpuorch::agent {

struct AgentOptions {
  std::string server_url = "http://127.0.0.1:7480";
  std::string token;  // the node's API token ("" for a server without authentication)
  // TLS (docs/security.md), PEM files: the CA an https:// server's certificate must verify
  // against ("": the system's CAs), and for mutual TLS this node's client certificate and
  // key (gpuorch certs init --nodes), which the server ties to the node's name.
  std::string ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string name;  // empty: the host name
  std::string data_dir;
  std::string listen = "127.0.0.1:0";
  std::string zone;
  std::string rack;
  int64_t cpu_milli = 0;       // 0: the online CPUs of this machine
  int64_t memory_mib = 0;      // 0: the physical memory of this machine
  int64_t heartbeat_ms = 500;  // until the server names an interval (it sizes it to the cluster)
  // How tasks are launched; the runner appends "--dir D -- argv...". /proc/self/exe is the
  // running gpuorch binary, which the shim then also is.
  std::vector<std::string> shim_command = {"/proc/self/exe", "task-shim"};
  // Task isolation (docs/agent.md): who tasks run as, what of the agent's environment they
  // see, and their cgroups ("auto": <cgroup2 mount>/gpuorch/<node name>, used when the
  // cpu, memory and pids controllers can be had, else the agent says so and runs without;
  // "off"; or a directory under the cgroup2 mount, which must work).
  RunAsPolicy run_as;
  std::vector<std::string> env_allow = {"PATH", "LANG", "LC_ALL", "TZ"};
  std::string cgroup_parent = "auto";
  int64_t pids_max = 16384;
  // Files of tasks the server no longer lists are removed this long after (seconds).
  int64_t task_retention_s = 86400;
  // GPU telemetry (docs/observability.md): where the dcgm-exporter-compatible /metrics is
  // served ("off": nowhere; port 0: a free one), and how often the GPUs are sampled.
  // The command line's default is dcgm-exporter's port, 127.0.0.1:9400.
  std::string metrics_listen = "127.0.0.1:0";
  int64_t telemetry_interval_ms = 10000;
  // Service tasks (inference replicas, docs/agent.md "Services"): the ports they are given
  // (inclusive), and how often their gauges are scraped (0: every readiness period).
  std::pair<int32_t, int32_t> service_ports = {20000, 29999};
  int64_t service_scrape_interval_ms = 0;
};

// The node agent: register, then follow the server's `desired` list for the node exactly
// as docs/api.md states (level-triggered):
//   - start each desired attempt never started (the runner remembers across restarts),
//   - stop each running task not desired (SIGTERM, SIGKILL after the grace period of its
//     last desired entry),
//   - report exited tasks until the server stops listing them, then forget them.
// The protocol itself (what to send, what answers mean, what to start and stop) is the
// NodeSession (agent/node_session.h) over the Runner; this class is its transport for one
// real node. Two threads talk to the server. The loop thread (Run) owns the runner: it waits on the
// tasks' pidfds and a wake-up descriptor, reports at once when a task exits (and every
// heartbeat interval in any case), and applies desired lists. The watch thread long-polls
// the node's desired list (GET .../desired?after=VERSION), so a bind reaches the node as
// soon as it is committed; it never touches the runner, so it also keeps the node alive in
// the server's eyes while the loop is busy launching.
// The server being down changes nothing on the node: tasks keep running, the agent retries
// with backoff, and re-registers when the server answers 404 (it has forgotten the node).
// Shutdown leaves tasks running, to be adopted by the next agent on the same data dir.
//
// Run() belongs to one thread; Shutdown() may be called from any thread.
class Agent {
 public:
  // Discovers GPUs, adopts the tasks in the data dir, binds the log endpoint.
  static core::Result<std::unique_ptr<Agent>> Create(AgentOptions options,
                                                     std::unique_ptr<GpuBackend> gpus);
  ~Agent();

  // Loops until Shutdown().
  void Run();
  void Shutdown();

  const std::string& log_address() const { return log_server_->address(); }
  // "host:port" of the GPU metrics endpoint; empty when it is off.
  std::string metrics_address() const {
    return metrics_server_ ? metrics_server_->address() : std::string();
  }
  const Registration& registration() const { return session_->registration(); }
  Runner& runner() { return *runner_; }
  // The MIG layer; null when no GPU is in MIG mode.
  MigManager* mig() { return mig_.get(); }

 private:
  Agent() = default;
  // One iteration of the loop; returns how long to wait for an event before the next (ms).
  int64_t Tick();
  bool Register();
  bool Heartbeat();
  void Watch();
  void Wake();
  bool Stopping();
  // Samples the GPUs when the interval passed or the running tasks changed; publishes the
  // exposition and hands the summary to the next heartbeat.
  void SampleTelemetryIfDue();
  // Hands the running service tasks to the prober when they changed, and its news to the
  // session. True when that news is to be reported at once (a port or readiness changed,
  // or fresh gauges whose pace allows).
  bool TakeServiceNews(int64_t now_ms);

  AgentOptions options_;
  std::unique_ptr<GpuBackend> gpus_;
  std::unique_ptr<MigManager> mig_;  // loop thread; null: no GPU in MIG mode
  std::unique_ptr<MpsControl> mps_;  // loop thread (the runner's hook)
  std::unique_ptr<Runner> runner_;
  std::unique_ptr<NodeSession> session_;  // loop thread
  std::unique_ptr<LogServer> log_server_;
  std::unique_ptr<TelemetrySource> telemetry_;     // loop thread; null: no telemetry
  std::unique_ptr<MetricsServer> metrics_server_;  // null: --metrics-listen off
  int64_t next_sample_ms_ = 0;                     // loop thread
  uint64_t sampled_changes_ = ~uint64_t{0};        // loop thread: the runner's changes() sampled
  std::map<int32_t, std::string> gpu_health_;      // loop thread: last unhealthy reason
  bool telemetry_failing_ = false;                 // loop thread
  std::unique_ptr<ServiceProber> prober_;          // its own thread; SetTasks/Take: loop
  uint64_t prober_changes_ = ~uint64_t{0};         // loop thread: the runner's changes() given
  bool gauges_pending_ = false;                    // loop thread: fresh gauges not yet sent
  int64_t next_gauges_ms_ = 0;                     // loop thread: when they may be sent
  int64_t gauges_pace_ms_ = 0;                     // loop thread
  std::unique_ptr<httplib::Client> client_;        // loop thread
  std::unique_ptr<httplib::Client> watch_client_;  // watch thread
  int wake_fd_ = -1;                               // eventfd: the loop's wake-up
  int64_t next_gc_ms_ = 0;                         // loop thread

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;          // guarded by mu_
  bool watch_registered_ = false;  // guarded by mu_: the watch may start
  DesiredList watched_;            // guarded by mu_: the newest list the watch got
  bool watched_new_ = false;       // guarded by mu_
  int64_t watch_interval_ms_ = 0;  // guarded by mu_
  std::thread watch_thread_;
};

// This machine's host name ("localhost" when it has none): the default node name.
std::string HostName();

}  // namespace gpuorch::agent
