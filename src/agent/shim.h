#pragma once

#include <sys/types.h>

#include "agent/shim_c.h"

namespace gpuorch::agent {

// The task shim (shim.c) is the process between the agent and a task's command, so that a
// task outlives the agent that started it and its exit code is still known afterwards.
//
// The agent launches `gpuorch-shim --state F -- cmd args...` in a new session with the
// task's environment, working directory and log files already in place, after writing the
// task's spec as the first record of the state file F. The shim appends to F
//   1. `shim <pid> <start time>`,
//   2. forks the command into its own process group, appends `child <pid> <start time>`,
//      then lets it exec,
//   3. forwards SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 to that process group,
//   4. waits, appends `exit <code> <user ms> <system ms> <max RSS KiB>` (code 128+N when
//      the command died of signal N), and exits with the same code.
// The record format is agent/task_state.h.

// Reads /proc/<pid>/stat: the process's start time in clock ticks since boot, or 0 when the
// process does not exist or is a zombie.
inline unsigned long long ProcessStartTime(pid_t pid) { return gpuorch_process_start_time(pid); }

}  // namespace gpuorch::agent
