#include "server/task_mix.h"

#include <algorithm>

namespace gpuorch::server {

namespace {

constexpr int64_t kPpm = 1'000'000;
constexpr int64_t kOneTask = int64_t{1} << 16;
// Larger gangs count as this many tasks, so that fixed-point sums times kPpm stay in 64 bits.
constexpr int64_t kMaxCountedTasks = int64_t{1} << 16;

}  // namespace

TaskMix::Key TaskMix::KeyOf(const core::TaskRequest& t) {
  return {t.gpu_count, t.gpu_count == 0 ? core::kMilliGpu : t.gpu_milli, t.milli_cpu,
          t.models.bits()};
}

TaskMix::Shape& TaskMix::ShapeOf(const core::TaskRequest& t) {
  auto [it, inserted] = shapes_.try_emplace(KeyOf(t));
  if (inserted) {
    it->second.task = t;
    it->second.task.memory_mib = 0;
    it->second.task.gpu_memory_mib = 0;
    if (t.gpu_count == 0) it->second.task.gpu_milli = core::kMilliGpu;
  }
  return it->second;
}

void TaskMix::Submitted(const core::TaskRequest& t, int32_t tasks) {
  recent_total_ = 0;
  for (auto& [key, s] : shapes_) {
    s.recent -= s.recent >> kDecayShift;
    recent_total_ += s.recent;
  }
  const int64_t add = std::clamp<int64_t>(tasks, 1, kMaxCountedTasks) * kOneTask;
  ShapeOf(t).recent += add;
  recent_total_ += add;
  Trim();
}

void TaskMix::SetLive(int64_t id, const core::TaskRequest& t, int32_t live) {
  bool released = false;  // a shape may have lost its last live task
  if (auto it = live_.find(id); it != live_.end()) {
    if (it->second.tasks == live && it->second.key == KeyOf(t)) return;
    shapes_.at(it->second.key).live -= it->second.tasks;
    live_total_ -= it->second.tasks;
    live_.erase(it);
    released = true;
  }
  if (live > 0) {
    ShapeOf(t).live += live;
    live_total_ += live;
    live_.emplace(id, Live{KeyOf(t), live});
  }
  if (released) Trim();
}

void TaskMix::Trim() {
  // A decayed weight below 1 << kDecayShift no longer decays (x >> 6 is 0): it counts as
  // gone, so that forgotten shapes do not linger.
  for (auto it = shapes_.begin(); it != shapes_.end();) {
    if (it->second.live == 0 && it->second.recent < (int64_t{1} << kDecayShift)) {
      recent_total_ -= it->second.recent;
      it = shapes_.erase(it);
    } else {
      ++it;
    }
  }
  size_t remembered = 0;
  for (const auto& [key, s] : shapes_) remembered += s.live == 0;
  while (remembered > kMaxRecentShapes) {
    auto least = shapes_.end();
    for (auto it = shapes_.begin(); it != shapes_.end(); ++it) {
      if (it->second.live == 0 &&
          (least == shapes_.end() || it->second.recent < least->second.recent)) {
        least = it;
      }
    }
    recent_total_ -= least->second.recent;
    shapes_.erase(least);
    --remembered;
  }
}

std::vector<std::pair<TaskMix::Key, int64_t>> TaskMix::Weights() const {
  std::vector<std::pair<Key, int64_t>> w;
  const int parts = (live_total_ > 0) + (recent_total_ > 0);
  if (parts == 0) return w;
  for (const auto& [key, s] : shapes_) {
    int64_t ppm = 0;
    if (live_total_ > 0) ppm += s.live * kPpm / live_total_;
    if (recent_total_ > 0) ppm += s.recent * kPpm / recent_total_;
    if (ppm > 0) w.emplace_back(key, ppm / parts);
  }
  std::stable_sort(w.begin(), w.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  if (w.size() > kMaxShapes) w.resize(kMaxShapes);
  int64_t sum = 0;
  for (const auto& [key, ppm] : w) sum += ppm;
  if (sum == 0) return {};
  int64_t assigned = 0;
  for (auto& [key, ppm] : w) {
    ppm = ppm * kPpm / sum;
    assigned += ppm;
  }
  w.front().second += kPpm - assigned;  // rounding: the weights sum to exactly 1e6
  return w;
}

std::vector<sched::TypicalTask> TaskMix::ToTypical(
    const std::vector<std::pair<Key, int64_t>>& weights) const {
  std::vector<sched::TypicalTask> out;
  for (const auto& [key, ppm] : weights) {
    out.push_back({shapes_.at(key).task, static_cast<double>(ppm) / static_cast<double>(kPpm)});
  }
  return out;
}

std::vector<sched::TypicalTask> TaskMix::Typical() const { return ToTypical(Weights()); }

std::optional<std::vector<sched::TypicalTask>> TaskMix::TakeIfChanged() {
  std::vector<std::pair<Key, int64_t>> now = Weights();
  if (now.empty()) return std::nullopt;  // nothing to learn from: the policy keeps its mix
  if (!taken_.empty()) {
    std::map<Key, int64_t> diff;
    for (const auto& [key, ppm] : now) diff[key] += ppm;
    for (const auto& [key, ppm] : taken_) diff[key] -= ppm;
    int64_t l1 = 0;
    for (const auto& [key, d] : diff) l1 += d < 0 ? -d : d;
    if (l1 < 2 * kMinChangePpm) return std::nullopt;  // total variation = l1 / 2
  }
  taken_ = std::move(now);
  return ToTypical(taken_);
}

}  // namespace gpuorch::server
