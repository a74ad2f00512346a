#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "agent/task.h"
#include "core/status.h"

namespace gpuorch::agent {

// What runs the tasks of one node, for the protocol loop (agent/node_session.h): the real
// Runner (processes under a shim, agent/runner.h) or the EmulatedExecutor of hollow nodes
// (no process, agent/emulated_executor.h). The loop only ever asks these questions, so the
// agent protocol is spoken the same way whatever runs the tasks.
//
// Implementations are not thread-safe: one thread (the node's loop) calls them.
class TaskExecutor {
 public:
  virtual ~TaskExecutor() = default;
  // Starts attempts never started, one status per spec: AlreadyExists if it was ever
  // started. Any other failure is also recorded as an exited task, so it gets reported.
  virtual std::vector<core::Status> StartAll(const std::vector<const TaskSpec*>& specs) = 0;
  virtual bool EverStarted(const TaskKey& key) const = 0;
  // Asks a running task to stop; it ends within `grace_ms` (nullopt: its spec's grace
  // period). True when this call began the stop.
  virtual bool Stop(const TaskKey& key, std::optional<int64_t> grace_ms) = 0;
  // Picks up exits and due deadlines. True when a task exited.
  virtual bool Poll() = 0;
  // Stops reporting an exited task. Running tasks are not affected.
  virtual void Forget(const TaskKey& key) = 0;
  // Every task started and not forgotten, ordered by key.
  virtual std::vector<TaskStatus> Tasks() const = 0;
};

}  // namespace gpuorch::agent
