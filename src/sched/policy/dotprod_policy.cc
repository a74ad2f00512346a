#include "sched/policy/dotprod_policy.h"

namespace gpuorch::sched {

int64_t DotProdPolicy::Score(const NodeView& n, const TaskRequest& t) {
  // d = (c_n*c_p + 256*idle*R) / 128000^2, because 128000^2 / 8000^2 = 256.
  constexpr int64_t kDen = int64_t{128000} * 128000;
  const int64_t dot = n.cpu_free() * t.milli_cpu + 256 * n.idle_milli() * t.total_milli_gpu();
  return FloorDiv(100 * kDen - 50 * dot, kDen);
}

}  // namespace gpuorch::sched
