#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "sched/cluster_state.h"

namespace gpuorch::sched {

// What a placement policy may read of one node, for one task: the node's GPU model, shape
// and free and total resources, per GPU, and which of its GPUs the task may use after
// reservations. Not the node's identity (id), its place in the topology (zone, rack), its
// health or who holds its reservations: those belong to the mechanism (filters, gangs,
// reservations), and a policy that read them would break the engine's promise that nodes
// with equal state score equally (it scores one node per group of identical nodes).
// An unhealthy GPU shows as fully used (no free milli, no free memory), so that a policy
// neither picks it nor counts it as room, as if new work could never get it.
//
// A view is a window on the engine's state, valid for the one call it is handed to, and
// every accessor is inline. It copies nothing, except the free milli of a node with an
// unhealthy GPU (rare), so that gpu_free() can hand out one masked array.
class NodeView {
 public:
  // `usable`: the GPUs the task being placed may take (see UsableGpus).
  NodeView(const NodeState& n, GpuMask usable)
      : n_(&n), usable_(usable), unhealthy_(n.unhealthy_gpus) {
    if (unhealthy_ != 0) [[unlikely]] {
      for (int j = 0; j < n.gpu_count; ++j) masked_free_[j] = gpu_free(j);
    }
  }

  GpuModelId model() const { return n_->model; }
  int gpu_count() const { return n_->gpu_count; }
  int nvlink_domain_gpus() const { return n_->nvlink_domain_gpus; }  // >0: GPUs per domain
  int64_t cpu_capacity() const { return n_->cpu_capacity; }
  int64_t cpu_free() const { return n_->cpu_free; }
  int64_t memory_capacity() const { return n_->memory_capacity; }
  int64_t memory_free() const { return n_->memory_free; }
  int64_t gpu_memory_capacity() const { return n_->gpu_memory_capacity; }  // per GPU
  // Milli-GPU and GPU memory (MiB) free on GPU j < gpu_count().
  // An unhealthy GPU has none free.
  int16_t gpu_free(int j) const { return Unhealthy(j) ? int16_t{0} : n_->gpu_free[j]; }
  int64_t gpu_mem_free(int j) const { return Unhealthy(j) ? 0 : n_->gpu_mem_free[j]; }
  // Milli-GPU free on each GPU, gpu_count() of them.
  std::span<const int16_t> gpu_free() const {
    return {unhealthy_ != 0 ? masked_free_.data() : n_->gpu_free.data(),
            static_cast<size_t>(n_->gpu_count)};
  }
  // Number of GPU tasks on the node per shape tag (see ShapeTag).
  const std::array<uint16_t, core::kMaxGpusPerNode + 1>& tag_counts() const {
    return n_->tag_counts;
  }
  // GPUs the task may take after health and reservations; a subset of all_gpus().
  GpuMask usable() const { return usable_; }
  GpuMask all_gpus() const { return n_->all_gpus(); }
  int full_free_gpus() const { return n_->full_free_gpus(); }  // healthy ones only
  int64_t idle_milli() const { return n_->idle_milli(); }      // healthy ones only

  // The protocol's "best" GPU choice (see SelectGpusBestFit in cluster_state.h) among the
  // usable GPUs: the engine's default for SelectGpus.
  friend GpuMask SelectGpusBestFit(const NodeView& n, const TaskRequest& t) {
    return SelectGpusBestFit(*n.n_, t, n.usable_);
  }

 private:
  bool Unhealthy(int j) const { return (unhealthy_ >> j) & 1u; }

  const NodeState* n_;
  GpuMask usable_;
  GpuMask unhealthy_;
  // gpu_free() of a node with an unhealthy GPU; unread otherwise.
  std::array<int16_t, core::kMaxGpusPerNode> masked_free_{};
};

}  // namespace gpuorch::sched
