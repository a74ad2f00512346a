#pragma once

// Reading the fields of an API request body (api_types.cc, service_spec.cc): each helper
// reads one optional member and, on a wrong type or range, fills an ApiError (400) whose
// field is the member's JSON path and whose message starts with it.

#include <cmath>
#include <cstdint>
#include <set>
#include <string>

#include "server/api_types.h"

namespace gpuorch::server::fields {

// The path of `key` under `path` ("" at the top level).
inline std::string Path(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

inline bool Fail(ApiError& e, const std::string& field, const std::string& why) {
  e = ApiError{400, field, field.empty() ? why : field + ": " + why};
  return false;
}

// An integer member in [lo, hi], if present.
inline bool Int(const Json& o, const char* key, const std::string& path, int64_t lo, int64_t hi,
                int64_t& out, ApiError& e) {
  if (!o.contains(key)) return true;
  const Json& v = o[key];
  if (!v.is_number_integer()) return Fail(e, Path(path, key), "must be an integer");
  const auto x = v.get<int64_t>();
  if (x < lo || x > hi) {
    return Fail(e, Path(path, key),
                "must be in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " +
                    std::to_string(x));
  }
  out = x;
  return true;
}

inline bool Int32(const Json& o, const char* key, const std::string& path, int64_t lo, int64_t hi,
                  int32_t& out, ApiError& e) {
  int64_t v = out;
  if (!Int(o, key, path, lo, hi, v, e)) return false;
  out = static_cast<int32_t>(v);
  return true;
}

// A finite number member, if present (its range is the caller's to check).
inline bool Number(const Json& o, const char* key, const std::string& path, double& out,
                   ApiError& e) {
  if (!o.contains(key)) return true;
  const Json& v = o[key];
  if (!v.is_number() || !std::isfinite(v.get<double>())) {
    return Fail(e, Path(path, key), "must be a number");
  }
  out = v.get<double>();
  return true;
}

// A string member, if present.
inline bool Str(const Json& o, const char* key, const std::string& path, std::string& out,
                ApiError& e) {
  if (!o.contains(key)) return true;
  if (!o[key].is_string()) return Fail(e, Path(path, key), "must be a string");
  out = o[key].get<std::string>();
  return true;
}

// The first member of `o` that is not in `known` is an error.
inline bool Known(const Json& o, const std::string& path, const std::set<std::string>& known,
                  ApiError& e) {
  for (const auto& [k, v] : o.items()) {
    if (!known.count(k)) return Fail(e, Path(path, k), "unknown field");
  }
  return true;
}

}  // namespace gpuorch::server::fields
