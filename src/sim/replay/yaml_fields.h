#pragma once

// Reading the simulator's YAML inputs (CLUSTER.yaml, QUEUES.yaml, platform.yaml) with errors
// that name the file, the line and the field. Unknown keys are errors too, so that a typo
// does not silently become a default.

#include <yaml-cpp/yaml.h>

#include <set>
#include <string>
#include <type_traits>

#include "core/status.h"
#include "core/text.h"

namespace gpuorch::sim::yaml {

// "FILE:LINE: FIELD: WHAT".
core::Status At(const std::string& file, const YAML::Node& n, const std::string& field,
                const std::string& what);

template <typename T>
core::Status Scalar(const std::string& file, const YAML::Node& n, const std::string& field,
                    T& out) {
  try {
    out = n.as<T>();
  } catch (const YAML::Exception&) {
    return At(file, n, field, "not a valid value");
  }
  // yaml-cpp can decode valid UTF-8 into bytes that are not (a tag before a NUL byte).
  if constexpr (std::is_same_v<T, std::string>) {
    if (!core::IsValidUtf8(out)) return At(file, n, field, "not UTF-8 text");
  }
  return core::Status::Ok();
}

core::Status Int(const std::string& file, const YAML::Node& n, const std::string& field, int64_t lo,
                 int64_t hi, int64_t& out);
// A finite number in [lo, hi].
core::Status Double(const std::string& file, const YAML::Node& n, const std::string& field,
                    double lo, double hi, double& out);
// `map` is a mapping whose keys are all in `known`.
core::Status CheckKeys(const std::string& file, const YAML::Node& map, const std::string& where,
                       const std::set<std::string>& known);
// The document, or an error naming the line; text must be UTF-8.
core::Result<YAML::Node> Parse(const std::string& text, const std::string& file);

}  // namespace gpuorch::sim::yaml
