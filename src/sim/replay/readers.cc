// Trace readers: Philly (Pollux's cleaned copy), Pollux workloads and the generic CSV /
// JSON-lines format. Every error names the file, the 1-based line and the field.
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "sim/replay/trace.h"

namespace gpuorch::sim {

using core::Result;
using core::Status;

namespace {

// Calls fn(line_number, line) for every non-empty line after the header; stops at the
// first error fn returns.
template <typename Fn>
Status ForEachLine(std::string_view text, Fn&& fn) {
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    while (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (Status s = fn(line_no, line); !s.ok()) return s;
  }
  return Status::Ok();
}

Status LineError(const std::string& path, int line, const std::string& field,
                 const std::string& what) {
  return Status::Invalid(path + ":" + std::to_string(line) + ": " + field + ": " + what);
}

// Column positions from a header line; missing required columns are an error.
Result<std::map<std::string, size_t>> Header(const std::string& path, std::string_view line,
                                             const std::vector<std::string>& required) {
  std::map<std::string, size_t> cols;
  auto fields = SplitCsv(line);
  for (size_t i = 0; i < fields.size(); ++i) cols[std::string(fields[i])] = i;
  for (const std::string& r : required) {
    if (!cols.count(r)) return LineError(path, 1, r, "missing column in the header");
  }
  return cols;
}

// Calls row(line_number, fields, columns) for every data row of a CSV whose header names
// `required`; the header and short rows are errors naming the file and line.
template <typename Row>
Status ForEachCsvRow(const std::string& path, std::string_view text,
                     const std::vector<std::string>& required, Row&& row) {
  std::map<std::string, size_t> cols;
  return ForEachLine(text, [&](int no, std::string_view line) -> Status {
    if (no == 1) {
      auto h = Header(path, line, required);
      if (!h.ok()) return h.status();
      cols = *h;
      return Status::Ok();
    }
    auto f = SplitCsv(line);
    if (f.size() < cols.size()) {
      return LineError(path, no, "row", "expected " + std::to_string(cols.size()) + " fields");
    }
    return row(no, f, cols);
  });
}

}  // namespace

Result<Trace> ReadPhillyTrace(const std::string& path, int32_t node_gpus) {
  auto text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  return ParsePhillyTrace(*text, path, node_gpus);
}

Result<Trace> ParsePhillyTrace(std::string_view text, const std::string& path, int32_t node_gpus) {
  Trace trace;
  trace.name = "philly";
  Status s =
      ForEachCsvRow(path, text, {"timestamp", "duration", "num_gpus", "cluster"},
                    [&](int no, const std::vector<std::string_view>& f,
                        std::map<std::string, size_t>& cols) -> Status {
                      TraceJob j;
                      int64_t ts = 0, gpus = 0;
                      if (!ParseTimestamp(f[cols["timestamp"]], ts)) {
                        return LineError(path, no, "timestamp", "expected YYYY-MM-DD HH:MM:SS");
                      }
                      j.arrival = ts * core::kSecond;
                      if (!ParseSecondsMs(f[cols["duration"]], j.duration) || j.duration <= 0) {
                        return LineError(path, no, "duration", "expected seconds > 0");
                      }
                      if (!ParseInt(f[cols["num_gpus"]], gpus) || gpus < 1 || gpus > 100000) {
                        return LineError(path, no, "num_gpus", "expected an integer in 1..100000");
                      }
                      const GangShape g = SplitGang(static_cast<int32_t>(gpus), node_gpus);
                      j.tasks = g.tasks;
                      j.gpus_per_task = g.gpus_per_task;
                      std::string_view vc = f[cols["cluster"]];
                      if (vc.empty())
                        return LineError(path, no, "cluster", "empty virtual cluster id");
                      j.tenant = trace.Tenant(vc);
                      j.name = "philly-" + std::to_string(no);
                      trace.jobs.push_back(std::move(j));
                      return Status::Ok();
                    });
  if (!s.ok()) return s;
  if (trace.jobs.empty()) return Status::Invalid(path + ": no jobs");
  trace.Normalize();
  return trace;
}

Result<Trace> ReadPolluxTrace(const std::string& workload_csv, const std::string& results_dir,
                              int32_t node_gpus) {
  // workloads-L/workload-K.csv pairs with results of load L; workloads/ and
  // workloads-realistic/ (same jobs, other initial sizes) with load 1.0.
  const size_t slash = workload_csv.find_last_of('/');
  const std::string file = workload_csv.substr(slash == std::string::npos ? 0 : slash + 1);
  const std::string dir = slash == std::string::npos ? "" : workload_csv.substr(0, slash);
  const std::string set = dir.substr(dir.find_last_of('/') + 1);
  std::string load = "1.0";
  if (set.rfind("workloads-", 0) == 0 && set != "workloads-realistic") load = set.substr(10);
  const std::string workload = file.substr(0, file.rfind('.'));
  std::map<std::string, int64_t> best;  // job name -> shortest published JCT, ms
  for (const char* sched : {"pollux", "optimus", "tiresias"}) {
    const std::string p = results_dir + "/" + sched + "-" + load + "/summary.json";
    auto text = ReadWholeFile(p);
    if (!text.ok()) return text.status();
    if (Status s = ParsePolluxJcts(*text, p, workload, best); !s.ok()) return s;
  }
  auto text = ReadWholeFile(workload_csv);
  if (!text.ok()) return text.status();
  return ParsePolluxWorkload(*text, workload_csv, "pollux/" + set + "/" + workload, best,
                             node_gpus);
}

Status ParsePolluxJcts(std::string_view summary_json, const std::string& p,
                       const std::string& workload, std::map<std::string, int64_t>& best) {
  nlohmann::json j = nlohmann::json::parse(summary_json, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("jcts") || !j["jcts"].is_object() ||
      !j["jcts"].contains(workload) || !j["jcts"][workload].is_object()) {
    return Status::Invalid(p + ": jcts." + workload + ": missing");
  }
  for (auto& [name, v] : j["jcts"][workload].items()) {
    // The bound keeps the conversion to integer milliseconds defined (and sane).
    if (!v.is_number() || !(v.get<double>() > 0) || v.get<double>() * 1000.0 > kMaxTraceMs) {
      return Status::Invalid(p + ": jcts." + workload + "." + name +
                             ": expected seconds in (0, 1e9]");
    }
    const int64_t ms = static_cast<int64_t>(v.get<double>() * 1000.0 + 0.5);
    auto [it, fresh] = best.emplace(name, ms);
    if (!fresh) it->second = std::min(it->second, ms);
  }
  return Status::Ok();
}

Result<Trace> ParsePolluxWorkload(std::string_view text, const std::string& path,
                                  const std::string& name,
                                  const std::map<std::string, int64_t>& best, int32_t node_gpus) {
  Trace trace;
  trace.name = name;
  Status s = ForEachCsvRow(
      path, text, {"name", "time", "application", "num_replicas"},
      [&](int no, const std::vector<std::string_view>& f,
          std::map<std::string, size_t>& cols) -> Status {
        TraceJob j;
        j.name = std::string(f[cols["name"]]);
        if (!ParseSecondsMs(f[cols["time"]], j.arrival)) {
          return LineError(path, no, "time", "expected seconds >= 0");
        }
        int64_t replicas = 0;
        if (!ParseInt(f[cols["num_replicas"]], replicas) || replicas < 1 || replicas > 100000) {
          return LineError(path, no, "num_replicas", "expected an integer in 1..100000");
        }
        const GangShape g = SplitGang(static_cast<int32_t>(replicas), node_gpus);
        j.tasks = g.tasks;
        j.gpus_per_task = g.gpus_per_task;
        auto it = best.find(j.name);
        if (it == best.end()) return LineError(path, no, "name", "no published JCT for " + j.name);
        j.duration = it->second;
        std::string_view app = f[cols["application"]];
        if (app.empty()) return LineError(path, no, "application", "empty");
        j.tenant = trace.Tenant(app);
        trace.jobs.push_back(std::move(j));
        return Status::Ok();
      });
  if (!s.ok()) return s;
  if (trace.jobs.empty()) return Status::Invalid(path + ": no jobs");
  trace.Normalize();
  return trace;
}

}  // namespace gpuorch::sim
