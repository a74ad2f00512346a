#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace gpuorch::agent {

// One attempt of one task of one workload: the unit the agent starts exactly once.
struct TaskKey {
  int64_t workload = 0;
  int32_t task = 0;
  int32_t attempt = 0;

  friend auto operator<=>(const TaskKey&, const TaskKey&) = default;
  // "<workload>-<task>-<attempt>": the task's directory under DATA/tasks.
  std::string DirName() const {
    return std::to_string(workload) + "-" + std::to_string(task) + "-" + std::to_string(attempt);
  }
};

// How the agent checks that a service task (an inference replica) is ready to serve
// (docs/agent.md, "Services"): HTTP GET http://127.0.0.1:PORT<http_path> answering 2xx.
struct ReadinessSpec {
  std::string http_path = "/";
  int64_t initial_delay_ms = 0;  // from the task's start to the first check
  int64_t period_ms = 1000;      // between two checks (and two scrapes, unless the agent's flag)
};

// The period of checks and scrapes of a service without a readiness check.
inline constexpr int64_t kDefaultServicePeriodMs = 1000;

// The desired entry's `service` member: the task serves on a port the agent gives it.
struct ServiceSpec {
  // Absent: the task is ready once its port accepts a TCP connection.
  std::optional<ReadinessSpec> readiness;
  // Names summed from its Prometheus /metrics and reported; empty: no scrape.
  std::vector<std::string> gauges;
  // The TCP port the agent picked for this attempt (env PORT): 0 until picked. The agent's
  // own choice, recorded with the spec in the task's state file; never the server's.
  int32_t port = 0;

  int64_t period_ms() const { return readiness ? readiness->period_ms : kDefaultServicePeriodMs; }
  int64_t initial_delay_ms() const { return readiness ? readiness->initial_delay_ms : 0; }
};

// The MIG instance a task runs on (the desired entry's `mig` member): the instance of
// `profile` at memory slice `start` of node GPU `gpu`.
struct MigPlacement {
  int32_t gpu = 0;
  int32_t start = 0;
  std::string profile;

  friend bool operator==(const MigPlacement&, const MigPlacement&) = default;
};

// The desired entry's `sharing` value that asks for MPS (docs/agent.md, "MIG and MPS").
inline constexpr const char* kSharingMps = "mps";

// A desired task as the server sends it in a heartbeat answer.
struct TaskSpec {
  TaskKey key;
  std::vector<std::string> command;  // argv; run without a shell
  std::map<std::string, std::string> env;
  std::string workdir;        // empty: the task's own private directory
  std::vector<int32_t> gpus;  // node-local GPU indices
  int32_t gpu_milli = 1000;
  int64_t grace_period_ms = 30000;
  // The Unix user to run as (the queue's `run_as`); empty: the agent's default task user.
  std::string run_as;
  // What the task asked for: its cgroup's cpu.max and memory.max (0: no limit).
  int64_t cpu_milli = 0;
  int64_t memory_mib = 0;
  // GPU memory it asked for per GPU (0: not given), and whose it is: for GPU telemetry's
  // attribution labels and emulation (docs/observability.md).
  int64_t gpu_memory_mib = 0;
  std::string name;   // the workload's name
  std::string queue;  // the workload's queue
  // Set only for a service task (an inference replica).
  std::optional<ServiceSpec> service;
  // Set when the task runs on a MIG instance: it sees only that instance.
  std::optional<MigPlacement> mig;
  // How the task shares its GPU: "mps" (kSharingMps) runs it as a client of the GPU's MPS
  // daemon; anything else ("", "timeslice", values a newer server adds) is time-slicing.
  std::string sharing;
};

enum class TaskState { kRunning, kExited };

// How a task's command ended, as the shim (or the agent, for a launch failure) recorded it.
struct TaskExit {
  int32_t code = 0;  // the exit code, 128+signal, or kLostExitCode
  // CPU time and peak memory of the command and the descendants it waited for (getrusage
  // of the shim's child); 0 when unknown (launch failures, lost tasks).
  int64_t cpu_user_ms = 0;
  int64_t cpu_system_ms = 0;
  int64_t max_rss_kib = 0;
  // Peak memory of the task's cgroup (memory.peak: every process in it, page cache
  // included); 0 without a cgroup memory controller.
  int64_t memory_peak_kib = 0;
};

// A running service task, as the agent's probes need it (spec.port is its port).
struct ServiceTask {
  TaskKey key;
  ServiceSpec spec;
};

// What a running service task reports (the heartbeat entry's `service` member).
struct ServiceReport {
  int32_t port = 0;  // 0 on hollow nodes, where nothing listens
  bool ready = false;
  // The listed gauges of the latest successful scrape, each summed over its label sets;
  // names absent from the scrape are left out.
  std::map<std::string, double> gauges = {};
  // Which scrape `gauges` comes from (0: none yet, and `gauges` is not reported). Not sent:
  // a greater number is fresh gauges, which are reported again.
  uint64_t scrape = 0;

  friend bool operator==(const ServiceReport&, const ServiceReport&) = default;
};

// What the agent knows of a task, as reported in heartbeats.
struct TaskStatus {
  TaskKey key;
  TaskState state = TaskState::kRunning;
  int32_t pid = 0;  // the command's pid (0 until the shim has started it)
  TaskExit exit;    // when exited
  std::optional<ServiceReport> service = std::nullopt;  // a running service task's
  // The MIG instance it runs on (not reported: the MIG layer must never destroy it).
  std::optional<MigPlacement> mig = std::nullopt;
};

// Reported when a task ended without anyone recording how: the launch failed, or its shim
// vanished (SIGKILLed, machine reboot). Negative so it never collides with a real status.
inline constexpr int32_t kLostExitCode = -1;

}  // namespace gpuorch::agent
