#pragma once

// `gpuorch sim platform` end to end: traces in, every policy run on the same demand and the
// same jobs, OUT/summary.json, OUT/timeline.csv and OUT/report.html out.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "sim/platform/config.h"
#include "sim/platform/platform.h"
#include "sim/platform/workloads.h"

namespace gpuorch::sim::platform {

struct PlatformRun {
  PlatformConfig config;
  std::vector<ServiceDemand> services;
  Workloads work;
  Partitions partitions;
  std::vector<PolicyResult> results;  // in the order of the policies asked for
  std::vector<std::string> assumptions;
};

// Reads the traces under `traces_dir`, builds the demand and the jobs, and runs each policy
// (each on its own thread: the engines share nothing, so the result does not depend on it).
core::Result<PlatformRun> RunPlatform(const PlatformConfig& config, const std::string& traces_dir,
                                      const std::vector<Policy>& policies);

// The same from inputs already built (tests): services' demand and jobs given.
core::Result<PlatformRun> RunPlatformOn(const PlatformConfig& config,
                                        std::vector<ServiceDemand> services, Workloads work,
                                        const std::vector<Policy>& policies);

// OUT/summary.json's object (docs/platform.md lists every key), with `command` recorded, and
// the timeline (means over `step_s`) the report draws.
nlohmann::ordered_json SummaryJson(const PlatformRun& run, const std::string& command);
nlohmann::ordered_json TimelineJson(const PlatformRun& run, int32_t step_s);
// One row per policy and minute.
std::string TimelineCsv(const PlatformRun& run);
// A fixed-width table of the headline metrics, one row per policy.
std::string SummaryTable(const nlohmann::ordered_json& summary);
// Writes summary.json, timeline.csv and report.html under out_dir (created).
core::Status WriteOutputs(const PlatformRun& run, const std::string& command,
                          const std::string& out_dir);

}  // namespace gpuorch::sim::platform
