#pragma once

// The driver's own view of idle GPUs across the whole cluster (all pools), to measure
// "idle GPUs while runnable work waited" independently of how the cluster is partitioned.
// A pending job is *runnable* when its gang fits the idle GPUs by shape: enough nodes of an
// acceptable model with enough fully free GPUs for its tasks (or, for a fraction, one GPU
// with enough free milli-GPU), ignoring quotas, partitions, reservations and topology.

#include <array>
#include <cstdint>
#include <vector>

#include "core/node.h"
#include "sim/replay/trace.h"

namespace gpuorch::sim {

class FreeIndex {
 public:
  // One entry per node: its model index (into the cluster's registry) and GPU count.
  void AddNode(uint32_t model, int32_t gpus);
  // A task took (sign -1) or gave back (+1) `milli` on each GPU of `mask` on `node`.
  void Apply(uint32_t node, uint16_t mask, int32_t milli, int sign);
  // Whether a gang of `tasks` x `gpus_per_task` (x gpu_milli) fits the idle GPUs now.
  // `model` is a cluster model index or UINT32_MAX for any.
  bool Fits(int32_t tasks, int32_t gpus_per_task, int32_t gpu_milli, uint32_t model) const;
  int64_t busy_milli() const { return busy_milli_; }

 private:
  struct Node {
    uint32_t model = 0;
    int32_t gpus = 0;
    std::array<int16_t, core::kMaxGpusPerNode> free{};
    int full_free() const;
  };
  void Count(const Node& n, int sign);
  bool FitsModel(uint32_t m, int32_t tasks, int32_t g, int32_t milli) const;

  std::vector<Node> nodes_;
  // Per model: nodes by number of fully free GPUs; GPUs by free milli-GPU.
  std::vector<std::array<int32_t, core::kMaxGpusPerNode + 1>> full_hist_;
  std::vector<std::array<int32_t, 1001>> milli_hist_;
  int64_t busy_milli_ = 0;
};

}  // namespace gpuorch::sim
