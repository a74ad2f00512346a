#pragma once

// `gpuorch sim mig` end to end: the traces in, every policy searched for the GPUs it needs
// and run on the fixed pool, OUT/summary.json and the printed table out.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "sim/mig/run.h"
#include "sim/mig/workload.h"

namespace gpuorch::sim::mig {

struct PolicyOutcome {
  Policy policy = Policy::kWhole;
  Needed needed;    // the GPUs-needed search
  RunResult fixed;  // the run on cfg.pool_gpus
};

struct MigRun {
  MigConfig config;
  Workload workload;
  std::vector<PolicyOutcome> outcomes;  // in the order asked for
};

// Runs each policy on its own thread (the engines share nothing, so the result does not
// depend on it).
core::Result<MigRun> RunMigOn(const MigConfig& cfg, Workload workload,
                              const std::vector<Policy>& policies);
core::Result<MigRun> RunMig(const MigConfig& cfg, const std::string& traces_dir,
                            const std::vector<Policy>& policies);

// OUT/summary.json's object (docs/partitioning.md, "The experiment" lists its keys).
nlohmann::ordered_json SummaryJson(const MigRun& run, const std::string& command);
// A fixed-width table, one column per policy.
std::string SummaryTable(const nlohmann::ordered_json& summary);
// Writes OUT/summary.json (the folder is created).
core::Status WriteOutputs(const nlohmann::ordered_json& summary, const std::string& out_dir);

// The CLI's checks, here so that they are tested. "whole,dynamic-mig" in the order given;
// errors name --policy and the offending entry (unknown, listed twice, empty).
core::Result<std::vector<Policy>> ParsePolicies(const std::string& text);
// cfg.Validate() with the field named as its flag: "--peak-7b: must be in [0, 10000], got -1".
core::Status ValidateFlags(const MigConfig& cfg);

}  // namespace gpuorch::sim::mig
