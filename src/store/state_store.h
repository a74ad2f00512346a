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

// Everything written in one atomic, durable step. Deletions apply after the upserts.
struct Batch {
  std::vector<StoredWorkload> workloads;   // upserts by id
  std::vector<StoredNode> nodes;           // upserts by name
  std::vector<int64_t> deleted_workloads;  // ids removed (finished, past their retention)
  bool empty() const { return workloads.empty() && nodes.empty() && deleted_workloads.empty(); }
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
};

// Opens (creating if needed) an SQLite database in WAL mode at `path`.
core::Result<std::unique_ptr<StateStore>> OpenSqliteStore(const std::string& path);

}  // namespace gpuorch::store
