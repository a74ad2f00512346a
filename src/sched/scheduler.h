#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/queue.h"
#include "core/rng.h"
#include "core/status.h"
#include "core/workload.h"
#include "sched/cluster_state.h"
#include "sched/plan.h"
#include "sched/policy.h"

namespace gpuorch::sched {

using core::QueueId;
using core::QueueSpec;
using core::Status;
using core::WorkloadSpec;

struct SchedulerConfig {
  std::string policy = "gpuorch";               // see PolicyNames()
  uint64_t seed = 0;                            // for policies and ties that draw randomness
  Duration fair_share_half_life = core::kHour;  // decay of past usage in fair share
  bool preemption = true;
  bool reservations = true;  // head-of-line gangs reserve capacity (no starvation)
  bool elastic = true;       // grant tasks beyond min_tasks from idle capacity
  // Head-of-line reservations held at once per pool of GPU models (Slurm's
  // bf_max_job_reserve-like cap on how many waiting gangs gather capacity).
  int32_t max_reservations = 8;
  // Pending workloads per cycle, first in the cycle's order, given a start estimate.
  int32_t estimate_limit = 1000;
  // Fill Plan::pending with every pending workload's reason and the start estimates above.
  // A driver that reads neither (the simulator) turns it off: with thousands pending,
  // listing, sorting and estimating them is a large part of a cycle. Only Plan::pending
  // changes: binds, evictions and the reasons kept on the workloads are the same.
  bool explain_pending = true;
  // MIG: change layouts to make instances (docs/partitioning.md). Off: static MIG, only the
  // instances the GPUs have are used.
  bool mig_reconfigure = true;
};

enum class WorkloadState : uint8_t { kPending, kRunning, kEvicting, kFinished };
const char* ToString(WorkloadState s);

// The scheduling engine: feed it events, call Cycle(now), apply the Plan.
//
// Contract: pure and deterministic. No I/O, no threads, no clock: time is an argument and
// randomness comes from the seed. Not thread-safe; drivers call it from one thread. Every
// event method validates its input and returns a Status naming the field at fault; a failed
// call changes nothing.
class Scheduler {
 public:
  static core::Result<std::unique_ptr<Scheduler>> Create(const SchedulerConfig& config);
  ~Scheduler();

  // Queues. A parent must exist before its children; workloads go to leaf queues.
  Status AddQueue(QueueId id, const QueueSpec& spec);
  Status UpdateQueue(QueueId id, const QueueSpec& spec);

  // Nodes. A node that goes Down or is removed loses its tasks: gangs that drop below
  // min_tasks are stopped (kNodeLost) and requeued as a whole.
  Status AddNode(NodeId id, const core::NodeSpec& spec);
  Status UpdateNode(NodeId id, const core::NodeSpec& spec);
  Status RemoveNode(NodeId id);
  // A MIG GPU's layout now, after the driver applied a Plan::reconfigs entry (the target, or
  // what it managed). It must keep every instance that holds a task.
  Status MigLayoutApplied(NodeId id, int gpu, const core::MigLayout& layout);

  // Workloads.
  Status Submit(WorkloadId id, const WorkloadSpec& spec);
  // Removes a workload; its tasks are considered stopped (the driver stops them).
  Status Cancel(WorkloadId id);
  // One task ended (success or failure). When no task is left the workload is finished.
  Status TaskFinished(WorkloadId id, int32_t task);
  // All tasks of a workload ended.
  Status WorkloadFinished(WorkloadId id);
  // The driver has stopped an evicted workload; it returns to the queue, resources freed.
  Status EvictionCompleted(WorkloadId id);
  // Re-enters a workload that is already running with a known placement (a control plane
  // restarting from its store, or adopting work its agents report). The tasks must fit the
  // nodes' free capacity; on any error nothing changes.
  Status Adopt(WorkloadId id, const WorkloadSpec& spec, const std::vector<TaskBinding>& tasks,
               Time start_time);

  // Distribution of task shapes for fragmentation-aware policies (fgd, gpuorch).
  void SetTypicalTasks(std::vector<TypicalTask> tasks);

  // Runs one scheduling cycle at time `now` (non-decreasing across calls).
  Plan Cycle(Time now);

  // Read access for drivers, explanations and tests.
  const ClusterState& cluster() const;
  WorkloadState state(WorkloadId id) const;
  // Milli-GPU of model m in use by queue q (leaf or inner), including evicting work.
  int64_t QueueUsage(QueueId q, GpuModelId m) const;
  // The part of QueueUsage being evicted or shrunk (tasks stopping).
  int64_t QueueEvicting(QueueId q, GpuModelId m) const;
  // Bookkeeping that must drain when nothing is pending: nodes holding a reservation,
  // tasks stopping for a preemptor (VictimLedger links), and guarantee claimed by
  // preemptors (milli-GPU over every queue and model).
  struct Holds {
    size_t reserved_nodes = 0;
    size_t victim_links = 0;
    int64_t claimed_milli = 0;
    size_t holders = 0;  // head-of-line holders
  };
  Holds holds() const;
  // CPU (milli-CPU) and memory (MiB) that queue q's subtree uses, GPU tasks included.
  int64_t QueueCpuUsage(QueueId q) const;
  int64_t QueueMemoryUsage(QueueId q) const;
  // Bindings of a running workload's live tasks.
  std::vector<TaskBinding> Placement(WorkloadId id) const;
  const PlacementPolicy& policy() const;
  // Workload records held (pending, running or evicting), and slots allocated for them:
  // finished workloads free their records and slots are reused.
  size_t workload_records() const;
  size_t workload_capacity() const;

  class Impl;

 private:
  explicit Scheduler(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpuorch::sched
