#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "agent/cgroup.h"
#include "agent/executor.h"
#include "agent/task.h"
#include "agent/task_state.h"
#include "agent/task_user.h"
#include "agent/telemetry.h"
#include "core/status.h"

namespace gpuorch::agent {

// Runs tasks as processes, each under a task shim (agent/shim.h), and keeps what it knows
// about them in three files per task, DATA/tasks/<workload>-<task>-<attempt>.{state,
// stdout.log,stderr.log}: the append-only state file (records in agent/task_state.h) and
// the command's output. One directory for all tasks rather than one per task: every inode
// and every fsync costs, and a task directory would add one of each per task. Because the
// files are the state, a new Runner over the same directory (an agent restart) adopts
// running tasks, learns exit codes of tasks that ended meanwhile, and keeps pending SIGKILL
// deadlines.
//
// Not thread-safe: the agent calls it from its loop thread only. Start, Stop and Poll cost
// a few system calls per task; Poll is O(tasks) and reads a task's file only when its shim
// has just started or has ended.
class Runner final : public TaskExecutor {
 public:
  struct Options {
    std::string data_dir;
    // The shim command; the runner appends "--state FILE -- argv...". The agent uses the
    // gpuorch-shim executable beside its own binary, or {"/proc/self/exe", "task-shim"}.
    std::vector<std::string> shim_command;
    // CUDA_VISIBLE_DEVICES value per node GPU index (GpuBackend::VisibleDeviceId).
    std::vector<std::string> visible_ids;
    // Who tasks run as (agent/task_user.h).
    RunAsPolicy run_as;
    // The variables of the agent's environment a task inherits; nothing else of it. HOME,
    // USER, LOGNAME and SHELL come from the task's user, PATH from kDefaultPath when the
    // agent has none.
    std::vector<std::string> env_allow = {"PATH", "LANG", "LC_ALL", "TZ"};
    // A cgroup per task under these (nullptr: tasks run without cgroups).
    std::shared_ptr<const Cgroups> cgroups;
    int64_t pids_max = 0;  // pids.max of a task's cgroup; 0: no limit
    // The ports service tasks are given (env PORT), inclusive.
    std::pair<int32_t, int32_t> service_ports = {20000, 29999};
    // The UUID of a MIG instance (agent/mig.h), for tasks with spec.mig; nullopt: it does not
    // exist, and the launch fails. Empty: no MIG on this node.
    std::function<std::optional<std::string>(const MigPlacement&)> mig_uuid;
    // The MPS pipe directory of a GPU, its daemon started (MpsControl::Ensure), for tasks
    // with sharing "mps". Empty: MpsPipeDir(data_dir, gpu), no daemon.
    std::function<std::string(int32_t)> mps_pipe_dir;
  };
  static constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

  // Creates DATA/tasks if needed and adopts every task found there.
  static core::Result<std::unique_ptr<Runner>> Open(Options options);
  // Tasks keep running: that is the point of the shim.
  ~Runner();

  // Starts attempts that were never started, as one batch: every spec is recorded, the
  // records are made durable together (one round of fsyncs for the batch), then the shims
  // are launched. One status per spec: AlreadyExists if it was ever started (by this or an
  // earlier agent). Any other failure (bad GPU index, workdir missing, spawn failed) is
  // returned and also recorded: the task is then reported as exited (127 for a workdir or
  // command that does not exist, kLostExitCode otherwise) with the reason in its
  // stderr.log, so the server learns of it instead of waiting.
  //
  // A service task (spec.service) is given a TCP port of Options::service_ports that no
  // running task has and that is free (a bind to 0.0.0.0 succeeds), round robin; it is
  // recorded with the spec, set as env PORT and kept by a later agent that adopts the task.
  // With no port free the launch fails (kLostExitCode).
  std::vector<core::Status> StartAll(const std::vector<const TaskSpec*>& specs) override;
  core::Status Start(const TaskSpec& spec) { return StartAll({&spec}).front(); }
  bool EverStarted(const TaskKey& key) const override;
  // SIGTERM now (the shim forwards it to the command's process group), SIGKILL once
  // `grace_ms` has passed (nullopt: the grace period of the spec it was started from). A
  // second call for the same task changes nothing. True when this call began the stop.
  bool Stop(const TaskKey& key, std::optional<int64_t> grace_ms) override;
  // Reaps shims, picks up exit codes, sends due SIGKILLs. True when a task exited.
  bool Poll() override;
  // Stops reporting an exited task (marks it done on disk). Running tasks are not affected.
  void Forget(const TaskKey& key) override;
  // Every task started and not forgotten, ordered by key.
  std::vector<TaskStatus> Tasks() const override;
  // The tasks still running, with what GPU telemetry needs of them.
  std::vector<TaskOnNode> RunningTasks() const;
  // The running service tasks, with their ports (for the probes, agent/service_probe.h).
  std::vector<ServiceTask> RunningServices() const;
  // Grows whenever a task is added, exits or is forgotten: a cheap "did the set change".
  uint64_t changes() const { return changes_; }
  // Descriptors that become readable when a running task's shim ends (pidfds), for the
  // agent to wait on; then Poll. Tasks without one (kernels before 5.3) need Poll to be
  // called periodically: NeedsPeriodicPoll says so.
  std::vector<int> WatchFds() const;
  bool NeedsPeriodicPoll() const;

  // Removes the files of forgotten tasks (state, logs, private workdir, cgroup) whose
  // state file was last written `retention_s` or more ago (wall clock). Never touches a
  // task that is not forgotten, so never a running one. Returns how many were removed.
  int CollectGarbage(int64_t retention_s);

  // DATA/tasks/<workload>-<task>-<attempt>: its files are this plus ".state",
  // ".stdout.log" and ".stderr.log".
  std::string TaskPath(const TaskKey& key) const;
  // DATA/work/<workload>-<task>-<attempt>: a task's private working directory (0700, owned
  // by its user), made when its spec names no workdir.
  std::string WorkPath(const TaskKey& key) const;
  // The name of a task's cgroup under Options::cgroups.
  static std::string CgroupName(const TaskKey& key) { return "task-" + key.DirName(); }
  const std::string& data_dir() const { return options_.data_dir; }

 private:
  struct Entry {
    TaskKey key;
    std::string path;  // TaskPath
    pid_t shim_pid = 0;
    unsigned long long shim_start = 0;
    pid_t child_pid = 0;
    bool own_child = false;  // our child: reaped with waitpid, not probed through /proc
    int pidfd = -1;          // readable once the shim has ended
    bool shim_gone = false;
    int shim_status = -1;  // waitpid status when own_child and reaped
    bool exited = false;
    TaskExit exit;
    int64_t grace_ms = 0;    // of the spec
    int64_t kill_at_ms = 0;  // 0: no stop asked for
    bool killed = false;
    int64_t adopted_at_ms = 0;
    std::string cgroup;  // the task's cgroup directory; empty: none
    TaskSpec spec;       // as launched (or as its state file recorded it, when adopted)
  };

  explicit Runner(Options options);
  void Adopt(const std::string& state_file);
  // Reads the task's state file into `e` (pids, exit record); the file's parse.
  TaskStateFile Load(Entry& e);
  void Watch(Entry& e);
  // Records how the task ended; `record` appends the exit record for a later agent.
  void MarkExited(Entry& e, const TaskExit& exit, bool record);
  // Once the command has ended: kills what it left in its cgroup, takes the cgroup's usage
  // into `exit` and notes an OOM kill in the task's stderr.log.
  void FinishCgroup(Entry& e, TaskExit& exit);
  // The task's environment: the allow-list, its user's, the spec's, then the GPUs' (and
  // `gpu_env`: MPS's), which nothing may override.
  std::vector<std::string> Environment(const TaskSpec& spec, const TaskUser& user,
                                       const std::string& visible,
                                       const std::map<std::string, std::string>& gpu_env) const;
  // CUDA_VISIBLE_DEVICES of a task (its GPUs, or its MIG instance) and its MPS variables.
  core::Status GpuSelection(const TaskSpec& spec, std::string& visible,
                            std::map<std::string, std::string>& gpu_env);
  // Records a launch failure as an exited task with its reason in stderr.log.
  core::Status Fail(Entry e, int32_t code, core::Status why);
  core::Result<pid_t> Launch(const TaskSpec& spec, const std::string& path, int32_t& fail_code);
  // The ports of running service tasks.
  std::set<int32_t> PortsInUse() const;
  // A port of Options::service_ports not in `taken` and free now; 0 when there is none.
  int32_t PickPort(const std::set<int32_t>& taken);

  Options options_;
  std::map<std::string, std::string> base_env_;  // the agent's environment at Open
  std::map<TaskKey, Entry> tasks_;
  uint64_t changes_ = 0;                      // see changes()
  int32_t next_port_ = 0;                     // where PickPort looks first
  std::map<TaskKey, std::string> forgotten_;  // done tasks whose files remain: their paths
};

// Whether a TCP bind to 0.0.0.0:port succeeds now (the socket is closed again).
bool PortFree(int32_t port);

// Milliseconds of CLOCK_MONOTONIC: comparable across processes of one boot, which is what
// a SIGKILL deadline stored for the next agent needs, and immune to wall-clock jumps.
int64_t MonotonicMs();

}  // namespace gpuorch::agent
