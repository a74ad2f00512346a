#include "sched/policy/fragmentation.h"

#include <cstring>

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
  entries_.clear();
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

int64_t* ScoreMemo::Slot(const NodeState& n, const TaskRequest& t) {
  current_shape_ = ShapeOf(t);
  const uint32_t id = n.id.value();
  if (id >= entries_.size()) entries_.resize(id + 1);
  Entry& e = entries_[id];
  Snapshot snap;
  snap.cpu_free = n.cpu_free;
  snap.memory_free = n.memory_free;
  snap.model = n.model.value();
  snap.gpu_count = n.gpu_count;
  std::memcpy(snap.gpu_free.data(), n.gpu_free.data(), sizeof(int16_t) * n.gpu_count);
  if (!(snap == e.snap)) {
    e.snap = snap;
    ++e.epoch;
    return nullptr;
  }
  if (current_shape_ >= e.scores.size() || e.scores[current_shape_].first != e.epoch) {
    return nullptr;
  }
  return &e.scores[current_shape_].second;
}

void ScoreMemo::Store(const NodeState& n, int64_t score) {
  Entry& e = entries_[n.id.value()];
  if (current_shape_ >= e.scores.size()) e.scores.resize(current_shape_ + 1, {0, 0});
  e.scores[current_shape_] = {e.epoch, score};
}

}  // namespace gpuorch::sched
