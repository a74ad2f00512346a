#include "sched/policy/gpuclustering_policy.h"

namespace gpuorch::sched {

int64_t GpuClusteringPolicy::Score(const NodeView& n, const TaskRequest& t) {
  if (t.gpu_count == 0) return 0;
  const int64_t b = 25 * (8000 - n.idle_milli()) / 8000;
  int distinct = 0;
  for (uint16_t c : n.tag_counts()) distinct += c > 0;
  const bool has_own = n.tag_counts()[ShapeTag(t)] > 0;
  if (has_own) return (distinct == 1 ? 75 : 50) + b;
  return (distinct == 0 ? 25 : 0) + b;
}

}  // namespace gpuorch::sched
