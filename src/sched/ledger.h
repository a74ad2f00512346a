#pragma once

// Who is leaving for whom: the links between preemptors and the victim tasks that stop for
// them. One task stops for one preemptor at most; a preemptor waits while any task stopping
// for it is still running, and the GPUs a task frees are held for its preemptor only.
//
// Every way a task can go (it ends, its eviction completes, its node is lost, its workload
// is cancelled) passes through Unlink, so a preemptor's count of leaving tasks can never
// leak. Contract: single-threaded; lookups are O(1) expected, Forget is O(victims of the
// preemptor). Iteration order never reaches a decision (only lookups and counts do).

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/ids.h"

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
  bool empty() const { return by_task_.empty(); }
  size_t links() const { return by_task_.size(); }

 private:
  static uint64_t Key(WorkloadId w, int32_t task) {
    return uint64_t{w.value()} << 32 | static_cast<uint32_t>(task);
  }
  std::unordered_map<uint64_t, WorkloadId> by_task_;
  std::unordered_map<WorkloadId, std::vector<uint64_t>> by_preemptor_;
};

}  // namespace gpuorch::sched
