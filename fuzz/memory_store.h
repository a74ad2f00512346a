#pragma once

// An in-memory StateStore for the fuzz targets that drive a Controller: the same contract as
// the SQLite store (atomic batches, loads return what was committed) without a file per run.
#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
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
    for (const store::UsageRecord& u : batch.usage) usage_.try_emplace(u.id, u);
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
  core::Result<std::vector<store::UsageTotal>> SumUsage(int64_t from_ms, int64_t to_ms,
                                                        int64_t below_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::tuple<std::string, std::string, std::string>, store::UsageTotal> sums;
    for (const auto& [id, u] : usage_) {
      if (id >= below_id || u.end_ms <= from_ms || u.start_ms >= to_ms) continue;
      store::UsageTotal& t = sums[{u.queue, u.user, u.model}];
      t.queue = u.queue;
      t.user = u.user;
      t.model = u.model;
      t.milli_gpu_ms += u.gpu_milli * (std::min(u.end_ms, to_ms) - std::max(u.start_ms, from_ms));
      ++t.intervals;
    }
    std::vector<store::UsageTotal> out;
    for (auto& [key, t] : sums) out.push_back(std::move(t));
    return out;
  }
  core::Result<int64_t> MaxUsageId() override {
    std::lock_guard<std::mutex> lock(mu_);
    return usage_.empty() ? int64_t{0} : usage_.rbegin()->first;
  }

 private:
  std::mutex mu_;
  std::map<int64_t, store::StoredWorkload> workloads_;
  std::map<std::string, store::StoredNode> nodes_;
  std::map<int64_t, store::UsageRecord> usage_;
};

}  // namespace gpuorch::fuzz
