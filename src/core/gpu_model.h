#pragma once

#include <bit>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/ids.h"
#include "core/status.h"

namespace gpuorch::core {

// The most GPU models one cluster may hold. Model sets are 64-bit masks so that the
// "acceptable models" filter is one AND on the placement hot path.
inline constexpr uint32_t kMaxGpuModels = 64;
// The last bit is no model's: a registry names at most 63, and a node's model id is below
// it, so that ModelSet::None() can stand for "only models nobody has".
inline constexpr uint32_t kMaxNamedGpuModels = kMaxGpuModels - 1;

// A set of GPU models as a bit mask. The empty set means "any model".
class ModelSet {
 public:
  constexpr ModelSet() = default;
  static constexpr ModelSet Of(GpuModelId m) { return ModelSet(uint64_t{1} << m.value()); }
  // A set that accepts no model (a workload that named only models no node has yet); not
  // any(). Its one bit is kMaxNamedGpuModels, which no node's model has.
  static constexpr ModelSet None() { return ModelSet(uint64_t{1} << kMaxNamedGpuModels); }

  constexpr void Add(GpuModelId m) { bits_ |= uint64_t{1} << m.value(); }
  constexpr bool any() const { return bits_ == 0; }
  // True if a GPU of model `m` is acceptable (an empty set accepts every model).
  constexpr bool Accepts(GpuModelId m) const { return bits_ == 0 || (bits_ >> m.value()) & 1u; }
  constexpr uint64_t bits() const { return bits_; }
  constexpr int size() const { return std::popcount(bits_); }
  friend constexpr bool operator==(ModelSet, ModelSet) = default;

 private:
  constexpr explicit ModelSet(uint64_t bits) : bits_(bits) {}
  uint64_t bits_ = 0;
};

// Interns GPU model names ("H100-80GB", "T4", ...) into dense ids.
class GpuModelRegistry {
 public:
  // Returns the id of `name`, adding it if new. Fails past kMaxNamedGpuModels names or on an
  // empty name.
  Result<GpuModelId> Intern(std::string_view name);
  // Returns the id of a known model, or an invalid id.
  GpuModelId Find(std::string_view name) const;
  const std::string& Name(GpuModelId id) const { return names_[id.value()]; }
  uint32_t size() const { return static_cast<uint32_t>(names_.size()); }

 private:
  std::vector<std::string> names_;
  std::unordered_map<std::string, GpuModelId> ids_;
};

}  // namespace gpuorch::core
