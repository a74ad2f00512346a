#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/gpu.h"
#include "agent/task.h"
#include "core/status.h"

// The agent's side of the agent protocol (docs/api.md, "Agent protocol"): encoding of what
// the agent sends and decoding of what the server answers. Pure functions; JSON exceptions
// never leave this file.
namespace gpuorch::agent {

struct Registration {
  std::string name;
  std::string address;  // host:port of the log endpoint
  std::string zone;
  std::string rack;
  int64_t cpu_milli = 0;
  int64_t memory_mib = 0;
  std::string backend;  // "nvml" or "emulated"
  int32_t nvlink_domain_gpus = 0;
  std::vector<GpuInfo> gpus;
};

std::string RegisterRequestJson(const Registration& r);
// The `heartbeat_interval_ms` of the answer (0 when absent).
core::Result<int64_t> ParseRegisterResponse(const std::string& body);

std::string HeartbeatRequestJson(const std::vector<TaskStatus>& tasks);

// The tasks the server wants on the node, as a heartbeat or a watch answers them. Within
// one `epoch` (one server process) a greater `version` is a newer list. A list from
// another epoch is newer whatever the numbers: it comes from the server that answers now
// (a restarted one, even with its clock set back), and a stopped server answers nothing
// after its successor has started, since both cannot hold the listen address.
struct DesiredList {
  int64_t epoch = 0;
  int64_t version = 0;
  std::vector<TaskSpec> tasks;

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
