#pragma once

#include <string>
#include <vector>

namespace gpuorch::agent {

// The task shim: the process between the agent and a task's command, so that a task
// outlives the agent that started it and its exit code is still known afterwards.
//
// The agent launches `gpuorch task-shim --dir D -- cmd args...` in a new session with the
// task's environment, working directory and log files already in place. The shim
//   1. writes D/shim.pid ("<pid> <start time in clock ticks>"),
//   2. forks the command into its own process group, writes D/child.pid, then lets it exec,
//   3. forwards SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 to that process group,
//   4. waits, writes the exit code (or 128+signal) atomically to D/exit_code, and exits
//      with the same code.
// Nothing but the shim's own process reads or writes these files while it runs, except
// that the agent reads them; every write is atomic (temporary file + rename).
//
// Returns the shim's exit status. Runs in the shim process only: it installs signal
// handlers and waits for a child, which an agent process must never do on its own thread.
int RunShim(const std::string& dir, const std::vector<std::string>& command);

// `argv` is "--dir D -- cmd args..." (no program name); for small helper binaries that
// are not the gpuorch CLI (tests). Returns 2 on a usage error.
int ShimMainFromArgs(const std::vector<std::string>& args);

// Reads /proc/<pid>/stat: the process's start time in clock ticks since boot, or 0 when the
// process does not exist or is a zombie. A recorded (pid, start time) pair identifies a
// process even after its pid has been reused.
unsigned long long ProcessStartTime(int pid);

}  // namespace gpuorch::agent
