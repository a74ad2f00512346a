#pragma once

#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "core/ids.h"

namespace gpuorch::autoscale {

using core::Time;

// Floor of a millisecond time to its second (also for times before the epoch).
inline int64_t SecondOf(Time t) { return t >= 0 ? t / 1000 : -((-t + 999) / 1000); }

// One signal source's samples, kept as one bucket per second over the stable window (the
// mean of the samples taken in that second). The window averages are means over the
// seconds that hold samples, so a gauge scraped every 5 s and one pushed every 100 ms
// average alike: between samples a gauge is taken to keep its level.
//
// Decay: a second leaves the window once it is stable_window_s old. A source none of whose
// samples is in the stable window has no value (`present` false) and contributes 0.
//
// Memory O(stable window in seconds); Add O(1); Average O(stable window). Not thread-safe.
class SignalWindow {
 public:
  struct Averages {
    double stable = 0;  // mean over the seconds in (now - stable, now] that hold samples
    double panic = 0;   // the same over (now - panic, now]; the newest second when none
    bool present = false;
  };

  SignalWindow() = default;
  explicit SignalWindow(int32_t window_s) { Reset(window_s); }

  // Forgets every sample and sizes the window.
  void Reset(int32_t window_s);

  // Records a sample taken at `at`. A sample older than the window behind a newer sample
  // already recorded is dropped (it could not count again anyway).
  void Add(Time at, double value);

  // Samples taken after `now` are not counted.
  Averages Average(Time now, int32_t panic_window_s) const;

 private:
  static constexpr int64_t kEmpty = INT64_MIN;
  struct Bucket {
    int64_t second = kEmpty;
    double sum = 0;
    int32_t count = 0;
  };
  std::vector<Bucket> buckets_;
};

// The scale-down delay: the highest value recorded in the last `delay` milliseconds
// (Knative's delay window). A monotone queue: Record and Current are O(1) amortised.
class MaxWindow {
 public:
  void Reset() { entries_.clear(); }
  // Records `value` at `now` and returns the highest value recorded in (now - delay, now].
  // Times must not decrease.
  int32_t RecordAndMax(Time now, int32_t value, core::Duration delay);

 private:
  std::deque<std::pair<Time, int32_t>> entries_;  // values strictly decreasing front to back
};

}  // namespace gpuorch::autoscale
