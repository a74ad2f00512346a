#include "sched/policy/random_policy.h"

namespace gpuorch::sched {

GpuMask RandomPolicy::SelectGpus(const NodeView& n, const TaskRequest& t) {
  if (!t.fractional()) return SelectGpusBestFit(n, t);
  const GpuMask usable = n.usable();
  int candidates[core::kMaxGpusPerNode];
  int count = 0;
  for (int j = 0; j < n.gpu_count(); ++j) {
    if (!((usable >> j) & 1u) || n.gpu_free(j) < t.gpu_milli) continue;
    if (t.gpu_memory_mib > 0 && n.gpu_mem_free(j) < t.gpu_memory_mib) continue;
    candidates[count++] = j;
  }
  if (count == 0) return 0;
  const int pick = candidates[rng_->Uniform(static_cast<uint64_t>(count))];
  return static_cast<GpuMask>(1u << pick);
}

}  // namespace gpuorch::sched
