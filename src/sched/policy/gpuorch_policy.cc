#include "sched/policy/gpuorch_policy.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace gpuorch::sched {

namespace {

// Idle milli-GPU of a node that a stream of tasks of shape tau could not use: idle minus
// what as many copies of tau as fit at once (GPU slots, CPU) would take.
int64_t Stranded(int64_t cpu_free, GpuModelId model, int gpu_count, const int16_t* gpu_free,
                 const TaskRequest& tau) {
  int64_t idle = 0, slots = 0;
  for (int j = 0; j < gpu_count; ++j) {
    idle += gpu_free[j];
    if (tau.gpu_count > 0) slots += gpu_free[j] / tau.gpu_milli;
  }
  if (tau.gpu_count == 0 || !tau.models.Accepts(model)) return idle;
  int64_t copies = slots / tau.gpu_count;
  if (tau.milli_cpu > 0) copies = std::min(copies, cpu_free / tau.milli_cpu);
  return idle - copies * tau.total_milli_gpu();
}

}  // namespace

void GpuorchPolicy::SetTypicalTasks(std::vector<TypicalTask> tasks) {
  if (tasks.empty()) tasks = DefaultTypicalTasks();
  typical_.clear();
  for (const TypicalTask& t : tasks) {
    typical_.push_back({t.task, std::llround(t.weight * 1e6)});
  }
  memo_.Clear();
}

int64_t GpuorchPolicy::Fragment(int64_t cpu_free, GpuModelId model, int gpu_count,
                                const int16_t* gpu_free) const {
  int64_t f = 0;
  for (const Weighted& tau : typical_) {
    f += tau.weight * Stranded(cpu_free, model, gpu_count, gpu_free, tau.task);
  }
  return f;
}

int64_t GpuorchPolicy::ScoreOf(const NodeState& n, const TaskRequest& t, int64_t before,
                               int j) const {
  int16_t after[core::kMaxGpusPerNode];
  for (int i = 0; i < n.gpu_count; ++i) after[i] = n.gpu_free[i];
  if (j >= 0) {
    after[j] = static_cast<int16_t>(after[j] - t.gpu_milli);
  } else {
    int left = t.gpu_count;
    for (int i = 0; i < n.gpu_count && left > 0; ++i) {
      if (after[i] == core::kMilliGpu) after[i] = 0, --left;
    }
  }
  const int64_t delta = before - Fragment(n.cpu_free - t.milli_cpu, n.model, n.gpu_count, after);
  static const int exp = getenv("GX") ? atoi(getenv("GX")) : 0;
  int64_t idle_after = 0;
  for (int i = 0; i < n.gpu_count; ++i) idle_after += after[i];
  const int64_t cpu_after = n.cpu_free - t.milli_cpu;
  switch (exp) {
    case 1: return delta * 1024 - idle_after;
    case 2: return delta * 1024 + idle_after;
    case 3: return delta * 1024 - cpu_after / 100;
    case 4: return delta * 1024 + cpu_after / 100;
    case 5: return delta * 1024 + (cpu_after - 12 * idle_after) / 100;
    default: return delta;
  }
}

int64_t GpuorchPolicy::Score(const NodeState& n, const TaskRequest& t) {
  return memo_.Get(n, t, [&]() -> int64_t {
    const int64_t before = Fragment(n.cpu_free, n.model, n.gpu_count, n.gpu_free.data());
    if (!t.fractional()) return ScoreOf(n, t, before, -1);
    int64_t best = INT64_MIN;
    for (int j = 0; j < n.gpu_count; ++j) {
      if (n.gpu_free[j] < t.gpu_milli) continue;
      bool seen = false;
      for (int i = 0; i < j; ++i) seen |= n.gpu_free[i] == n.gpu_free[j];
      if (!seen) best = std::max(best, ScoreOf(n, t, before, j));
    }
    return best;
  });
}

GpuMask GpuorchPolicy::SelectGpus(const NodeState& n, const TaskRequest& t, GpuMask usable) {
  if (!t.fractional()) return SelectGpusBestFit(n, t, usable);
  const int64_t before = Fragment(n.cpu_free, n.model, n.gpu_count, n.gpu_free.data());
  int best = -1;
  int64_t best_score = INT64_MIN;
  for (int j = 0; j < n.gpu_count; ++j) {
    if (!((usable >> j) & 1u) || n.gpu_free[j] < t.gpu_milli) continue;
    if (t.gpu_memory_mib > 0 && n.gpu_mem_free[j] < t.gpu_memory_mib) continue;
    const int64_t s = ScoreOf(n, t, before, j);
    if (s > best_score) best = j, best_score = s;
  }
  return best < 0 ? GpuMask{0} : static_cast<GpuMask>(1u << best);
}

}  // namespace gpuorch::sched
