#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "sim/fgd_input.h"
#include "sim/openb.h"

namespace gpuorch::sim {

// One (workload, policy, seed) run of the FGD experiment (FGD-PROTOCOL.md §2.5, §6).

inline constexpr int kBuckets = 131;  // arrived % buckets 0..130

// A workload prepared once and shared (read-only) by all its runs.
struct FgdWorkload {
  std::string name;              // pod-list stem, e.g. openb_pod_list_default
  std::vector<OpenbNode> nodes;  // sorted by sn
  std::vector<OpenbPod> pods;    // sorted by name
  TypicalPods typical;
  int64_t capacity_milli = 0;
};

// Builds an FgdWorkload (sorts, computes the typical pods).
FgdWorkload PrepareWorkload(std::string name, std::vector<OpenbNode> nodes,
                            std::vector<OpenbPod> pods);

struct FgdRunResult {
  // Per arrived-% bucket: allocation in hundredths of a percent (-1: no row), fragmentation
  // as % of capacity (rounded to 2 decimals) and fragmented share of idle GPU (%).
  std::array<int64_t, kBuckets> alloc_centi{};
  std::array<double, kBuckets> frag_pct{};
  std::array<double, kBuckets> frag_ratio_pct{};
  int64_t total_gpus = 0;
  int64_t pods = 0;
  int64_t failed = 0;
  int64_t final_alloc_milli = 0;
  double empty_frag_pct = 0;  // the cluster fragmentation before the first pod
};

// Runs the experiment through the production placement path. Fails only on bad input
// (an unknown policy, a node the engine rejects).
core::Result<FgdRunResult> RunFgd(const FgdWorkload& w, const std::string& policy, uint64_t seed);

// Fragmentation of the empty cluster as % of capacity (protocol §5.6 check).
double EmptyClusterFragPct(const FgdWorkload& w);

// Round-half-to-even of num/den for den > 0 and num >= 0, as numpy rounds.
int64_t RoundHalfEven(int64_t num, int64_t den);

}  // namespace gpuorch::sim
