#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "agent/executor.h"

namespace gpuorch::agent {

// Env variables of a task that tell a hollow node how its emulated run goes.
inline constexpr const char* kEmulateRuntimeEnv = "GPUORCH_EMULATE_RUNTIME_S";
inline constexpr const char* kEmulateExitCodeEnv = "GPUORCH_EMULATE_EXIT_CODE";
// The exit code of an emulated task that was stopped: what a process that honours SIGTERM
// reports (128 + 15).
inline constexpr int32_t kEmulatedStopExitCode = 143;

// Runs no process: the executor of hollow nodes (agent/hollow.h). A task "runs" for the
// seconds in its env GPUORCH_EMULATE_RUNTIME_S (a non-negative number, fractions allowed;
// absent: until stopped), then exits with GPUORCH_EMULATE_EXIT_CODE (an integer, default
// 0). A stop ends the task at once with kEmulatedStopExitCode: an emulated task honours
// SIGTERM immediately, well within any grace period. A task whose env holds a malformed
// value does not start: StartAll answers Invalid naming the variable, and the task is
// reported exited with kLostExitCode, as the Runner does for a launch failure.
//
// A service task (spec.service) listens nowhere: it reports port 0, not ready until its
// readiness check's initial delay has passed (at once without one), then ready until it
// ends, and no gauges. Poll reports that change like an exit, so it is sent at once.
//
// Nothing is kept on disk: a restarted hollow node has no tasks to adopt (the server then
// finds them lost, as it would after a machine reboot). The clock is injected (milliseconds
// of any monotonic clock), so tests advance it by hand. Not thread-safe. Poll is O(tasks).
class EmulatedExecutor final : public TaskExecutor {
 public:
  explicit EmulatedExecutor(std::function<int64_t()> now_ms) : now_ms_(std::move(now_ms)) {}

  std::vector<core::Status> StartAll(const std::vector<const TaskSpec*>& specs) override;
  bool EverStarted(const TaskKey& key) const override {
    return tasks_.count(key) > 0 || forgotten_.count(key) > 0;
  }
  bool Stop(const TaskKey& key, std::optional<int64_t> grace_ms) override;
  // True when a task exited or a service task became ready.
  bool Poll() override;
  void Forget(const TaskKey& key) override;
  std::vector<TaskStatus> Tasks() const override;

  // When the next running task is due to exit or become ready (nullopt: none is).
  std::optional<int64_t> NextEventMs() const;
  int running() const { return running_; }
  // Tasks started (successfully) and exited since construction.
  int64_t started_total() const { return started_total_; }
  int64_t exited_total() const { return exited_total_; }

 private:
  struct Entry {
    TaskStatus status;
    int64_t exit_at_ms = -1;  // -1: runs until stopped
    int32_t exit_code = 0;
    int64_t ready_at_ms = -1;  // a service task not ready yet: when it will be
  };
  void Exit(Entry& e, int32_t code);

  std::function<int64_t()> now_ms_;
  std::map<TaskKey, Entry> tasks_;  // started and not forgotten
  // Forgotten attempts: never started again. 16 bytes each, as the Runner keeps a file.
  std::set<TaskKey> forgotten_;
  int running_ = 0;
  int64_t started_total_ = 0;
  int64_t exited_total_ = 0;
};

}  // namespace gpuorch::agent
