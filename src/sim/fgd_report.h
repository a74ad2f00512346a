#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "sim/fgd_run.h"

namespace gpuorch::sim {

// The FGD experiment as a batch: every (workload, policy, seed) run, in parallel threads
// (each run owns its engine; the engine stays single-threaded), then the files of §6 and a
// side-by-side summary with the authors' published means.

// The 17 pod lists the authors ran (protocol §2), default first.
const std::vector<std::string>& AuthorWorkloads();
// The authors' name of one of our baseline policies ("06-FGD"), or "" for ours.
std::string AuthorPolicyName(const std::string& policy);

struct FgdRunKey {
  std::string workload;
  std::string policy;
  uint64_t seed = 0;
};

struct FgdBatch {
  std::vector<FgdRunKey> keys;
  std::vector<FgdRunResult> results;  // same order as keys
  std::vector<double> seconds;        // wall time per run
};

// Reads the node list and each pod list from `traces_dir`, runs every combination with
// `threads` workers, and returns the results in a fixed order (workload, policy, seed).
core::Result<FgdBatch> RunFgdBatch(const std::string& traces_dir,
                                   const std::vector<std::string>& workloads,
                                   const std::vector<std::string>& policies,
                                   const std::vector<uint64_t>& seeds, int threads);

// The authors' 10-seed means at 100% and 130%, keyed by (workload, authors' policy name).
struct AuthorMeans {
  double at100 = 0, at130 = 0;
};
core::Result<std::map<std::pair<std::string, std::string>, AuthorMeans>> ReadAuthorSummary(
    const std::string& path);

// Writes OUT/alloc.csv, OUT/frag.csv, OUT/frag_ratio.csv and OUT/summary.json. Output is a
// function of the batch only (no times), so the same command writes the same bytes.
core::Status WriteFgdReport(const FgdBatch& batch, const std::string& traces_dir,
                            const std::string& out_dir, std::string* table);

}  // namespace gpuorch::sim
