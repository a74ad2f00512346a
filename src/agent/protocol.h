#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/gpu.h"
#include "agent/mig.h"
#include "agent/task.h"
#include "agent/telemetry.h"
#include "core/status.h"

// The agent's side of the agent protocol (docs/api.md, "Agent protocol"): encoding of what
// the agent sends and decoding of what the server answers. Pure functions; JSON exceptions
// never leave this file.
namespace gpuorch::agent {

struct Registration {
  std::string name;
  std::string address;  // host:port of the log endpoint
  // The credential the server presents to the log endpoint (docs/api.md, "Agent log
  // endpoint"): random, made at agent start, sent only in the registration.
  std::string log_secret;
  std::string zone;
  std::string rack;
  int64_t cpu_milli = 0;
  int64_t memory_mib = 0;
  std::string backend;  // "nvml" or "emulated"
  int32_t nvlink_domain_gpus = 0;
  std::vector<GpuInfo> gpus;
  // The GPU telemetry exporter (docs/observability.md): where its /metrics is served
  // ("host:port"; empty: not served), and where its numbers come from ("nvml", "emulated";
  // empty: no telemetry).
  std::string metrics_address;
  std::string telemetry;
};

// The Authorization header's value on every request an agent sends (docs/security.md):
// "Bearer <token>", or "" to send none (a server started with --insecure-no-auth).
std::string AuthorizationHeader(const std::string& token);

std::string RegisterRequestJson(const Registration& r);
// The `heartbeat_interval_ms` of the answer (0 when absent).
core::Result<int64_t> ParseRegisterResponse(const std::string& body);

// `telemetry`, when given, is the latest sample (sent once per sampling, not per heartbeat).
// `mig`, when given, is the layout of every GPU in MIG mode (the `mig` member).
std::string HeartbeatRequestJson(const std::vector<TaskStatus>& tasks,
                                 const Telemetry* telemetry = nullptr,
                                 const std::vector<MigReport>* mig = nullptr);

// What a heartbeat carries (docs/api.md, "Agent protocol"): only changes. An exited task is
// reported in every heartbeat until the server stops listing it (then it is forgotten); a
// running task only until a server answered a heartbeat that reported it so (same pid and,
// for a service task, same port, readiness and scrape), within that server's epoch. A heartbeat
// with nothing to report is a small keep-alive. An answer from another epoch (a restarted server)
// makes everything unacknowledged: the caller reports the full list again at once.
class ReportTracker {
 public:
  // The tasks of `tasks` the server has not acknowledged.
  std::vector<TaskStatus> ToReport(const std::vector<TaskStatus>& tasks) const;
  // The server of `epoch` answered a heartbeat that carried `sent`. False when that server
  // may lack running tasks that were acknowledged by another epoch: report all again.
  bool Acknowledge(int64_t epoch, const std::vector<TaskStatus>& sent);
  // Forgets every acknowledgement (the agent registers again).
  void Reset();

 private:
  // What the server acknowledged of a running task.
  struct Acked {
    int32_t pid = 0;
    std::optional<ServiceReport> service;  // gauges are compared by their scrape number
    bool Same(const TaskStatus& t) const;
  };
  int64_t epoch_ = 0;
  std::map<TaskKey, Acked> running_;  // acknowledged running tasks
};

// The tasks the server wants on the node, as a heartbeat or a watch answers them. Within
// one `epoch` (one server process) a greater `version` is a newer list. A list from
// another epoch is newer whatever the numbers: it comes from the server that answers now
// (a restarted one, even with its clock set back), and a stopped server answers nothing
// after its successor has started, since both cannot hold the listen address.
struct DesiredList {
  int64_t epoch = 0;
  int64_t version = 0;
  std::vector<TaskSpec> tasks;
  // The heartbeat interval the server asks for now (0: it said none); it grows with the
  // cluster.
  int64_t heartbeat_interval_ms = 0;
  // What of the list was ignored (a malformed `service` member), for the log.
  std::vector<std::string> warnings = {};
  // The layouts the server wants on GPUs in MIG mode (`mig_layouts`).
  std::vector<MigDesired> mig_layouts = {};

  bool NewerThan(const DesiredList& o) const { return epoch != o.epoch || version > o.version; }
};
// Fields the agent does not know are ignored, so a newer server can add some; a missing or
// mistyped required field fails the whole answer.
core::Result<DesiredList> ParseHeartbeatResponse(const std::string& body);

// A desired entry on its own, as stored in the `spec` record of a task's state file (one
// line of JSON).
std::string TaskSpecJson(const TaskSpec& spec);
core::Result<TaskSpec> ParseTaskSpec(const std::string& body);

}  // namespace gpuorch::agent
