#pragma once

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "agent/fsutil.h"
#include "agent/runner.h"

namespace gpuorch::agent::testing {

// A fresh directory under $TMPDIR, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "gpuorch-agent-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) != nullptr ? tmpl : std::string();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Polls `done` until it holds or `timeout` passes. Tests synchronise on observable
// conditions, never on sleeps; the timeout is generous because CI machines are loaded.
inline bool WaitFor(const std::function<bool()>& done,
                    std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

inline std::string FileOr(const std::string& path, const std::string& fallback = "") {
  return fs::ReadFile(path).value_or(fallback);
}

// Polls `r` until the task `key` has exited (WaitFor's limit): its last status, or nullopt.
inline std::optional<TaskStatus> WaitExit(Runner& r, const TaskKey& key) {
  std::optional<TaskStatus> out;
  WaitFor([&] {
    r.Poll();
    for (const TaskStatus& t : r.Tasks()) {
      if (t.key == key && t.state == TaskState::kExited) out = t;
    }
    return out.has_value();
  });
  return out;
}

// A task's log ("stdout" or "stderr") under the agent's data directory `data`.
inline std::string TaskLog(const std::string& data, const TaskKey& key, const char* stream) {
  return FileOr(data + "/tasks/" + key.DirName() + "." + stream + ".log");
}

}  // namespace gpuorch::agent::testing
