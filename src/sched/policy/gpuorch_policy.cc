#include "sched/policy/gpuorch_policy.h"

#include <algorithm>
#include <climits>
#include <cmath>

#include "sched/policy/dotprod_policy.h"

namespace gpuorch::sched {

int64_t GpuorchPolicy::Stranded(int64_t cpu_free, GpuModelId model, int gpu_count,
                                const int16_t* gpu_free, const TaskRequest& tau) {
  int64_t idle = 0, slots = 0;
  for (int j = 0; j < gpu_count; ++j) {
    idle += gpu_free[j];
    if (tau.gpu_count > 0 && tau.gpu_milli > 0) slots += gpu_free[j] / tau.gpu_milli;
  }
  if (tau.gpu_count == 0 || tau.gpu_milli <= 0 || !tau.models.Accepts(model)) return idle;
  int64_t copies = slots / tau.gpu_count;
  if (tau.milli_cpu > 0) copies = std::min(copies, cpu_free / tau.milli_cpu);
  return idle - copies * tau.total_milli_gpu();
}

void GpuorchPolicy::SetTypicalTasks(std::vector<TypicalTask> tasks) {
  if (tasks.empty()) tasks = DefaultTypicalTasks();
  given_ = tasks;
  typical_.clear();
  int64_t total = 0;
  for (const TypicalTask& t : tasks) {
    typical_.push_back({t.task, std::llround(t.weight * 1e6)});
    total += typical_.back().weight;
  }
  // The quantum is 200 milli-GPU of damage whatever the weights sum to.
  quantum_ = std::max<int64_t>(1, kQuantumMilli * total);
  memo_.Clear();
}

int64_t GpuorchPolicy::Damage(int64_t cpu_free, GpuModelId model, int gpu_count,
                              const int16_t* gpu_free) const {
  int64_t d = 0;
  for (const Weighted& tau : typical_) {
    d += tau.weight * (kFragWeight * TaskFragment(cpu_free, model, gpu_count, gpu_free, tau.task) +
                       Stranded(cpu_free, model, gpu_count, gpu_free, tau.task));
  }
  return d;
}

int64_t GpuorchPolicy::ScoreOf(const NodeView& n, const TaskRequest& t, int64_t before,
                               int j) const {
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
  const int64_t damage =
      Damage(n.cpu_free() - t.milli_cpu, n.model(), n.gpu_count(), after) - before;
  return FloorDiv(-damage, quantum_);
}

int64_t GpuorchPolicy::CpuHeadroom(const NodeView& n, const TaskRequest& t) {
  (void)t;
  int64_t headroom = 0;
  for (const Weighted& tau : typical_) {
    const TaskRequest& u = tau.task;
    if (u.gpu_count == 0 || u.gpu_milli <= 0 || u.milli_cpu <= 0 || !u.models.Accepts(n.model())) {
      continue;  // Stranded and TaskFragment do not read CPU for it
    }
    int64_t slots = 0;
    for (int j = 0; j < n.gpu_count(); ++j) slots += n.gpu_free(j) / u.gpu_milli;
    // Copies are min(slots / count, cpu / tau.cpu), and CPU decides TaskFragment only when
    // one copy's GPUs fit (then slots / count >= 1). Taking t only lowers the slots, so the
    // same headroom covers the state after it.
    headroom = std::max(headroom, u.milli_cpu * (slots / u.gpu_count));
  }
  return headroom;
}

int64_t GpuorchPolicy::Score(const NodeView& n, const TaskRequest& t) {
  return memo_.Get(n, t, [&]() -> int64_t {
    const int64_t before = Damage(n.cpu_free(), n.model(), n.gpu_count(), n.gpu_free().data());
    if (!t.fractional()) return ScoreOf(n, t, before, -1);
    return BestGpuForFraction(
        n, t, n.all_gpus(), /*check_memory=*/false, [&](int j) { return ScoreOf(n, t, before, j); },
        nullptr);
  });
}

GpuMask GpuorchPolicy::SelectGpus(const NodeView& n, const TaskRequest& t) {
  if (!t.fractional()) return SelectGpusBestFit(n, t);
  const int64_t before = Damage(n.cpu_free(), n.model(), n.gpu_count(), n.gpu_free().data());
  int best = -1;
  BestGpuForFraction(
      n, t, n.usable(), /*check_memory=*/true, [&](int j) { return ScoreOf(n, t, before, j); },
      &best);
  return best < 0 ? GpuMask{0} : static_cast<GpuMask>(1u << best);
}

}  // namespace gpuorch::sched
