#include "cli/client/views.h"

#include <array>
#include <cstdio>
#include <map>
#include <set>
#include <utility>

#include "cli/client/table.h"
#include "cli/client/yaml_json.h"

namespace gpuorch::cli {
namespace {

using nlohmann::json;
using TimePoint = std::chrono::system_clock::time_point;

const json& Null() {
  static const json kNull;
  return kNull;
}

const json& At(const json& obj, const char* key) {
  if (!obj.is_object()) return Null();
  auto it = obj.find(key);
  return it == obj.end() ? Null() : *it;
}

// Workload fields appear at the top level or only inside `spec`, depending on the field.
const json& WorkloadField(const json& w, const char* key) {
  const json& top = At(w, key);
  return top.is_null() ? At(At(w, "spec"), key) : top;
}

std::string Text(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    return s.empty() ? "-" : s;
  }
  return v.dump();
}

std::optional<int64_t> Int(const json& v) {
  if (v.is_number_integer()) return v.get<int64_t>();
  return std::nullopt;
}

std::string ShellQuote(const std::string& arg) {
  if (!arg.empty() && arg.find_first_of(" \t\n'\"\\$`*?[]{}()<>|&;#~") == std::string::npos) {
    return arg;
  }
  std::string out = "'";
  for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string CommandLine(const json& command) {
  if (!command.is_array() || command.empty()) return "-";
  std::string out;
  for (const auto& a : command) {
    if (!out.empty()) out += ' ';
    out += ShellQuote(a.is_string() ? a.get<std::string>() : a.dump());
  }
  return out;
}

// A service (docs/inference.md): its Ready replicas over the desired count.
bool IsService(const json& w) { return At(w, "service").is_object(); }

std::string TasksCell(const json& w) {
  if (IsService(w)) {
    const json& s = At(w, "service");
    return Text(At(s, "ready")) + "/" + Text(At(s, "desired")) + " ready";
  }
  int64_t running = 0;
  for (const auto& t : At(w, "tasks").is_array() ? At(w, "tasks") : json::array()) {
    if (At(t, "state") == "running") ++running;
  }
  const auto min = Int(WorkloadField(w, "min_tasks"));
  const auto max = Int(WorkloadField(w, "max_tasks"));
  std::string wanted = min ? std::to_string(*min) : "-";
  if (min && max && *max != *min) wanted += "-" + std::to_string(*max);
  return std::to_string(running) + "/" + wanted;
}

std::string GpusCell(const json& w) {
  const int64_t gpus = Int(WorkloadField(w, "gpus")).value_or(0);
  const int64_t milli = Int(WorkloadField(w, "gpu_milli")).value_or(1000);
  int64_t tasks = Int(WorkloadField(w, "min_tasks")).value_or(1);
  if (IsService(w)) {  // per replica, times the replicas that hold or wait for GPUs
    int64_t live = 0;
    for (const auto& r : At(At(w, "service"), "replicas")) live += At(r, "state") != "Stopping";
    tasks *= live;
  }
  return MilliToGpusShort(gpus * milli * tasks);
}

// A pending workload's estimated start, to the second. Like Slurm's `squeue --start`, "N/A"
// when the server cannot estimate it (null); "-" when it is not pending, or the server is
// older than the field.
std::string StartCell(const json& w) {
  if (At(w, "state") != "Pending" || !w.contains("estimated_start")) return "-";
  const json& v = At(w, "estimated_start");
  if (!v.is_string()) return v.is_null() ? "N/A" : "-";
  std::string s = v.get<std::string>();
  // "2026-12-02T07:10:00.000Z": the milliseconds only add noise to an estimate.
  if (s.size() > 20 && s[19] == '.' && s.back() == 'Z') s = s.substr(0, 19) + "Z";
  return s;
}

// What a pending workload waits for, in words that follow its reason.
std::string WaitingFor(const json& w) {
  const json& wf = At(w, "waiting_for");
  if (!wf.is_object()) return "-";
  const std::string who = "workload " + Text(At(wf, "id")) + " (" + Text(At(wf, "name")) + ")";
  const json& reason = At(w, "reason");
  if (reason == "BlockedByReservation") return "reservation of " + who;
  if (reason == "Preempting") return who + " to stop (the last of its victims to leave)";
  return who + " to end";
}

std::string Indent(const std::string& text, const std::string& prefix) {
  std::string out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out += prefix + text.substr(start, end - start) + '\n';
    start = end + 1;
  }
  return out;
}

std::string JoinInts(const json& arr) {
  if (!arr.is_array() || arr.empty()) return "-";
  std::string out;
  for (const auto& v : arr) out += (out.empty() ? "" : ",") + Text(v);
  return out;
}

}  // namespace

Outcome<OutputFormat> ParseOutputFormat(const std::string& s) {
  if (s == "table") return OutputFormat::kTable;
  if (s == "json") return OutputFormat::kJson;
  if (s == "yaml") return OutputFormat::kYaml;
  return UsageError("-o: unknown output format '" + s + "' (table, json or yaml)");
}

std::string RenderWorkloadTable(const json& workloads, TimePoint now) {
  Table t({"ID", "NAME", "QUEUE", "KIND", "STATE", "REASON", "ESTIMATED START", "TASKS", "GPUS",
           "AGE"});
  if (!workloads.is_array()) return t.Render();
  for (const auto& w : workloads) {
    const json& submitted = At(w, "submitted_at");
    t.AddRow({Text(At(w, "id")), Text(WorkloadField(w, "name")), Text(WorkloadField(w, "queue")),
              Text(WorkloadField(w, "kind")), Text(At(w, "state")), Text(At(w, "reason")),
              StartCell(w), TasksCell(w), GpusCell(w),
              submitted.is_string() ? Age(submitted.get<std::string>(), now) : "-"});
  }
  return t.Render();
}

std::string RenderQueueTable(const json& queues) {
  Table t(
      {"NAME", "PARENT", "WEIGHT", "MODEL", "USED", "GUARANTEED", "LIMIT", "PENDING", "RUNNING"});
  if (!queues.is_array()) return t.Render();
  auto gpus = [](const json& v) {
    auto m = Int(v);
    return m ? MilliToGpus2(*m) : std::string("-");
  };
  for (const auto& q : queues) {
    std::vector<std::string> head = {Text(At(q, "name")), Text(At(q, "parent")),
                                     Text(At(q, "weight"))};
    std::vector<std::string> tail = {Text(At(q, "pending")), Text(At(q, "running"))};
    const json& quota = At(q, "quota");
    bool any = false;
    for (const auto& e : quota.is_array() ? quota : json::array()) {
      t.AddRow({head[0], head[1], head[2], Text(At(e, "model")), gpus(At(e, "used_milli")),
                gpus(At(e, "guaranteed_milli")), gpus(At(e, "limit_milli")), tail[0], tail[1]});
      any = true;
    }
    // CPU (in CPUs) and memory (in GiB) rows for queues that set a CPU or memory quota.
    auto gib = [](const json& v) {
      auto m = Int(v);
      return m ? MilliToGpus2(*m * 1000 / 1024) : std::string("-");
    };
    const json& cpu = At(q, "cpu_quota");
    if (Int(At(cpu, "guaranteed_milli")) || Int(At(cpu, "limit_milli"))) {
      t.AddRow({head[0], head[1], head[2], "cpu", gpus(At(cpu, "used_milli")),
                gpus(At(cpu, "guaranteed_milli")), gpus(At(cpu, "limit_milli")), tail[0], tail[1]});
      any = true;
    }
    const json& mem = At(q, "memory_quota");
    if (Int(At(mem, "guaranteed_mib")) || Int(At(mem, "limit_mib"))) {
      t.AddRow({head[0], head[1], head[2], "memory-gib", gib(At(mem, "used_mib")),
                gib(At(mem, "guaranteed_mib")), gib(At(mem, "limit_mib")), tail[0], tail[1]});
      any = true;
    }
    if (!any) t.AddRow({head[0], head[1], head[2], "-", "-", "-", "-", tail[0], tail[1]});
  }
  return t.Render();
}

std::string RenderNodeTable(const json& nodes, TimePoint now) {
  Table t({"NAME", "STATUS", "ZONE", "RACK", "MODEL", "GPUS", "HEARTBEAT"});
  if (!nodes.is_array()) return t.Render();
  for (const auto& n : nodes) {
    std::set<std::string> models;
    int64_t used_milli = 0;
    int64_t total = 0;
    const json& gpus = At(n, "gpus");
    for (const auto& g : gpus.is_array() ? gpus : json::array()) {
      ++total;
      used_milli += Int(At(g, "used_milli")).value_or(0);
      if (At(g, "model").is_string()) models.insert(At(g, "model").get<std::string>());
    }
    std::string model;
    for (const auto& m : models) model += (model.empty() ? "" : ",") + m;
    if (!model.empty() && At(n, "backend").is_string() &&
        At(n, "backend").get<std::string>() == "emulated") {
      model += " (emulated)";
    }
    const json& hb = At(n, "last_heartbeat");
    t.AddRow({Text(At(n, "name")), Text(At(n, "status")), Text(At(n, "zone")), Text(At(n, "rack")),
              model.empty() ? "-" : model,
              MilliToGpusShort(used_milli) + "/" + std::to_string(total),
              hb.is_string() ? Age(hb.get<std::string>(), now) : "-"});
  }
  return t.Render();
}

std::string RenderGpuTable(const json& nodes) {
  // A MIG column only when some GPU is in MIG mode: its layout, and a change under way.
  bool any_mig = false;
  for (const auto& n : nodes.is_array() ? nodes : json::array()) {
    for (const auto& g : At(n, "gpus").is_array() ? At(n, "gpus") : json::array()) {
      any_mig |= Text(At(g, "mode")) == "mig";
    }
  }
  std::vector<std::string> header = {"NODE", "GPU", "MODEL", "UTIL", "MEMORY", "HEALTH"};
  if (any_mig) header.push_back("MIG");
  header.push_back("WORKLOAD");
  Table t(header);
  if (!nodes.is_array()) return t.Render();
  for (const auto& n : nodes) {
    const json& gpus = At(n, "gpus");
    const bool emulated =
        At(n, "backend").is_string() && At(n, "backend").get<std::string>() == "emulated";
    for (const auto& g : gpus.is_array() ? gpus : json::array()) {
      char buf[64];
      std::string util = "-", memory = "-";
      if (At(g, "util_pct").is_number()) {
        std::snprintf(buf, sizeof(buf), "%.0f%%", At(g, "util_pct").get<double>());
        util = buf;
      }
      const auto used = Int(At(g, "memory_used_mib"));
      const auto total = Int(At(g, "memory_mib"));
      if (used) {
        std::snprintf(buf, sizeof(buf), "%.1f/%.0fGi", static_cast<double>(*used) / 1024.0,
                      static_cast<double>(total.value_or(0)) / 1024.0);
        memory = buf;
      }
      std::string health = "ok";
      if (At(g, "healthy").is_boolean() && !At(g, "healthy").get<bool>()) {
        health = At(g, "health").is_string() ? At(g, "health").get<std::string>() : "unhealthy";
      }
      if (Text(At(n, "status")) == "Down") health = "node down";
      std::string holders;
      const json& hs = At(g, "holders");
      for (const auto& h : hs.is_array() ? hs : json::array()) {
        std::string one =
            At(h, "other_queue").is_boolean()
                ? "other queue"
                : Text(At(h, "name")) + "-" + Text(At(h, "workload")) + "/" + Text(At(h, "task"));
        if (At(h, "mig_profile").is_string()) {
          one += ":" + Text(At(h, "mig_profile")) + "@" + Text(At(h, "mig_start"));
        }
        holders += (holders.empty() ? "" : ",") + one;
      }
      std::string model = Text(At(g, "model"));
      if (emulated) model += " (emulated)";
      std::vector<std::string> row = {
          Text(At(n, "name")), Text(At(g, "index")), model, util, memory, health};
      if (any_mig) {
        std::string mig = "whole";
        if (Text(At(g, "mode")) == "mig") {
          mig = Text(At(g, "mig_layout"));
          if (mig.empty()) mig = "(no instances)";
          if (At(g, "mig_pending_layout").is_string()) {
            const std::string next = Text(At(g, "mig_pending_layout"));
            mig += " -> " + (next.empty() ? "(no instances)" : next);
          }
        }
        row.push_back(mig);
      }
      row.push_back(holders.empty() ? "-" : holders);
      t.AddRow(row);
    }
  }
  return t.Render();
}

std::string RenderNodeSummary(const json& answer) {
  json groups = json::array();
  int64_t nodes = 0, gpus = 0;
  const json& summary = At(answer, "summary");
  if (summary.is_object()) {
    groups = At(summary, "groups").is_array() ? At(summary, "groups") : json::array();
    nodes = Int(At(summary, "nodes")).value_or(0);
    gpus = Int(At(summary, "gpus")).value_or(0);
  } else {
    // The same grouping as the server's, over the nodes of this answer.
    std::map<std::pair<std::string, std::string>, std::array<int64_t, 3>> counts;
    const json& list = At(answer, "nodes");
    for (const auto& n : list.is_array() ? list : json::array()) {
      std::map<std::string, std::array<int64_t, 2>> mine;
      const json& gs = At(n, "gpus");
      for (const auto& g : gs.is_array() ? gs : json::array()) {
        auto& c = mine[At(g, "model").is_string() ? At(g, "model").get<std::string>() : ""];
        ++c[0];
        c[1] += Int(At(g, "used_milli")).value_or(0);
      }
      if (mine.empty()) mine[""];
      ++nodes;
      for (const auto& [model, c] : mine) {
        auto& t = counts[{Text(At(n, "status")), model}];
        ++t[0];
        t[1] += c[0];
        t[2] += c[1];
        gpus += c[0];
      }
    }
    for (const auto& [key, c] : counts) {
      groups.push_back({{"status", key.first},
                        {"model", key.second},
                        {"nodes", c[0]},
                        {"gpus", c[1]},
                        {"gpus_used_milli", c[2]}});
    }
  }
  Table t({"STATUS", "MODEL", "NODES", "GPUS", "GPUS-USED"});
  int64_t used = 0;
  for (const auto& g : groups) {
    const std::string model = Text(At(g, "model"));
    used += Int(At(g, "gpus_used_milli")).value_or(0);
    t.AddRow({Text(At(g, "status")), model.empty() || model == "-" ? "-" : model,
              std::to_string(Int(At(g, "nodes")).value_or(0)),
              std::to_string(Int(At(g, "gpus")).value_or(0)),
              MilliToGpusShort(Int(At(g, "gpus_used_milli")).value_or(0))});
  }
  t.AddRow({"total", "", std::to_string(nodes), std::to_string(gpus), MilliToGpusShort(used)});
  return t.Render();
}

std::string RenderNextPage(const json& answer) {
  const json& next = At(answer, "continue");
  if (!next.is_string()) return "";
  const json& list = At(answer, "nodes");
  return "(" + std::to_string(list.is_array() ? list.size() : 0) +
         " nodes shown; next page: gpuorch nodes --after " + next.get<std::string>() + ")\n";
}

std::string RenderDescribe(const json& w, TimePoint now) {
  std::string out;
  auto line = [&out](const std::string& label, const std::string& value) {
    std::string l = label + ":";
    l.resize(std::max<size_t>(l.size() + 1, 14), ' ');
    out += l + value + '\n';
  };
  auto when = [&](const char* key) {
    const json& v = At(w, key);
    if (!v.is_string()) return std::string("-");
    return v.get<std::string>() + " (" + Age(v.get<std::string>(), now) + " ago)";
  };
  line("Name", Text(WorkloadField(w, "name")));
  line("ID", Text(At(w, "id")));
  line("Queue", Text(WorkloadField(w, "queue")));
  line("Kind", Text(WorkloadField(w, "kind")));
  line("Priority", Text(WorkloadField(w, "priority")));
  line("State", Text(At(w, "state")));
  line("Reason", Text(At(w, "reason")));
  if (At(w, "state") == "Pending") {
    line("Waiting for", WaitingFor(w));
    line("Est. start", StartCell(w));
  }
  line("Attempt", Text(At(w, "attempt")));
  line("Submitted", when("submitted_at"));
  line("Started", when("started_at"));
  line("Finished", when("finished_at"));
  line("Command", CommandLine(WorkloadField(w, "command")));

  const json& spec = At(w, "spec");
  if (spec.is_object() && !spec.empty()) {
    out += "Spec:\n" + Indent(JsonToYaml(spec), "  ");
  } else {
    line("Spec", "-");
  }

  const json& tasks = At(w, "tasks");
  if (tasks.is_array() && !tasks.empty()) {
    // CPU and peak memory are known once a task has exited (its agent measured them).
    auto usage = [](const json& task, bool cpu) -> std::string {
      const json& a = At(task, cpu ? "cpu_user_ms" : "max_rss_kib");
      if (!a.is_number_integer()) return "-";
      char buf[32];
      if (cpu) {
        const json& sys = At(task, "cpu_system_ms");
        const int64_t ms = a.get<int64_t>() + (sys.is_number_integer() ? sys.get<int64_t>() : 0);
        std::snprintf(buf, sizeof(buf), "%.2fs", static_cast<double>(ms) / 1000.0);
      } else {
        std::snprintf(buf, sizeof(buf), "%.1fMi", static_cast<double>(a.get<int64_t>()) / 1024.0);
      }
      return buf;
    };
    // Measured GPU use of a live task (docs/observability.md): "-" until its node reported.
    auto gpu_use = [](const json& task, bool util) -> std::string {
      const json& v = At(task, util ? "gpu_util_pct" : "gpu_memory_used_mib");
      if (!v.is_number()) return "-";
      char buf[32];
      if (util) {
        std::snprintf(buf, sizeof(buf), "%.0f%%%s", v.get<double>(),
                      At(task, "gpu_idle").is_boolean() ? " idle" : "");
      } else {
        std::snprintf(buf, sizeof(buf), "%.1fGi", v.get<double>() / 1024.0);
      }
      return buf;
    };
    Table t({"TASK", "NODE", "GPUS", "GPU-MILLI", "STATE", "GPU-UTIL", "GPU-MEM", "EXIT", "CPU",
             "MAX-RSS"});
    for (const auto& task : tasks) {
      t.AddRow({Text(At(task, "task")), Text(At(task, "node")), JoinInts(At(task, "gpus")),
                Text(At(task, "gpu_milli")), Text(At(task, "state")), gpu_use(task, true),
                gpu_use(task, false), Text(At(task, "exit_code")), usage(task, true),
                usage(task, false)});
    }
    out += "Tasks:\n" + Indent(t.Render(), "  ");
  } else {
    line("Tasks", "<none>");
  }

  if (IsService(w)) {
    const json& s = At(w, "service");
    std::string scaler = "desired " + Text(At(s, "desired")) + ", mode " + Text(At(s, "mode")) +
                         ", bound " + Text(At(s, "bound"));
    if (At(s, "in_flight").is_number()) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), ", in-flight %.1f", At(s, "in_flight").get<double>());
      scaler += buf;
    }
    if (At(s, "pinned").is_number()) scaler += " (pinned: gpuorch scale ID --auto to unpin)";
    line("Autoscaler", scaler);
    Table t({"REPLICA", "WORKLOAD", "STATE", "NODE", "ADDRESS", "READY", "DRAINING"});
    for (const auto& r : At(s, "replicas")) {
      t.AddRow({Text(At(r, "replica")), Text(At(r, "workload")), Text(At(r, "state")),
                Text(At(r, "node")), Text(At(r, "address")), Text(At(r, "ready")),
                Text(At(r, "draining"))});
    }
    out += "Replicas:\n" + Indent(t.Render(), "  ");
  }
  if (At(w, "service_of").is_number_integer()) {
    line("Service", Text(At(w, "service_of")) + " (replica " + Text(At(w, "replica")) + ")");
  }

  const json& events = At(w, "events");
  if (events.is_array() && !events.empty()) {
    Table t({"AGE", "TYPE", "MESSAGE"});
    for (const auto& e : events) {
      const json& time = At(e, "time");
      t.AddRow({time.is_string() ? Age(time.get<std::string>(), now) : "-", Text(At(e, "type")),
                Text(At(e, "message"))});
    }
    out += "Events:\n" + Indent(t.Render(), "  ");
  } else {
    line("Events", "<none>");
  }
  return out;
}

std::string RenderData(const json& value, OutputFormat format) {
  if (format == OutputFormat::kYaml) return JsonToYaml(value);
  return value.dump(2) + '\n';
}

std::string RenderPrometheusTargets(const nlohmann::json& nodes, int port) {
  nlohmann::json groups = nlohmann::json::array();
  for (const nlohmann::json& n : nodes) {
    if (!n.is_object()) continue;
    std::string target = n.value("metrics_url", "");
    if (const size_t scheme = target.find("://"); scheme != std::string::npos) {
      target = target.substr(scheme + 3);
      target = target.substr(0, target.find('/'));
    }
    if (target.empty()) {
      const std::string address = n.value("address", "");
      const size_t colon = address.rfind(':');
      const std::string host = colon == std::string::npos ? address : address.substr(0, colon);
      if (host.empty()) continue;
      target = host + ":" + std::to_string(port);
    }
    groups.push_back({{"targets", {target}},
                      {"labels",
                       {{"node", n.value("name", "")},
                        {"zone", n.value("zone", "")},
                        {"rack", n.value("rack", "")}}}});
  }
  return groups.dump(2) + "\n";
}

}  // namespace gpuorch::cli
