#pragma once

// A job trace as the replay consumes it: one record per job, independent of where it came
// from (Philly, Pollux, or the generic CSV / JSON-lines format of docs/simulator.md).

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/ids.h"
#include "core/status.h"
#include "core/workload.h"

namespace gpuorch::sim {

struct TraceJob {
  std::string name;
  core::Time arrival = 0;       // ms since the trace's first arrival
  core::Duration duration = 0;  // ms of run time, uninterrupted
  int32_t tasks = 1;            // gang size (all start together)
  int32_t gpus_per_task = 1;
  int32_t gpu_milli = 1000;     // < 1000: a fraction of one GPU (tasks' gpus_per_task == 1)
  uint32_t tenant = 0;          // index into Trace::tenants
  uint32_t model = UINT32_MAX;  // index into Trace::models; UINT32_MAX = any model
  core::WorkloadKind kind = core::WorkloadKind::kTraining;
  int32_t priority = 0;
  bool preemptible = true;

  int64_t total_milli() const { return int64_t{tasks} * gpus_per_task * gpu_milli; }
};

struct Trace {
  std::string name;
  std::vector<std::string> tenants;  // in order of first appearance
  std::vector<std::string> models;   // GPU model names jobs ask for
  std::vector<TraceJob> jobs;        // sorted by arrival, ties in file order

  // Index of a tenant / model name, added if new.
  uint32_t Tenant(std::string_view tenant);
  uint32_t Model(std::string_view model);
  // Shifts arrivals so the first is 0 and sorts stably by arrival.
  void Normalize();
};

// How a job of `gpus` GPUs becomes a gang on nodes of `node_gpus` GPUs: one task when it
// fits a node, otherwise tasks of the largest divisor of `gpus` that fits a node (16 on
// 8-GPU nodes -> 2 x 8; 12 -> 2 x 6; 24 -> 3 x 8). Distributed jobs run one worker per
// node-sized slice, which is how Philly's multi-node jobs ran.
struct GangShape {
  int32_t tasks = 1;
  int32_t gpus_per_task = 1;
};
GangShape SplitGang(int32_t gpus, int32_t node_gpus);

// Readers. Errors name the file, the line and the field.
// Philly (Pollux's cleaned copy): timestamp,duration,num_gpus,gpu_time,cluster; the VC is
// the tenant.
core::Result<Trace> ReadPhillyTrace(const std::string& path, int32_t node_gpus);
// A Pollux workload CSV (name,time,application,num_replicas,batch_size). The files carry no
// run time: each job's duration is the shortest completion time any published scheduler
// achieved for it (results_dir/{pollux,optimus,tiresias}-LOAD/summary.json), a proxy
// documented in docs/simulator.md. The application is the tenant.
core::Result<Trace> ReadPolluxTrace(const std::string& workload_csv, const std::string& results_dir,
                                    int32_t node_gpus);
// The generic format: CSV with a header, or JSON lines (by extension .jsonl / .json).
core::Result<Trace> ReadGenericTrace(const std::string& path);

// The readers' parsers, on text already read; `path` names the input in errors (and, for the
// generic format, picks JSON lines by its extension). Pollux: ParsePolluxJcts adds one
// results file's JCTs of `workload` to `best` (the shortest wins), ParsePolluxWorkload reads
// the workload CSV against them.
core::Result<Trace> ParsePhillyTrace(std::string_view text, const std::string& path,
                                     int32_t node_gpus);
core::Status ParsePolluxJcts(std::string_view summary_json, const std::string& path,
                             const std::string& workload, std::map<std::string, int64_t>& best);
core::Result<Trace> ParsePolluxWorkload(std::string_view text, const std::string& path,
                                        const std::string& name,
                                        const std::map<std::string, int64_t>& best,
                                        int32_t node_gpus);
core::Result<Trace> ParseGenericTrace(std::string_view text, const std::string& path);

// Parsing helpers shared by the readers (exact, integer results).
// "12", "12.5", "0.001" seconds -> milliseconds, at most kMaxTraceMs. False on anything else.
inline constexpr int64_t kMaxTraceMs = 1'000'000'000'000;
bool ParseSecondsMs(std::string_view s, int64_t& ms);
// "0.5", "1", ".25" of a GPU -> milli-GPU in 1..1000. False on anything else.
bool ParseFractionMilli(std::string_view s, int32_t& milli);
bool ParseInt(std::string_view s, int64_t& v);
// "YYYY-MM-DD HH:MM:SS" (UTC) -> seconds since the Unix epoch.
bool ParseTimestamp(std::string_view s, int64_t& seconds);
core::Result<std::string> ReadWholeFile(const std::string& path);
// Splits a CSV line on commas (no quoting: our inputs have none) and trims '\r' and spaces.
std::vector<std::string_view> SplitCsv(std::string_view line);
bool ParseKind(std::string_view s, core::WorkloadKind& k);

}  // namespace gpuorch::sim
