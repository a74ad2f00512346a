#pragma once

// The platform experiment's configuration (platform.yaml, docs/platform.md): the cluster,
// the inference services with their capacity profiles and the demand envelope, the training
// teams, the experiments, and the policies' knobs. Every field has a shipped default, so an
// empty file (or none) is the headline experiment.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "autoscale/params.h"
#include "core/status.h"
#include "sim/platform/demand.h"
#include "sim/replay/config.h"

namespace gpuorch::sim::platform {

struct InferenceConfig;

// Knobs of autoscale::ServiceParams a service sets for itself; unset ones follow
// inference.autoscale.
struct AutoscaleOverride {
  std::optional<double> target, target_utilization, panic_threshold, max_scale_up_rate,
      max_scale_down_rate;
  std::optional<int32_t> stable_window_s, panic_window_s, scale_down_delay_s, min_replicas,
      max_replicas;
  autoscale::ServiceParams Apply(autoscale::ServiceParams base) const;
};

struct ServiceConfig {
  std::string name;
  std::string trace;        // Azure LLM trace file, relative to the traces directory
  double rate_scale = 1.0;  // request rate at the envelope's peak, as a multiple of the trace's
  CapacityProfile capacity;
  // This service's own autoscaler knobs: each one given replaces inference.autoscale's.
  AutoscaleOverride autoscale;
  autoscale::ServiceParams Autoscale(const InferenceConfig& in) const;
};

struct InferenceConfig {
  std::vector<ServiceConfig> services;
  Envelope envelope;
  int32_t priority = 100;
  // From bind to Ready: the model's weights loaded and the server warmed up.
  int32_t startup_s = 120;
  // A replica scaled down keeps its GPUs this long while its requests finish.
  int32_t drain_s = 30;
  // The autoscaler's knobs (src/autoscale), for every service. `target` is the in-flight
  // requests one replica carries at the utilization the capacity model allows (the simulator
  // feeds in-flight = load / rho_max * target, see docs/platform.md).
  autoscale::ServiceParams autoscale;
};

struct TeamConfig {
  std::string name;
  double share = 0.5;  // of the nodes left to training, for the partition and the guarantee
};

struct TrainingConfig {
  std::string trace = "philly/philly_pollux_artifact.csv";
  int32_t trace_start_day = 21;  // the window of the trace replayed starts here
  // Offered GPU load (mean GPUs the jobs ask for over time) as a share of the teams'
  // guarantees; arrivals are compressed or stretched to it.
  double load = 0.8;
  int32_t max_duration_h = 48;  // longer jobs are cut to this (the week would not hold them)
  int32_t min_gpus = 2;         // single-GPU Philly jobs are not training gangs
  int32_t priority = 50;
  std::vector<TeamConfig> teams;
};

struct ExperimentsConfig {
  int32_t nodes = 8;          // the static partition, and the queue's guarantee in the pool
  double offered_gpus = 256;  // mean GPUs the arriving experiments ask for
  double fractional_share = 0.3;
  int32_t fraction_milli = 500;
  int32_t max_duration_h = 4;    // durations: Philly single-GPU jobs up to this long
  double max_wait_h = 1;         // an experiment not started by then is withdrawn
  double idle_tail_share = 0.1;  // notebooks left open after their work ends
  double idle_tail_mean_h = 1;   // exponential
  int32_t priority = 0;
};

struct PlatformConfig {
  std::string source = "(defaults)";  // the file it came from, for the report
  int32_t days = 7;                   // measured
  int32_t warmup_days = 1;  // simulated before the measured days, so that they start loaded
  uint64_t seed = 1;
  ClusterConfig cluster;  // default: 64 nodes x 8 H100-80GB, racks of 8
  int32_t grace_period_s = 30;
  // A scheduling cycle runs at most once per period, for the pools that had an event.
  int32_t scheduling_period_s = 10;
  bool checkpoint_on_sigterm = true;
  int32_t idle_reclaim_after_s = 900;  // gpuorch only; 0 = off
  InferenceConfig inference;
  TrainingConfig training;
  ExperimentsConfig experiments;

  int32_t total_days() const { return warmup_days + days; }
  // Ranges and cross-field rules; errors name the field.
  core::Status Validate() const;
};

// The shipped defaults (docs/platform.md lists each and where it comes from).
PlatformConfig DefaultPlatformConfig();
// platform.yaml over the defaults: a key given replaces the default. `cluster:` names a
// CLUSTER.yaml (as `sim replay --cluster`), relative to the config file's directory.
core::Result<PlatformConfig> LoadPlatformConfig(const std::string& path);
core::Result<PlatformConfig> ParsePlatformConfig(const std::string& text, const std::string& file,
                                                 const std::string& base_dir);

}  // namespace gpuorch::sim::platform
