#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/task.h"
#include "core/status.h"

namespace gpuorch::agent {

// Runs tasks as processes, each under a task shim (agent/shim.h), and keeps what it knows
// about them in files under DATA/tasks/<workload>-<task>-<attempt>/:
//   spec.json   the desired entry it was started from
//   started     written (durably) before the launch: an attempt is started at most once
//   shim.pid, child.pid, exit_code   written by the shim
//   stdout.log, stderr.log           the command's output
//   stop        the SIGKILL deadline (CLOCK_MONOTONIC ms) once a stop was asked for
//   done        the server no longer lists the task: it is not reported any more
// Because the files are the state, a new Runner over the same directory (an agent restart)
// adopts running tasks, learns exit codes of tasks that ended meanwhile, and keeps pending
// SIGKILL deadlines.
//
// Not thread-safe: the agent calls it from its loop thread only. Start, Stop and Poll are
// O(1) system calls per task; Poll is O(tasks).
class Runner {
 public:
  struct Options {
    std::string data_dir;
    // The shim command; the runner appends "--dir D -- argv...". The agent uses
    // {"/proc/self/exe", "task-shim"}.
    std::vector<std::string> shim_command;
    // CUDA_VISIBLE_DEVICES value per node GPU index (GpuBackend::VisibleDeviceId).
    std::vector<std::string> visible_ids;
  };

  // Creates DATA/tasks if needed and adopts every task found there.
  static core::Result<std::unique_ptr<Runner>> Open(Options options);
  // Tasks keep running: that is the point of the shim.
  ~Runner();

  // Starts an attempt that was never started. AlreadyExists if it ever was (by this or an
  // earlier agent). Any other failure (bad GPU index, workdir missing, fork failed) is
  // returned and also recorded: the task is then reported as exited with kLostExitCode
  // and the reason is in its stderr.log, so the server learns of it instead of waiting.
  core::Status Start(const TaskSpec& spec);
  bool EverStarted(const TaskKey& key) const;
  // SIGTERM now (the shim forwards it to the command's process group), SIGKILL once
  // `grace_ms` has passed (nullopt: the grace period of the spec it was started from). A
  // second call for the same task changes nothing. True when this call began the stop.
  bool Stop(const TaskKey& key, std::optional<int64_t> grace_ms);
  // Reaps shims, picks up exit codes, sends due SIGKILLs.
  void Poll();
  // Stops reporting an exited task (marks it done on disk). Running tasks are not affected.
  void Forget(const TaskKey& key);
  // Every task started and not forgotten, ordered by key.
  std::vector<TaskStatus> Tasks() const;

  std::string TaskDir(const TaskKey& key) const;
  const std::string& data_dir() const { return options_.data_dir; }

 private:
  struct Entry {
    TaskKey key;
    std::string dir;
    pid_t shim_pid = 0;
    unsigned long long shim_start = 0;
    pid_t child_pid = 0;
    bool own_child = false;  // our child: reaped with waitpid, not probed through /proc
    bool shim_gone = false;
    int shim_status = -1;  // waitpid status when own_child and reaped
    bool exited = false;
    int32_t exit_code = 0;
    int64_t grace_ms = 0;    // of the spec
    int64_t kill_at_ms = 0;  // 0: no stop asked for
    bool killed = false;
    int64_t adopted_at_ms = 0;
  };

  explicit Runner(Options options) : options_(std::move(options)) {}
  void Adopt(const std::string& dir);
  void LoadPids(Entry& e);
  void MarkExited(Entry& e, int32_t code);
  // Records a launch failure as an exited task with its reason in stderr.log.
  core::Status Fail(Entry e, core::Status why);
  core::Result<pid_t> Launch(const TaskSpec& spec, const std::string& dir);

  Options options_;
  std::map<TaskKey, Entry> tasks_;
};

// Milliseconds of CLOCK_MONOTONIC: comparable across processes of one boot, which is what
// a SIGKILL deadline stored for the next agent needs, and immune to wall-clock jumps.
int64_t MonotonicMs();

}  // namespace gpuorch::agent
