#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/node.h"
#include "core/rng.h"
#include "core/status.h"
#include "sched/cluster_state.h"
#include "sched/policy.h"
#include "sched/scheduler.h"

namespace gpuorch::sim {

// The simulator's one door into the production engine. A pod arrives, is placed at once or
// dropped (FGD-PROTOCOL.md §2.5: no queueing, no retry): it is submitted to a
// sched::Scheduler (one queue without quota; preemption, reservations and elasticity off,
// since the protocol has none), one Cycle runs, and a pod the cycle did not bind is
// cancelled.
class SimEngine {
 public:
  // `seed` seeds the engine's generator (policy draws and random node choice).
  static core::Result<std::unique_ptr<SimEngine>> Create(const std::string& policy, uint64_t seed);

  core::Status AddNode(core::NodeId id, const core::NodeSpec& spec);
  void SetTypicalTasks(std::vector<sched::TypicalTask> tasks);
  // Places one task and returns its node, or nothing when no node fits.
  std::optional<core::NodeId> Place(const sched::TaskRequest& t);
  const sched::ClusterState& cluster() const { return engine_->cluster(); }

 private:
  explicit SimEngine(std::unique_ptr<sched::Scheduler> engine) : engine_(std::move(engine)) {}

  std::unique_ptr<sched::Scheduler> engine_;
  uint32_t next_id_ = 0;
};

}  // namespace gpuorch::sim
