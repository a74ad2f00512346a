#include "sched/policy/bestfit_policy.h"

#include "sched/policy/dotprod_policy.h"

namespace gpuorch::sched {

int64_t BestFitPolicy::Score(const NodeView& n, const TaskRequest& t) {
  // 100 - 50*cpu_left/128000 - 50*gpu_left/8000 over the common denominator 128000.
  const int64_t cpu_left = n.cpu_free() - t.milli_cpu;
  const int64_t gpu_left = n.idle_milli() - t.total_milli_gpu();
  return FloorDiv(100 * 128000 - 50 * cpu_left - 50 * 16 * gpu_left, 128000);
}

}  // namespace gpuorch::sched
