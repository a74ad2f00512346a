#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "sched/cluster_state.h"
#include "sched/node_view.h"
#include "sched/policy.h"

namespace gpuorch::sched {

// The fragmentation measure of the FGD paper (ATC'23, §5.6 of FGD-PROTOCOL.md), shared by
// the fgd and gpuorch policies and by the simulator's metrics.
//
// frag(n; tau) is the idle milli-GPU of node n that a task of shape tau could not use:
// - all idle GPU if tau needs no GPU (a CPU-only task cannot use any GPU), or if tau may not
//   run on the node's GPU model, or if tau does not fit (too few GPUs, or too little CPU);
// - otherwise only the GPUs with less free milli than tau asks for per GPU.
// Memory is ignored, as in the paper.
int64_t TaskFragment(int64_t cpu_free, GpuModelId model, int gpu_count, const int16_t* gpu_free,
                     const TaskRequest& tau);

inline int64_t TaskFragment(const NodeState& n, const TaskRequest& tau) {
  return TaskFragment(n.cpu_free, n.model, n.gpu_count, n.gpu_free.data(), tau);
}

// The distribution fgd and gpuorch use when the driver never called SetTypicalTasks. A
// fixed default keeps them deterministic and cheap: whole GPUs (1, 2, 4, 8), two common
// fractions and CPU-only tasks, with modest CPU so that CPU-starved GPUs count as stranded.
std::vector<TypicalTask> DefaultTypicalTasks();

// For fragmentation-aware policies that place a fraction on the GPU whose use scores best:
// the best score over the GPUs where the fraction fits (only `usable` ones, and with its GPU
// memory when `check_memory`), and in *gpu the lowest index attaining it (-1 if none).
// score_gpu(j) must depend only on GPU j's free milli, so equal free amounts are scored once.
template <typename ScoreGpu>
int64_t BestGpuForFraction(const NodeView& n, const TaskRequest& t, GpuMask usable,
                           bool check_memory, ScoreGpu&& score_gpu, int* gpu) {
  auto fits = [&](int j) {
    return ((usable >> j) & 1u) && n.gpu_free(j) >= t.gpu_milli &&
           (!check_memory || t.gpu_memory_mib <= 0 || n.gpu_mem_free(j) >= t.gpu_memory_mib);
  };
  int64_t best = 0;
  int best_gpu = -1;
  for (int j = 0; j < n.gpu_count(); ++j) {
    if (!fits(j)) continue;
    bool seen = false;  // an earlier GPU with the same free amount scores the same and wins
    for (int i = 0; i < j && !seen; ++i) seen = fits(i) && n.gpu_free(i) == n.gpu_free(j);
    if (seen) continue;
    const int64_t s = score_gpu(j);
    if (best_gpu < 0 || s > best) best = s, best_gpu = j;
  }
  if (gpu != nullptr) *gpu = best_gpu;
  return best;
}

// Score memo for policies whose Score is costly and reads only a node's free state (CPU,
// memory, model, per-GPU free milli), not NodeView::usable(). The engine scores the same
// node states again and again (one node changes per placement), so a score is remembered
// per node state and task shape. A policy sees no node id, so the memo is keyed by content:
// a hash map from node state to its scores per task shape. A hit needs an equal state, so
// the memo is exact; it forgets everything once it holds kMaxStates states (states that no
// node has any more are never looked up again, and this bounds them).
//
// Contract: single-threaded; O(gpus) per lookup (hash and compare) plus, when the task
// shape changes between calls, a scan of the distinct shapes seen; memory is at most
// kMaxStates states, each with one score per task shape scored.
class ScoreMemo {
 public:
  static constexpr size_t kMaxStates = size_t{1} << 16;

  // Returns the remembered score of (n, t) or stores and returns compute().
  template <typename Compute>
  int64_t Get(const NodeView& n, const TaskRequest& t, Compute&& compute) {
    std::optional<int64_t>& score = Find(n, t);
    if (!score.has_value()) score = compute();
    return *score;
  }
  // Forgets everything (the scoring rule changed).
  void Clear();

 private:
  struct Key {
    int64_t cpu_free = -1;
    int64_t memory_free = -1;
    uint32_t model = 0;
    int32_t gpu_count = -1;
    std::array<int16_t, core::kMaxGpusPerNode> gpu_free{};
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct ShapeKey {
    int64_t cpu, mem;
    int32_t count, milli;
    uint64_t models;
    bool operator==(const ShapeKey&) const = default;
  };

  // The score of (n, t) if remembered, else the empty place to store it.
  std::optional<int64_t>& Find(const NodeView& n, const TaskRequest& t);
  uint32_t ShapeOf(const TaskRequest& t);

  std::unordered_map<Key, std::vector<std::optional<int64_t>>, KeyHash> states_;  // by shape
  std::vector<ShapeKey> shapes_;
  ShapeKey last_key_{-1, -1, -1, -1, 0};
  uint32_t last_shape_ = 0;
};

}  // namespace gpuorch::sched
