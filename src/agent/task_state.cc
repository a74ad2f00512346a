#include "agent/task_state.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <tuple>
#include <utility>

namespace gpuorch::agent {

namespace {

// The next space-separated integer of `rest`, advancing it; nullopt when there is none.
template <typename T>
std::optional<T> Next(std::string_view& rest) {
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  T v{};
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), v);
  if (ec != std::errc() || end == rest.data()) return std::nullopt;
  rest.remove_prefix(static_cast<size_t>(end - rest.data()));
  return v;
}

}  // namespace

TaskStateFile ParseTaskState(std::string_view text) {
  TaskStateFile s;
  bool first = true;
  while (true) {
    const size_t nl = text.find('\n');
    if (nl == std::string_view::npos) break;  // none left, or a torn last line
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    const size_t sp = line.find(' ');
    const std::string_view kind = line.substr(0, sp);
    std::string_view rest = sp == std::string_view::npos ? "" : line.substr(sp + 1);
    if (kind == "spec") {
      // Only as the first record: anything else means the launch never got that far.
      if (first) s.spec = std::string(rest);
    } else if (kind == "shim" && s.shim_pid == 0) {
      auto pid = Next<int>(rest);
      auto start = Next<unsigned long long>(rest);
      if (pid && start && *pid > 0) std::tie(s.shim_pid, s.shim_start) = std::pair(*pid, *start);
    } else if (kind == "child" && s.child_pid == 0) {
      auto pid = Next<int>(rest);
      auto start = Next<unsigned long long>(rest);
      if (pid && start && *pid > 0) std::tie(s.child_pid, s.child_start) = std::pair(*pid, *start);
    } else if (kind == "exit" && !s.exit) {
      auto code = Next<int32_t>(rest);
      if (code) {
        TaskExit e;
        e.code = *code;
        e.cpu_user_ms = Next<int64_t>(rest).value_or(0);
        e.cpu_system_ms = Next<int64_t>(rest).value_or(0);
        e.max_rss_kib = Next<int64_t>(rest).value_or(0);
        s.exit = e;
      }
    } else if (kind == "stop" && s.kill_at_ms == 0) {
      s.kill_at_ms = Next<int64_t>(rest).value_or(0);
    } else if (kind == "done") {
      s.done = true;
    }
    first = false;
  }
  return s;
}

std::string ExitRecord(const TaskExit& e) {
  return "exit " + std::to_string(e.code) + " " + std::to_string(e.cpu_user_ms) + " " +
         std::to_string(e.cpu_system_ms) + " " + std::to_string(e.max_rss_kib) + "\n";
}

core::Status AppendRecord(const std::string& path, const std::string& record, bool sync) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return core::Status::Precondition("open " + path + ": " + std::strerror(errno));
  ssize_t n;
  do {
    n = ::write(fd, record.data(), record.size());
  } while (n < 0 && errno == EINTR);
  const int err = errno;
  const bool synced = !sync || ::fsync(fd) == 0;
  ::close(fd);
  if (n != static_cast<ssize_t>(record.size())) {
    return core::Status::Precondition("write " + path + ": " +
                                      (n < 0 ? std::strerror(err) : "short write"));
  }
  if (!synced) return core::Status::Precondition("fsync " + path + ": " + std::strerror(errno));
  return core::Status::Ok();
}

}  // namespace gpuorch::agent
