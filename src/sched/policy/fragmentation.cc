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

void ScoreMemo::Clear() {
  states_.clear();
  shapes_.clear();
  last_key_ = ShapeKey{-1, -1, -1, -1, 0};
}

uint32_t ScoreMemo::ShapeOf(const TaskRequest& t) {
  ShapeKey key{t.milli_cpu, t.memory_mib, t.gpu_count, t.gpu_milli, t.models.bits()};
  if (key == last_key_) return last_shape_;
  uint32_t s = 0;
  while (s < shapes_.size() && !(shapes_[s] == key)) ++s;
  if (s == shapes_.size()) shapes_.push_back(key);
  last_key_ = key;
  last_shape_ = s;
  return s;
}

size_t ScoreMemo::KeyHash::operator()(const Key& k) const {
  // The hash reads the fields one by one (never the struct's bytes, padding included).
  uint64_t h = 0x9e3779b97f4a7c15ull;
  auto mix = [&h](uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
  };
  mix(static_cast<uint64_t>(k.cpu_free));
  mix(static_cast<uint64_t>(k.memory_free));
  mix(k.model);
  for (int j = 0; j < k.gpu_count; ++j) mix(static_cast<uint16_t>(k.gpu_free[j]));
  return static_cast<size_t>(h ^ (h >> 29));
}

std::optional<int64_t>& ScoreMemo::Find(const NodeView& n, const TaskRequest& t) {
  Key key;
  key.cpu_free = n.cpu_free();
  key.memory_free = n.memory_free();
  key.model = n.model().value();
  key.gpu_count = n.gpu_count();
  for (int j = 0; j < key.gpu_count; ++j) key.gpu_free[j] = n.gpu_free(j);
  if (states_.size() >= kMaxStates && !states_.contains(key)) states_.clear();
  std::vector<std::optional<int64_t>>& scores = states_[key];
  const uint32_t shape = ShapeOf(t);
  if (shape >= scores.size()) scores.resize(shape + 1);
  return scores[shape];
}

}  // namespace gpuorch::sched
