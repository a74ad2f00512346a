#include "cli/client/yaml_json.h"

#include <algorithm>
#include <cctype>
#include <regex>

namespace gpuorch::cli {
namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool IsNullWord(const std::string& s) { return s.empty() || s == "~" || Lower(s) == "null"; }

bool IsBoolWord(const std::string& s, bool* value) {
  const std::string l = Lower(s);
  if (l == "true" || l == "yes" || l == "on" || l == "y") {
    *value = true;
    return true;
  }
  if (l == "false" || l == "no" || l == "off" || l == "n") {
    *value = false;
    return true;
  }
  return false;
}

const std::regex& IntPattern() {
  static const std::regex kInt(R"([-+]?[0-9]+)");
  return kInt;
}

const std::regex& FloatPattern() {
  static const std::regex kFloat(
      R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))");
  return kFloat;
}

nlohmann::json ResolvePlainScalar(const std::string& s) {
  if (IsNullWord(s)) return nullptr;
  bool b = false;
  // Single letters y/n are YAML 1.1 booleans but far more likely meant as text in a spec.
  if (s.size() > 1 && IsBoolWord(s, &b)) return b;
  if (std::regex_match(s, IntPattern())) {
    try {
      return std::stoll(s);
    } catch (const std::out_of_range&) {
      return s;  // Too large for int64: keep the digits and let the server judge them.
    }
  }
  if (std::regex_match(s, FloatPattern())) {
    try {
      return std::stod(s);
    } catch (const std::exception&) {
      return s;
    }
  }
  return s;
}

// Whether a plain scalar would not read back as this string: words and numbers YAML would
// take as another type, and control characters or edge blanks, which a plain scalar drops
// or folds (a trailing "\r" read back as a line end, found by the spec_file fuzzer).
bool NeedsQuotes(const std::string& s) {
  bool b = false;
  if (!s.empty() &&
      (s.front() == ' ' || s.back() == ' ' || s.front() == '\t' || s.back() == '\t')) {
    return true;
  }
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return IsNullWord(s) || IsBoolWord(s, &b) || std::regex_match(s, IntPattern()) ||
         std::regex_match(s, FloatPattern());
}

void EmitString(YAML::Emitter& out, const std::string& s) {
  if (NeedsQuotes(s)) out << YAML::DoubleQuoted;
  out << s;
}

void Emit(YAML::Emitter& out, const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::object:
      if (v.empty()) out << YAML::Flow;
      out << YAML::BeginMap;
      for (const auto& [k, item] : v.items()) {
        out << YAML::Key;
        EmitString(out, k);
        out << YAML::Value;
        Emit(out, item);
      }
      out << YAML::EndMap;
      break;
    case nlohmann::json::value_t::array:
      if (v.empty()) out << YAML::Flow;
      out << YAML::BeginSeq;
      for (const auto& item : v) Emit(out, item);
      out << YAML::EndSeq;
      break;
    case nlohmann::json::value_t::string: {
      EmitString(out, v.get_ref<const std::string&>());
      break;
    }
    case nlohmann::json::value_t::boolean:
      out << v.get<bool>();
      break;
    case nlohmann::json::value_t::number_integer:
      out << v.get<int64_t>();
      break;
    case nlohmann::json::value_t::number_unsigned:
      out << v.get<uint64_t>();
      break;
    case nlohmann::json::value_t::number_float:
      // The shortest form that reads back the same (0.9, not yaml-cpp's 0.90000000000000002),
      // as the JSON output prints it.
      out << v.dump();
      break;
    default:
      out << YAML::Null;
      break;
  }
}

}  // namespace

nlohmann::json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::json obj = nlohmann::json::object();
      for (const auto& kv : node) obj[kv.first.as<std::string>()] = YamlToJson(kv.second);
      return obj;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& item : node) arr.push_back(YamlToJson(item));
      return arr;
    }
    case YAML::NodeType::Scalar:
      // yaml-cpp tags quoted scalars "!" and plain ones "?".
      if (node.Tag() == "!") return node.Scalar();
      return ResolvePlainScalar(node.Scalar());
    default:
      return nullptr;
  }
}

std::string JsonToYaml(const nlohmann::json& value) {
  YAML::Emitter out;
  out.SetBoolFormat(YAML::TrueFalseBool);
  Emit(out, value);
  std::string s = out.c_str();
  if (s.empty() || s.back() != '\n') s += '\n';
  return s;
}

}  // namespace gpuorch::cli
