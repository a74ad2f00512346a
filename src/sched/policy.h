#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/rng.h"
#include "core/status.h"
#include "core/workload.h"
#include "sched/node_view.h"

namespace gpuorch::sched {

// One shape of task the cluster typically sees, with its share of all tasks. Fragmentation-
// aware policies (fgd, gpuorch) measure how much idle GPU such tasks could not use.
struct TypicalTask {
  TaskRequest task;
  double weight = 0;  // shares sum to 1
};

// A placement policy: how to rank the feasible nodes for one task, and which GPUs to take
// inside the chosen node. The mechanism (filtering, gangs, topology, reservations, and how
// to choose among the nodes: see NodeChoice) is the engine's; a policy only scores.
//
// Contract:
// - A policy sees a node only through a NodeView: its state, never its id or place.
// - Score() is called only on nodes where the task fits (see Fits), must depend only on the
//   view and the task, and returns an integer: higher is better; the engine breaks ties by
//   the lowest node id.
// - CpuHeadroom() says when Score stops depending on host resources: on a node with
//   cpu_free() >= t.milli_cpu + CpuHeadroom(n, t), Score(n, t) depends on neither the node's
//   free CPU and memory nor the task's CPU and memory (it is the score the node would have
//   with unlimited CPU). CpuHeadroom itself depends only on the node's GPU state (model,
//   shape, per-GPU free milli and memory, tags, usable GPUs) and the task's GPU request. The
//   engine then scores such nodes once per group of nodes with equal GPU state, and
//   remembers the score for tasks with the same GPU request, whatever their CPU and memory:
//   this is what keeps placement fast when every workload asks for its own CPU and memory.
//   kAlwaysReadsHost (the default) means Score may read CPU at any level: every feasible
//   node with its own free CPU is scored.
// - Score never reads the node's free memory (NodeView::memory_free() is for SelectGpus and
//   for information): memory is a filter, and nodes of a group with equal free CPU score
//   alike.
// - SelectGpus() returns exactly t.gpu_count GPUs among n.usable() that fit the task.
// - Single-threaded. Randomness comes only from the Rng handed to the factory.
class PlacementPolicy {
 public:
  virtual ~PlacementPolicy() = default;
  virtual std::string_view name() const = 0;
  virtual int64_t Score(const NodeView& n, const TaskRequest& t) = 0;
  static constexpr int64_t kAlwaysReadsHost = INT64_MAX / 4;
  virtual int64_t CpuHeadroom(const NodeView& n, const TaskRequest& t) {
    (void)n, (void)t;
    return kAlwaysReadsHost;
  }
  virtual GpuMask SelectGpus(const NodeView& n, const TaskRequest& t) {
    return SelectGpusBestFit(n, t);
  }
  // The task distribution fragmentation-aware policies optimise for. Others ignore it.
  virtual void SetTypicalTasks(std::vector<TypicalTask> tasks) { (void)tasks; }
  // The distribution in use (after defaults); empty for policies that ignore it.
  virtual std::vector<TypicalTask> typical_tasks() const { return {}; }
};

// How the engine chooses among the nodes where a task fits. A mechanism option that comes
// with the policy's name, not a question the engine asks the policy.
enum class NodeChoice : uint8_t {
  kBestScore,  // the highest Score, ties to the lowest node id
  kUniform,    // uniformly among the feasible nodes, from the engine's Rng; Score is unused
};

// A policy with the node choice it runs under.
struct PolicySetup {
  std::unique_ptr<PlacementPolicy> policy;
  NodeChoice choice = NodeChoice::kBestScore;
};

// The names MakePolicy accepts, in a stable order.
const std::vector<std::string>& PolicyNames();

// Builds a policy by name. `rng` must outlive the policy (only `random` draws from it, to
// pick a GPU inside the node; it runs under NodeChoice::kUniform).
core::Result<PolicySetup> MakePolicy(std::string_view name, core::Rng* rng);

}  // namespace gpuorch::sched
