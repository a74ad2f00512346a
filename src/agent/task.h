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

// What the agent knows of a task, as reported in heartbeats.
struct TaskStatus {
  TaskKey key;
  TaskState state = TaskState::kRunning;
  int32_t pid = 0;  // the command's pid (0 until the shim has started it)
  TaskExit exit;    // when exited
};

// Reported when a task ended without anyone recording how: the launch failed, or its shim
// vanished (SIGKILLed, machine reboot). Negative so it never collides with a real status.
inline constexpr int32_t kLostExitCode = -1;

}  // namespace gpuorch::agent
