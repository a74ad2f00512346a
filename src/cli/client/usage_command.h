#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "cli/client/commands.h"

// `gpuorch usage`: allocated GPU-hours per queue or user and GPU model over a time range,
// the way Slurm's `sreport` reports cluster utilization (docs/cli.md). The server checks
// the range and filters by what the token may read; this side only prints.
namespace gpuorch::cli {

struct UsageArgs {
  std::string from;  // "": the start of to's month (UTC), the server's default
  std::string to;    // "": now
  std::string by = "queue";
  std::string queue;  // "": every queue the token reads
  bool csv = false;
};

int RunUsage(const CommonArgs& common, const UsageArgs& args, const Io& io);

// The answer of GET /v1/usage as a table: a line naming the range, then one row per
// (queue or user, model) with GPU-hours to two decimals, computed in integers.
std::string RenderUsageTable(const nlohmann::json& answer);
// The same as CSV (RFC 4180 quoting, "\n" line ends) with a header: the key column, model,
// allocated_gpu_seconds, allocated_gpu_hours (four decimals), used_gpu_hours (empty until telemetry
// exists), tasks.
std::string RenderUsageCsv(const nlohmann::json& answer);

}  // namespace gpuorch::cli
