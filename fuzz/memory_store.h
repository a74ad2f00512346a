#pragma once

// An in-memory StateStore for the fuzz targets that drive a Controller: the same contract as
// the SQLite store (atomic batches, loads return what was committed) without a file per run.
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "store/state_store.h"

namespace gpuorch::fuzz {

class MemoryStore final : public store::StateStore {
 public:
  core::Status Commit(const store::Batch& batch) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const store::StoredWorkload& w : batch.workloads) {
      auto [it, fresh] = workloads_.try_emplace(w.id, w);
      if (!fresh) {  // the spec is written once, like the SQLite store's upsert
        it->second.state = w.state;
        it->second.status_json = w.status_json;
      }
    }
    for (const store::StoredNode& n : batch.nodes) nodes_[n.name] = n;
    return core::Status::Ok();
  }
  core::Result<std::vector<store::StoredWorkload>> LoadWorkloads() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<store::StoredWorkload> out;
    for (const auto& [id, w] : workloads_) out.push_back(w);
    return out;
  }
  core::Result<std::vector<store::StoredNode>> LoadNodes() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<store::StoredNode> out;
    for (const auto& [name, n] : nodes_) out.push_back(n);
    return out;
  }

 private:
  std::mutex mu_;
  std::map<int64_t, store::StoredWorkload> workloads_;
  std::map<std::string, store::StoredNode> nodes_;
};

}  // namespace gpuorch::fuzz
