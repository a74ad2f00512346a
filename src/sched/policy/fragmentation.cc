#include "sched/policy/fragmentation.h"

namespace gpuorch::sched {

int64_t TaskFragment(int64_t cpu_free, GpuModelId model, int gpu_count, const int16_t* gpu_free,
                     const TaskRequest& tau) {
  int64_t idle = 0;
  int64_t small = 0;  // idle milli on GPUs too small for tau
  int fitting = 0;
  for (int j = 0; j < gpu_count; ++j) {
    idle += gpu_free[j];
    if (gpu_free[j] >= tau.gpu_milli) {
      ++fitting;
    } else {
      small += gpu_free[j];
    }
  }
  if (tau.gpu_count == 0 || tau.gpu_milli <= 0) return idle;
  if (!tau.models.Accepts(model)) return idle;
  if (fitting >= tau.gpu_count && cpu_free >= tau.milli_cpu) return small;
  return idle;
}

std::vector<TypicalTask> DefaultTypicalTasks() {
  auto task = [](int32_t count, int32_t milli, int64_t cpu) {
    TaskRequest t;
    t.gpu_count = count;
    t.gpu_milli = count == 0 ? core::kMilliGpu : milli;
    t.milli_cpu = cpu;
    return t;
  };
  return {
      {task(1, 1000, 8000), 0.35},  {task(2, 1000, 16000), 0.05}, {task(4, 1000, 32000), 0.05},
      {task(8, 1000, 64000), 0.05}, {task(1, 500, 4000), 0.20},   {task(1, 250, 2000), 0.15},
      {task(0, 0, 8000), 0.15},
  };
}

size_t ScoreMemo::KeyHash::operator()(const Key& k) const {
  // The hash reads the fields one by one (never the struct's bytes, padding included).
  uint64_t h = 0x9e3779b97f4a7c15ull;
  auto mix = [&h](uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
  };
  mix(static_cast<uint64_t>(k.cpu_free));
  mix(k.model);
  for (int j = 0; j < k.gpu_count; ++j) mix(static_cast<uint16_t>(k.gpu_free[j]));
  mix(static_cast<uint64_t>(k.cpu));
  mix(static_cast<uint64_t>(k.mem));
  mix(static_cast<uint64_t>(k.count) << 32 | static_cast<uint32_t>(k.milli));
  mix(k.models);
  return static_cast<size_t>(h ^ (h >> 29));
}

ScoreMemo::Key ScoreMemo::KeyOf(const NodeView& n, const TaskRequest& t) {
  Key key;
  key.cpu_free = n.cpu_free();
  key.model = n.model().value();
  key.gpu_count = n.gpu_count();
  for (int j = 0; j < key.gpu_count; ++j) key.gpu_free[j] = n.gpu_free(j);
  key.cpu = t.milli_cpu;
  key.mem = t.memory_mib;
  key.count = t.gpu_count;
  key.milli = t.gpu_milli;
  key.models = t.models.bits();
  return key;
}

}  // namespace gpuorch::sched
