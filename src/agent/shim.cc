#include "agent/shim.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "agent/fsutil.h"

namespace gpuorch::agent {
namespace {

constexpr int kForwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};

volatile sig_atomic_t g_child = 0;

// Only async-signal-safe calls here. The signals are blocked until g_child is set, so a
// signal that arrives while the command starts is delivered after, not lost.
void Forward(int sig) {
  if (g_child > 0) ::kill(-static_cast<pid_t>(g_child), sig);
}

std::string PidLine(pid_t pid) {
  return std::to_string(pid) + " " + std::to_string(ProcessStartTime(pid)) + "\n";
}

}  // namespace

unsigned long long ProcessStartTime(int pid) {
  std::optional<std::string> stat = fs::ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return 0;
  // The command name (field 2) may hold spaces and parentheses: fields restart after the
  // last ')'. Then: state (3), ..., starttime (22).
  const size_t paren = stat->rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat->size()) return 0;
  const char state = (*stat)[paren + 2];
  if (state == 'Z' || state == 'X' || state == 'x') return 0;
  size_t pos = paren + 2;
  for (int field = 3; field < 22; ++field) {
    pos = stat->find(' ', pos);
    if (pos == std::string::npos) return 0;
    ++pos;
  }
  return std::strtoull(stat->c_str() + pos, nullptr, 10);
}

int RunShim(const std::string& dir, const std::vector<std::string>& command) {
  if (command.empty()) {
    std::fprintf(stderr, "gpuorch task-shim: no command\n");
    return 2;
  }
  if (core::Status s = fs::WriteFileAtomic(dir + "/shim.pid", PidLine(::getpid())); !s.ok()) {
    std::fprintf(stderr, "gpuorch task-shim: %s\n", s.message().c_str());
    return 125;
  }
  sigset_t forwarded, old;
  sigemptyset(&forwarded);
  for (int sig : kForwarded) sigaddset(&forwarded, sig);
  sigprocmask(SIG_BLOCK, &forwarded, &old);
  struct sigaction sa = {};
  sa.sa_handler = Forward;
  sigemptyset(&sa.sa_mask);
  for (int sig : kForwarded) sigaction(sig, &sa, nullptr);

  std::vector<char*> argv;
  for (const std::string& a : command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // The command waits on this pipe until child.pid is written, so anyone who has seen the
  // command do anything can also find its pid.
  int gate[2];
  if (::pipe2(gate, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "gpuorch task-shim: pipe: %s\n", std::strerror(errno));
    return 125;
  }
  const pid_t child = ::fork();
  if (child < 0) {
    std::fprintf(stderr, "gpuorch task-shim: fork: %s\n", std::strerror(errno));
    return 125;
  }
  if (child == 0) {
    ::close(gate[1]);
    char byte;
    while (::read(gate[0], &byte, 1) < 0 && errno == EINTR) {
    }
    // The command gets its own process group so that a stop reaches everything it spawned
    // (torchrun's workers, a shell's children) and not the shim.
    ::setpgid(0, 0);
    struct sigaction dfl = {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : kForwarded) sigaction(sig, &dfl, nullptr);
    sigprocmask(SIG_SETMASK, &old, nullptr);
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "gpuorch task-shim: cannot run '%s': %s\n", argv[0], std::strerror(errno));
    std::fflush(stderr);
    ::_exit(127);
  }
  ::setpgid(child, child);  // Also here: whichever runs first, the group exists before a kill.
  ::close(gate[0]);
  (void)fs::WriteFileAtomic(dir + "/child.pid", PidLine(child));
  ::close(gate[1]);
  g_child = child;
  sigprocmask(SIG_SETMASK, &old, nullptr);

  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) {
      std::fprintf(stderr, "gpuorch task-shim: waitpid: %s\n", std::strerror(errno));
      return 125;
    }
  }
  const int code = WIFEXITED(status)     ? WEXITSTATUS(status)
                   : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                         : 125;
  if (core::Status s = fs::WriteFileAtomic(dir + "/exit_code", std::to_string(code) + "\n");
      !s.ok()) {
    std::fprintf(stderr, "gpuorch task-shim: %s\n", s.message().c_str());
  }
  return code;
}

int ShimMainFromArgs(const std::vector<std::string>& args) {
  if (args.size() < 4 || args[0] != "--dir" || args[2] != "--") {
    std::fprintf(stderr, "usage: task-shim --dir DIR -- COMMAND [ARGS...]\n");
    return 2;
  }
  return RunShim(args[1], std::vector<std::string>(args.begin() + 3, args.end()));
}

}  // namespace gpuorch::agent
