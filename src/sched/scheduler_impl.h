#pragma once

// Internal state of the Scheduler, shared by its .cc files (one idea each: events, quota,
// gang placement, preemption, the cycle). Not part of the public API.

#include <array>
#include <map>
#include <optional>
#include <vector>

#include "core/queue.h"
#include "core/rng.h"
#include "sched/cluster_state.h"
#include "sched/placer.h"
#include "sched/plan.h"
#include "sched/policy.h"
#include "sched/scheduler.h"

namespace gpuorch::sched {

using core::kMaxGpuModels;
using core::ModelSet;

struct TaskRec {
  int32_t index = 0;
  NodeId node;
  GpuMask gpus = 0;
  bool stopping = false;  // being removed by a resize or an eviction
};

// Why a pending workload holds GPUs on some nodes.
enum class HoldKind : uint8_t { kNone, kPreemption, kHeadOfLine };

struct WorkloadRec {
  bool present = false;
  WorkloadId id;
  WorkloadSpec spec;
  WorkloadState state = WorkloadState::kPending;
  std::vector<TaskRec> tasks;  // live tasks while running or evicting
  int32_t next_task_index = 0;
  int32_t finished_tasks = 0;  // tasks of this run that ended on their own (not stopped)
  GpuModelId model;            // model the tasks run on (one per workload)
  Time start_time = 0;
  PendingReason reason = PendingReason::kNoFit;
  // Preemption bookkeeping.
  WorkloadId evicted_for;           // set on a victim: who its resources are reserved for
  int32_t victims_outstanding = 0;  // on a preemptor: victims (or resizes) not yet done
  HoldKind hold = HoldKind::kNone;
  std::vector<NodeId> held_nodes;  // nodes whose GPUs are reserved for this workload
  Time hold_eta = 0;               // head of line: when the reservation should be ready
  bool hold_in_quota = false;      // the holder was in-quota when it reserved
  WorkloadId lent_from;            // bound on GPUs lent from this workload's reservation
  size_t pending_pos = SIZE_MAX;   // position in pending_ (for O(1) removal)
  size_t running_pos = SIZE_MAX;   // position in running_
  bool in_growable = false;        // listed in growable_
  bool borrowing = false;          // past its queue's guarantee (see ClassifyBorrowers)
  GpuModelId claim_model;          // preemptor: guarantee claimed while its victims leave
  int64_t claim_milli = 0;

  int32_t live_tasks() const { return static_cast<int32_t>(tasks.size()); }
  int64_t task_milli() const { return spec.task.total_milli_gpu(); }
};

inline constexpr size_t kCpu = 0, kMemory = 1;  // host resources of QueueRec
inline constexpr int kDecayShift = 20;          // fractional bits of decayed usage

struct QueueRec {
  bool present = false;
  QueueSpec spec;
  bool leaf = true;
  std::vector<QueueId> ancestors;  // parent first, then up to the root
  std::array<int64_t, kMaxGpuModels> guaranteed{};
  std::array<int64_t, kMaxGpuModels> limit{};
  std::array<int64_t, kMaxGpuModels> usage{};     // milli-GPU in use (subtree)
  std::array<int64_t, kMaxGpuModels> evicting{};  // part of usage being evicted (leaf)
  std::array<int64_t, kMaxGpuModels> claimed{};   // claimed by preemptors (leaf), see Claim
  std::map<int32_t, int32_t> running_priorities;  // running preemptible work: priority -> count
  // Exponentially decayed past usage, in Q(kDecayShift) of the unit (see Decay).
  std::array<int64_t, kMaxGpuModels> decayed{};
  // CPU (milli-CPU) and memory (MiB), indexed by kCpu and kMemory. Usage counts every task
  // of the subtree, GPU tasks included. core::kNoGuarantee: the queue sets no guarantee for it.
  std::array<int64_t, 2> host_usage{};
  std::array<int64_t, 2> host_guaranteed{core::kNoGuarantee, core::kNoGuarantee};
  std::array<int64_t, 2> host_limit{core::kUnlimited, core::kUnlimited};
  std::array<int64_t, 2> host_decayed{};
};

class Scheduler::Impl {
 public:
  explicit Impl(const SchedulerConfig& config, std::unique_ptr<PlacementPolicy> policy);

  // --- events (scheduler.cc)
  Status AddQueue(QueueId id, const QueueSpec& spec, bool update);
  Status AddNode(NodeId id, const core::NodeSpec& spec);
  Status UpdateNode(NodeId id, const core::NodeSpec& spec);
  Status RemoveNode(NodeId id);
  Status Submit(WorkloadId id, const WorkloadSpec& spec);
  Status Cancel(WorkloadId id);
  Status TaskFinished(WorkloadId id, int32_t task);
  Status WorkloadFinished(WorkloadId id);
  Status EvictionCompleted(WorkloadId id);
  Status Adopt(WorkloadId id, const WorkloadSpec& spec, const std::vector<TaskBinding>& tasks,
               Time start_time);

  // --- the cycle (cycle.cc)
  Plan Cycle(Time now);
  void Grow(Plan& plan);
  // Reserves nodes of model m for head-of-line w where it will fit soonest. True if it did.
  bool CreateHold(WorkloadRec& w, GpuModelId m, Time now);

  // --- quota and fair share (quota.cc)
  // Refuses a queue whose children's guarantees, or whose siblings' and own, exceed their
  // parent's (see quota.cc).
  Status CheckNestedGuarantees(QueueId id, const QueueSpec& spec) const;
  // Adds (sign +1) or removes (-1) one task of w on the leaf and its ancestors: its GPUs
  // of model m (when it has GPUs), its CPU and its memory.
  void Charge(const WorkloadRec& w, GpuModelId m, int sign);
  bool WithinLimit(QueueId q, GpuModelId m, int64_t extra) const;
  bool InQuota(QueueId q, GpuModelId m, int64_t extra) const;
  // CPU and memory limits of the leaf and every ancestor admit `cpu` and `memory` more.
  bool HostWithinLimit(QueueId q, int64_t cpu, int64_t memory) const;
  // The leaf's CPU and memory guarantees (where it sets them) admit `cpu` and `memory` more.
  bool HostInQuota(QueueId q, int64_t cpu, int64_t memory) const;
  // Milli-GPU of model m that borrowers from queue q may not take (unused guarantees of
  // queues that do not lend).
  int64_t HeldBack(GpuModelId m, QueueId q) const;
  bool Borrowing(QueueId q, GpuModelId m, int64_t minus) const;
  void Decay(Time now);
  // Weighted dominant share of a queue (leaf or inner): its dominant share in parts per
  // billion times kMaxQueueWeight / weight. Only compared with its siblings' (and, by Grow,
  // with other leaves').
  int64_t Share(QueueId q) const;

  // --- placement of a gang (gang.cc)
  // Places `count` tasks of w (its first min_tasks, or extra tasks when growing) on nodes
  // whose model is in `models` (never empty: callers pass the models w is entitled to).
  // On success the tasks are allocated in the cluster and returned; otherwise nothing
  // changes and `reason` says why.
  std::optional<std::vector<TaskPlacement>> PlaceGang(const WorkloadRec& w, ModelSet models,
                                                      int32_t count, bool may_use_lent,
                                                      PendingReason& reason);
  void Unallocate(const WorkloadRec& w, const std::vector<TaskPlacement>& placed);

  // --- preemption (preemption.cc)
  // Finds and starts the cheapest eviction set that lets w fit. True if it did.
  // `may_use_lent`: w may take GPUs of reservations that are lent (see Fits).
  bool Preempt(WorkloadRec& w, Plan& plan, bool may_use_lent);
  // Head-of-line reservation: lent work on w's held nodes is evicted once w would fit.
  bool ReclaimLent(WorkloadRec& w, Plan& plan);

  // A possible victim: a whole workload, or some elastic tasks of one.
  struct Victim {
    WorkloadRec* w = nullptr;
    int cls = 0;                 // 0 elastic extras, 1 borrowed, 2 lower priority, 3 lent
    std::vector<int32_t> tasks;  // task indices to stop; all live tasks for a whole eviction
    int64_t milli = 0;           // milli-GPU it frees
  };
  void Free(const Victim& v);    // tentatively gives the victim's resources back
  void Unfree(const Victim& v);  // undoes Free
  // Greedily frees `cands` (in order) until w fits, then drops any victim w does not need.
  // Returns the chosen subset (cluster state unchanged) or nothing.
  std::optional<std::vector<Victim>> MinimalSet(const WorkloadRec& w, GpuModelId m,
                                                const std::vector<Victim>& cands,
                                                bool may_use_lent);
  void Evict(WorkloadRec& w, const std::vector<Victim>& victims, Plan& plan);
  void Candidates(const WorkloadRec& w, WorkloadRec& v, GpuModelId m, bool in_quota, Time now,
                  std::vector<Victim>& out) const;
  bool AnyVictimPossible(const WorkloadRec& w, GpuModelId m, bool in_quota);
  void ClassifyBorrowers();
  std::optional<std::vector<Victim>> PreemptOnOneNode(const WorkloadRec& w, GpuModelId m,
                                                      bool in_quota, Time now, bool may_use_lent);

  // --- helpers (scheduler.cc)
  WorkloadRec* Find(WorkloadId id);
  const WorkloadRec* Find(WorkloadId id) const;
  void Bind(WorkloadRec& w, GpuModelId m, const std::vector<TaskPlacement>& placed, Plan& plan,
            bool elastic);
  // Releases one task's resources; reserves them for a preemptor if the workload is a victim.
  void ReleaseTask(WorkloadRec& w, const TaskRec& t);
  void ReleaseHold(WorkloadRec& w);
  // Marks a task as being stopped (eviction or resize) and counts it as evicting usage.
  void MarkStopping(WorkloadRec& w, TaskRec& t);
  void AddPending(WorkloadRec& w);
  void RemovePending(WorkloadRec& w);
  void AddRunning(WorkloadRec& w);
  void RemoveRunning(WorkloadRec& w);
  void Finish(WorkloadRec& w);
  void LoseNode(NodeId id);

  SchedulerConfig config_;
  std::unique_ptr<PlacementPolicy> policy_;
  core::Rng rng_;
  ClusterState cluster_;
  std::vector<QueueRec> queues_;
  std::vector<WorkloadRec> workloads_;
  std::vector<WorkloadId> pending_;  // unordered; the cycle sorts a copy
  std::vector<WorkloadId> running_;  // running or evicting, unordered
  // A superset of the running workloads below max_tasks, the only ones Grow can touch:
  // added at Bind and whenever a task goes, pruned by Grow. Keeps Grow O(elastic).
  std::vector<WorkloadId> growable_;
  std::vector<WorkloadId> elastic_extras_;  // may run tasks beyond min_tasks (pruned lazily)
  std::vector<uint32_t> preempt_cursor_;    // per model: node where the last search succeeded
  void ListGrowable(WorkloadRec& w) {
    if (config_.elastic && !w.in_growable) w.in_growable = true, growable_.push_back(w.id);
  }
  // A preemptor's request counts against its queue's guarantee from the moment it evicts
  // victims, so that several preemptors of one queue cannot together claim more than the
  // guarantee. Released when it binds or leaves.
  void Claim(WorkloadRec& w, GpuModelId m, int64_t milli);
  void Unclaim(WorkloadRec& w);
  std::vector<std::vector<std::pair<WorkloadId, int32_t>>> node_tasks_;
  std::vector<Eviction> queued_evictions_;  // from node loss, emitted by the next cycle
  WorkloadId head_of_line_;                 // the one workload holding a HOL reservation
  Time last_decay_ = 0;
  uint64_t cycle_count_ = 0;  // cycles run; stamps per-cycle caches
  uint64_t classified_cycle_ = UINT64_MAX;
  bool decay_started_ = false;
};

}  // namespace gpuorch::sched
