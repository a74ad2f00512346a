#pragma once

// HAProxy's runtime API (the "stats socket" of the management guide, section 9.3) over its
// Unix socket: one connection per command, non-interactive, so that an answer ends at EOF.
// The parsers are pure and table-tested; RuntimeApi does the I/O.
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace gpuorch::gateway {

// One row of `show servers state` (its fields by the header's names).
struct ServerState {
  std::string backend;
  std::string name;
  std::string address;  // "127.0.0.1"
  int port = 0;
  int op_state = 0;     // 0 stopped, 1 starting, 2 running, 3 stopping
  int admin_state = 0;  // SRV_ADMF_* bits: 0x01 forced maint, 0x04 config maint, 0x08 drain

  bool maint() const { return (admin_state & (0x01 | 0x02 | 0x04 | 0x20 | 0x40)) != 0; }
  bool drain() const { return !maint() && (admin_state & (0x08 | 0x10)) != 0; }
  bool ready() const { return !maint() && !drain(); }
};

// Parses the answer to `show servers state [backend]` (format version 1).
core::Result<std::vector<ServerState>> ParseServersState(const std::string& answer);

// One entry of `show map FILE`: "<id> <key> <value>".
struct MapEntry {
  std::string key;
  std::string value;
};
core::Result<std::vector<MapEntry>> ParseMapEntries(const std::string& answer);

// The files of the maps listed by `show map` (no argument): "<id> (<file>) ...".
std::vector<std::string> ParseMapFiles(const std::string& answer);

// Backend names listed by `show backend` ("# name" then one name per line).
std::vector<std::string> ParseBackends(const std::string& answer);

// Whether HAProxy's answer to `command` says it was done. HAProxy answers a command that
// worked with nothing or a known line ("New server registered.", "Server deleted.") and
// anything else is its error text, returned as the Status message with the command.
core::Status CheckAnswer(const std::string& command, const std::string& answer);

// The client. Not thread-safe (one gateway loop uses it); each call opens the socket anew.
class RuntimeApi {
 public:
  explicit RuntimeApi(std::string socket_path, int timeout_ms = 5000)
      : socket_path_(std::move(socket_path)), timeout_ms_(timeout_ms) {}

  // The raw answer, or an error naming the socket when it cannot be reached.
  core::Result<std::string> Run(const std::string& command) const;
  // Run + CheckAnswer.
  core::Status Apply(const std::string& command) const;

  const std::string& socket_path() const { return socket_path_; }

 private:
  std::string socket_path_;
  int timeout_ms_;
};

}  // namespace gpuorch::gateway
