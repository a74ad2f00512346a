#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <tuple>
#include <vector>

#include "core/workload.h"
#include "sched/policy.h"

namespace gpuorch::server {

// The live mix of task shapes the server sees, fed to the fragmentation-aware placement
// policies (fgd, gpuorch) as their typical tasks. The simulator hands them the trace's task
// distribution; the server has no trace, so it learns the distribution from its own work:
// - running: the tasks of every workload that has tasks placed now, counted exactly;
// - recent: the tasks of recent submissions (gangs count all their min_tasks), each
//   submission first decaying the earlier ones by 1/64, so that the last ~44 submissions
//   carry half of the weight. Decay counts submissions, not wall time, so the mix is a
//   function of the events alone and the engine stays deterministic given the same events.
// Each part is normalised to a distribution and the two are averaged (a part that is empty
// leaves the other whole); the kMaxShapes heaviest shapes are kept and renormalised.
//
// A shape is what the fragmentation measures read: GPU count, milli-GPU per GPU, CPU and the
// acceptable GPU models (task and GPU memory are left out; fragmentation.h ignores them).
//
// Contract: not thread-safe (the controller calls it under its mutex); every method is
// O(shapes) at most, and shapes are bounded by the live workloads plus kMaxRecentShapes.
class TaskMix {
 public:
  static constexpr size_t kMaxShapes = 16;        // typical tasks handed to the policy
  static constexpr size_t kMaxRecentShapes = 64;  // decaying shapes remembered
  static constexpr int kDecayShift = 6;           // each submission decays the rest by 1/64
  // A new mix replaces the policy's only when it moved this far (total variation distance,
  // parts per million): a policy forgets its score memo on every change.
  static constexpr int64_t kMinChangePpm = 50'000;

  // A workload with `tasks` tasks of shape `t` was submitted.
  void Submitted(const core::TaskRequest& t, int32_t tasks);
  // Workload `id` has `live` tasks of shape `t` placed now (0 once none is).
  void SetLive(int64_t id, const core::TaskRequest& t, int32_t live);

  // The current mix, heaviest shape first (ties in shape order); weights sum to 1. Empty
  // when nothing was seen.
  std::vector<sched::TypicalTask> Typical() const;
  // The current mix if it differs materially (kMinChangePpm) from the one this last
  // returned, or if it is the first non-empty one; nothing otherwise.
  std::optional<std::vector<sched::TypicalTask>> TakeIfChanged();

 private:
  // (gpu_count, gpu_milli, milli_cpu, model bits): ordered, so iteration is deterministic.
  using Key = std::tuple<int32_t, int32_t, int64_t, uint64_t>;
  struct Shape {
    core::TaskRequest task;  // canonical: memory fields cleared
    int64_t live = 0;        // tasks placed now
    int64_t recent = 0;      // decayed submitted tasks, fixed point (1 task = 1 << 16)
  };
  struct Live {
    Key key;
    int32_t tasks = 0;
  };
  static Key KeyOf(const core::TaskRequest& t);
  Shape& ShapeOf(const core::TaskRequest& t);
  // Drops shapes with nothing live and the least recent weight beyond kMaxRecentShapes.
  void Trim();
  // Parts per million per shape, the kMaxShapes heaviest, summing to 1e6.
  std::vector<std::pair<Key, int64_t>> Weights() const;
  std::vector<sched::TypicalTask> ToTypical(
      const std::vector<std::pair<Key, int64_t>>& weights) const;

  std::map<Key, Shape> shapes_;
  std::map<int64_t, Live> live_;  // by workload id
  int64_t live_total_ = 0, recent_total_ = 0;
  std::vector<std::pair<Key, int64_t>> taken_;  // what TakeIfChanged last returned
};

}  // namespace gpuorch::server
