#include "gateway/runtime_api.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <map>
#include <sstream>

namespace gpuorch::gateway {
namespace {

std::vector<std::string> Words(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

bool ToInt(const std::string& s, int& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && (s[i] == '\n' || s[i] == ' ')) ++i;
  return s.substr(i);
}

}  // namespace

core::Result<std::vector<ServerState>> ParseServersState(const std::string& answer) {
  std::istringstream in(answer);
  std::string line;
  if (!std::getline(in, line) || Trim(line) != "1")
    return core::Status::Invalid("show servers state: expected format version 1, got '" +
                                 Trim(line) + "'");
  std::map<std::string, size_t> col;
  std::vector<ServerState> out;
  int n = 1;
  while (std::getline(in, line)) {
    ++n;
    if (Trim(line).empty()) continue;
    std::vector<std::string> w = Words(line);
    if (w[0] == "#") {
      for (size_t i = 1; i < w.size(); ++i) col[w[i]] = i - 1;
      continue;
    }
    for (const char* need :
         {"be_name", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state", "srv_port"}) {
      if (!col.count(need) || col[need] >= w.size())
        return core::Status::Invalid("show servers state: line " + std::to_string(n) +
                                     ": no field " + need);
    }
    ServerState s;
    s.backend = w[col["be_name"]];
    s.name = w[col["srv_name"]];
    s.address = w[col["srv_addr"]];
    if (!ToInt(w[col["srv_op_state"]], s.op_state) ||
        !ToInt(w[col["srv_admin_state"]], s.admin_state) || !ToInt(w[col["srv_port"]], s.port))
      return core::Status::Invalid("show servers state: line " + std::to_string(n) +
                                   ": srv_op_state, srv_admin_state or srv_port is not a number");
    out.push_back(std::move(s));
  }
  return out;
}

core::Result<std::vector<MapEntry>> ParseMapEntries(const std::string& answer) {
  std::vector<MapEntry> out;
  std::istringstream in(answer);
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    std::vector<std::string> w = Words(line);
    if (w.empty()) continue;
    if (w.size() != 3 || w[0].rfind("0x", 0) != 0)
      return core::Status::Invalid("show map: line " + std::to_string(n) + ": expected '0x<id> " +
                                   "<key> <value>', got '" + Trim(line) + "'");
    out.push_back({w[1], w[2]});
  }
  return out;
}

std::vector<std::string> ParseMapFiles(const std::string& answer) {
  std::vector<std::string> out;
  std::istringstream in(answer);
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> w = Words(line);
    if (w.size() < 2 || w[0] == "#") continue;
    const std::string& f = w[1];
    if (f.size() > 2 && f.front() == '(' && f.back() == ')')
      out.push_back(f.substr(1, f.size() - 2));
  }
  return out;
}

std::vector<std::string> ParseBackends(const std::string& answer) {
  std::vector<std::string> out;
  std::istringstream in(answer);
  for (std::string line; std::getline(in, line);) {
    line = Trim(line);
    if (!line.empty() && line[0] != '#') out.push_back(line);
  }
  return out;
}

core::Status CheckAnswer(const std::string& command, const std::string& answer) {
  const std::string a = Trim(answer);
  if (a.empty() || a == "New server registered." || a == "Server deleted." || a == "Done.")
    return core::Status::Ok();
  return core::Status::Precondition("haproxy '" + command + "': " + a);
}

core::Result<std::string> RuntimeApi::Run(const std::string& command) const {
  auto fail = [&](const std::string& what) {
    return core::Status::Precondition("haproxy runtime API " + socket_path_ + ": " + what + ": " +
                                      std::strerror(errno));
  };
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof(addr.sun_path))
    return core::Status::Invalid("haproxy runtime API: socket path too long: " + socket_path_);
  std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail("socket");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return fail("connect");
  const std::string line = command + "\n";
  for (size_t sent = 0; sent < line.size();) {
    const ssize_t n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0) return fail("send");
    sent += static_cast<size_t>(n);
  }
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
  char buf[16384];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      errno = ETIMEDOUT;
      return fail("no complete answer to '" + command + "'");
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) return fail("poll");
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return fail("recv");
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

core::Status RuntimeApi::Apply(const std::string& command) const {
  auto answer = Run(command);
  if (!answer.ok()) return answer.status();
  return CheckAnswer(command, *answer);
}

}  // namespace gpuorch::gateway
