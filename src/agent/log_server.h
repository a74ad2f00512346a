#pragma once

#include <memory>
#include <string>
#include <thread>

#include "core/status.h"

namespace httplib {
class Server;
}

namespace gpuorch::agent {

// The agent's log endpoint (docs/api.md): GET /v1/tasks/{w}/{t}/{a}/logs?stream=stdout|stderr
// answers the task's log file as text/plain, streamed in chunks so a large log costs no
// memory. It only reads files under DATA/tasks, so it shares no state with the agent loop.
// Serves on its own threads from Start() until destruction.
class LogServer {
 public:
  // `listen` is "host:port"; port 0 picks a free port.
  static core::Result<std::unique_ptr<LogServer>> Start(const std::string& listen,
                                                        const std::string& data_dir);
  ~LogServer();
  // "host:port" as bound (the real port when 0 was asked for).
  const std::string& address() const { return address_; }

 private:
  LogServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string address_;
};

// Splits "host:port" ("[::1]:80" too). Fails on a missing or bad port.
core::Status SplitHostPort(const std::string& s, std::string& host, int& port);

}  // namespace gpuorch::agent
