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

namespace gpuorch::sim {

// The simulator's one door into the production placement code. A pod arrives, is placed
// at once or dropped (FGD-PROTOCOL.md §2.5: no queueing, no retry).
//
// The current implementation drives ClusterState + ChooseNode + PlacementPolicy::SelectGpus
// + ClusterState::Allocate, which is exactly the code sched::Scheduler::Cycle runs for one
// task; switching to the full Scheduler (Submit, Cycle, Cancel on failure) only touches
// engine.cc.
class SimEngine {
 public:
  // `rng` feeds the policy and random node choice; it must outlive the engine.
  static core::Result<std::unique_ptr<SimEngine>> Create(const std::string& policy, core::Rng* rng);

  core::Status AddNode(core::NodeId id, const core::NodeSpec& spec);
  void SetTypicalTasks(std::vector<sched::TypicalTask> tasks);
  // Places one task and returns its node, or nothing when no node fits.
  std::optional<core::NodeId> Place(const sched::TaskRequest& t);
  const sched::ClusterState& cluster() const { return cluster_; }

 private:
  SimEngine(std::unique_ptr<sched::PlacementPolicy> policy, core::Rng* rng)
      : policy_(std::move(policy)), rng_(rng) {}

  std::unique_ptr<sched::PlacementPolicy> policy_;
  core::Rng* rng_;
  sched::ClusterState cluster_;
};

}  // namespace gpuorch::sim
