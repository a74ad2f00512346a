#pragma once

// The run-time estimates a replay gives the engine (WorkloadSpec::runtime_estimate), which
// it uses for the head-of-line reservation's ETA and for EASY backfill of work that cannot
// be evicted. Real users do not know their run times: they overestimate, often by large
// factors (Mu'alem & Feitelson, IEEE TPDS 12(6), 2001; Tsafrir, Etsion & Feitelson, IEEE
// TPDS 18(6), 2007). The noisy models below are assumptions in that spirit, not fits to a
// log; docs/simulator.md states them.

#include <cstdint>
#include <string>
#include <string_view>

#include "core/ids.h"
#include "core/status.h"

namespace gpuorch::sim {

enum class EstimateMode : uint8_t {
  kExact,  // the job's true run time (an oracle: the best case for backfill)
  kNoisy,  // an overestimate drawn per job (EstimateNoise), never below the run time
  kNone,   // unknown (0): the engine treats the job as running for a long time
};
const char* ToString(EstimateMode m);
bool ParseEstimateMode(std::string_view s, EstimateMode& m);

enum class NoiseModel : uint8_t {
  // estimate = runtime x F, F uniform in [1, 1 + f]: the multiplicative "f-model" of the
  // backfilling literature (Mu'alem & Feitelson 2001).
  kFactor,
  // estimate = runtime / A, A uniform in [a_min, 1]: the accuracy (runtime / estimate) is
  // uniform, a heavier tail of large overestimates than kFactor for the same mean accuracy.
  kAccuracy,
};
const char* ToString(NoiseModel m);
bool ParseNoiseModel(std::string_view s, NoiseModel& m);

struct EstimateOptions {
  EstimateMode mode = EstimateMode::kExact;
  NoiseModel model = NoiseModel::kFactor;
  int32_t f_permille = 4000;     // kFactor: f (4.0 = estimates up to 5x the run time)
  int32_t a_min_permille = 100;  // kAccuracy: a_min (0.1 = estimates up to 10x)
  uint64_t seed = 1;
  // Round the estimate up to the next of a few round values (minutes up to an hour, then
  // hours, then days), as users write them (Tsafrir et al. found estimates are modal).
  bool round_up = false;

  core::Status Validate() const;  // names the field and the bound it breaks
};

// The estimate of job `job` (its index in the trace) of true run time `runtime` > 0. A pure
// function of its arguments: the draw of one job depends only on the seed and its index, so
// a job's estimate does not change when other jobs are added or the policy changes. Integer
// arithmetic only; the result is >= runtime for kExact and kNoisy, and 0 for kNone.
core::Duration EstimateRuntime(const EstimateOptions& o, uint32_t job, core::Duration runtime);

// The round value (in ms) at or above `d` used by `round_up`; `d` itself past the table.
core::Duration RoundUpToModal(core::Duration d);

}  // namespace gpuorch::sim
