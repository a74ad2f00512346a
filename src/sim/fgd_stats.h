#pragma once

// The spread over seeds of the FGD experiment: every policy's allocation, and every
// policy's margin over FGD paired by seed (the same arrival sequence for both), so that a
// margin is never quoted without the seed-to-seed variation it must stand out from.

#include <cstdint>
#include <string>
#include <vector>

#include "sim/fgd_report.h"

namespace gpuorch::sim {

// Mean, extremes and sample standard deviation (n - 1; 0 for one value) of some values.
struct SeedSpread {
  int n = 0;
  double mean = 0, min = 0, max = 0, sd = 0;
};
SeedSpread Spread(const std::vector<double>& values);

// One (workload, policy) of a batch: its allocation at 100% and 130% arrived, per seed.
struct PolicySpread {
  std::string workload, policy;
  std::vector<uint64_t> seeds;
  SeedSpread at100, at130;
};

// One policy's margin over `fgd` on one workload: (policy - fgd) per seed, over the seeds
// both ran; `wins130` counts the seeds where the policy allocated strictly more at 130%.
struct MarginSpread {
  std::string workload, policy;
  SeedSpread at100, at130;
  int wins130 = 0;
};

struct FgdSpreads {
  std::vector<PolicySpread> policies;  // in the batch's (workload, policy) order
  std::vector<MarginSpread> margins;   // every policy but fgd, where fgd ran
  // gpuorch - fgd over every (workload, seed) pair of the batch (n = 0 without both).
  SeedSpread gpuorch_all130;
};

FgdSpreads ComputeSpreads(const FgdBatch& batch);

}  // namespace gpuorch::sim
