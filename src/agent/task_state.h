#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "agent/task.h"
#include "core/status.h"

namespace gpuorch::agent {

// DATA/tasks/<workload>-<task>-<attempt>.state: the whole memory of one task, an
// append-only file of one record per line, written by the agent and the shim with one
// write(2) each on an O_APPEND descriptor (so records never interleave):
//   spec <json>               agent: the desired entry, fsynced before the launch
//   shim <pid> <start>        shim: itself (start time in clock ticks since boot)
//   child <pid> <start>       shim: the command, before it execs
//   exit <code> <user ms> <system ms> <max RSS KiB>
//                             shim (agent for launch failures and lost tasks)
//   stop <deadline ms>        agent: SIGKILL deadline (CLOCK_MONOTONIC), once a stop began
//   done                      agent: the server no longer lists the task
// A last line without its newline (a crash mid-write) is ignored; the first record of each
// kind counts, except that a later `stop` never replaces an earlier one.
struct TaskStateFile {
  std::optional<std::string> spec;  // the JSON text; absent: never launched
  pid_t shim_pid = 0;
  unsigned long long shim_start = 0;
  pid_t child_pid = 0;
  unsigned long long child_start = 0;
  std::optional<TaskExit> exit;
  int64_t kill_at_ms = 0;
  bool done = false;
};

TaskStateFile ParseTaskState(std::string_view text);
// `exit ...` record text for `e`, with its newline.
std::string ExitRecord(const TaskExit& e);
// Appends one record (a line with its newline) with a single write; fsyncs when asked.
core::Status AppendRecord(const std::string& path, const std::string& record, bool sync);

}  // namespace gpuorch::agent
