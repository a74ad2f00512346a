#include "agent/runner.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "agent/fsutil.h"
#include "agent/mps.h"
#include "agent/protocol.h"
#include "agent/shim.h"

extern char** environ;

namespace gpuorch::agent {

using core::Result;
using core::Status;

namespace {

// A started task whose shim never recorded itself is given this long (the previous agent
// may have died between writing the spec and the launch) before it is declared lost.
constexpr int64_t kShimRecordWaitMs = 30000;
// What a shell says of a command or directory that does not exist.
constexpr int32_t kNotFoundExitCode = 127;

void WriteAll(int fd, const std::string& s) {
  const ssize_t n = ::write(fd, s.data(), s.size());
  (void)n;
}

// A pidfd for `pid` (Linux 5.3+), or -1.
int PidFd(pid_t pid) {
#if defined(SYS_pidfd_open)
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

void FsyncPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// A task of the default user must reach its workdir in DATA/work: every directory above
// must let that user through. Checked at start, so that a data directory under a private
// one (a mkdtemp directory, a home directory) stops the agent with the reason instead of
// failing every task with "cannot enter workdir".
Status CheckReachable(const Runner::Options& options) {
  Result<TaskUser> user = ResolveTaskUser("", options.run_as, ::geteuid());
  if (!user.ok() || user->same_as_agent || user->uid == 0) return Status::Ok();
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::absolute(options.data_dir, ec);
  for (; !ec && !dir.empty(); dir = dir.parent_path()) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) break;
    const bool in_group =
        std::find(user->groups.begin(), user->groups.end(), st.st_gid) != user->groups.end();
    const mode_t need = st.st_uid == user->uid               ? S_IXUSR
                        : in_group || st.st_gid == user->gid ? S_IXGRP
                                                             : S_IXOTH;
    if ((st.st_mode & need) == 0) {
      char mode[8];
      std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
      return Status::Precondition(
          "--data " + options.data_dir + ": tasks run as '" + user->name +
          "' and could not reach their workdirs: " + dir.string() + " (mode " + mode +
          ") does not let that user through; allow it (chmod o+x) or choose another --data");
    }
    if (dir == dir.root_path()) break;
  }
  return Status::Ok();
}

}  // namespace

int64_t MonotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

Runner::Runner(Options options) : options_(std::move(options)) {
  for (char** p = environ; *p != nullptr; ++p) {
    const char* eq = std::strchr(*p, '=');
    if (eq != nullptr) base_env_[std::string(*p, static_cast<size_t>(eq - *p))] = eq + 1;
  }
  // Agents sharing a host (a real one beside hollow nodes, test clusters) start their
  // round robin of ports at different places: a port one agent picked and whose command
  // does not listen yet looks free to another, so two agents starting at the range's low
  // end would hand out the same port.
  const auto [lo, hi] = options_.service_ports;
  if (lo >= 1 && hi >= lo) {
    const auto span = static_cast<uint64_t>(hi - lo + 1);
    next_port_ =
        lo + static_cast<int32_t>((static_cast<uint64_t>(::getpid()) * 2654435761u) % span);
  }
}

Result<std::unique_ptr<Runner>> Runner::Open(Options options) {
  // The shim runs elsewhere ("/") and the command in its workdir: every path they get must
  // be absolute.
  std::error_code abs_ec;
  const std::filesystem::path data = std::filesystem::absolute(options.data_dir, abs_ec);
  if (abs_ec) return Status::Invalid("--data " + options.data_dir + ": " + abs_ec.message());
  options.data_dir = data.lexically_normal().string();
  while (options.data_dir.size() > 1 && options.data_dir.back() == '/') {
    options.data_dir.pop_back();
  }
  if (Status s = fs::MakeDirs(options.data_dir + "/tasks"); !s.ok()) return s;
  if (Status s = fs::MakeDirs(options.data_dir + "/work"); !s.ok()) return s;
  // Specs (their environment may hold secrets) and every task's logs are the agent's: tasks
  // get their own log as open descriptors. Private workdirs live in DATA/work, which task
  // users may cross but not list; DATA must let them cross too.
  struct stat st;
  if (::chmod((options.data_dir + "/tasks").c_str(), 0700) != 0 ||
      ::chmod((options.data_dir + "/work").c_str(), 0711) != 0 ||
      ::stat(options.data_dir.c_str(), &st) != 0) {
    return Status::Precondition("setting the modes of " + options.data_dir + ": " +
                                std::strerror(errno));
  }
  // Only a root agent runs tasks as other users, who must cross DATA.
  if (::geteuid() == 0 && (st.st_mode & S_IXOTH) == 0 &&
      ::chmod(options.data_dir.c_str(), (st.st_mode & 07777) | S_IXOTH) != 0) {
    return Status::Precondition("chmod o+x " + options.data_dir + ": " + std::strerror(errno));
  }
  if (Status s = CheckReachable(options); !s.ok()) return s;
  std::unique_ptr<Runner> r(new Runner(std::move(options)));
  std::error_code ec;
  for (const auto& d : std::filesystem::directory_iterator(r->data_dir() + "/tasks", ec)) {
    if (d.path().extension() == ".state") r->Adopt(d.path().string());
  }
  if (ec) return Status::Precondition("reading " + r->data_dir() + "/tasks: " + ec.message());
  return r;
}

Runner::~Runner() {
  for (auto& [key, e] : tasks_) {
    if (e.pidfd >= 0) ::close(e.pidfd);
  }
}

void Runner::Adopt(const std::string& state_file) {
  std::optional<std::string> text = fs::ReadFile(state_file);
  if (!text) return;
  TaskStateFile st = ParseTaskState(*text);
  // Without a spec the previous agent died before launching: nothing ran. With `done` the
  // server has already forgotten it.
  if (!st.spec) return;
  Result<TaskSpec> spec = ParseTaskSpec(*st.spec);
  if (!spec.ok()) return;  // Not ours to judge; a stray directory is left alone.
  Entry e;
  e.key = spec->key;
  e.path = TaskPath(e.key);
  if (e.path + ".state" != state_file) return;  // renamed by hand: not a file we wrote
  if (st.done) {
    forgotten_[e.key] = e.path;  // its files wait for the garbage collection
    return;
  }
  if (options_.cgroups && options_.cgroups->Exists(options_.cgroups->PathOf(CgroupName(e.key)))) {
    e.cgroup = options_.cgroups->PathOf(CgroupName(e.key));
  }
  e.grace_ms = spec->grace_period_ms;
  e.spec = *spec;
  e.adopted_at_ms = MonotonicMs();
  e.kill_at_ms = st.kill_at_ms;
  e.shim_pid = st.shim_pid;
  e.shim_start = st.shim_start;
  e.child_pid = st.child_pid;
  if (st.exit) {
    e.exited = true;
    e.exit = *st.exit;
    FinishCgroup(e, e.exit);
  } else {
    Watch(e);
  }
  tasks_[e.key] = std::move(e);
  ++changes_;
}

TaskStateFile Runner::Load(Entry& e) {
  std::optional<std::string> text = fs::ReadFile(e.path + ".state");
  TaskStateFile st = text ? ParseTaskState(*text) : TaskStateFile{};
  if (e.shim_pid == 0 && st.shim_pid > 0) {
    e.shim_pid = st.shim_pid;
    e.shim_start = st.shim_start;
    if (!e.own_child) Watch(e);
  }
  if (e.child_pid == 0) e.child_pid = st.child_pid;
  return st;
}

void Runner::Watch(Entry& e) {
  if (e.pidfd >= 0 || e.shim_pid <= 0) return;
  // An adopted shim is trusted only while its (pid, start time) still names it; the check
  // after pidfd_open closes the window in which the pid could be reused.
  const int fd = PidFd(e.shim_pid);
  if (fd < 0) return;
  if (!e.own_child && ProcessStartTime(e.shim_pid) != e.shim_start) {
    ::close(fd);
    return;
  }
  e.pidfd = fd;
}

std::string Runner::TaskPath(const TaskKey& key) const {
  return options_.data_dir + "/tasks/" + key.DirName();
}

std::string Runner::WorkPath(const TaskKey& key) const {
  return options_.data_dir + "/work/" + key.DirName();
}

bool Runner::EverStarted(const TaskKey& key) const {
  return tasks_.count(key) > 0 || fs::Exists(TaskPath(key) + ".state");
}

std::vector<Status> Runner::StartAll(const std::vector<const TaskSpec*>& desired) {
  std::vector<const TaskSpec*> specs = desired;
  std::vector<Status> out(specs.size());
  // 1. Record every spec; 2. make the records durable, together; 3. launch. An attempt
  // whose spec is on disk is never launched again, by this agent or a later one.
  std::vector<int> fds(specs.size(), -1);
  // A service task's spec as launched carries the port picked for it, so that the port is
  // recorded with it and a later agent knows it.
  std::vector<std::optional<TaskSpec>> services(specs.size());
  std::set<int32_t> ports = PortsInUse();
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i]->service && !EverStarted(specs[i]->key)) {
      services[i] = *specs[i];
      services[i]->service->port = PickPort(ports);  // 0: none free, the launch fails
      if (services[i]->service->port > 0) ports.insert(services[i]->service->port);
      specs[i] = &*services[i];
    }
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const TaskSpec& spec = *specs[i];
    const std::string state = TaskPath(spec.key) + ".state";
    if (EverStarted(spec.key)) {
      out[i] = Status::Exists("task " + spec.key.DirName() + " was started");
      continue;
    }
    const std::string record = "spec " + TaskSpecJson(spec) + "\n";
    fds[i] = ::open(state.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fds[i] < 0 ||
        ::write(fds[i], record.data(), record.size()) != static_cast<ssize_t>(record.size())) {
      out[i] = Status::Precondition("writing " + state + ": " + std::strerror(errno));
      // A state file without a complete spec line reads as never launched, but exists, so
      // this attempt is still never launched twice.
      continue;
    }
  }
  bool any = false;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (fds[i] < 0) continue;
    if (out[i].ok() && ::fsync(fds[i]) != 0) {
      out[i] = Status::Precondition("fsync " + TaskPath(specs[i]->key) +
                                    ".state: " + std::strerror(errno));
    }
    ::close(fds[i]);
    any = any || out[i].ok();
  }
  // The new files' names: one fsync of the directory for the whole batch.
  if (any) FsyncPath(options_.data_dir + "/tasks");
  for (size_t i = 0; i < specs.size(); ++i) {
    if (fds[i] < 0 || !out[i].ok()) continue;
    const TaskSpec& spec = *specs[i];
    Entry e;
    e.key = spec.key;
    e.path = TaskPath(spec.key);
    e.grace_ms = spec.grace_period_ms;
    e.spec = spec;
    int32_t fail_code = kLostExitCode;
    if (options_.cgroups) e.cgroup = options_.cgroups->PathOf(CgroupName(spec.key));
    Result<pid_t> pid = Launch(spec, e.path, fail_code);
    if (!pid.ok()) {
      if (!e.cgroup.empty()) (void)options_.cgroups->Remove(e.cgroup);  // if it was made
      e.cgroup.clear();
      out[i] = Fail(std::move(e), fail_code, pid.status());
      continue;
    }
    e.shim_pid = *pid;
    e.own_child = true;
    Watch(e);
    tasks_[e.key] = std::move(e);
    ++changes_;
  }
  return out;
}

Status Runner::GpuSelection(const TaskSpec& spec, std::string& visible,
                            std::map<std::string, std::string>& gpu_env) {
  std::vector<std::string> ids;
  for (int32_t g : spec.gpus) {
    if (g < 0 || static_cast<size_t>(g) >= options_.visible_ids.size()) {
      return Status::Invalid("GPU index " + std::to_string(g) + " out of range (node has " +
                             std::to_string(options_.visible_ids.size()) + " GPUs)");
    }
    ids.push_back(options_.visible_ids[g]);
  }
  if (spec.mig) {
    const MigPlacement& m = *spec.mig;
    const std::string what = "MIG instance " + m.profile + "@" + std::to_string(m.start) +
                             " on GPU " + std::to_string(m.gpu);
    if (!spec.gpus.empty() && (spec.gpus.size() != 1 || spec.gpus[0] != m.gpu)) {
      return Status::Invalid(what + ": the task's gpus must be that one GPU");
    }
    std::optional<std::string> uuid =
        options_.mig_uuid ? options_.mig_uuid(m) : std::optional<std::string>();
    if (!uuid || uuid->empty()) {
      return Status::NotFound(what + " does not exist on this node" +
                              (options_.mig_uuid ? "" : " (no GPU in MIG mode)"));
    }
    ids = {*uuid};
  }
  for (const std::string& id : ids) visible += (visible.empty() ? "" : ",") + id;
  if (spec.sharing == kSharingMps && !ids.empty()) {
    const int32_t gpu = spec.mig ? spec.mig->gpu : spec.gpus.front();
    const std::string pipe =
        options_.mps_pipe_dir ? options_.mps_pipe_dir(gpu) : MpsPipeDir(options_.data_dir, gpu);
    gpu_env = MpsEnvironment(spec, ids, pipe);
  }
  return Status::Ok();
}

std::vector<std::string> Runner::Environment(
    const TaskSpec& spec, const TaskUser& user, const std::string& visible,
    const std::map<std::string, std::string>& gpu_env) const {
  // Not the agent's environment: only the allowed variables of it, the user's identity, the
  // server's variables, then the GPU selection, which nothing may override.
  std::map<std::string, std::string> env;
  for (const std::string& name : options_.env_allow) {
    auto it = base_env_.find(name);
    if (it != base_env_.end()) env[name] = it->second;
  }
  if (!env.count("PATH")) env["PATH"] = kDefaultPath;
  auto agent_var = [&](const char* name) {
    auto it = base_env_.find(name);
    return it != base_env_.end() ? it->second : std::string();
  };
  env["HOME"] = !user.home.empty() ? user.home : agent_var("HOME");
  if (env["HOME"].empty()) env["HOME"] = "/";
  if (!user.name.empty()) env["USER"] = env["LOGNAME"] = user.name;
  if (!user.shell.empty()) env["SHELL"] = user.shell;
  for (const auto& [k, v] : spec.env) env[k] = v;
  if (spec.service) env["PORT"] = std::to_string(spec.service->port);
  env["CUDA_VISIBLE_DEVICES"] = visible;
  env["NVIDIA_VISIBLE_DEVICES"] = visible.empty() ? "none" : visible;
  for (const auto& [k, v] : gpu_env) env[k] = v;
  std::vector<std::string> lines;
  lines.reserve(env.size());
  for (const auto& [k, v] : env) lines.push_back(k + "=" + v);
  return lines;
}

Result<pid_t> Runner::Launch(const TaskSpec& spec, const std::string& path, int32_t& fail_code) {
  if (spec.command.empty()) return Status::Invalid("empty command");
  if (spec.service && spec.service->port == 0) {
    return Status::Precondition("no free TCP port in --service-ports " +
                                std::to_string(options_.service_ports.first) + "-" +
                                std::to_string(options_.service_ports.second));
  }
  std::string visible;
  std::map<std::string, std::string> gpu_env;
  if (Status s = GpuSelection(spec, visible, gpu_env); !s.ok()) return s;
  Result<TaskUser> user = ResolveTaskUser(spec.run_as, options_.run_as, ::geteuid());
  if (!user.ok()) return user.status();
  std::string workdir = spec.workdir;
  if (workdir.empty()) {
    // Private to the task: its user's, mode 0700, in DATA/work which others cannot list.
    workdir = WorkPath(spec.key);
    if ((::mkdir(workdir.c_str(), 0700) != 0 && errno != EEXIST) ||
        (!user->same_as_agent && ::chown(workdir.c_str(), user->uid, user->gid) != 0) ||
        ::chmod(workdir.c_str(), 0700) != 0) {
      return Status::Precondition("cannot make the private workdir " + workdir + ": " +
                                  std::strerror(errno));
    }
  }
  struct stat wd;
  if (::stat(workdir.c_str(), &wd) != 0 || !S_ISDIR(wd.st_mode)) {
    fail_code = kNotFoundExitCode;
    return Status::NotFound("cannot enter workdir '" + workdir + "'");
  }
  std::vector<std::string> args = options_.shim_command;
  args.insert(args.end(), {"--state", path + ".state"});
  if (options_.cgroups) {
    CgroupLimits limits;
    limits.cpu_milli = spec.cpu_milli;
    limits.memory_mib = spec.memory_mib;
    limits.pids_max = options_.pids_max;
    Result<std::string> cg = options_.cgroups->Create(CgroupName(spec.key), limits);
    if (!cg.ok()) return cg.status();
    args.insert(args.end(), {"--cgroup", *cg});
  }
  if (!user->same_as_agent) args.insert(args.end(), {"--user", user->ShimArgument()});
  // The command enters its workdir after taking the task's identity, so a workdir its user
  // may not enter fails the task rather than being entered with the agent's rights.
  args.insert(args.end(), {"--chdir", workdir, "--"});
  args.insert(args.end(), spec.command.begin(), spec.command.end());
  std::vector<std::string> env_lines = Environment(spec, *user, visible, gpu_env);
  std::vector<char*> argv, envp;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& l : env_lines) envp.push_back(l.data());
  envp.push_back(nullptr);

  // posix_spawn (vfork-like: no copy of the agent's address space) with: a new session, so
  // the agent's terminal, process group and their signals (Ctrl-C, SIGHUP) never reach the
  // task and stopping the agent leaves tasks running; stdin from /dev/null and the logs as
  // stdout/stderr; no other descriptor of the agent (its sockets above all); every signal
  // unblocked and at its default action; "/" as the shim's directory (the command's is
  // --chdir).
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  const int log_flags = O_WRONLY | O_CREAT | O_APPEND;
  const std::string out_path = path + ".stdout.log", err_path = path + ".stderr.log";
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), log_flags, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), log_flags, 0600);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  posix_spawn_file_actions_addchdir_np(&fa, "/");
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return Status::Precondition("cannot run the task shim '" + args[0] + "': " + std::strerror(rc));
  }
  return pid;
}

Status Runner::Fail(Entry e, int32_t code, Status why) {
  const int fd =
      ::open((e.path + ".stderr.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd >= 0) {
    WriteAll(fd,
             "gpuorch agent: cannot start task " + e.key.DirName() + ": " + why.message() + "\n");
    ::close(fd);
  }
  TaskExit x;
  x.code = code;
  MarkExited(e, x, /*record=*/true);
  tasks_[e.key] = std::move(e);
  ++changes_;
  return why;
}

void Runner::MarkExited(Entry& e, const TaskExit& exit, bool record) {
  e.exited = true;
  ++changes_;
  e.exit = exit;
  if (e.pidfd >= 0) {
    ::close(e.pidfd);
    e.pidfd = -1;
  }
  // Recorded so that a later agent reports the same code rather than "lost" again.
  if (record) (void)AppendRecord(e.path + ".state", ExitRecord(exit), /*sync=*/false);
}

bool Runner::Stop(const TaskKey& key, std::optional<int64_t> grace_ms) {
  auto it = tasks_.find(key);
  if (it == tasks_.end() || it->second.exited || it->second.kill_at_ms != 0) return false;
  Entry& e = it->second;
  e.kill_at_ms = MonotonicMs() + std::max<int64_t>(grace_ms.value_or(e.grace_ms), 0);
  (void)AppendRecord(e.path + ".state", "stop " + std::to_string(e.kill_at_ms) + "\n",
                     /*sync=*/false);
  if (e.shim_pid == 0 || e.child_pid == 0) Load(e);
  // An adopted shim is signalled only while its (pid, start time) still names it.
  if (e.shim_pid > 0 && (e.own_child || ProcessStartTime(e.shim_pid) == e.shim_start)) {
    ::kill(e.shim_pid, SIGTERM);
  }
  return true;
}

bool Runner::Poll() {
  const int64_t now = MonotonicMs();
  bool changed = false;
  for (auto& [key, e] : tasks_) {
    if (e.exited) continue;
    // Right after the launch the shim records itself and the command: read until both
    // pids are known, then not again until the shim has ended.
    if (e.child_pid == 0 || e.shim_pid == 0) Load(e);
    if (e.own_child && !e.shim_gone) {
      int status = 0;
      const pid_t reaped = ::waitpid(e.shim_pid, &status, WNOHANG);
      if (reaped == e.shim_pid) {
        e.shim_gone = true;
        e.shim_status = status;
      } else if (reaped < 0 && errno == ECHILD) {
        // Reaped by someone else (the process ignores SIGCHLD, or another waiter): it has
        // ended, and its pidfd stays readable, so waiting longer would only spin.
        e.shim_gone = true;
      }
    } else if (!e.own_child && !e.shim_gone) {
      if (e.shim_pid > 0) {
        e.shim_gone = ProcessStartTime(e.shim_pid) != e.shim_start;
      } else {
        e.shim_gone = now - e.adopted_at_ms > kShimRecordWaitMs;
      }
    }
    if (e.shim_gone) {
      // A shim records the exit before it ends, so a shim gone without one never did.
      TaskStateFile st = Load(e);
      if (st.exit) {
        TaskExit x = *st.exit;
        FinishCgroup(e, x);
        MarkExited(e, x, /*record=*/false);
      } else {
        TaskExit x;
        x.code = e.killed ? 128 + SIGKILL : kLostExitCode;
        // Our own shim that ended by itself before running the command.
        if (e.shim_status >= 0 && WIFEXITED(e.shim_status)) x.code = WEXITSTATUS(e.shim_status);
        if (e.shim_status >= 0 && WIFSIGNALED(e.shim_status)) {
          x.code = 128 + WTERMSIG(e.shim_status);
        }
        FinishCgroup(e, x);
        MarkExited(e, x, /*record=*/true);
      }
      changed = true;
      continue;
    }
    if (e.kill_at_ms != 0 && now >= e.kill_at_ms && !e.killed) {
      e.killed = true;
      // The command's process group, so that its children die too; the shim survives to
      // record 128+SIGKILL. Without a command yet, the shim itself.
      if (e.child_pid > 0) {
        ::kill(-e.child_pid, SIGKILL);
      } else if (e.shim_pid > 0) {
        ::kill(e.shim_pid, SIGKILL);
      }
      // And whatever left the group (a daemonised child): the cgroup holds all of it.
      if (!e.cgroup.empty()) options_.cgroups->Kill(e.cgroup);
    }
  }
  return changed;
}

void Runner::Forget(const TaskKey& key) {
  auto it = tasks_.find(key);
  if (it == tasks_.end() || !it->second.exited) return;
  (void)AppendRecord(it->second.path + ".state", "done\n", /*sync=*/false);
  if (!it->second.cgroup.empty()) (void)options_.cgroups->Remove(it->second.cgroup);
  forgotten_[key] = it->second.path;
  tasks_.erase(it);
  ++changes_;
}

void Runner::FinishCgroup(Entry& e, TaskExit& exit) {
  if (e.cgroup.empty()) return;
  const Cgroups& cg = *options_.cgroups;
  // A task ends with its command: what it left running (a daemonised child) goes too, as
  // under Slurm's cgroup process tracking.
  if (cg.Populated(e.cgroup)) cg.Kill(e.cgroup);
  const CgroupUsage u = cg.Usage(e.cgroup);
  // The cgroup counts every process that ran in it, also those the command never waited for.
  exit.cpu_user_ms = std::max(exit.cpu_user_ms, u.cpu_user_ms);
  exit.cpu_system_ms = std::max(exit.cpu_system_ms, u.cpu_system_ms);
  exit.memory_peak_kib = u.memory_peak_kib;
  if (u.oom_kills > 0) {
    const int fd =
        ::open((e.path + ".stderr.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
      WriteAll(fd, "gpuorch agent: the task reached its memory limit (memory.max of cgroup " +
                       e.cgroup + "): the kernel's OOM killer ended " +
                       std::to_string(u.oom_kills) + " of its processes\n");
      ::close(fd);
    }
  }
}

int Runner::CollectGarbage(int64_t retention_s) {
  const time_t now = ::time(nullptr);
  int removed = 0;
  for (auto it = forgotten_.begin(); it != forgotten_.end();) {
    const std::string& path = it->second;
    struct stat st;
    if (::stat((path + ".state").c_str(), &st) == 0 && now - st.st_mtime < retention_s) {
      ++it;
      continue;
    }
    // The state file last, so that an interrupted collection is picked up again.
    bool ok = fs::RemoveTree(WorkPath(it->first));
    if (options_.cgroups) {
      const std::string cg = options_.cgroups->PathOf(CgroupName(it->first));
      ok = (!options_.cgroups->Exists(cg) || options_.cgroups->Remove(cg)) && ok;
    }
    for (const char* suffix : {".stdout.log", ".stderr.log"}) {
      ok = (::unlink((path + suffix).c_str()) == 0 || errno == ENOENT) && ok;
    }
    if (!ok) {  // retried at the next collection
      ++it;
      continue;
    }
    ::unlink((path + ".state").c_str());
    ++removed;
    it = forgotten_.erase(it);
  }
  return removed;
}

std::vector<TaskOnNode> Runner::RunningTasks() const {
  std::vector<TaskOnNode> out;
  for (const auto& [key, e] : tasks_) {
    if (e.exited) continue;
    TaskOnNode t;
    t.key = key;
    t.name = e.spec.name;
    t.queue = e.spec.queue;
    t.gpus = e.spec.gpus;
    t.gpu_milli = e.spec.gpu_milli;
    t.gpu_memory_mib = e.spec.gpu_memory_mib;
    t.pid = e.child_pid;
    t.env = e.spec.env;
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<TaskStatus> Runner::Tasks() const {
  std::vector<TaskStatus> out;
  out.reserve(tasks_.size());
  for (const auto& [key, e] : tasks_) {
    TaskStatus t;
    t.key = key;
    t.state = e.exited ? TaskState::kExited : TaskState::kRunning;
    t.pid = e.child_pid;
    t.exit = e.exit;
    // Its port; the readiness is the probes' (the agent reports theirs instead).
    if (!e.exited && e.spec.service) t.service = ServiceReport{e.spec.service->port, false, {}, 0};
    if (!e.exited) t.mig = e.spec.mig;
    out.push_back(t);
  }
  return out;
}

std::vector<ServiceTask> Runner::RunningServices() const {
  std::vector<ServiceTask> out;
  for (const auto& [key, e] : tasks_) {
    if (!e.exited && e.spec.service) out.push_back(ServiceTask{key, *e.spec.service});
  }
  return out;
}

std::set<int32_t> Runner::PortsInUse() const {
  std::set<int32_t> ports;
  for (const auto& [key, e] : tasks_) {
    if (!e.exited && e.spec.service && e.spec.service->port > 0) ports.insert(e.spec.service->port);
  }
  return ports;
}

int32_t Runner::PickPort(const std::set<int32_t>& taken) {
  const auto [lo, hi] = options_.service_ports;
  if (lo < 1 || hi > 65535 || lo > hi) return 0;
  if (next_port_ < lo || next_port_ > hi) next_port_ = lo;
  const int32_t span = hi - lo + 1;
  for (int32_t n = 0; n < span; ++n) {
    // Round robin from after the last pick: a port a task has just left (its connections
    // in TIME_WAIT, a straggler) is the last one taken again.
    const int32_t port = lo + (next_port_ - lo + n) % span;
    if (taken.count(port) || !PortFree(port)) continue;
    next_port_ = port + 1 > hi ? lo : port + 1;
    return port;
  }
  return 0;
}

bool PortFree(int32_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  const bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

std::vector<int> Runner::WatchFds() const {
  std::vector<int> fds;
  for (const auto& [key, e] : tasks_) {
    if (!e.exited && e.pidfd >= 0) fds.push_back(e.pidfd);
  }
  return fds;
}

bool Runner::NeedsPeriodicPoll() const {
  for (const auto& [key, e] : tasks_) {
    if (!e.exited && (e.pidfd < 0 || e.kill_at_ms != 0)) return true;
  }
  return false;
}

}  // namespace gpuorch::agent
