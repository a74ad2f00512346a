#pragma once

#include <memory>
#include <string>
#include <thread>

#include "core/status.h"

namespace httplib {
class Server;
}

namespace gpuorch::agent {

// The agent's log endpoint (docs/api.md, "Agent log endpoint"):
//   GET /v1/tasks/{w}/{t}/{a}/logs?stream=stdout|stderr[&offset=N|&tail=N][&limit=N]
// answers a byte range of the task's log file as text/plain, streamed in chunks so a large
// log costs no memory, with the file's size and the range's start in the headers
// X-Gpuorch-Log-Size and X-Gpuorch-Log-Offset. Only the server may ask: every request must
// carry `Authorization: Bearer <log secret>`, the random secret this agent sent in its
// registration; anything else gets 401. It only reads files under DATA/tasks, so it shares
// no state with the agent loop. Serves on its own threads from Start() until destruction.
class LogServer {
 public:
  // `listen` is "host:port"; port 0 picks a free port.
  static core::Result<std::unique_ptr<LogServer>> Start(const std::string& listen,
                                                        const std::string& data_dir,
                                                        std::string secret);
  ~LogServer();
  // "host:port" as bound (the real port when 0 was asked for).
  const std::string& address() const { return address_; }

 private:
  LogServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string address_;
};

// 32 random bytes from the kernel (getrandom), hex encoded: a new log secret.
core::Result<std::string> NewLogSecret();
// True when `authorization` is "Bearer <secret>" (compared in constant time) and the secret
// is not empty.
bool LogCredentialOk(const std::string& authorization, const std::string& secret);

// Splits "host:port" ("[::1]:80" too). Fails on a missing or bad port.
core::Status SplitHostPort(const std::string& s, std::string& host, int& port);
// Binds `server` to `listen` ("host:port", port 0: a free one) and answers the bound
// "host:port"; errors name `flag` (the option that gave the address).
core::Result<std::string> BindListen(httplib::Server& server, const std::string& listen,
                                     const std::string& flag);

}  // namespace gpuorch::agent
