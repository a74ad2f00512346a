#include "cli/client/submit_spec.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <fstream>
#include <sstream>

#include "cli/client/yaml_json.h"

namespace gpuorch::cli {
namespace {

constexpr size_t kMaxNameLen = 63;

bool LooksLikeJson(const std::string& path, const std::string& text) {
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) return true;
  for (char c : text) {
    if (!std::isspace(static_cast<unsigned char>(c))) return c == '{';
  }
  return false;
}

std::string DefaultName(const std::vector<std::string>& command) {
  if (command.empty()) return "";
  std::string base = command.front();
  if (auto slash = base.find_last_of('/'); slash != std::string::npos) {
    base = base.substr(slash + 1);
  }
  std::string out;
  for (char c : base) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    out += ok ? c : '-';
  }
  if (out.size() > kMaxNameLen) out.resize(kMaxNameLen);
  return out;
}

// A spec file may use the API's `tasks` shorthand; once a flag touches the task counts the
// shorthand is spelled out so the flag overrides one bound without erasing the other.
void ExpandTasksShorthand(nlohmann::json& body) {
  if (!body.contains("tasks")) return;
  const nlohmann::json tasks = body["tasks"];
  body.erase("tasks");
  if (!body.contains("min_tasks")) body["min_tasks"] = tasks;
  if (!body.contains("max_tasks")) body["max_tasks"] = tasks;
}

}  // namespace

Outcome<nlohmann::json> LoadSpecFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return UsageError(path + ": cannot read the spec file");
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return UsageError(path + ": cannot read the spec file");
  return ParseSpecText(buf.str(), path);
}

Outcome<nlohmann::json> ParseSpecText(const std::string& text, const std::string& path) {
  // yaml-cpp passes any bytes through, and the request body (JSON) could not hold them:
  // nlohmann's dump() would throw at submission.
  try {
    (void)nlohmann::json(text).dump();
  } catch (const nlohmann::json::type_error& e) {
    const std::string what = e.what();  // "[json.exception.type_error.316] invalid UTF-8 ..."
    return UsageError(path + ": not UTF-8 text: " + what.substr(what.find(']') + 2));
  }
  nlohmann::json spec;
  if (LooksLikeJson(path, text)) {
    try {
      spec = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      return UsageError(path + ": invalid JSON: " + e.what());
    }
  } else {
    try {
      spec = YamlToJson(YAML::Load(text));
    } catch (const YAML::Exception& e) {
      // yaml-cpp's lines and columns are 0-based; editors count from 1.
      return UsageError(path + ":" + std::to_string(e.mark.line + 1) + ":" +
                        std::to_string(e.mark.column + 1) + ": invalid YAML: " + e.msg);
    }
  }
  // yaml-cpp can decode valid UTF-8 into bytes that are not (a tag followed by a NUL byte
  // reads as a lone 0x85): such a spec could not be sent, or written back as YAML.
  try {
    (void)spec.dump();
  } catch (const nlohmann::json::type_error&) {
    return UsageError(path + ": invalid YAML: a key or value decodes to bytes that are not UTF-8");
  }
  if (!spec.is_object()) {
    return UsageError(path +
                      ": expected a mapping of workload fields (name, queue, gpus, ...) "
                      "at the top level");
  }
  return spec;
}

Outcome<nlohmann::json> BuildSubmitBody(const SubmitFlags& flags, nlohmann::json base) {
  nlohmann::json body = base.is_object() ? std::move(base) : nlohmann::json::object();

  auto set_str = [&](const char* key, const std::optional<std::string>& v) {
    if (v) body[key] = *v;
  };
  auto set_int = [&](const char* key, const std::optional<int64_t>& v) {
    if (v) body[key] = *v;
  };

  set_str("name", flags.name);
  set_str("queue", flags.queue);
  set_str("kind", flags.kind);
  set_str("priority", flags.priority);
  if (flags.non_preemptible) body["preemptible"] = false;

  if (flags.tasks || flags.max_tasks) ExpandTasksShorthand(body);
  if (flags.tasks) {
    body["min_tasks"] = *flags.tasks;
    body["max_tasks"] = flags.max_tasks ? *flags.max_tasks : *flags.tasks;
  } else if (flags.max_tasks) {
    body["max_tasks"] = *flags.max_tasks;
  }

  set_int("gpus", flags.gpus);
  set_int("gpu_milli", flags.gpu_milli);
  set_int("gpu_memory_mib", flags.gpu_memory_mib);
  set_str("mig", flags.mig);
  set_str("sharing", flags.sharing);
  set_int("cpu_milli", flags.cpu_milli);
  set_int("memory_mib", flags.memory_mib);
  if (!flags.models.empty()) body["gpu_models"] = flags.models;

  if (flags.topology || flags.require_topology) {
    if (!body.contains("topology") || !body["topology"].is_object()) {
      body["topology"] = nlohmann::json::object();
    }
    if (flags.topology) body["topology"]["level"] = *flags.topology;
    if (flags.require_topology) {
      if (!body["topology"].contains("level")) {
        return UsageError("--require-topology needs a level: add --topology rack|zone|node|nvlink");
      }
      body["topology"]["required"] = true;
    }
  }

  if (!flags.env.empty()) {
    if (!body.contains("env") || !body["env"].is_object()) body["env"] = nlohmann::json::object();
    for (const auto& kv : flags.env) {
      const auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) {
        return UsageError("--env: expected KEY=VALUE, got '" + kv + "'");
      }
      body["env"][kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }

  set_str("workdir", flags.workdir);
  set_int("runtime_estimate_s", flags.estimate_s);
  set_int("min_runtime_s", flags.min_runtime_s);
  set_int("grace_period_s", flags.grace_s);
  set_str("replicas", flags.replicas);
  if (flags.autoscale_target || flags.autoscale_metric || flags.scale_to_zero_after_s) {
    if (!body.contains("autoscale") || !body["autoscale"].is_object()) {
      body["autoscale"] = nlohmann::json::object();
    }
    if (flags.autoscale_target) body["autoscale"]["target"] = *flags.autoscale_target;
    if (flags.autoscale_metric) body["autoscale"]["metric"] = *flags.autoscale_metric;
    if (flags.scale_to_zero_after_s) {
      body["autoscale"]["scale_to_zero_after_s"] = *flags.scale_to_zero_after_s;
    }
  }
  if (flags.readiness_path) {
    if (!body.contains("readiness") || !body["readiness"].is_object()) {
      body["readiness"] = nlohmann::json::object();
    }
    body["readiness"]["http_path"] = *flags.readiness_path;
  }
  if (body.contains("replicas") && !body.contains("kind")) body["kind"] = "inference";
  if (!flags.command.empty()) body["command"] = flags.command;
  if (!body.contains("command")) {
    return UsageError(
        "no command to run: give it after '--' (gpuorch submit ... -- CMD ARGS) "
        "or as `command` in the spec file");
  }

  if (!body.contains("name") && body.contains("command") && body["command"].is_array() &&
      !body["command"].empty() && body["command"][0].is_string()) {
    const std::string name = DefaultName({body["command"][0].get<std::string>()});
    if (!name.empty()) body["name"] = name;
  }
  return body;
}

}  // namespace gpuorch::cli
