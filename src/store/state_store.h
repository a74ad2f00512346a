#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace gpuorch::store {

// One workload as the control plane persists it. The store does not interpret the JSON:
// `spec_json` is the submitted spec with defaults filled in (immutable), `status_json` the
// mutable status (state, reason, attempt, tasks, timestamps, events).
struct StoredWorkload {
  int64_t id = 0;
  std::string state;
  std::string spec_json;
  std::string status_json;
};

// A registered node (its registration JSON), so that a restarted server knows its nodes.
struct StoredNode {
  std::string name;
  std::string json;
};

// One accounting interval: task `task` of attempt `attempt` of a workload held `gpu_milli`
// milli-GPUs of `model` (over all its GPUs) from `start_ms` until `end_ms` (wall clock ms,
// end excluded). Written once, when the task releases what it held; kept apart from the
// workload's record so that it outlives the workload's retention (docs/operations.md).
// `id` is the controller's sequence number: unique, increasing in the order of release.
struct UsageRecord {
  int64_t id = 0;
  int64_t workload = 0;
  int32_t attempt = 0;
  int32_t task = 0;
  std::string queue, user, model;
  int64_t gpu_milli = 0;
  int64_t start_ms = 0, end_ms = 0;
};

// The usage of one (queue, user, model) over a time range: `milli_gpu_ms` is the sum over
// its intervals of gpu_milli times the milliseconds of the interval inside the range (an
// integer: 10^6 of it is one GPU-second); `intervals` counts the intervals that overlap it.
struct UsageTotal {
  std::string queue, user, model;
  int64_t milli_gpu_ms = 0;
  int64_t intervals = 0;
};

// Everything written in one atomic, durable step. Deletions apply after the upserts.
struct Batch {
  std::vector<StoredWorkload> workloads;   // upserts by id
  std::vector<StoredNode> nodes;           // upserts by name
  std::vector<int64_t> deleted_workloads;  // ids removed (finished, past their retention)
  std::vector<UsageRecord> usage;          // inserted; a record whose id exists is ignored
  bool empty() const {
    return workloads.empty() && nodes.empty() && deleted_workloads.empty() && usage.empty();
  }
};

// Durable state of the control plane.
//
// Contract: Commit() is atomic (all of the batch or nothing) and durable when it returns OK
// (it survives a crash of the process and, with the SQLite store, of the machine). Loads
// return what the last successful commits wrote. Implementations are thread-safe. SQLite is
// the embedded default; an etcd store can implement the same interface for HA.
class StateStore {
 public:
  virtual ~StateStore() = default;
  virtual core::Status Commit(const Batch& batch) = 0;
  virtual core::Result<std::vector<StoredWorkload>> LoadWorkloads() = 0;
  virtual core::Result<std::vector<StoredNode>> LoadNodes() = 0;
  // The usage records with id < `below_id` that overlap [from_ms, to_ms), summed by
  // (queue, user, model) and clipped to the range; ordered by queue, user, model.
  // O(records overlapping the range).
  virtual core::Result<std::vector<UsageTotal>> SumUsage(int64_t from_ms, int64_t to_ms,
                                                         int64_t below_id) = 0;
  // The highest usage record id committed (0 for none): a restarted controller numbers on.
  virtual core::Result<int64_t> MaxUsageId() = 0;
};

// Opens (creating if needed) an SQLite database in WAL mode at `path`, migrating its schema
// to the current version (PRAGMA user_version; docs/operations.md) and keeping its data. A
// database of a newer version than this build knows is refused.
inline constexpr int kSchemaVersion = 1;
core::Result<std::unique_ptr<StateStore>> OpenSqliteStore(const std::string& path);

}  // namespace gpuorch::store
