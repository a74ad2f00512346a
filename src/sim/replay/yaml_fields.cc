#include "sim/replay/yaml_fields.h"

#include <cmath>
#include <sstream>

namespace gpuorch::sim::yaml {

using core::Result;
using core::Status;

Status At(const std::string& file, const YAML::Node& n, const std::string& field,
          const std::string& what) {
  return Status::Invalid(file + ":" + std::to_string(n.Mark().line + 1) + ": " + field + ": " +
                         what);
}

Status Int(const std::string& file, const YAML::Node& n, const std::string& field, int64_t lo,
           int64_t hi, int64_t& out) {
  if (Status s = Scalar(file, n, field, out); !s.ok()) return s;
  if (out < lo || out > hi) {
    return At(file, n, field, "must be in " + std::to_string(lo) + ".." + std::to_string(hi));
  }
  return Status::Ok();
}

Status Double(const std::string& file, const YAML::Node& n, const std::string& field, double lo,
              double hi, double& out) {
  if (Status s = Scalar(file, n, field, out); !s.ok()) return s;
  if (!std::isfinite(out) || out < lo || out > hi) {
    std::ostringstream range;
    range << "must be a number in " << lo << ".." << hi;
    return At(file, n, field, range.str());
  }
  return Status::Ok();
}

Status CheckKeys(const std::string& file, const YAML::Node& map, const std::string& where,
                 const std::set<std::string>& known) {
  if (!map.IsMap()) return At(file, map, where, "expected a mapping");
  for (const auto& kv : map) {
    // A key that is a list, a mapping or empty would throw in as<std::string>() (found by
    // the fuzz smoke: "? ?").
    if (!kv.first.IsScalar()) return At(file, kv.first, where, "keys must be field names");
    const std::string k = kv.first.as<std::string>();
    if (!known.count(k)) {
      return At(file, kv.first, where.empty() ? k : where + "." + k, "unknown key");
    }
  }
  return Status::Ok();
}

Result<YAML::Node> Parse(const std::string& text, const std::string& file) {
  size_t bad_at = 0;
  if (!core::IsValidUtf8(text, &bad_at)) {
    return Status::Invalid(file + ": not UTF-8 text (byte " + std::to_string(bad_at) + ")");
  }
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    return Status::Invalid(file + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
}

}  // namespace gpuorch::sim::yaml
