#pragma once

// Internal state of the Scheduler, shared by its .cc files (one idea each: events, quota,
// gang placement, preemption, head-of-line reservations, the cycle). Holds, claims and
// victim links live in the Ledger (ledger.h), the only writer of node reservations. Not
// part of the public API.

#include <array>
#include <map>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/queue.h"
#include "core/rng.h"
#include "sched/cluster_state.h"
#include "sched/ledger.h"
#include "sched/mig_placer.h"
#include "sched/placer.h"
#include "sched/plan.h"
#include "sched/policy.h"
#include "sched/scheduler.h"

namespace gpuorch::sched {

using core::kMaxGpuModels;
using core::ModelSet;

// The most whole GPUs of one NVLink domain of n that a task of `t`'s shape may take.
int NvlinkRoom(const NodeState& n, const TaskRequest& t, WorkloadId as, ReservationAccess access);

struct TaskRec {
  int32_t index = 0;
  NodeId node;
  GpuMask gpus = 0;
  bool stopping = false;  // being removed by a resize or an eviction
  int8_t mig_start = -1;  // a MIG task's instance (see TaskBinding)
};

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
  // What it holds, claims and who leaves for it are in the Ledger.
  uint64_t feasible_version = UINT64_MAX;  // node-set version FitsEmptyCluster answered at
  bool feasible = true;
  WorkloadId lent_from;           // bound on GPUs lent from this workload's reservation
  size_t pending_pos = SIZE_MAX;  // position in pending_ (for O(1) removal)
  size_t running_pos = SIZE_MAX;  // position in running_
  bool in_growable = false;       // listed in growable_
  Time stop_due = 0;              // victim: when its grace period ends (set by EstimateStarts)

  int32_t live_tasks() const { return static_cast<int32_t>(tasks.size()); }
  // Tasks not already stopping (for a resize, an eviction or a node loss).
  int32_t staying_tasks() const {
    int32_t n = 0;
    for (const TaskRec& t : tasks) n += !t.stopping;
    return n;
  }
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

  // --- the cycle (cycle.cc), in named steps
  Plan Cycle(Time now);
  struct CycleContext;  // what one cycle carries from workload to workload
  struct Entitlement;   // the models one workload may run on now
  std::vector<WorkloadRec*> AttemptReadyHolders(CycleContext& c);
  bool InQuotaNow(const WorkloadRec& w) const;
  void FinishCycle(Plan& plan, const std::vector<WorkloadRec*>& closed);
  void EntitledModels(const WorkloadRec& w, Entitlement& e, PendingReason& why) const;
  void Attempt(CycleContext& c, WorkloadRec& w);
  bool TryPlace(Plan& plan, WorkloadRec& w, const Entitlement& e, PendingReason& reason);
  // A MIG task (mig.cc): binds it on an idle instance, or starts the layout change that
  // makes one, or says why not. True if either happened (or one is under way for it).
  bool AttemptMig(CycleContext& c, WorkloadRec& w, const Entitlement& e);
  void BindPlaced(Plan& plan, WorkloadRec& w, bool entitled,
                  const std::vector<TaskPlacement>& placed);
  bool WaitOrReclaim(Plan& plan, WorkloadRec& w, const Entitlement& e);
  bool ReserveHeadOfLine(CycleContext& c, WorkloadRec& w, const Entitlement& e,
                         PendingReason reason);
  void ExplainBlocked(WorkloadRec& w, const Entitlement& e, PendingReason& reason);
  void Grow(Plan& plan);
  // Reserves nodes of model m for head-of-line w where it will fit soonest
  // (reservations.cc). True if it did.
  // `in_quota`: whether w reserves inside its guarantee (a borrower's reservation gives way to
  // in-quota work).
  bool CreateHold(WorkloadRec& w, GpuModelId m, bool in_quota, Time now);

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
                                                      int32_t count, ReservationAccess access,
                                                      PendingReason& reason);
  void Unallocate(const WorkloadRec& w, const std::vector<TaskPlacement>& placed);

  // --- preemption (preemption.cc)
  // Finds and starts the cheapest eviction set that lets w fit. True if it did.
  // `access`: the reservations of others w may take (see Fits).
  bool Preempt(WorkloadRec& w, Plan& plan, ReservationAccess access);
  // Head-of-line reservation (reservations.cc): lent work on w's held nodes is evicted
  // once w would fit.
  // Never non-preemptible work, never work younger than its min_runtime.
  bool ReclaimLent(WorkloadRec& w, Plan& plan);
  // Whether a head-of-line holder can start now, or once its lent work leaves: such a
  // holder is tried first in the cycle, so that nothing is lent GPUs it takes back at once.
  bool HolderReady(WorkloadRec& w, Time now);
  // Whether evicting `milli` more of queue q's model-m work (beyond what is already
  // evicting) leaves it at or above its guarantee: reclaim never goes below a guarantee.
  bool Reclaimable(QueueId q, GpuModelId m, int64_t milli) const;

  // A possible victim: a whole workload, or some elastic tasks of one.
  struct Victim;
  // What a preemptor may take from other queues on one model (see preemption.cc): nothing
  // (it borrows: its own queue's lower-priority work only), any queue's borrowed work (it
  // is in quota: a guarantee reclaim), or, for an inference replica beyond its guarantee,
  // borrowed work of strictly lower priority (a harvest).
  enum class Reach : uint8_t { kOwnQueue, kReclaim, kHarvest };
  // Whether w may harvest (Reach::kHarvest) on a model where it is not in quota: an
  // inference replica, preemptible, of a queue that may borrow.
  bool MayHarvest(const WorkloadRec& w) const;
  // Whether w taking `need` of model m with `victims` gone leaves idle at least the unused
  // guarantee of queues that do not lend (HeldBack), as borrowing must.
  bool KeepsHeldBack(QueueId q, GpuModelId m, int64_t need,
                     const std::vector<Victim>& victims) const;
  // The lent work to evict so that holder w fits (cheapest first, minimal), or nothing
  // (reservations.cc).
  std::optional<std::vector<Victim>> LentVictims(WorkloadRec& w, Time now);
  // An elastic victim (class 0) is one task: shrinks take only the tasks that are needed.
  struct Victim {
    WorkloadRec* w = nullptr;
    int cls = 0;                 // 0 elastic extra task, 1 borrowed, 2 lower priority, 3 lent
    std::vector<int32_t> tasks;  // task indices to stop; every staying task when whole
    int64_t milli = 0;           // milli-GPU it frees
    // Comes before class: an inference preemptor takes every victim of other queues (the
    // harvestable ones, rank 0) before any of its own queue's (rank 1). Always 0 for
    // other preemptors, whose order is class first.
    int rank = 0;
  };
  // The cost order of victims (cheapest first): rank, class, lowest priority, youngest.
  static bool CheaperVictim(const Victim& a, const Victim& b);
  // Whether running work v may be a victim at all at time `now`: preemptible, past its
  // min_runtime, and not bound in this very cycle (no bind-then-evict).
  bool Evictable(const WorkloadRec& v, Time now) const;
  void Free(const Victim& v);    // tentatively gives the victim's resources back
  void Unfree(const Victim& v);  // undoes Free
  // Greedily frees `cands` (in order) until w fits, then drops any victim w does not need.
  // Returns the chosen subset (cluster state unchanged) or nothing.
  std::optional<std::vector<Victim>> MinimalSet(const WorkloadRec& w, GpuModelId m,
                                                const std::vector<Victim>& cands,
                                                ReservationAccess access);
  void Evict(WorkloadRec& w, const std::vector<Victim>& victims, Plan& plan);
  // Evicts the chosen victims for w and holds its room on model m (see Preempt).
  void StartEviction(WorkloadRec& w, const std::vector<Victim>& victims, GpuModelId m,
                     int64_t claim, ReservationAccess access, Plan& plan);
  void Candidates(const WorkloadRec& w, WorkloadRec& v, GpuModelId m, Reach reach, Time now,
                  std::vector<Victim>& out) const;
  bool AnyVictimPossible(const WorkloadRec& w, GpuModelId m, Reach reach);
  std::optional<std::vector<Victim>> PreemptOnOneNode(const WorkloadRec& w, GpuModelId m,
                                                      Reach reach, Time now,
                                                      ReservationAccess access);

  // --- helpers (scheduler.cc)
  WorkloadRec* Find(WorkloadId id);
  const WorkloadRec* Find(WorkloadId id) const;
  // The record of a workload known to be present.
  WorkloadRec& Rec(WorkloadId id) { return workloads_[slot_of_.at(id)]; }
  const WorkloadRec& Rec(WorkloadId id) const { return workloads_[slot_of_.at(id)]; }
  void Bind(WorkloadRec& w, GpuModelId m, const std::vector<TaskPlacement>& placed, Plan& plan,
            bool elastic);
  // Releases one task's resources; reserves them for a preemptor if the workload is a victim.
  void ReleaseTask(WorkloadRec& w, const TaskRec& t);
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
  NodeChoice node_choice_ = NodeChoice::kBestScore;  // comes with the policy (MakePolicy)
  core::Rng rng_;
  ScoreCache score_cache_;  // saturated scores per node group (placer.h)
  ClusterState cluster_;
  std::vector<QueueRec> queues_;
  // Records live in reusable slots: a finished workload frees its slot, so memory follows
  // the live workloads, not every id ever submitted.
  std::vector<WorkloadRec> workloads_;
  std::unordered_map<WorkloadId, uint32_t> slot_of_;
  std::vector<uint32_t> free_slots_;
  Ledger ledger_{cluster_};  // holds, claims and victim links: the only writer of reservations
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
  std::vector<std::vector<std::pair<WorkloadId, int32_t>>> node_tasks_;
  std::vector<WorkloadId> cycle_order_;     // pending work in the order the cycle tried it
  std::vector<Eviction> queued_evictions_;  // from node loss, emitted by the next cycle
  // Static feasibility (feasibility.cc): whether w fits the cluster if it were empty, as
  // its schedulable nodes are now. Cached per node-set version.
  bool FitsEmptyCluster(WorkloadRec& w);
  // Schedulable nodes summarised by capacity (see feasibility.cc).
  struct CapacityType {
    GpuModelId model;
    int gpus = 0, nvlink = 0;
    int64_t cpu = 0, memory = 0, gpu_memory = 0;
    int64_t count = 0;
    int64_t Holds(const TaskRequest& t) const;
  };
  void SummariseCapacity();
  uint64_t nodes_version_ = 0;
  uint64_t capacity_version_ = UINT64_MAX;
  std::vector<CapacityType> types_;
  std::vector<std::vector<CapacityType>> rack_types_, zone_types_;
  Time last_decay_ = 0;
  bool decay_started_ = false;
  // MIG (mig.cc): the live mix of MIG requests (pending and running), and the GPU whose
  // layout change each waiting workload started.
  MigMix mig_mix_;
  std::unordered_map<WorkloadId, std::pair<NodeId, int>> mig_waits_;
};

}  // namespace gpuorch::sched
