#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <limits>

namespace gpuorch::core {

// A strongly typed dense identifier. Ids are chosen by the caller (the driver that feeds
// the engine) and are small integers so that the engine can index flat vectors by them.
template <typename Tag>
class Id {
 public:
  static constexpr uint32_t kInvalid = std::numeric_limits<uint32_t>::max();

  constexpr Id() = default;
  constexpr explicit Id(uint32_t value) : value_(value) {}

  constexpr uint32_t value() const { return value_; }
  constexpr bool valid() const { return value_ != kInvalid; }

  friend constexpr auto operator<=>(Id, Id) = default;

 private:
  uint32_t value_ = kInvalid;
};

using NodeId = Id<struct NodeTag>;
using WorkloadId = Id<struct WorkloadTag>;
using QueueId = Id<struct QueueTag>;
using GpuModelId = Id<struct GpuModelTag>;

// Simulated or wall time as seen by the engine: milliseconds since an arbitrary epoch. The
// engine never reads a clock; every time comes in as an argument.
using Time = int64_t;
using Duration = int64_t;
inline constexpr Duration kSecond = 1000;
inline constexpr Duration kMinute = 60 * kSecond;
inline constexpr Duration kHour = 60 * kMinute;

}  // namespace gpuorch::core

template <typename Tag>
struct std::hash<gpuorch::core::Id<Tag>> {
  size_t operator()(gpuorch::core::Id<Tag> id) const noexcept {
    return std::hash<uint32_t>()(id.value());
  }
};
