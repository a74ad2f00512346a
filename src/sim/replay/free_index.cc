#include "sim/replay/free_index.h"

#include "core/status.h"

namespace gpuorch::sim {

int FreeIndex::Node::full_free() const {
  int k = 0;
  for (int i = 0; i < gpus; ++i) k += free[static_cast<size_t>(i)] == core::kMilliGpu;
  return k;
}

void FreeIndex::AddNode(uint32_t model, int32_t gpus) {
  if (model >= full_hist_.size()) {
    full_hist_.resize(model + 1);
    milli_hist_.resize(model + 1);
  }
  Node n;
  n.model = model;
  n.gpus = gpus;
  for (int i = 0; i < gpus; ++i) n.free[static_cast<size_t>(i)] = core::kMilliGpu;
  nodes_.push_back(n);
  Count(nodes_.back(), +1);
}

void FreeIndex::Count(const Node& n, int sign) {
  full_hist_[n.model][static_cast<size_t>(n.full_free())] += sign;
  for (int i = 0; i < n.gpus; ++i) milli_hist_[n.model][n.free[static_cast<size_t>(i)]] += sign;
}

void FreeIndex::Apply(uint32_t node, uint16_t mask, int32_t milli, int sign) {
  Node& n = nodes_[node];
  Count(n, -1);
  for (int i = 0; i < n.gpus; ++i) {
    if (!((mask >> i) & 1u)) continue;
    int16_t& f = n.free[static_cast<size_t>(i)];
    f = static_cast<int16_t>(f + sign * milli);
    GPUORCH_CHECK(f >= 0 && f <= core::kMilliGpu);
    busy_milli_ -= sign * milli;
  }
  Count(n, +1);
}

bool FreeIndex::FitsModel(uint32_t m, int32_t tasks, int32_t g, int32_t milli) const {
  if (milli < core::kMilliGpu) {
    for (size_t f = static_cast<size_t>(milli); f <= 1000; ++f) {
      if (milli_hist_[m][f] > 0) return true;
    }
    return false;
  }
  int64_t slots = 0;
  for (int k = g; k <= core::kMaxGpusPerNode; ++k) {
    slots += int64_t{full_hist_[m][static_cast<size_t>(k)]} * (k / g);
    if (slots >= tasks) return true;
  }
  return false;
}

bool FreeIndex::Fits(int32_t tasks, int32_t gpus_per_task, int32_t gpu_milli,
                     uint32_t model) const {
  if (model != UINT32_MAX) {
    return model < full_hist_.size() && FitsModel(model, tasks, gpus_per_task, gpu_milli);
  }
  for (uint32_t m = 0; m < full_hist_.size(); ++m) {
    if (FitsModel(m, tasks, gpus_per_task, gpu_milli)) return true;
  }
  return false;
}

}  // namespace gpuorch::sim
