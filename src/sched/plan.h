#pragma once

#include <cstdint>
#include <vector>

#include "core/ids.h"
#include "sched/cluster_state.h"

namespace gpuorch::sched {

using core::Duration;
using core::Time;

// Why a workload is still pending after a cycle. Every pending workload carries one.
enum class PendingReason : uint8_t {
  kWaitingForQuota,        // over its guarantee and may not borrow, or no idle capacity to lend
  kOverLimit,              // would exceed a queue limit
  kNoFit,                  // not enough free capacity of an acceptable model
  kTopologyUnsatisfiable,  // capacity exists, but not inside one domain of the required level
  kModelUnavailable,       // no schedulable node has a healthy GPU of an acceptable model
  kBlockedByReservation,   // would delay a reservation held for an older workload
  kPreempting,             // victims are being evicted for it; capacity is reserved
  kReserved,               // head of line: capacity is being gathered for it (no starvation)
  kUnschedulable,          // does not fit the empty cluster as it is now (healthy GPUs only)
  kMigReconfiguring,       // a MIG layout is being applied for it (Plan::reconfigs)
};
const char* ToString(PendingReason r);

enum class EvictionReason : uint8_t {
  kReclaimGuarantee,  // a queue takes back its guarantee from a borrower (not for inference)
  kPriority,          // higher-priority work in the same queue
  kReservationReady,  // it ran on capacity lent from a reservation, which is now needed
  kNodeLost,          // part of a gang was on a node that went down; the rest is stopped
  // Another queue's borrowed work, taken for an inference replica: in a guarantee
  // reclaim, or harvested by a replica beyond its guarantee (strictly lower priority).
  kHarvested,
};
const char* ToString(EvictionReason r);

struct TaskBinding {
  int32_t task = 0;  // task index within the workload
  NodeId node;
  GpuMask gpus = 0;  // GPU indices on the node; each gives the task `gpu_milli`
  int32_t gpu_milli = 0;
  // A MIG task's instance: the memory slice it starts at on the one GPU of `gpus`; -1 for
  // whole GPUs and fractions.
  int8_t mig_start = -1;
};

// A MIG layout the driver must apply on one GPU (create the instances it lists that do
// not exist, destroy the idle ones it does not list) and then report with
// Scheduler::MigLayoutApplied. The engine never lists a change that touches an instance a
// task holds, and binds nothing on the GPU until the report.
struct MigReconfig {
  NodeId node;
  int32_t gpu = 0;
  core::MigLayout layout;
  WorkloadId for_workload;  // the pending workload it makes room for
};

struct Bind {
  WorkloadId workload;
  std::vector<TaskBinding> tasks;
  bool elastic = false;  // extra tasks for a running workload (beyond min_tasks)
};

struct Eviction {
  WorkloadId workload;
  EvictionReason reason;
  WorkloadId preemptor;  // invalid for kNodeLost
  Duration grace_period = 0;
};

// Elastic tasks to stop (the workload keeps running with fewer tasks).
struct Resize {
  WorkloadId workload;
  std::vector<int32_t> tasks;  // indices to stop
  EvictionReason reason;
  WorkloadId preemptor;
  Duration grace_period = 0;
};

struct PendingExplanation {
  WorkloadId workload;
  PendingReason reason;
  // When it is expected to start, or -1 when unknown (see estimate.h for how).
  Time estimated_start = -1;
  // What it waits for: the reservation holder that blocks it (kBlockedByReservation), its
  // victim due last (kPreempting), or the workload whose expected end makes room (running,
  // or ahead of it in the queue); invalid when unknown.
  WorkloadId waiting_for;
};

// How much work one cycle did, for benchmarks and metrics: the shape of the cluster it saw
// and how often its caches answered.
struct CycleStats {
  size_t node_groups = 0;         // groups of identical schedulable nodes at the cycle's end
  uint64_t attempts = 0;          // pending workloads the cycle looked at
  uint64_t shape_cache_hits = 0;  // answered by a shape that already failed this cycle
  uint64_t dominated = 0;         // of which by a smaller shape that fit nowhere (same GPU request)
  uint64_t placements_tried = 0;  // attempts that searched the nodes
};

// What one cycle decided. Binds take effect at once in the engine's accounting; evictions
// and resizes hold their resources until the driver reports them done.
struct Plan {
  Time now = 0;
  std::vector<Bind> binds;
  std::vector<Eviction> evictions;
  std::vector<Resize> resizes;
  std::vector<PendingExplanation> pending;
  std::vector<MigReconfig> reconfigs;
  CycleStats stats;
};

}  // namespace gpuorch::sched
