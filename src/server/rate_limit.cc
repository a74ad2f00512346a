#include "server/rate_limit.h"

#include <algorithm>
#include <cmath>

namespace gpuorch::server {

RateLimiter::RateLimiter(double per_second, double burst)
    : per_second_(per_second), burst_(std::max(1.0, burst)) {}

RateDecision RateLimiter::Take(const std::string& key, int64_t now_ms) {
  if (per_second_ <= 0) return {};
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, fresh] = buckets_.try_emplace(key, Bucket{burst_, now_ms});
  Bucket& b = it->second;
  if (!fresh && now_ms > b.at_ms) {
    b.tokens = std::min(burst_, b.tokens + (now_ms - b.at_ms) * per_second_ / 1000.0);
    b.at_ms = now_ms;
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
  } else {
    return {false, static_cast<int64_t>(std::ceil((1.0 - b.tokens) * 1000.0 / per_second_))};
  }
  // A bucket that would be full again says nothing a new one would not: forget those once
  // there are many keys, so that a stream of distinct keys cannot grow the map for good.
  if (buckets_.size() >= prune_at_) {
    const double full_after_ms = burst_ * 1000.0 / per_second_;
    std::erase_if(buckets_, [&](const auto& kv) {
      return &kv.second != &b && static_cast<double>(now_ms - kv.second.at_ms) >= full_after_ms;
    });
    prune_at_ = std::max<size_t>(1024, buckets_.size() * 2);
  }
  return {};
}

size_t RateLimiter::keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  return buckets_.size();
}

}  // namespace gpuorch::server
