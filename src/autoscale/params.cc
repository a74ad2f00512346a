#include "autoscale/params.h"

#include <string>

namespace gpuorch::autoscale {
namespace {

using core::Status;

Status Bad(const char* field, const std::string& what) {
  return Status::Invalid(std::string("autoscale.") + field + ": " + what);
}

// NaN fails every comparison, so `!(lo <= v && v <= hi)` refuses it too.
bool InRange(double v, double lo, double hi) { return lo <= v && v <= hi; }

std::string Num(double v) {
  std::string s = std::to_string(v);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

Status ServiceParams::Validate() const {
  if (!InRange(target, 0.01, 1e9)) return Bad("target", "must be in 0.01..1e9, got " + Num(target));
  if (!InRange(target_utilization, 0.01, 1.0)) {
    return Bad("target_utilization", "must be in 0.01..1, got " + Num(target_utilization));
  }
  if (!InRange(kv_cache_target, 0.01, 1.0)) {
    return Bad("kv_cache_target", "must be in 0.01..1, got " + Num(kv_cache_target));
  }
  if (stable_window_s < 6 || stable_window_s > 3600) {
    return Bad("stable_window_s", "must be in 6..3600, got " + std::to_string(stable_window_s));
  }
  if (panic_window_s < 1 || panic_window_s > stable_window_s) {
    return Bad("panic_window_s", "must be in 1..stable_window_s (" +
                                     std::to_string(stable_window_s) + "), got " +
                                     std::to_string(panic_window_s));
  }
  if (!InRange(panic_threshold, 1.1, 10.0)) {
    return Bad("panic_threshold", "must be in 1.1..10, got " + Num(panic_threshold));
  }
  if (!InRange(max_scale_up_rate, 1.000001, 1e6)) {
    return Bad("max_scale_up_rate", "must be > 1 and <= 1e6, got " + Num(max_scale_up_rate));
  }
  if (!InRange(max_scale_down_rate, 1.000001, 1e6)) {
    return Bad("max_scale_down_rate", "must be > 1 and <= 1e6, got " + Num(max_scale_down_rate));
  }
  if (scale_down_delay_s < 0 || scale_down_delay_s > 3600) {
    return Bad("scale_down_delay_s",
               "must be in 0..3600, got " + std::to_string(scale_down_delay_s));
  }
  if (min_replicas < 0) return Bad("min_replicas", "must be >= 0");
  if (max_replicas < 0) return Bad("max_replicas", "must be >= 0 (0: unbounded)");
  if (max_replicas > 0 && max_replicas < min_replicas) {
    return Bad("max_replicas", "must be >= min_replicas (" + std::to_string(min_replicas) + ")");
  }
  if (activation_scale < 1) return Bad("activation_scale", "must be >= 1");
  if (max_replicas > 0 && activation_scale > max_replicas) {
    return Bad("activation_scale",
               "must be <= max_replicas (" + std::to_string(max_replicas) + ")");
  }
  if (scale_to_zero_after_s < 0 || scale_to_zero_after_s > 7 * 24 * 3600) {
    return Bad("scale_to_zero_after_s",
               "must be in 0..604800, got " + std::to_string(scale_to_zero_after_s));
  }
  for (const std::string& g : in_flight_gauges) {
    if (g.empty()) return Bad("in_flight_gauges", "a gauge name must not be empty");
  }
  return Status::Ok();
}

}  // namespace gpuorch::autoscale
