#pragma once

// The event-driven replay of a job trace through the production engine (sched::Scheduler).
//
// Simulated time only. The engine is called at event times: job arrivals, completions and
// eviction deadlines (the end of a victim's grace period); never on a timer. Each Plan is
// applied as a real driver would: a bind starts the job's tasks, which end after the job's
// remaining run time; an eviction stops the job after its grace period, after which it is
// requeued (EvictionCompleted) and later restarts from its last checkpoint (RestartMode).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/ids.h"
#include "core/status.h"
#include "sim/replay/config.h"
#include "sim/replay/estimates.h"
#include "sim/replay/trace.h"

namespace gpuorch::sim {

enum class ReplayPolicy : uint8_t {
  kStatic,   // each tenant owns a fixed set of nodes; FIFO inside its own partition
  kFifo,     // one shared pool, one FIFO queue, no quotas, no preemption
  kGpuorch,  // one pool; quotas, borrowing, preemption, reservations, gpuorch placement
};
const char* ToString(ReplayPolicy p);
bool ParseReplayPolicy(std::string_view s, ReplayPolicy& p);

enum class RestartMode : uint8_t {
  kCheckpoint,  // progress is saved when the eviction notice arrives (or every interval)
  kScratch,     // all progress is lost
};

struct ReplayOptions {
  ReplayPolicy policy = ReplayPolicy::kGpuorch;
  std::string placement = "gpuorch";  // placement policy of every pool (sched::PolicyNames)
  core::Duration grace_period = 30 * core::kSecond;
  RestartMode restart = RestartMode::kCheckpoint;
  // With kCheckpoint: 0 = the job checkpoints on SIGTERM (all progress kept); > 0 = only
  // periodic checkpoints count (progress rounds down to a multiple of the interval).
  core::Duration checkpoint_interval = 0;
  uint64_t seed = 0;
  // Head-of-line reservations per GPU model for gpuorch (SchedulerConfig::max_reservations).
  int32_t max_reservations = 8;
  // What the engine is told of each job's run time (estimates.h); the same for every policy.
  EstimateOptions estimates;
};

// What happened to one job of the trace.
struct JobOutcome {
  core::Time first_start = -1;  // -1: never started
  core::Time finish = -1;       // -1: never finished (infeasible, or still queued)
  int32_t preemptions = 0;
  bool infeasible = false;           // can never run on its pool (too big, model absent)
  bool violated = false;             // in quota and waited longer than the grace period
  core::Duration entitled_wait = 0;  // longest in-quota wait before a start
};

// A piece of the piecewise-constant cluster state, from `t` to the next segment.
struct Segment {
  core::Time t = 0;
  int64_t busy_milli = 0;      // GPUs allocated (running or in their grace period)
  int64_t waiting_milli = 0;   // GPUs asked for by all pending jobs
  int64_t runnable_milli = 0;  // ... by pending jobs that fit the idle GPUs by shape
};

struct ReplayResult {
  ReplayPolicy policy = ReplayPolicy::kGpuorch;
  int64_t capacity_milli = 0;
  core::Time end = 0;            // last event (completion) time
  std::vector<JobOutcome> jobs;  // indexed like Trace::jobs
  std::vector<Segment> segments;
  // Integrals over [0, end], milli-GPU x ms.
  int64_t busy = 0, idle_while_waiting = 0, waiting = 0;
  int64_t preemptions = 0;
  int64_t lost = 0;  // GPU time lost to preemption: grace periods plus discarded progress
  int64_t cycles = 0;
};

// Runs the trace under one policy. Tenants of the trace must all have a queue.
core::Result<ReplayResult> RunReplay(const Trace& trace, const ClusterConfig& cluster,
                                     const QueuesConfig& queues, const ReplayOptions& options);

}  // namespace gpuorch::sim
