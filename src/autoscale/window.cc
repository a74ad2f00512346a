#include "autoscale/window.h"

namespace gpuorch::autoscale {

void SignalWindow::Reset(int32_t window_s) {
  buckets_.assign(static_cast<size_t>(window_s), Bucket{});
}

void SignalWindow::Add(Time at, double value) {
  const int64_t second = SecondOf(at);
  const int64_t n = static_cast<int64_t>(buckets_.size());
  Bucket& b = buckets_[static_cast<size_t>(((second % n) + n) % n)];
  if (b.second == second) {
    b.sum += value;
    ++b.count;
  } else if (b.second < second) {
    b = Bucket{second, value, 1};
  }
}

SignalWindow::Averages SignalWindow::Average(Time now, int32_t panic_window_s) const {
  const int64_t now_s = SecondOf(now);
  const int64_t stable_from = now_s - static_cast<int64_t>(buckets_.size());
  const int64_t panic_from = now_s - panic_window_s;
  double stable_sum = 0, panic_sum = 0, newest = 0;
  int32_t stable_n = 0, panic_n = 0;
  int64_t newest_second = stable_from;
  for (const Bucket& b : buckets_) {
    if (b.second <= stable_from || b.second > now_s) continue;
    const double mean = b.sum / b.count;
    stable_sum += mean;
    ++stable_n;
    if (b.second > panic_from) {
      panic_sum += mean;
      ++panic_n;
    }
    if (b.second > newest_second) {
      newest_second = b.second;
      newest = mean;
    }
  }
  Averages a;
  if (stable_n == 0) return a;
  a.present = true;
  a.stable = stable_sum / stable_n;
  a.panic = panic_n > 0 ? panic_sum / panic_n : newest;
  return a;
}

int32_t MaxWindow::RecordAndMax(Time now, int32_t value, core::Duration delay) {
  if (delay <= 0) return value;
  while (!entries_.empty() && entries_.back().second <= value) entries_.pop_back();
  entries_.emplace_back(now, value);
  while (entries_.front().first <= now - delay) entries_.pop_front();
  return entries_.front().second;
}

}  // namespace gpuorch::autoscale
