#include "sim/platform/report.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "sim/report/svg.h"

namespace gpuorch::sim::platform {

using core::Result;
using core::Status;
using nlohmann::ordered_json;

namespace {

// The GPU classes of the timeline, bottom band first.
constexpr std::array<const char*, 5> kClasses = {"inference", "training", "experiment", "idle_held",
                                                 "free"};

// Readable labels for the metrics the lead writes today; other keys get one made from the key.
const std::map<std::string, std::string>& KnownLabels() {
  static const auto* labels = new std::map<std::string, std::string>{
      {"idle_gpu_hours_pct", "Idle GPU-hours, %"},
      {"idle_while_waiting_pct", "Idle while work waited, % of GPU-hours"},
      {"idle_nothing_to_run_pct", "Idle with nothing to run, % of GPU-hours"},
      {"inference_overprovisioned_pct", "Inference over-provisioned, %"},
      {"inference_slo_minutes_pct", "Minutes meeting the inference SLO, %"},
      {"requests_waiting_pct", "Requests waiting, %"},
      {"replica_minutes", "Replica-minutes"},
      {"training_jct_mean_s", "Training JCT, mean, s"},
      {"training_delay_p50_s", "Training queueing delay p50, s"},
      {"training_delay_p95_s", "Training queueing delay p95, s"},
      {"training_jobs", "Training jobs"},
      {"experiment_gpu_hours", "Experiment GPU-hours"},
      {"experiment_lost_pct", "Experiment work lost, %"},
      {"experiment_lost_pct_without_checkpoint", "Experiment work lost without checkpoints, %"},
      {"preemptions", "Preemptions, total"},
  };
  return *labels;
}

std::string Words(std::string key) {
  std::replace(key.begin(), key.end(), '_', ' ');
  return key;
}

// "gpu_hours_lost_pct" -> "Gpu hours lost, %"; "foo_s" -> "Foo, s".
std::string Label(const std::string& key) {
  if (auto it = KnownLabels().find(key); it != KnownLabels().end()) return it->second;
  std::string base = key, unit;
  for (const auto& [suffix, u] : {std::pair{"_pct", "%"}, std::pair{"_s", "s"}}) {
    const std::string sx = suffix;
    if (base.size() > sx.size() && base.ends_with(sx)) {
      base.resize(base.size() - sx.size());
      unit = u;
      break;
    }
  }
  std::string l = Words(base);
  if (!l.empty() && l[0] >= 'a' && l[0] <= 'z') l[0] = static_cast<char>(l[0] - 'a' + 'A');
  return unit.empty() ? l : l + ", " + unit;
}

// Whole numbers without decimals; otherwise three significant digits or two decimals.
std::string Fmt(std::optional<double> v) {
  if (!v) return "n/a";
  char b[64];
  const double a = std::fabs(*v);
  if (a < 1e15 && *v == std::round(*v)) {
    std::snprintf(b, sizeof b, "%.0f", *v);
  } else if (a >= 100) {
    std::snprintf(b, sizeof b, "%.1f", *v);
  } else if (a >= 1) {
    std::snprintf(b, sizeof b, "%.2f", *v);
  } else {
    std::snprintf(b, sizeof b, "%.3g", *v);
  }
  return b;
}

struct Goal {
  std::string metric, goal;
  std::optional<double> value;
  bool met = false;
};

struct Replicas {
  std::vector<double> needed, ready;
};

struct PolicyData {
  std::map<std::string, std::optional<double>> metrics;  // row key -> value
  std::optional<std::vector<Goal>> goals;
  std::vector<double> t_h;
  std::array<std::vector<double>, kClasses.size()> gpus;
  std::vector<std::pair<std::string, Replicas>> services;
};

// A row of the metrics table: a top-level key, or "parent.child" for an object's entries.
struct Row {
  std::string key, label;
  bool sub = false;
};

struct Model {
  std::string command;
  std::vector<std::string> assumptions, policies;
  double step_s = 0, capacity_gpus = 0;
  std::vector<Row> rows;
  std::vector<PolicyData> data;  // by policy
};

Status Bad(const std::string& key, const std::string& problem) {
  return Status::Invalid(key + ": " + problem);
}

Result<std::optional<double>> NumberOrNull(const ordered_json& j, const std::string& key) {
  if (j.is_null()) return std::optional<double>();
  if (!j.is_number()) return Bad(key, "not a number");
  return std::optional<double>(j.get<double>());
}

// An array of numbers with `expected` points (any number when nullopt).
Result<std::vector<double>> Numbers(const ordered_json& parent, const std::string& name,
                                    const std::string& key, std::optional<size_t> expected) {
  if (!parent.contains(name)) return Bad(key, "missing");
  const ordered_json& a = parent[name];
  if (!a.is_array()) return Bad(key, "expected an array of numbers");
  std::vector<double> v;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].is_number()) return Bad(key + "[" + std::to_string(i) + "]", "not a number");
    v.push_back(a[i].get<double>());
  }
  if (expected && v.size() != *expected) {
    return Bad(key, std::to_string(v.size()) + " points, expected " + std::to_string(*expected));
  }
  return v;
}

Result<std::vector<Goal>> ParseGoals(const ordered_json& j, const std::string& key) {
  if (!j.is_array()) return Bad(key, "expected an array");
  std::vector<Goal> goals;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string k = key + "[" + std::to_string(i) + "]";
    const ordered_json& g = j[i];
    if (!g.is_object()) return Bad(k, "expected an object");
    if (!g.contains("metric") || !g["metric"].is_string())
      return Bad(k + ".metric", "not a string");
    if (!g.contains("goal") || !(g["goal"].is_string() || g["goal"].is_number())) {
      return Bad(k + ".goal", "not a string or number");
    }
    if (!g.contains("met") || !g["met"].is_boolean()) return Bad(k + ".met", "not a boolean");
    if (!g.contains("value")) return Bad(k + ".value", "missing");
    auto value = NumberOrNull(g["value"], k + ".value");
    if (!value.ok()) return value.status();
    goals.push_back(
        {g["metric"].get<std::string>(),
         g["goal"].is_string() ? g["goal"].get<std::string>() : Fmt(g["goal"].get<double>()),
         *value, g["met"].get<bool>()});
  }
  return goals;
}

Status ParseSummary(const ordered_json& s, const std::string& key, PolicyData& d,
                    std::vector<Row>& rows, std::set<std::string>& seen) {
  if (!s.is_object()) return Bad(key, "expected an object");
  auto add_row = [&](const std::string& row, std::string label, bool sub) {
    if (seen.insert(row).second) rows.push_back({row, std::move(label), sub});
  };
  for (const auto& [name, v] : s.items()) {
    const std::string k = key + "." + name;
    if (name == "goals") {
      auto goals = ParseGoals(v, k);
      if (!goals.ok()) return goals.status();
      d.goals = *goals;
    } else if (v.is_object()) {
      // An object of numbers (preemptions by reason): a total row, then one per entry.
      add_row(name, Label(name) + (KnownLabels().contains(name) ? "" : ", total"), false);
      double total = 0;
      for (const auto& [child, cv] : v.items()) {
        auto value = NumberOrNull(cv, k + "." + child);
        if (!value.ok()) return value.status();
        add_row(name + "." + child, Words(name) + ": " + Words(child), true);
        d.metrics[name + "." + child] = *value;
        total += value->value_or(0.0);
      }
      d.metrics[name] = total;
    } else {
      auto value = NumberOrNull(v, k);
      if (!value.ok()) return value.status();
      add_row(name, Label(name), false);
      d.metrics[name] = *value;
    }
  }
  return Status::Ok();
}

Status ParseTimeline(const ordered_json& t, const std::string& key, PolicyData& d) {
  if (!t.is_object()) return Bad(key, "expected an object");
  auto t_h = Numbers(t, "t_h", key + ".t_h", std::nullopt);
  if (!t_h.ok()) return t_h.status();
  if (t_h->empty()) return Bad(key + ".t_h", "no points");
  d.t_h = *t_h;
  const size_t n = d.t_h.size();
  for (size_t c = 0; c < kClasses.size(); ++c) {
    auto v = Numbers(t, kClasses[c], key + "." + kClasses[c], n);
    if (!v.ok()) return v.status();
    d.gpus[c] = *v;
  }
  if (!t.contains("services")) return Status::Ok();
  const ordered_json& services = t["services"];
  if (!services.is_object()) return Bad(key + ".services", "expected an object");
  for (const auto& [name, s] : services.items()) {
    const std::string k = key + ".services." + name;
    if (!s.is_object()) return Bad(k, "expected an object");
    auto needed = Numbers(s, "needed", k + ".needed", n);
    if (!needed.ok()) return needed.status();
    auto ready = Numbers(s, "ready", k + ".ready", n);
    if (!ready.ok()) return ready.status();
    d.services.push_back({name, {*needed, *ready}});
  }
  return Status::Ok();
}

Result<Model> Parse(const ordered_json& in) {
  if (!in.is_object()) return Status::Invalid("report input: expected a JSON object");
  Model m;
  if (in.contains("command")) {
    if (!in["command"].is_string()) return Bad("command", "not a string");
    m.command = in["command"].get<std::string>();
  }
  if (in.contains("assumptions")) {
    const ordered_json& a = in["assumptions"];
    if (!a.is_array()) return Bad("assumptions", "expected an array of strings");
    for (size_t i = 0; i < a.size(); ++i) {
      if (!a[i].is_string()) return Bad("assumptions[" + std::to_string(i) + "]", "not a string");
      m.assumptions.push_back(a[i].get<std::string>());
    }
  }
  if (!in.contains("policies")) return Bad("policies", "missing");
  const ordered_json& pols = in["policies"];
  if (!pols.is_array() || pols.empty()) return Bad("policies", "expected a non-empty array");
  for (size_t i = 0; i < pols.size(); ++i) {
    const std::string k = "policies[" + std::to_string(i) + "]";
    if (!pols[i].is_string()) return Bad(k, "not a string");
    const std::string p = pols[i].get<std::string>();
    if (std::find(m.policies.begin(), m.policies.end(), p) != m.policies.end()) {
      return Bad(k, "duplicate policy '" + p + "'");
    }
    m.policies.push_back(p);
  }
  for (const char* k : {"summary", "timeline"}) {
    if (!in.contains(k)) return Bad(k, "missing");
    if (!in[k].is_object()) return Bad(k, "expected an object");
  }
  const ordered_json& tl = in["timeline"];
  if (!tl.contains("step_s") || !tl["step_s"].is_number() || tl["step_s"].get<double>() <= 0) {
    return Bad("timeline.step_s", "expected a number > 0");
  }
  if (!tl.contains("capacity_gpus") || !tl["capacity_gpus"].is_number() ||
      tl["capacity_gpus"].get<double>() < 0) {
    return Bad("timeline.capacity_gpus", "expected a number >= 0");
  }
  m.step_s = tl["step_s"].get<double>();
  m.capacity_gpus = tl["capacity_gpus"].get<double>();
  std::set<std::string> seen;
  for (const std::string& p : m.policies) {
    PolicyData d;
    if (!in["summary"].contains(p)) return Bad("summary." + p, "missing");
    if (Status s = ParseSummary(in["summary"][p], "summary." + p, d, m.rows, seen); !s.ok()) {
      return s;
    }
    if (!tl.contains(p)) return Bad("timeline." + p, "missing");
    if (Status s = ParseTimeline(tl[p], "timeline." + p, d); !s.ok()) return s;
    m.data.push_back(std::move(d));
  }
  return m;
}

std::string Td(const std::string& text, const char* cls = nullptr) {
  return cls ? "<td class=\"" + std::string(cls) + "\">" + text + "</td>" : "<td>" + text + "</td>";
}

std::string HeaderRow(const Model& m, const std::string& first) {
  std::string h = "<tr>" + first;
  for (const std::string& p : m.policies) h += "<th>" + svg::Escape(p) + "</th>";
  return h + "</tr>";
}

std::string MetricsTable(const Model& m) {
  std::string h = "<table class=\"metrics\">" + HeaderRow(m, "<th>metric</th>");
  for (const Row& r : m.rows) {
    h += std::string("<tr") + (r.sub ? " class=\"sub\"" : "") + "><td title=\"" +
         svg::Escape(r.key) + "\">" + svg::Escape(r.label) + "</td>";
    for (const PolicyData& d : m.data) {
      const auto it = d.metrics.find(r.key);
      h += Td(it == d.metrics.end() ? "&mdash;" : Fmt(it->second));
    }
    h += "</tr>";
  }
  return h + "</table>";
}

// Rows are (metric, goal) pairs in order of first appearance, a metric of the table under its
// label; a cell is a policy's value and whether it met the goal.
std::string GoalsTable(const Model& m) {
  std::vector<std::pair<std::string, std::string>> keys;
  for (const PolicyData& d : m.data) {
    for (const Goal& g : d.goals.value_or(std::vector<Goal>{})) {
      if (std::find(keys.begin(), keys.end(), std::pair{g.metric, g.goal}) == keys.end()) {
        keys.emplace_back(g.metric, g.goal);
      }
    }
  }
  std::string h = "<table class=\"goals\">" + HeaderRow(m, "<th>metric</th><th>goal</th>");
  for (const auto& key : keys) {
    // Named copies, not structured bindings: clang 15 cannot capture those in a lambda.
    const std::string& metric = key.first;
    const std::string& goal = key.second;
    const auto row =
        std::find_if(m.rows.begin(), m.rows.end(), [&](const Row& r) { return r.key == metric; });
    h += "<tr><td title=\"" + svg::Escape(metric) + "\">" +
         svg::Escape(row == m.rows.end() ? metric : row->label) + "</td>" + Td(svg::Escape(goal));
    for (const PolicyData& d : m.data) {
      const std::vector<Goal> goals = d.goals.value_or(std::vector<Goal>{});
      const auto it = std::find_if(goals.begin(), goals.end(), [&](const Goal& g) {
        return g.metric == metric && g.goal == goal;
      });
      if (it == goals.end()) {
        h += Td("&mdash;");
      } else {
        h += Td(Fmt(it->value) + (it->met ? " &#10003;" : " &#10007;"), it->met ? "met" : "miss");
      }
    }
    h += "</tr>";
  }
  return h + "</table>";
}

std::string GpuCharts(const Model& m) {
  std::string h = "<div class=\"charts\">";
  for (size_t i = 0; i < m.policies.size(); ++i) {
    const PolicyData& d = m.data[i];
    std::vector<svg::Series> bands;
    for (size_t c = 0; c < kClasses.size(); ++c) bands.push_back({kClasses[c], d.t_h, d.gpus[c]});
    h += svg::StackedArea(
        {m.policies[i] + ": GPUs by class", "hours", "GPUs", false, m.capacity_gpus, 680, 300},
        bands);
  }
  return h + "</div>";
}

// One row of charts per service (in order of first appearance), one chart per policy that
// has it, on a shared y axis.
std::string ReplicaCharts(const Model& m) {
  std::vector<std::string> names;
  for (const PolicyData& d : m.data) {
    for (const auto& [name, r] : d.services) {
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
  }
  std::string h;
  for (const std::string& name : names) {
    double ymax = 0;
    for (const PolicyData& d : m.data) {
      for (const auto& [n, r] : d.services) {
        if (n != name) continue;
        for (double v : r.needed) ymax = std::max(ymax, v);
        for (double v : r.ready) ymax = std::max(ymax, v);
      }
    }
    h += "<h3>" + svg::Escape(name) + "</h3><div class=\"charts\">";
    for (size_t i = 0; i < m.policies.size(); ++i) {
      for (const auto& [n, r] : m.data[i].services) {
        if (n != name) continue;
        h += svg::LineChart(
            {m.policies[i] + " / " + name + ": replicas needed vs ready", "hours", "replicas",
             false, ymax, 680, 300},
            {{"needed", m.data[i].t_h, r.needed, true}, {"ready", m.data[i].t_h, r.ready}});
      }
    }
    h += "</div>";
  }
  return h;
}

constexpr const char* kExtraStyle =
    R"(tr.sub td:first-child{padding-left:24px;color:#555}td.met{color:#1a7f37}td.miss{color:#c62828}
pre{background:#f6f6f6;padding:8px;white-space:pre-wrap;word-break:break-all})";

}  // namespace

Result<std::string> BuildPlatformReport(const ordered_json& input) {
  auto parsed = Parse(input);
  if (!parsed.ok()) return parsed.status();
  const Model& m = *parsed;
  std::string policies;
  for (const std::string& p : m.policies) policies += (policies.empty() ? "" : ", ") + p;
  std::string body =
      "<h1>gpuorch platform experiment</h1><p class=\"note\">Policies: " + svg::Escape(policies) +
      ". Timeline step " + Fmt(m.step_s) + " s, capacity " + Fmt(m.capacity_gpus) +
      " GPUs; GPU counts are means over each step.</p>";
  body += "<h2>Headline metrics</h2>" + MetricsTable(m);
  const bool any_goals = std::any_of(m.data.begin(), m.data.end(),
                                     [](const PolicyData& d) { return d.goals.has_value(); });
  if (any_goals) body += "<h2>Goals</h2>" + GoalsTable(m);
  body += "<h2>GPUs by class over time</h2>" + GpuCharts(m);
  const bool any_services = std::any_of(m.data.begin(), m.data.end(),
                                        [](const PolicyData& d) { return !d.services.empty(); });
  if (any_services) body += "<h2>Inference replicas: needed vs ready</h2>" + ReplicaCharts(m);
  if (!m.assumptions.empty()) {
    body += "<h2>Assumptions</h2><ul>";
    for (const std::string& a : m.assumptions) body += "<li>" + svg::Escape(a) + "</li>";
    body += "</ul>";
  }
  if (!m.command.empty()) {
    body += "<h2>Command</h2><pre><code>" + svg::Escape(m.command) + "</code></pre>";
  }
  return "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>gpuorch "
         "platform report</title><style>" +
         std::string(svg::PageStyle()) + "\n" + kExtraStyle + "</style></head><body>" + body +
         "<div id=\"tip\"></div>" + svg::TipScript("'1'") + "</body></html>\n";
}

}  // namespace gpuorch::sim::platform
