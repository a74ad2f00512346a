#pragma once

// The demand of `gpuorch sim mig`: how many replicas of each model class are wanted in each
// window of the simulated day, and the notebook sessions.
//
// Replicas: each model class follows its own copy of an Azure LLM inference trace 2023 hour
// (7B: the code trace; 13B and 70B: the conversation trace, from their own random offsets),
// tiled over the day by sim::platform::TileDemand under a diurnal envelope (the trace covers
// one hour; the envelope is an ASSUMPTION, as in `sim platform`). A window's work is
// prompt_tokens / prefill + output_tokens / decode with the rates of
// platform::DefaultLlama70bCapacity (an output token costs two prompt tokens), averaged over
// the window; the class's wanted replicas are ceil(peak * work / max work), so
// the busiest window of the day wants exactly `peak` replicas. The trace gives the shape;
// the configured peaks give the mix.
//
// Notebooks: sessions arrive as a Poisson process whose rate follows the same envelope
// (peak concurrency notebooks_peak at the daily peak), with exponential durations of mean
// notebook_mean_min; an ASSUMPTION.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "sim/mig/models.h"
#include "sim/platform/demand.h"

namespace gpuorch::sim::mig {

struct MigConfig {
  uint64_t seed = 1;
  int32_t hours = 24;      // simulated span, [1, 168]
  int32_t window_s = 300;  // replica targets change at most once a window, [10, 3600]
  // Peak replicas wanted of 7B, 13B and 70B (ClassIndex order; the notebook entry is unused).
  std::array<int32_t, kClasses> peak = {48, 24, 8, 0};
  int32_t notebooks_peak = 24;    // concurrent notebooks at the daily peak
  double notebook_mean_min = 60;  // mean session length
  platform::Envelope envelope;    // peak/trough 3, peak at 14:00 (weekday)
  int32_t reconfig_delay_s = 5;   // one MIG layout change, [0, 600]
  // Static MIG: GPUs left whole (not in MIG mode) for the classes no instance of
  // kAllBalanced holds (the 70B replicas), as an operator would size them: -1 = peak_70b
  // GPUs (each 70B replica takes one). The rest of the pool is all-balanced.
  int32_t static_whole_gpus = -1;
  int32_t gpus_per_node = 8;        // [1, 16]
  int32_t pool_gpus = 48;           // the fixed pool of the unplaced and reconfiguration counts
  int32_t wait_bound_s = 60;        // a request waiting longer than this is late
  double max_late_fraction = 0.01;  // the GPUs-needed search's bound on late requests
  // Errors name the field: "peak_7b: must be in [0, 10000]".
  core::Status Validate() const;
};

// What every policy is run on.
struct Workload {
  int32_t window_s = 0;
  int64_t horizon_s = 0;
  // wanted[class][window] for 7B, 13B and 70B (the notebook row is empty).
  std::array<std::vector<int32_t>, kClasses> wanted;
  struct Session {
    int64_t start_s = 0, end_s = 0;
  };
  std::vector<Session> notebooks;  // by start
  // The most whole GPUs the demand ever asks for at once (replicas and notebooks, one GPU
  // each or more): the upper end of the GPUs-needed search.
  int32_t peak_whole_gpus = 0;
};

// From the two trace hours (code, conversation). Pure: the result depends on its inputs only.
core::Result<Workload> BuildWorkload(const MigConfig& cfg, const platform::HourProfile& code,
                                     const platform::HourProfile& conv);
// Reads DIR/azure-llm-2023/AzureLLMInferenceTrace_{code,conv}.csv.
core::Result<Workload> LoadWorkload(const MigConfig& cfg, const std::string& traces_dir);

}  // namespace gpuorch::sim::mig
