#pragma once

// The report people look at: one self-contained HTML page (inline SVG, inline CSS, one small
// inline script; no network) built from a replay's metrics.json and, when given, the FGD
// experiment's alloc.csv.

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"

namespace gpuorch::sim {

// Mean allocation curves of the FGD experiment: workload -> policy -> 131 points (GPU
// allocation in % of capacity at 0..130% of arrived GPU requests), averaged over seeds;
// points no seed reached are NaN-free: the curve stops there.
using AllocCurves = std::map<std::string, std::map<std::string, std::vector<double>>>;
core::Result<AllocCurves> ReadAllocCsv(const std::string& path);

// `metrics` may be null/empty (FGD-only report); `alloc_csv` may be "" (replay-only).
core::Result<std::string> BuildReport(const nlohmann::ordered_json& metrics,
                                      const std::string& alloc_csv);
core::Status WriteText(const std::string& path, const std::string& text);

}  // namespace gpuorch::sim
