#include "sched/policy/fgd_policy.h"

#include <algorithm>
#include <cmath>

namespace gpuorch::sched {

void FgdPolicy::SetTypicalTasks(std::vector<TypicalTask> tasks) {
  typical_ = tasks.empty() ? DefaultTypicalTasks() : std::move(tasks);
  memo_.Clear();
}

double FgdPolicy::NodeFragment(int64_t cpu_free, GpuModelId model, int gpu_count,
                               const int16_t* gpu_free) const {
  double f = 0;
  for (const TypicalTask& tau : typical_) {
    f += tau.weight *
         static_cast<double>(TaskFragment(cpu_free, model, gpu_count, gpu_free, tau.task));
  }
  return f;
}

int64_t FgdPolicy::ScoreOf(const NodeView& n, const TaskRequest& t, double before, int j) const {
  int16_t after[core::kMaxGpusPerNode];
  for (int i = 0; i < n.gpu_count(); ++i) after[i] = n.gpu_free(i);
  if (j >= 0) {
    after[j] = static_cast<int16_t>(after[j] - t.gpu_milli);
  } else {
    int left = t.gpu_count;
    for (int i = 0; i < n.gpu_count() && left > 0; ++i) {
      if (after[i] == core::kMilliGpu) after[i] = 0, --left;
    }
  }
  const double delta =
      before - NodeFragment(n.cpu_free() - t.milli_cpu, n.model(), n.gpu_count(), after);
  const double sigmoid = 1.0 / (1.0 + std::exp(-delta / 1000.0));
  return static_cast<int64_t>(100.0 * sigmoid);
}

int64_t FgdPolicy::CpuHeadroom(const NodeView& n, const TaskRequest& t) {
  (void)t;
  int64_t headroom = 0;
  for (const TypicalTask& tau : typical_) {
    const TaskRequest& u = tau.task;
    if (u.gpu_count == 0 || u.gpu_milli <= 0 || !u.models.Accepts(n.model())) continue;
    // CPU decides the fragment only when one copy's GPUs fit (and t only takes GPUs away).
    int fitting = 0;
    for (int j = 0; j < n.gpu_count(); ++j) fitting += n.gpu_free(j) >= u.gpu_milli;
    if (fitting >= u.gpu_count) headroom = std::max(headroom, u.milli_cpu);
  }
  return headroom;
}

int64_t FgdPolicy::Score(const NodeView& n, const TaskRequest& t) {
  return memo_.Get(n, t, [&]() -> int64_t {
    const double before = NodeFragment(n.cpu_free(), n.model(), n.gpu_count(), n.gpu_free().data());
    if (!t.fractional()) return ScoreOf(n, t, before, -1);
    return BestGpuForFraction(
        n, t, n.all_gpus(), /*check_memory=*/false, [&](int j) { return ScoreOf(n, t, before, j); },
        nullptr);
  });
}

GpuMask FgdPolicy::SelectGpus(const NodeView& n, const TaskRequest& t) {
  if (!t.fractional()) return SelectGpusBestFit(n, t);
  const double before = NodeFragment(n.cpu_free(), n.model(), n.gpu_count(), n.gpu_free().data());
  int best = -1;
  BestGpuForFraction(
      n, t, n.usable(), /*check_memory=*/true, [&](int j) { return ScoreOf(n, t, before, j); },
      &best);
  return best < 0 ? GpuMask{0} : static_cast<GpuMask>(1u << best);
}

}  // namespace gpuorch::sched
