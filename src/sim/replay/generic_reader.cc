// The generic trace format (docs/simulator.md): CSV with a header, or JSON lines, one job
// per record with the fields arrival, duration, tasks, gpus_per_task, fraction, model,
// tenant, kind, priority, preemptible and an optional name. Both encodings go through one
// field parser so that they accept exactly the same values.
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "sim/replay/trace.h"

namespace gpuorch::sim {

using core::Result;
using core::Status;

namespace {

using Fields = std::map<std::string, std::string, std::less<>>;

const std::vector<std::string>& KnownFields() {
  static const std::vector<std::string> k = {"arrival",  "duration",    "tasks",  "gpus_per_task",
                                             "fraction", "model",       "tenant", "kind",
                                             "priority", "preemptible", "name"};
  return k;
}

Status Bad(const std::string& path, int line, const std::string& field, const std::string& what) {
  return Status::Invalid(path + ":" + std::to_string(line) + ": " + field + ": " + what);
}

Status ParseJob(const std::string& path, int line, const Fields& f, Trace& trace) {
  auto get = [&](const char* k) -> std::string_view {
    auto it = f.find(k);
    return it == f.end() ? std::string_view() : std::string_view(it->second);
  };
  TraceJob j;
  if (!ParseSecondsMs(get("arrival"), j.arrival)) {
    return Bad(path, line, "arrival", "expected seconds >= 0 (up to 3 decimals)");
  }
  if (!ParseSecondsMs(get("duration"), j.duration) || j.duration <= 0) {
    return Bad(path, line, "duration", "expected seconds > 0 (up to 3 decimals)");
  }
  int64_t v = 0;
  if (!get("tasks").empty()) {
    if (!ParseInt(get("tasks"), v) || v < 1 || v > 100000) {
      return Bad(path, line, "tasks", "expected an integer in 1..100000");
    }
    j.tasks = static_cast<int32_t>(v);
  }
  if (!get("gpus_per_task").empty()) {
    if (!ParseInt(get("gpus_per_task"), v) || v < 0 || v > 16) {
      return Bad(path, line, "gpus_per_task", "expected an integer in 0..16");
    }
    j.gpus_per_task = static_cast<int32_t>(v);
  }
  if (j.gpus_per_task == 0)
    return Bad(path, line, "gpus_per_task", "CPU-only jobs are not replayed");
  if (!get("fraction").empty()) {
    if (!ParseFractionMilli(get("fraction"), j.gpu_milli)) {
      return Bad(path, line, "fraction", "expected a GPU share in 0.001..1");
    }
    if (j.gpu_milli < 1000 && j.gpus_per_task != 1) {
      return Bad(path, line, "fraction", "a fraction needs gpus_per_task = 1");
    }
  }
  if (!get("model").empty()) j.model = trace.Model(get("model"));
  if (get("tenant").empty()) return Bad(path, line, "tenant", "required");
  j.tenant = trace.Tenant(get("tenant"));
  if (!get("kind").empty() && !ParseKind(get("kind"), j.kind)) {
    return Bad(path, line, "kind", "expected training, inference or experiment");
  }
  if (!get("priority").empty()) {
    if (!ParseInt(get("priority"), v) || v < -1000000 || v > 1000000) {
      return Bad(path, line, "priority", "expected an integer in -1e6..1e6");
    }
    j.priority = static_cast<int32_t>(v);
  }
  if (std::string_view p = get("preemptible"); !p.empty()) {
    if (p == "true" || p == "1") {
      j.preemptible = true;
    } else if (p == "false" || p == "0") {
      j.preemptible = false;
    } else {
      return Bad(path, line, "preemptible", "expected true, false, 1 or 0");
    }
  }
  j.name = get("name").empty() ? "job-" + std::to_string(line) : std::string(get("name"));
  trace.jobs.push_back(std::move(j));
  return Status::Ok();
}

// A JSON value as the text the CSV encoding would hold.
bool JsonText(const nlohmann::json& v, std::string& out) {
  if (v.is_string()) return out = v.get<std::string>(), true;
  if (v.is_boolean()) return out = v.get<bool>() ? "true" : "false", true;
  if (v.is_number_integer()) return out = std::to_string(v.get<int64_t>()), true;
  if (v.is_number_float()) {
    // Shortest round-trip text, then no exponent: 0.25 -> "0.25".
    out = v.dump();
    return out.find_first_of("eE") == std::string::npos;
  }
  return false;
}

}  // namespace

Result<Trace> ReadGenericTrace(const std::string& path) {
  auto text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  return ParseGenericTrace(*text, path);
}

Result<Trace> ParseGenericTrace(std::string_view text, const std::string& path) {
  const bool json = path.size() >= 5 && (path.ends_with(".jsonl") || path.ends_with(".json"));
  Trace trace;
  const size_t slash = path.find_last_of('/');
  trace.name = path.substr(slash == std::string::npos ? 0 : slash + 1);
  std::vector<std::string> header;
  std::string_view rest = text;
  int line_no = 0;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    Fields f;
    if (json) {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        return Bad(path, line_no, "record", "not a JSON object");
      }
      for (auto& [k, v] : j.items()) {
        if (std::find(KnownFields().begin(), KnownFields().end(), k) == KnownFields().end()) {
          return Bad(path, line_no, k, "unknown field");
        }
        std::string s;
        if (!JsonText(v, s)) return Bad(path, line_no, k, "expected a string, number or bool");
        f[k] = s;
      }
    } else if (header.empty()) {
      for (std::string_view h : SplitCsv(line)) {
        if (std::find(KnownFields().begin(), KnownFields().end(), h) == KnownFields().end()) {
          return Bad(path, line_no, std::string(h), "unknown column");
        }
        header.emplace_back(h);
      }
      continue;
    } else {
      auto cells = SplitCsv(line);
      if (cells.size() != header.size()) {
        return Bad(path, line_no, "row",
                   "expected " + std::to_string(header.size()) + " fields, got " +
                       std::to_string(cells.size()));
      }
      for (size_t i = 0; i < cells.size(); ++i) f[header[i]] = std::string(cells[i]);
    }
    if (Status s = ParseJob(path, line_no, f, trace); !s.ok()) return s;
  }
  if (trace.jobs.empty()) return Status::Invalid(path + ": no jobs");
  trace.Normalize();
  return trace;
}

}  // namespace gpuorch::sim
