#pragma once

// Start-time estimates for pending work, in the spirit of Slurm's `squeue --start`: when
// each pending workload is expected to start, and what it waits for.
//
// The estimate replays the future on one timeline of free milli-GPU per GPU model (a
// CapacityProfile): running work frees its GPUs at start_time + runtime_estimate; work
// whose runtime is unknown frees nothing, so whatever only it could make room for gets no
// estimate. Pending work is then walked in the order the cycle tried it, claims first:
//  1. A preemptor (kPreempting) starts when its victims' grace periods end; it waits for
//     the victim that leaves last. Its victims' GPUs are its own, so it takes nothing from
//     the timeline, and gives its GPUs back at its own expected end.
//  2. A head-of-line holder (kReserved) starts when the last task on its reserved nodes is
//     expected to end (the reservation's eta, recomputed: nodes may have been lost since);
//     work lent the reserved GPUs counts as evicted then, leaving within its grace period.
//     It takes its GPUs from the timeline from then until its own expected end.
//  3. Work that waits for capacity (kNoFit, kTopologyUnsatisfiable, kBlockedByReservation)
//     starts at the earliest change of the timeline after `now` from which enough milli-GPU
//     of an acceptable model stay free for its expected runtime (for ever, if unknown), and
//     takes them, so that work later in the order comes after it. It waits for the workload
//     whose end made that room, or for the reservation holder that blocks it.
//  4. Work held back by quota or limits, CPU-only work, and work past the first
//     SchedulerConfig::estimate_limit of the order gets no estimate (-1).
//
// Limits, said plainly: the timeline aggregates a model's GPUs, so it ignores fragmentation
// and topology (an estimate can be early when the room frees on scattered nodes), and it
// trusts runtime estimates (users overestimate, so estimates tend to be late). Overdue work
// is expected to end at any moment (now + 1 ms). Expected ends go on the timeline rounded
// up to a whole minute (Slurm's bf_resolution): starts that follow from them are minutes.
//
// Cost: O(R log R + P) to build the timelines, for R running and P pending workloads,
// then O(S) per estimated workload and acceptable model, where S (a timeline's steps) is
// at most min(R, minutes of the horizon) plus twice the number estimated: O(K * S) for the
// first K of the order. Measured on the 10k-pending benchmark (80k GPUs) with every
// workload given its own runtime estimate: about 6 ms for K = 1000.

#include <cstdint>
#include <vector>

#include "sched/plan.h"
#include "sched/scheduler.h"

namespace gpuorch::sched {

// Free milli-GPU of one model over time, as a step function that starts at `now`.
//
// Not thread-safe; a value type.
class CapacityProfile {
 public:
  struct Release {
    Time at;
    int64_t milli;
    WorkloadId by;  // whose end frees it
  };

  // `free_now` milli-GPU free at `now`, plus `releases` (any order; times before `now + 1`
  // count as `now + 1`, since what is still running now cannot free before the next instant).
  CapacityProfile(Time now, int64_t free_now, std::vector<Release> releases);

  // The earliest step time t > now from which `milli` stay free throughout [t, t + duration)
  // (duration <= 0: from t on, for ever), or -1 if there is none. `by` (optional) is set to
  // the workload whose release starts that step.
  Time Earliest(int64_t milli, Duration duration, WorkloadId* by = nullptr) const;

  // `milli` are taken during [from, from + duration) (duration <= 0: from `from` on), and
  // given back at the end by `by`. `from` must not be before now.
  void Take(Time from, Duration duration, int64_t milli, WorkloadId by);

  // `milli` more are free from `at` on (not before now + 1), freed by `by`.
  void Add(Time at, int64_t milli, WorkloadId by);

  // Cost: Earliest O(steps after its floor), Take and Add O(steps). Earliest remembers its
  // last answers: as Take only removes room, an earlier answer for no more milli and no
  // longer a duration is a floor for the next one, and the scan starts there.

  size_t steps() const { return steps_.size(); }

 private:
  struct Step {
    Time at;
    int64_t free;  // milli-GPU free from `at` until the next step
    WorkloadId by;
  };
  // Index of the step starting exactly at `at` (inserted if needed, with `by`).
  size_t Split(Time at, WorkloadId by);
  Time Scan(int64_t milli, Duration duration, Time floor, WorkloadId* by) const;

  struct Floor {
    int64_t milli;
    Duration duration;  // <= 0 (for ever) is stored as the largest
    Time at;            // the answer then; the largest Time for "never"
  };
  static constexpr size_t kFloors = 32;

  Time now_;
  mutable std::vector<Floor> floors_;  // at most kFloors, overwritten round-robin
  mutable size_t next_floor_ = 0;
  std::vector<Step> steps_;  // sorted by time, strictly increasing; steps_[0].at == now_
};

// Fills estimated_start and waiting_for of `plan.pending` (sorted by workload id) for the
// first `config.estimate_limit` still-pending workloads of `order` (the cycle's order), and
// remembers when this plan's victims are due to leave. Called once at the end of a cycle.
void EstimateStarts(Scheduler::Impl& s, const std::vector<WorkloadId>& order, Plan& plan);

}  // namespace gpuorch::sched
