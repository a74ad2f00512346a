#pragma once

// Metrics of replays, side by side: OUT/metrics.json (read by the report) and CSV files.
// Definitions are in docs/simulator.md ("Metrics"); every number here is computed from
// integer milli-GPU x millisecond integrals and integer job times, so the output is a
// function of the inputs only (no wall time, no addresses), byte for byte.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "sim/replay/config.h"
#include "sim/replay/replay.h"
#include "sim/replay/trace.h"

namespace gpuorch::sim {

struct ReplayRun {
  std::string trace_label;  // e.g. "philly"
  const Trace* trace = nullptr;
  const ClusterConfig* cluster = nullptr;
  const QueuesConfig* queues = nullptr;
  ReplayOptions options;  // of the first result (grace, restart)
  std::vector<std::string> setup_notes;
  std::vector<ReplayResult> results;  // one per policy
};

// Nearest-rank percentile (p in 0..100) of sorted values; 0 for none.
int64_t Percentile(const std::vector<int64_t>& sorted, int p);
// Jain's index of non-negative values: (sum x)^2 / (n sum x^2); 1 for none.
double JainIndex(const std::vector<double>& x);

nlohmann::ordered_json MetricsJson(const ReplayRun& run);
// A fixed-width text table of the headline numbers, one row per policy.
std::string SummaryTable(const nlohmann::ordered_json& metrics);
// Writes OUT/metrics.json, OUT/summary.csv, OUT/tenants.csv and OUT/timeline.csv.
core::Status WriteMetrics(const nlohmann::ordered_json& metrics, const std::string& out_dir);

}  // namespace gpuorch::sim
