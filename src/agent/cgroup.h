#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace gpuorch::agent {

// What a task's cgroup enforces; 0 means no limit for that resource.
struct CgroupLimits {
  int64_t cpu_milli = 0;   // cpu.max: cpu_milli/1000 CPUs' worth of time per period
  int64_t memory_mib = 0;  // memory.max (and memory.swap.max 0: no swapping around it)
  int64_t pids_max = 0;    // pids.max: processes and threads
};

// What a task's cgroup has used, read from its files. Fields a kernel or a missing
// controller does not provide stay 0.
struct CgroupUsage {
  int64_t cpu_user_ms = 0;  // cpu.stat (every process that ever ran in it)
  int64_t cpu_system_ms = 0;
  int64_t memory_current_kib = 0;  // memory.current
  int64_t memory_peak_kib = 0;     // memory.peak (Linux 5.19+)
  int64_t oom_kills = 0;           // memory.events oom_kill
};

// cpu.max's value for `cpu_milli` ("max 100000" for no limit), with the default 100 ms
// period; the quota never goes below the kernel's 1 ms minimum.
std::string CpuMaxValue(int64_t cpu_milli);
// Parses cpu.stat / memory.events style "key value" lines; -1 when `key` is absent.
int64_t StatField(const std::string& text, const std::string& key);

// One cgroup v2 directory (the parent) under which the agent makes a cgroup per task
// (docs/agent.md, "Task isolation"). The shim's child joins the task's cgroup before it
// takes the task's identity and execs, so everything the command starts is inside it: the
// limits hold for all of it, its use is read back from the cgroup, and a stop can kill
// every process in it (cgroup.kill) even those that left the task's process group.
//
// Thread-compatible: the loop thread uses it (reads of usage are plain file reads).
class Cgroups {
 public:
  // The cgroup2 mount point from /proc/self/mountinfo ("/sys/fs/cgroup" on a pure v2 host,
  // "/sys/fs/cgroup/unified" on a hybrid one); empty when there is none.
  static std::string FindMount();

  // Creates `parent` (a directory in a cgroup2 file system) if needed and enables the
  // `required` controllers ("cpu", "memory", "pids") for its children, enabling them in its
  // ancestors' cgroup.subtree_control where needed. Fails, naming what is missing, when a
  // controller is not available (bound to a cgroup v1 hierarchy, or not delegated to us).
  static core::Result<std::unique_ptr<Cgroups>> Open(const std::string& parent,
                                                     const std::vector<std::string>& required);

  // Creates the cgroup `name` under the parent and writes the limits; fails if it exists
  // (an attempt is launched once: it would be another agent's). Returns its directory.
  core::Result<std::string> Create(const std::string& name, const CgroupLimits& limits) const;
  std::string PathOf(const std::string& name) const { return parent_ + "/" + name; }
  bool Exists(const std::string& path) const;
  CgroupUsage Usage(const std::string& path) const;
  // True while a process is in the cgroup (cgroup.events populated).
  bool Populated(const std::string& path) const;
  // SIGKILLs every process in the cgroup (cgroup.kill, Linux 5.14+; else each pid of
  // cgroup.procs).
  void Kill(const std::string& path) const;
  // Removes an empty cgroup; false while processes remain (or it is already gone).
  bool Remove(const std::string& path) const;

  const std::string& parent() const { return parent_; }
  // The controllers enabled for task cgroups.
  const std::vector<std::string>& controllers() const { return controllers_; }
  bool Has(const std::string& controller) const;

 private:
  Cgroups() = default;
  std::string parent_;
  std::vector<std::string> controllers_;
};

}  // namespace gpuorch::agent
