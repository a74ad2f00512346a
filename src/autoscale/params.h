#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace gpuorch::autoscale {

// Every knob of one service's autoscaler, with Knative's KPA defaults where Knative has one
// (docs/autoscale.md gives each equation and the Knative setting it mirrors). Windows and
// delays are whole seconds because the signal windows keep one bucket per second.
struct ServiceParams {
  // In-flight requests one replica should carry: desired = ceil(in_flight / (target *
  // target_utilization)). Knative: container-concurrency-target-default 100 and
  // container-concurrency-target-percentage 70.
  double target = 100.0;
  double target_utilization = 0.7;

  // The second signal, KV-cache utilization (a 0..1 gauge averaged over replicas): desired =
  // ceil(ready * utilization / kv_cache_target). Not in Knative.
  double kv_cache_target = 0.9;

  // Averaging windows. Knative: stable-window 60 s, panic-window-percentage 10 (6 s).
  int32_t stable_window_s = 60;
  int32_t panic_window_s = 6;
  // Panic is entered when desired panic replicas / ready replicas >= panic_threshold.
  // Knative: panic-threshold-percentage 200.
  double panic_threshold = 2.0;

  // Per decision, at most ceil(max_scale_up_rate * ready) and at least
  // floor(ready / max_scale_down_rate). Knative: max-scale-up-rate 1000, max-scale-down-rate 2.
  double max_scale_up_rate = 1000.0;
  double max_scale_down_rate = 2.0;

  // The decision is the highest recommendation of the last scale_down_delay_s seconds.
  // Knative: scale-down-delay 0 (off).
  int32_t scale_down_delay_s = 0;

  // Bounds. min_replicas 0 allows scale to zero; max_replicas 0 means unbounded (Knative:
  // min-scale 0, max-scale 0).
  int32_t min_replicas = 0;
  int32_t max_replicas = 0;
  // The least non-zero decision (Knative: activation-scale 1).
  int32_t activation_scale = 1;
  // A service at or above one replica goes to zero only after this long without traffic
  // (any sample above zero from any source). Knative's nearest knobs are
  // scale-to-zero-grace-period 30 s and scale-to-zero-pod-retention-period 0.
  int32_t scale_to_zero_after_s = 300;

  // Names of the replica gauges the caller sums into the replica in-flight signal and reads
  // as KV-cache utilization (vLLM's by default). The library only carries them for the
  // caller; an empty kv_cache_gauge means the caller reports no KV-cache signal.
  std::vector<std::string> in_flight_gauges = {"vllm:num_requests_running",
                                               "vllm:num_requests_waiting"};
  std::string kv_cache_gauge = "vllm:gpu_cache_usage_perc";

  // target * target_utilization: the in-flight requests one replica is sized for.
  double TargetPerReplica() const { return target * target_utilization; }

  // An error names the field (`autoscale.stable_window_s: ...`).
  core::Status Validate() const;
};

}  // namespace gpuorch::autoscale
