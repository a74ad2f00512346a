#pragma once

// The driver of `gpuorch sim mig`: one policy, one pool, one simulated day through the
// production engine (sched::Scheduler).
//
// Events, in time order: a window boundary sets each class's replica count (scaling up
// submits replicas; scaling down withdraws pending replicas first, newest first, then stops
// running ones, newest first), notebook sessions start and end (a notebook still pending at
// its end is withdrawn), and a MIG layout change the engine planned completes
// `reconfig_delay_s` after the plan that listed it (then Scheduler::MigLayoutApplied). The
// engine runs a cycle at every time something happened, and nowhere else.
//
// Pools: `pool_gpus` H100-80GB GPUs on nodes of `gpus_per_node` (the last node takes the
// remainder). Whole and timeslice: GPUs not in MIG mode. Static MIG: the first
// `static_whole_gpus` GPUs whole (for the 70B replicas), every other GPU in MIG mode with
// kAllBalanced, `mig_reconfigure` off. Dynamic MIG: every GPU in MIG mode with no
// instances, `mig_reconfigure` on.

#include <cstdint>

#include "core/status.h"
#include "sim/mig/models.h"
#include "sim/mig/workload.h"

namespace gpuorch::sim::mig {

struct RunResult {
  Policy policy = Policy::kWhole;
  int32_t pool_gpus = 0;
  std::array<int64_t, kClasses> requests{};  // submissions per class
  std::array<int64_t, kClasses> unplaced{};  // withdrawn or still pending at the end, unbound
  int64_t late = 0;          // bound after more than wait_bound_s, or never bound having waited
                             // longer than that
  double late_fraction = 0;  // late / all requests
  double wait_p50_s = 0, wait_p99_s = 0;  // of the requests that were bound
  int64_t reconfigs = 0;                  // MIG layout changes applied
  double reconfigs_per_hour = 0;
  int32_t peak_gpus_busy = 0;     // GPUs with at least one task, the most at once
  double mean_gpus_busy = 0;      // time-weighted over the day
  int32_t max_tasks_per_gpu = 0;  // the most tasks one GPU held at once
  int64_t mig_binds = 0;          // tasks bound on a MIG instance
  int64_t cycles = 0;
  // Whether the late fraction is within the bound (the GPUs-needed search's test).
  bool meets(const MigConfig& cfg) const { return late_fraction <= cfg.max_late_fraction; }
  int64_t total_requests() const;
  int64_t total_unplaced() const;
};

// Runs `policy` on `pool_gpus` GPUs. Errors: the engine refusing an event (named as it says),
// which would be a driver or engine bug.
core::Result<RunResult> RunPolicy(const Workload& w, const MigConfig& cfg, Policy policy,
                                  int32_t pool_gpus);

// The smallest pool (in GPUs, 1 .. w.peak_whole_gpus + gpus_per_node) whose run meets the
// late bound, by bisection (it assumes a larger pool is never worse, which the runs at the
// ends check), with the run at that size; `gpus` -1 and the run at the upper end when even
// that does not meet it.
struct Needed {
  int32_t gpus = -1;
  RunResult run;
  int32_t probes = 0;
};
core::Result<Needed> SearchGpusNeeded(const Workload& w, const MigConfig& cfg, Policy policy);

}  // namespace gpuorch::sim::mig
