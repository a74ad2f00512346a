#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sched/cluster_state.h"
#include "sched/plan.h"
#include "sched/policy.h"

namespace gpuorch::server {

// A pending workload as the idle-while-waiting gauge reads it.
struct PendingWork {
  core::WorkloadId id;
  sched::PendingReason reason;
  core::TaskRequest task;
  int32_t tasks = 1;  // min_tasks: what it needs to start
};

// Per GPU model, from the engine's state after a cycle. GPU counts are whole GPUs.
struct ModelGauges {
  // A GPU is `down` on a Down node; otherwise `allocated` when any of it is taken (a
  // fraction counts the GPU whole), `unhealthy` when free but reported unhealthy (no work may
  // take it), `draining` when free on a Draining node, and `free`.
  int64_t allocated = 0, free = 0, draining = 0, down = 0, unhealthy = 0;
  int64_t allocated_milli = 0;  // fractions by their share, on Ready and Draining nodes
  // Free GPUs that runnable pending work could use now (see ComputeModelGauges).
  int64_t idle_while_waiting = 0;
  // The FGD measure of free capacity against the task mix, milli-GPU (see below).
  double fragmented_milli = 0;
};

// Computes the per-model gauges of `cluster` (indexed by model id, `models` long):
//
// idle_while_waiting: a GPU counts when it is wholly free on a Ready node, and one task of
// some pending workload that is not held back by quota (reason other than WaitingForQuota
// and OverLimit) fits on its node now, on GPUs it may use (a GPU reserved for a workload
// counts only when the reservation is lendable and a workload other than its holder
// fits): the model is acceptable and the node has the task's
// GPU count of usable GPUs with its milli and GPU memory, and its CPU and memory. A gang
// that cannot start anywhere as a whole still counts: its GPUs sit idle for topology or
// fragmentation, which is what the gauge exists to show. Per model the count is capped by
// the GPUs such workloads ask for (min_tasks x gpu_count, a fraction as one GPU). GPUs kept
// idle by quota, by a reservation being gathered for a gang or a preemptor, or wanted by no
// pending task, do not count. At most kMaxShapes distinct task shapes are read (the first
// in the cycle's order).
//
// fragmented_milli: for each schedulable node, the FGD paper's expected fragmentation
// F(n) = sum over the mix's task shapes of weight x TaskFragment(n, shape) (the idle
// milli-GPU that a task of that shape could not use; fragmentation.h), summed per model.
//
// Contract: pure; O(nodes x (shapes + mix)) with O(GPUs) per fit test.
std::vector<ModelGauges> ComputeModelGauges(const sched::ClusterState& cluster, size_t models,
                                            const std::vector<PendingWork>& pending,
                                            const std::vector<sched::TypicalTask>& mix);

inline constexpr size_t kMaxShapes = 64;

// MIG per GPU model (indexed by model id), from the engine's state after a cycle.
struct MigGauges {
  // Instances by profile name: used (a task holds it), free (idle), and creating (in a
  // layout being applied, not there yet).
  std::map<std::string, std::array<int64_t, 3>> instances;
  // Over the model's MIG GPUs on schedulable nodes: compute slices not held by a task that
  // no profile of the live mix could use (the best profile of the mix packed greedily
  // into what the tasks' instances leave). The live mix is the profiles that tasks hold and
  // that pending MIG work asks for; empty, every profile counts.
  int64_t fragmented_slices = 0;
  bool any = false;  // the model has MIG GPUs
};
std::vector<MigGauges> ComputeMigGauges(const sched::ClusterState& cluster, size_t models,
                                        const std::vector<PendingWork>& pending);

}  // namespace gpuorch::server
