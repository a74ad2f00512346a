#include "sched/policy/gpupacking_policy.h"

#include <algorithm>

namespace gpuorch::sched {

int64_t GpuPackingPolicy::Score(const NodeView& n, const TaskRequest& t) {
  if (t.gpu_count == 0) return 0;
  const int g = n.gpu_count();
  if (n.full_free_gpus() == g) return std::max(33 - g, g);
  int order[core::kMaxGpusPerNode];
  for (int j = 0; j < g; ++j) order[j] = j;
  std::stable_sort(order, order + g, [&](int a, int b) { return n.gpu_free(a) < n.gpu_free(b); });
  int taken = 0, fresh = 0;
  int64_t free_pct_sum = 0;
  for (int i = 0; i < g && taken < t.gpu_count; ++i) {
    const int16_t free = n.gpu_free(order[i]);
    if (free < t.gpu_milli) continue;
    ++taken;
    fresh += free == core::kMilliGpu;
    free_pct_sum += 100 * int64_t{free} / 1000;
  }
  if (fresh > 0) return std::max(50 - fresh, 33);
  return std::max<int64_t>(100 - free_pct_sum / 10, 50);
}

}  // namespace gpuorch::sched
