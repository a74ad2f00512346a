#pragma once

// The batch work of the platform experiment, generated before any policy runs so that every
// policy sees exactly the same jobs: training gangs from the Philly trace and experiments
// arriving as a Poisson stream (docs/platform.md says how each is drawn).

#include <cstdint>
#include <string>
#include <vector>

#include "core/ids.h"
#include "core/status.h"
#include "sim/platform/config.h"
#include "sim/replay/trace.h"

namespace gpuorch::sim::platform {

enum class JobClass : uint8_t { kTraining, kExperiment };

struct PlatformJob {
  JobClass cls = JobClass::kTraining;
  uint32_t team = 0;  // training: index into TrainingConfig::teams
  core::Time arrival = 0;
  core::Duration work = 0;       // run time, uninterrupted
  core::Duration idle_tail = 0;  // experiments: GPUs held idle after the work (a notebook)
  int32_t tasks = 1;
  int32_t gpus_per_task = 1;
  int32_t gpu_milli = 1000;
  int64_t total_milli() const { return int64_t{tasks} * gpus_per_task * gpu_milli; }
};

struct Workloads {
  std::vector<PlatformJob> jobs;  // by arrival, training before experiments at a tie
  // How the training window was cut from the trace: its first and last day, and the
  // compression (trace seconds per simulated second).
  double trace_first_day = 0, trace_last_day = 0, compression = 1;
  int64_t training_jobs = 0, experiment_jobs = 0;
  double training_offered_gpus = 0, experiment_offered_gpus = 0;  // mean over the days
};

// `philly` is the Philly trace as ReadPhillyTrace gives it (for any node size: shapes are
// recomputed here). `training_gpus` are the teams' GPUs together (their guarantees).
// Training: jobs of at least min_gpus GPUs from trace_start_day on, durations cut at
// max_duration_h, GPU counts above a node's rounded up to whole nodes (tasks of node_gpus),
// taken in arrival order until they offer load * training_gpus * days of GPU time, their
// arrivals scaled onto the days. Each virtual cluster of the trace goes whole to one team,
// the team furthest below its share of the offered load (largest VCs first).
// Experiments: Poisson arrivals offering offered_gpus on average, durations drawn from the
// trace's single-GPU jobs up to max_duration_h, a share fractional, a share with an idle tail.
core::Result<Workloads> BuildWorkloads(const PlatformConfig& config, const Trace& philly,
                                       int32_t node_gpus, int64_t training_gpus);

}  // namespace gpuorch::sim::platform
