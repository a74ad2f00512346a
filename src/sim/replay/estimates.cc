#include "sim/replay/estimates.h"

#include "core/rng.h"

namespace gpuorch::sim {

using core::Duration;
using core::Status;

const char* ToString(EstimateMode m) {
  switch (m) {
    case EstimateMode::kExact:
      return "exact";
    case EstimateMode::kNoisy:
      return "noisy";
    case EstimateMode::kNone:
      return "none";
  }
  return "?";
}

bool ParseEstimateMode(std::string_view s, EstimateMode& m) {
  for (EstimateMode c : {EstimateMode::kExact, EstimateMode::kNoisy, EstimateMode::kNone}) {
    if (s == ToString(c)) return m = c, true;
  }
  return false;
}

const char* ToString(NoiseModel m) { return m == NoiseModel::kFactor ? "factor" : "accuracy"; }

bool ParseNoiseModel(std::string_view s, NoiseModel& m) {
  for (NoiseModel c : {NoiseModel::kFactor, NoiseModel::kAccuracy}) {
    if (s == ToString(c)) return m = c, true;
  }
  return false;
}

Status EstimateOptions::Validate() const {
  if (f_permille < 0 || f_permille > 1000000) {
    return Status::Invalid("estimates.f: must be in 0..1000");
  }
  if (a_min_permille < 1 || a_min_permille > 1000) {
    return Status::Invalid("estimates.a_min: must be in 0.001..1");
  }
  return Status::Ok();
}

Duration RoundUpToModal(Duration d) {
  constexpr Duration kMin = 60 * core::kSecond, kHour = 60 * kMin, kDay = 24 * kHour;
  static constexpr Duration kValues[] = {
      1 * kMin,  2 * kMin,  5 * kMin,  10 * kMin, 15 * kMin, 20 * kMin, 30 * kMin,  45 * kMin,
      1 * kHour, 2 * kHour, 3 * kHour, 4 * kHour, 6 * kHour, 8 * kHour, 12 * kHour, 1 * kDay,
      2 * kDay,  3 * kDay,  5 * kDay,  7 * kDay,  14 * kDay, 30 * kDay};
  for (Duration v : kValues) {
    if (d <= v) return v;
  }
  return d;
}

Duration EstimateRuntime(const EstimateOptions& o, uint32_t job, Duration runtime) {
  switch (o.mode) {
    case EstimateMode::kExact:
      return runtime;
    case EstimateMode::kNone:
      return 0;
    case EstimateMode::kNoisy:
      break;
  }
  // One generator per job, seeded from (seed, job): SplitMix64 inside Rng::Seed decorrelates
  // neighbouring jobs.
  core::Rng rng(o.seed * 0x9e3779b97f4a7c15ull ^ (uint64_t{job} + 1));
  Duration est = runtime;
  if (o.model == NoiseModel::kFactor) {
    // F = 1 + u / 1000 with u uniform in 0..f_permille; ceil(runtime x F).
    const int64_t factor = 1000 + static_cast<int64_t>(rng.Uniform(uint64_t(o.f_permille) + 1));
    est = (runtime * factor + 999) / 1000;
  } else {
    // A = a / 1000 with a uniform in a_min..1000; ceil(runtime / A).
    const int64_t a =
        o.a_min_permille + static_cast<int64_t>(rng.Uniform(uint64_t(1000 - o.a_min_permille) + 1));
    est = (runtime * 1000 + a - 1) / a;
  }
  return o.round_up ? RoundUpToModal(est) : est;
}

}  // namespace gpuorch::sim
