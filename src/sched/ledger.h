#pragma once

// The ledger: who holds what for whom, and until when. It owns three kinds of facts, and
// nothing else in the engine writes them:
// - victim links: task `t` of a victim stops for one preemptor (VictimLedger);
// - claims: a preemptor's request counts against its queue's guarantee while its victims
//   leave (per workload, and per queue and GPU model for InQuota);
// - holds: GPUs reserved for a pending workload, either a preemptor's room (the GPUs its
//   victims free, plus free ones it will use) or a head-of-line reservation (nodes held
//   where the workload will fit soonest, possibly lent to backfill meanwhile). The ledger
//   is the only code that writes node reservations in the ClusterState.
//
// Invariants:
// - A node is reserved for at most one holder, and a node reserved for w is in w's hold.
// - One task stops for one preemptor at most.
// - Links, claims and holds drain when their workload binds or leaves (Drop): with nothing
//   pending, the ledger is empty.
//
// Contract: single-threaded. Lookups (HoldOf, ClaimOf, Claimed, Leaving, PreemptorOf,
// HoldersOn) are O(1) expected; HoldGpus is O(nodes the holder holds); Release is
// O(nodes held + head-of-line holders); Forget is O(victims of the preemptor). The
// holder list is a vector in the order holds were made, and no unordered map is ever
// iterated where the order could reach a decision (claimed_total only sums).

#include <array>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/gpu_model.h"
#include "core/ids.h"
#include "sched/cluster_state.h"

namespace gpuorch::sched {

class VictimLedger {
 public:
  using WorkloadId = core::WorkloadId;

  // Task `task` of `victim` stops for `preemptor`. The task must not be leaving already.
  void Link(WorkloadId preemptor, WorkloadId victim, int32_t task);
  // The task is gone. Returns the preemptor it was leaving for (invalid if none), which
  // now waits for one task fewer.
  WorkloadId Unlink(WorkloadId victim, int32_t task);
  // The preemptor it stops for, or an invalid id.
  WorkloadId PreemptorOf(WorkloadId victim, int32_t task) const;
  // Tasks still stopping for `preemptor`.
  int32_t Leaving(WorkloadId preemptor) const;
  // The preemptor bound or left: its victims keep stopping, for nobody.
  void Forget(WorkloadId preemptor);
  size_t links() const { return by_task_.size(); }

 private:
  static uint64_t Key(WorkloadId w, int32_t task) {
    return uint64_t{w.value()} << 32 | static_cast<uint32_t>(task);
  }
  std::unordered_map<uint64_t, WorkloadId> by_task_;
  std::unordered_map<WorkloadId, std::vector<uint64_t>> by_preemptor_;
};

// Why a pending workload holds GPUs on some nodes.
enum class HoldKind : uint8_t { kNone, kPreemption, kHeadOfLine };

// What one workload holds.
struct Hold {
  HoldKind kind = HoldKind::kNone;
  std::vector<core::NodeId> nodes;  // nodes whose GPUs are reserved for the workload
  core::Time eta = 0;               // head of line: when the reservation should be ready
  bool in_quota = false;            // head of line: the holder was in-quota when it reserved
  core::GpuModelId model;           // head of line: the model pool it reserved in
  bool lends = false;               // head of line: its GPUs are lent while it waits
};

// A preemptor's claim on its queue's guarantee.
struct ClaimRec {
  core::QueueId queue;
  core::GpuModelId model;
  int64_t milli = 0;
};

class Ledger {
 public:
  using WorkloadId = core::WorkloadId;
  using NodeId = core::NodeId;
  using GpuModelId = core::GpuModelId;
  using QueueId = core::QueueId;

  explicit Ledger(ClusterState& cluster) : cluster_(cluster) {}

  // --- victim links (see VictimLedger)
  void Link(WorkloadId preemptor, WorkloadId victim, int32_t task) {
    victims_.Link(preemptor, victim, task);
  }
  WorkloadId Unlink(WorkloadId victim, int32_t task) { return victims_.Unlink(victim, task); }
  WorkloadId PreemptorOf(WorkloadId victim, int32_t task) const {
    return victims_.PreemptorOf(victim, task);
  }
  int32_t Leaving(WorkloadId preemptor) const { return victims_.Leaving(preemptor); }
  // The preemptor bound or left: its victims keep stopping, for nobody.
  void Forget(WorkloadId preemptor) { victims_.Forget(preemptor); }
  size_t links() const { return victims_.links(); }

  // --- claims
  // w's request of `milli` on model m counts against queue q's guarantee (replaces any
  // earlier claim of w).
  void AddClaim(WorkloadId w, QueueId q, GpuModelId m, int64_t milli);
  void Unclaim(WorkloadId w);
  // w's claim (milli 0 when none).
  ClaimRec ClaimOf(WorkloadId w) const;
  // Milli-GPU of model m claimed by preemptors of leaf queue q.
  int64_t Claimed(QueueId q, GpuModelId m) const;
  int64_t claimed_total() const;

  // --- holds
  // What w holds (an empty hold if nothing).
  const Hold& HoldOf(WorkloadId w) const;
  HoldKind KindOf(WorkloadId w) const { return HoldOf(w).kind; }
  // Head-of-line reservation: all healthy GPUs of `nodes` are reserved for w. Lendable when
  // `lends`; `in_quota` false marks it as a borrower's (in-quota work may take it).
  void HoldHeadOfLine(WorkloadId w, std::vector<NodeId> nodes, core::Time eta, GpuModelId m,
                      bool in_quota, bool lends);
  // Preemptor w holds `gpus` of `node` (with what it holds there already) until it binds. A
  // lendable head-of-line reservation there gives way (its holder plans again); another
  // preemptor's hold stands. True if w holds them now.
  bool HoldGpus(WorkloadId w, NodeId node, GpuMask gpus);
  // w is a preemptor now: its head-of-line reservation (if any) is released, and the
  // GPUs its victims free will be held for it.
  void StartPreemption(WorkloadId w);
  // After HoldGpus from a victim's release: a workload without a hold holds as a
  // preemptor (a head-of-line holder keeps its reservation and place among holders).
  void MarkPreemptor(WorkloadId w);
  // Releases everything w holds (its reservations are cleared).
  void Release(WorkloadId w);
  // Opens or closes a head-of-line holder's reserved GPUs to lent work (its `lends` stays).
  void SetLending(WorkloadId h, bool on);
  // The holder takes its lent GPUs back for good: it lends no more.
  void StopLending(WorkloadId h);
  // Runs `probe` with every holder's reserved GPUs lendable, then restores them.
  template <typename F>
  void WithAllLent(F&& probe);
  // Node `id` is lost: a head-of-line holder there plans its whole reservation again, a
  // preemptor keeps the rest of its hold.
  void LoseNode(NodeId id);
  // GPUs of node `id` recovered: a head-of-line holder there holds them too (it holds every
  // healthy GPU of its nodes). A preemptor's hold is its room, and stays as it is.
  void GpusRecovered(NodeId id);
  // Head-of-line holders, in the order they reserved.
  const std::vector<WorkloadId>& holders() const { return holders_; }
  // Head-of-line holders in model m's pool.
  int32_t HoldersOn(GpuModelId m) const {
    return m.value() < holders_per_model_.size() ? holders_per_model_[m.value()] : 0;
  }

  // w bound or left: its links, claim and hold drain.
  void Drop(WorkloadId w) {
    Forget(w);
    Release(w);
    Unclaim(w);
  }

 private:
  ClusterState& cluster_;
  VictimLedger victims_;
  std::unordered_map<WorkloadId, ClaimRec> claims_;
  std::vector<std::array<int64_t, core::kMaxGpuModels>> claimed_;  // per leaf queue
  std::unordered_map<WorkloadId, Hold> holds_;
  std::vector<WorkloadId> holders_;
  std::array<int32_t, core::kMaxGpuModels> holders_per_model_{};
};

template <typename F>
void Ledger::WithAllLent(F&& probe) {
  struct Saved {
    NodeId node;
    GpuMask gpus;
    WorkloadId holder;
    bool lendable, borrowed;
  };
  std::vector<Saved> saved;
  for (WorkloadId h : holders_) {
    for (NodeId n : HoldOf(h).nodes) {
      const NodeState& ns = cluster_.node(n);
      if (ns.reserved_for != h) continue;
      saved.push_back({n, ns.reserved_gpus, h, ns.reservation_lendable, ns.reservation_borrowed});
      cluster_.Reserve(n, ns.reserved_gpus, h, true, ns.reservation_borrowed);
    }
  }
  probe();
  for (const Saved& v : saved) cluster_.Reserve(v.node, v.gpus, v.holder, v.lendable, v.borrowed);
}

}  // namespace gpuorch::sched
