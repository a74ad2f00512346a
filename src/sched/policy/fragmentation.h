#pragma once

#include <cstdint>
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

// Of a node's state, as the policies see it (NodeView): an unhealthy GPU has nothing free.
inline int64_t TaskFragment(const NodeState& n, const TaskRequest& tau) {
  const NodeView view(n, n.all_gpus());
  return TaskFragment(n.cpu_free, n.model, n.gpu_count, view.gpu_free().data(), tau);
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

// Score memo for policies whose Score is costly and reads only a node's free GPU state and
// CPU (model, per-GPU free milli, free CPU), not its memory or NodeView::usable(). The
// engine scores the same node states again and again (one node changes per placement), so
// a score is remembered per node state and task shape. A policy sees no node id, so the
// memo is keyed by content: one hash map from (node state, task shape) to the score. A hit
// needs an equal key, so the memo is exact; it forgets everything once it holds kMaxEntries
// scores (states that no node has any more are never looked up again, and this bounds
// them, also when every task asks for its own CPU and memory).
//
// Contract: single-threaded; O(gpus) per lookup (hash and compare); memory at most
// kMaxEntries entries.
class ScoreMemo {
 public:
  static constexpr size_t kMaxEntries = size_t{1} << 17;

  // Returns the remembered score of (n, t) or stores and returns compute().
  template <typename Compute>
  int64_t Get(const NodeView& n, const TaskRequest& t, Compute&& compute) {
    const Key key = KeyOf(n, t);
    if (auto it = scores_.find(key); it != scores_.end()) return it->second;
    const int64_t score = compute();
    if (scores_.size() >= kMaxEntries) scores_.clear();
    scores_.emplace(key, score);
    return score;
  }
  // Forgets everything (the scoring rule changed).
  void Clear() { scores_.clear(); }

 private:
  struct Key {
    int64_t cpu_free = -1;
    uint32_t model = 0;
    int32_t gpu_count = -1;
    std::array<int16_t, core::kMaxGpusPerNode> gpu_free{};
    // The task's shape.
    int64_t cpu = 0, mem = 0;
    int32_t count = 0, milli = 0;
    uint64_t models = 0;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  static Key KeyOf(const NodeView& n, const TaskRequest& t);

  std::unordered_map<Key, int64_t, KeyHash> scores_;
};

}  // namespace gpuorch::sched
