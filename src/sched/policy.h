#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/rng.h"
#include "core/status.h"
#include "core/workload.h"
#include "sched/cluster_state.h"

namespace gpuorch::sched {

// One shape of task the cluster typically sees, with its share of all tasks. Fragmentation-
// aware policies (fgd, gpuorch) measure how much idle GPU such tasks could not use.
struct TypicalTask {
  TaskRequest task;
  double weight = 0;  // shares sum to 1
};

// A placement policy: how to rank the feasible nodes for one task, and which GPUs to take
// inside the chosen node. The mechanism (filtering, gangs, topology, reservations) is the
// engine's; a policy only scores.
//
// Contract:
// - Score() is called only on nodes where the task fits (see Fits), must depend only on the
//   node's state and the task (the engine scores one node per group of identical nodes), and
//   returns an integer: higher is better; the engine breaks ties by the lowest node id.
// - SelectGpus() returns exactly t.gpu_count GPUs among `usable` that fit the task.
// - Single-threaded. Randomness comes only from the Rng handed to the factory.
class PlacementPolicy {
 public:
  virtual ~PlacementPolicy() = default;
  virtual std::string_view name() const = 0;
  virtual int64_t Score(const NodeState& n, const TaskRequest& t) = 0;
  virtual GpuMask SelectGpus(const NodeState& n, const TaskRequest& t, GpuMask usable) {
    return SelectGpusBestFit(n, t, usable);
  }
  // True for a policy that picks uniformly among feasible nodes instead of scoring.
  virtual bool random_node_choice() const { return false; }
  // The task distribution fragmentation-aware policies optimise for. Others ignore it.
  virtual void SetTypicalTasks(std::vector<TypicalTask> tasks) { (void)tasks; }
};

// The names MakePolicy accepts, in a stable order.
const std::vector<std::string>& PolicyNames();

// Builds a policy by name. `rng` must outlive the policy (only `random` draws from it).
core::Result<std::unique_ptr<PlacementPolicy>> MakePolicy(std::string_view name, core::Rng* rng);

}  // namespace gpuorch::sched
