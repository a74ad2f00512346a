#include "agent/runner.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "agent/fsutil.h"
#include "agent/protocol.h"
#include "agent/shim.h"

extern char** environ;

namespace gpuorch::agent {

using core::Result;
using core::Status;

namespace {

// A started task whose shim never wrote its pid is given this long (the previous agent may
// have died between fork and the shim's first write) before it is declared lost.
constexpr int64_t kPidFileWaitMs = 30000;

// "<pid> <start>" as the shim writes it; {0, 0} when absent or malformed.
std::pair<pid_t, unsigned long long> ReadPidFile(const std::string& path) {
  std::optional<std::string> s = fs::ReadFile(path);
  if (!s) return {0, 0};
  char* end = nullptr;
  const long pid = std::strtol(s->c_str(), &end, 10);
  const unsigned long long start = std::strtoull(end, nullptr, 10);
  return {pid > 0 ? static_cast<pid_t>(pid) : 0, start};
}

std::optional<int32_t> ReadExitCode(const std::string& dir) {
  std::optional<std::string> s = fs::ReadFile(dir + "/exit_code");
  if (!s || s->empty()) return std::nullopt;
  return static_cast<int32_t>(std::strtol(s->c_str(), nullptr, 10));
}

// Closes every descriptor above stderr in a forked child, so no socket or file of the agent
// (the log server's listening socket above all) outlives the agent inside a task.
void CloseInheritedFds() {
#if defined(SYS_close_range)
  if (::syscall(SYS_close_range, 3u, ~0u, 0u) == 0) return;
#endif
  const long max = ::sysconf(_SC_OPEN_MAX);
  for (long fd = 3; fd < (max > 0 ? max : 1024); ++fd) ::close(static_cast<int>(fd));
}

void WriteAll(int fd, const std::string& s) {
  const ssize_t n = ::write(fd, s.data(), s.size());
  (void)n;
}

}  // namespace

int64_t MonotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

Result<std::unique_ptr<Runner>> Runner::Open(Options options) {
  if (Status s = fs::MakeDirs(options.data_dir + "/tasks"); !s.ok()) return s;
  std::unique_ptr<Runner> r(new Runner(std::move(options)));
  std::error_code ec;
  for (const auto& d : std::filesystem::directory_iterator(r->data_dir() + "/tasks", ec)) {
    if (d.is_directory()) r->Adopt(d.path().string());
  }
  if (ec) return Status::Precondition("reading " + r->data_dir() + "/tasks: " + ec.message());
  return r;
}

Runner::~Runner() = default;

void Runner::Adopt(const std::string& dir) {
  // Without `started` the previous agent died before launching: nothing ran, and a later
  // Start may launch it. With `done` the server has already forgotten it.
  if (!fs::Exists(dir + "/started") || fs::Exists(dir + "/done")) return;
  std::optional<std::string> spec_text = fs::ReadFile(dir + "/spec.json");
  Result<TaskSpec> spec =
      spec_text ? ParseTaskSpec(*spec_text) : Result<TaskSpec>(Status::NotFound("no spec.json"));
  if (!spec.ok()) return;  // Not ours to judge; a stray directory is left alone.
  Entry e;
  e.key = spec->key;
  e.dir = dir;
  e.grace_ms = spec->grace_period_ms;
  e.adopted_at_ms = MonotonicMs();
  if (std::optional<std::string> stop = fs::ReadFile(dir + "/stop")) {
    e.kill_at_ms = std::strtoll(stop->c_str(), nullptr, 10);
  }
  LoadPids(e);
  if (std::optional<int32_t> code = ReadExitCode(dir)) {
    e.exited = true;
    e.exit_code = *code;
  }
  tasks_[e.key] = std::move(e);
}

void Runner::LoadPids(Entry& e) {
  if (e.shim_pid == 0) std::tie(e.shim_pid, e.shim_start) = ReadPidFile(e.dir + "/shim.pid");
  if (e.child_pid == 0) e.child_pid = ReadPidFile(e.dir + "/child.pid").first;
}

std::string Runner::TaskDir(const TaskKey& key) const {
  return options_.data_dir + "/tasks/" + key.DirName();
}

bool Runner::EverStarted(const TaskKey& key) const {
  return tasks_.count(key) > 0 || fs::Exists(TaskDir(key) + "/started");
}

Status Runner::Start(const TaskSpec& spec) {
  const std::string dir = TaskDir(spec.key);
  if (EverStarted(spec.key)) return Status::Exists("task " + spec.key.DirName() + " was started");
  if (Status s = fs::MakeDirs(dir); !s.ok()) return s;
  if (Status s = fs::WriteFileAtomic(dir + "/spec.json", TaskSpecJson(spec)); !s.ok()) return s;
  if (Status s = fs::WriteFileAtomic(dir + "/started", ""); !s.ok()) return s;
  Entry e;
  e.key = spec.key;
  e.dir = dir;
  e.grace_ms = spec.grace_period_ms;
  Result<pid_t> pid = Launch(spec, dir);
  if (!pid.ok()) return Fail(std::move(e), pid.status());
  e.shim_pid = *pid;
  e.shim_start = ProcessStartTime(*pid);
  e.own_child = true;
  tasks_[e.key] = std::move(e);
  return Status::Ok();
}

Result<pid_t> Runner::Launch(const TaskSpec& spec, const std::string& dir) {
  if (spec.command.empty()) return Status::Invalid("empty command");
  std::string visible;
  for (int32_t g : spec.gpus) {
    if (g < 0 || static_cast<size_t>(g) >= options_.visible_ids.size()) {
      return Status::Invalid("GPU index " + std::to_string(g) + " out of range (node has " +
                             std::to_string(options_.visible_ids.size()) + " GPUs)");
    }
    visible += (visible.empty() ? "" : ",") + options_.visible_ids[g];
  }
  // The task sees the agent's environment (PATH, HOME, ...), then the server's variables,
  // then the GPU selection, which nothing may override.
  std::map<std::string, std::string> env;
  for (char** p = environ; *p != nullptr; ++p) {
    const char* eq = std::strchr(*p, '=');
    if (eq != nullptr) env[std::string(*p, static_cast<size_t>(eq - *p))] = eq + 1;
  }
  for (const auto& [k, v] : spec.env) env[k] = v;
  env["CUDA_VISIBLE_DEVICES"] = visible;
  env["NVIDIA_VISIBLE_DEVICES"] = spec.gpus.empty() ? "none" : visible;

  std::vector<std::string> args = options_.shim_command;
  args.insert(args.end(), {"--dir", dir, "--"});
  args.insert(args.end(), spec.command.begin(), spec.command.end());
  std::vector<std::string> env_lines;
  for (const auto& [k, v] : env) env_lines.push_back(k + "=" + v);
  // Everything the child needs is built before fork: after fork in a threaded process only
  // async-signal-safe calls are allowed.
  std::vector<char*> argv, envp;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& l : env_lines) envp.push_back(l.data());
  envp.push_back(nullptr);
  const std::string workdir = spec.workdir.empty() ? options_.data_dir : spec.workdir;
  const std::string chdir_error = "gpuorch agent: cannot enter workdir '" + workdir + "'\n";
  const std::string exec_error = "gpuorch agent: cannot run the task shim '" + args[0] + "'\n";

  const int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC;
  const int out = ::open((dir + "/stdout.log").c_str(), flags, 0644);
  const int err = ::open((dir + "/stderr.log").c_str(), flags, 0644);
  const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out < 0 || err < 0 || null < 0) {
    const Status s = Status::Precondition("opening logs in " + dir + ": " + std::strerror(errno));
    for (int fd : {out, err, null}) {
      if (fd >= 0) ::close(fd);
    }
    return s;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    // A new session: the agent's terminal, process group and their signals (Ctrl-C,
    // SIGHUP) no longer reach the task, so stopping the agent leaves tasks running.
    ::setsid();
    ::dup2(null, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    CloseInheritedFds();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::chdir(workdir.c_str()) != 0) {
      WriteAll(2, chdir_error);
      ::_exit(127);
    }
    ::execve(argv[0], argv.data(), envp.data());
    WriteAll(2, exec_error);
    ::_exit(127);
  }
  const int fork_errno = errno;
  for (int fd : {out, err, null}) ::close(fd);
  if (pid < 0) return Status::Precondition(std::string("fork: ") + std::strerror(fork_errno));
  return pid;
}

Status Runner::Fail(Entry e, Status why) {
  const int fd = ::open((e.dir + "/stderr.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    WriteAll(fd,
             "gpuorch agent: cannot start task " + e.key.DirName() + ": " + why.message() + "\n");
    ::close(fd);
  }
  MarkExited(e, kLostExitCode);
  tasks_[e.key] = std::move(e);
  return why;
}

void Runner::MarkExited(Entry& e, int32_t code) {
  e.exited = true;
  e.exit_code = code;
  // Recorded so that a later agent reports the same code rather than "lost" again.
  if (!fs::Exists(e.dir + "/exit_code")) {
    (void)fs::WriteFileAtomic(e.dir + "/exit_code", std::to_string(code) + "\n");
  }
}

bool Runner::Stop(const TaskKey& key, std::optional<int64_t> grace_ms) {
  auto it = tasks_.find(key);
  if (it == tasks_.end() || it->second.exited || it->second.kill_at_ms != 0) return false;
  Entry& e = it->second;
  e.kill_at_ms = MonotonicMs() + std::max<int64_t>(grace_ms.value_or(e.grace_ms), 0);
  (void)fs::WriteFileAtomic(e.dir + "/stop", std::to_string(e.kill_at_ms) + "\n");
  LoadPids(e);
  // An adopted shim is signalled only while its (pid, start time) still names it.
  if (e.shim_pid > 0 && (e.own_child || ProcessStartTime(e.shim_pid) == e.shim_start)) {
    ::kill(e.shim_pid, SIGTERM);
  }
  return true;
}

void Runner::Poll() {
  const int64_t now = MonotonicMs();
  for (auto& [key, e] : tasks_) {
    if (e.exited) continue;
    LoadPids(e);
    if (e.own_child && !e.shim_gone) {
      int status = 0;
      if (::waitpid(e.shim_pid, &status, WNOHANG) == e.shim_pid) {
        e.shim_gone = true;
        e.shim_status = status;
      }
    } else if (!e.own_child && !e.shim_gone) {
      if (e.shim_pid > 0) {
        e.shim_gone = ProcessStartTime(e.shim_pid) != e.shim_start;
      } else {
        e.shim_gone = now - e.adopted_at_ms > kPidFileWaitMs;
      }
    }
    // The exit code is read after the liveness check: a shim writes it before exiting, so
    // a shim seen gone with no file never wrote one.
    if (std::optional<int32_t> code = ReadExitCode(e.dir)) {
      MarkExited(e, *code);
      continue;
    }
    if (e.shim_gone) {
      int32_t code = e.killed ? 128 + SIGKILL : kLostExitCode;
      // Our own shim that exited by itself before running the command (bad workdir).
      if (e.shim_status >= 0 && WIFEXITED(e.shim_status)) code = WEXITSTATUS(e.shim_status);
      if (e.shim_status >= 0 && WIFSIGNALED(e.shim_status)) code = 128 + WTERMSIG(e.shim_status);
      MarkExited(e, code);
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
    }
  }
}

void Runner::Forget(const TaskKey& key) {
  auto it = tasks_.find(key);
  if (it == tasks_.end() || !it->second.exited) return;
  (void)fs::WriteFileAtomic(it->second.dir + "/done", "");
  tasks_.erase(it);
}

std::vector<TaskStatus> Runner::Tasks() const {
  std::vector<TaskStatus> out;
  for (const auto& [key, e] : tasks_) {
    TaskStatus t;
    t.key = key;
    t.state = e.exited ? TaskState::kExited : TaskState::kRunning;
    t.pid = e.child_pid;
    t.exit_code = e.exit_code;
    out.push_back(t);
  }
  return out;
}

}  // namespace gpuorch::agent
