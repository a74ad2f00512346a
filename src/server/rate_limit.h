#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

// Per-token request rate limits (docs/security.md): a token bucket per key (a token's
// accessor, or the client's address in --insecure-no-auth mode) that holds up to `burst`
// requests and refills at `per_second`. A request takes one; an empty bucket answers how
// long until the next one. Time is the caller's (steady milliseconds), so the limiter is
// deterministic under test.
namespace gpuorch::server {

struct RateDecision {
  bool allowed = true;
  int64_t retry_after_ms = 0;  // when refused: until the bucket holds a whole request again
};

class RateLimiter {
 public:
  // `per_second` 0: no limit.
  RateLimiter(double per_second, double burst);

  RateDecision Take(const std::string& key, int64_t now_ms);
  bool enabled() const { return per_second_ > 0; }
  // Keys tracked now (buckets refilled to full are forgotten once there are many).
  size_t keys() const;

 private:
  struct Bucket {
    double tokens = 0;
    int64_t at_ms = 0;
  };
  double per_second_, burst_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
  size_t prune_at_ = 1024;
};

}  // namespace gpuorch::server
