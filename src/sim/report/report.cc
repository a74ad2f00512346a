#include "sim/report/report.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "sim/report/svg.h"

namespace gpuorch::sim {

using core::Result;
using core::Status;
using nlohmann::ordered_json;

namespace {

std::string Fmt(double v, const char* f = "%.2f") {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

double Num(const ordered_json& j) { return j.is_number() ? j.get<double>() : 0.0; }

std::string SummaryTableHtml(const ordered_json& m) {
  std::string h =
      "<table><tr><th>policy</th><th>utilization %</th><th>idle while waiting, % of GPU-h</th>"
      "<th>idle while waiting, GPU-h</th><th>delay p50 s</th><th>delay p95 s</th><th>delay p99 s"
      "</th><th>mean JCT s</th><th>guarantee violations</th><th>preemptions</th><th>lost GPU-h"
      "</th><th>Jain fairness</th><th>unfinished</th></tr>";
  for (const auto& p : m["policies"]) {
    const auto& s = p["summary"];
    h += "<tr><td>" + svg::Escape(p["policy"].get<std::string>()) + "</td><td>" +
         Fmt(Num(s["utilization_pct"])) + "</td><td>" +
         Fmt(Num(s["idle_while_waiting_pct"]), "%.4f") + "</td><td>" +
         Fmt(Num(s["idle_while_waiting_gpu_hours"]), "%.1f") + "</td><td>" +
         Fmt(Num(s["queueing_delay_s"]["p50"]), "%.0f") + "</td><td>" +
         Fmt(Num(s["queueing_delay_s"]["p95"]), "%.0f") + "</td><td>" +
         Fmt(Num(s["queueing_delay_s"]["p99"]), "%.0f") + "</td><td>" +
         Fmt(Num(s["jct_s"]["mean"]), "%.0f") + "</td><td>" +
         Fmt(Num(s["guarantee_violations"]), "%.0f") + "</td><td>" +
         Fmt(Num(s["preemptions"]), "%.0f") + "</td><td>" + Fmt(Num(s["lost_gpu_hours"]), "%.1f") +
         "</td><td>" + Fmt(Num(s["jain_fairness"]), "%.3f") + "</td><td>" +
         Fmt(Num(s["unfinished"]) + Num(s["infeasible"]), "%.0f") + "</td></tr>";
  }
  return h + "</table>";
}

std::vector<double> Values(const ordered_json& a) {
  std::vector<double> v;
  for (const auto& x : a) v.push_back(Num(x));
  return v;
}

std::string ReplaySection(const ordered_json& m) {
  std::string h = "<h2>Replay: " + svg::Escape(m["trace"]["name"].get<std::string>()) + "</h2>";
  h += "<p class=\"note\">" + std::to_string(m["trace"]["jobs"].get<int64_t>()) + " jobs, " +
       std::to_string(m["cluster"]["gpus"].get<int64_t>()) + " GPUs on " +
       std::to_string(m["cluster"]["nodes"].get<int64_t>()) + " nodes; grace period " +
       Fmt(Num(m["options"]["grace_period_s"]), "%.0f") + " s; restart from " +
       svg::Escape(m["options"]["restart"].get<std::string>()) +
       ". Definitions: docs/simulator.md.</p>";
  h += SummaryTableHtml(m);
  std::vector<std::string> names;
  std::vector<double> iww, p95;
  for (const auto& p : m["policies"]) {
    names.push_back(p["policy"].get<std::string>());
    iww.push_back(Num(p["summary"]["idle_while_waiting_pct"]));
    p95.push_back(Num(p["summary"]["queueing_delay_s"]["p95"]));
  }
  const double gpus = Num(m["cluster"]["gpus"]);
  h += "<div class=\"charts\">";
  h += svg::BarChart(
      {"Idle GPUs while runnable work waited", "", "% of GPU-hours", false, 0, 460, 300}, names,
      iww);
  h += svg::BarChart({"Queueing delay, p95", "", "seconds", false, 0, 460, 300}, names, p95);
  h += "</div><h3>Allocation vs demand over time</h3><div class=\"charts\">";
  std::vector<svg::Series> busy_all, iww_all;
  for (size_t i = 0; i < m["policies"].size(); ++i) {
    const auto& p = m["policies"][i];
    const auto& tl = p["timeline"];
    const double w = Num(tl["bin_hours"]) / 24.0;
    svg::Series busy{"allocated", {}, Values(tl["busy_gpus"])}, demand{"demand", {}, {}},
        cap{"capacity", {0}, {gpus}, true};
    const std::vector<double> waiting = Values(tl["waiting_gpus"]);
    for (size_t k = 0; k < busy.y.size(); ++k) {
      busy.x.push_back(w * static_cast<double>(k));
      demand.y.push_back(busy.y[k] + waiting[k]);
    }
    demand.x = busy.x;
    cap.x = {0, busy.x.empty() ? 1.0 : busy.x.back()};
    cap.y = {gpus, gpus};
    const std::string pol = p["policy"].get<std::string>();
    h += svg::LineChart({pol + ": GPUs allocated vs demanded", "days", "GPUs", false, 0, 680, 300},
                        {demand, busy, cap});
    busy_all.push_back({pol, busy.x, busy.y});
    iww_all.push_back({pol, busy.x, Values(tl["idle_while_waiting_gpus"])});
  }
  h += "</div><h3>Utilization and idle-while-waiting timelines</h3><div class=\"charts\">";
  h += svg::LineChart({"GPUs allocated", "days", "GPUs", false, gpus, 680, 300}, busy_all);
  h += svg::LineChart({"Idle GPUs while runnable work waited", "days", "GPUs", false, 0, 680, 300},
                      iww_all);
  h += "</div><h3>Waiting-time CDF per tenant</h3><div class=\"charts\">";
  for (const auto& p : m["policies"]) {
    std::vector<svg::Series> tenants;
    for (const auto& c : p["wait_cdf"]) {
      svg::Series s{c["tenant"].get<std::string>(), Values(c["delay_s_at_pct"]), {}};
      for (int k = 0; k <= 100; ++k) s.y.push_back(k / 100.0);
      tenants.push_back(std::move(s));
    }
    h += svg::LineChart({p["policy"].get<std::string>() + ": queueing delay CDF",
                         "seconds (log scale)", "fraction of jobs", true, 1.0, 680, 320},
                        tenants);
  }
  h += "</div>";
  if (m.contains("setup_notes") && !m["setup_notes"].empty()) {
    h += "<details><summary>How the cluster was derived</summary><ul>";
    for (const auto& n : m["setup_notes"])
      h += "<li>" + svg::Escape(n.get<std::string>()) + "</li>";
    h += "</ul></details>";
  }
  return h;
}

std::string FgdSection(const AllocCurves& curves) {
  std::string h =
      "<h2>FGD experiment: GPU allocation vs arrived GPU requests</h2><p class=\"note\">Mean "
      "over seeds of alloc.csv; x: arrived GPU requests in % of capacity, y: allocated GPUs in "
      "% of capacity (FGD-PROTOCOL.md §6).</p><div class=\"charts\">";
  for (const auto& [workload, by_policy] : curves) {
    std::vector<svg::Series> s;
    for (const auto& [policy, ys] : by_policy) {
      svg::Series one{policy, {}, ys};
      for (size_t k = 0; k < ys.size(); ++k) one.x.push_back(static_cast<double>(k));
      s.push_back(std::move(one));
    }
    h += svg::LineChart(
        {workload, "arrived GPU requests, % of capacity", "allocated, %", false, 100, 680, 320}, s);
  }
  return h + "</div>";
}

}  // namespace

Result<AllocCurves> ReadAllocCsv(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound(path + ": cannot open");
  std::string line;
  int no = 0;
  std::map<std::string, std::map<std::string, std::pair<std::vector<double>, std::vector<int>>>>
      acc;
  size_t first_point = 0;
  while (std::getline(in, line)) {
    ++no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) f.push_back(cell);
    if (!line.empty() && line.back() == ',') f.emplace_back();
    if (no == 1) {
      if (f.size() < 5 || f[0] != "workload" || f[1] != "policy") {
        return Status::Invalid(path + ":1: header: expected workload,policy,seed,total_gpus,0..");
      }
      first_point = 0;
      while (first_point < f.size() && f[first_point] != "0") ++first_point;
      if (first_point == f.size()) return Status::Invalid(path + ":1: header: no column '0'");
      continue;
    }
    if (f.size() <= first_point) {
      return Status::Invalid(path + ":" + std::to_string(no) + ": row: too few fields");
    }
    auto& [sum, n] = acc[f[0]][f[1]];
    sum.resize(f.size() - first_point, 0.0);
    n.resize(f.size() - first_point, 0);
    for (size_t k = first_point; k < f.size(); ++k) {
      if (f[k].empty()) continue;
      char* end = nullptr;
      const double v = std::strtod(f[k].c_str(), &end);
      if (end == f[k].c_str() || *end != '\0') {
        return Status::Invalid(path + ":" + std::to_string(no) + ": column " +
                               std::to_string(k - first_point) + ": not a number");
      }
      sum[k - first_point] += v;
      ++n[k - first_point];
    }
  }
  AllocCurves out;
  for (const auto& [w, pols] : acc) {
    for (const auto& [p, sn] : pols) {
      std::vector<double> ys;
      for (size_t k = 0; k < sn.first.size() && sn.second[k] > 0; ++k) {
        ys.push_back(sn.first[k] / sn.second[k]);
      }
      out[w][p] = std::move(ys);
    }
  }
  if (out.empty()) return Status::Invalid(path + ": no rows");
  return out;
}

Result<std::string> BuildReport(const ordered_json& metrics, const std::string& alloc_csv) {
  std::string body;
  if (metrics.is_object() && metrics.contains("policies")) {
    try {
      body += ReplaySection(metrics);
    } catch (const nlohmann::json::exception& e) {
      return Status::Invalid(std::string("metrics.json: unexpected structure: ") + e.what());
    }
  }
  if (!alloc_csv.empty()) {
    auto curves = ReadAllocCsv(alloc_csv);
    if (!curves.ok()) return curves.status();
    body += FgdSection(*curves);
  }
  if (body.empty()) return Status::Invalid("report: nothing to show (give --replay and/or --fgd)");
  return "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>gpuorch "
         "report</title><style>" +
         std::string(svg::PageStyle()) + "</style></head><body><h1>gpuorch simulator report</h1>" +
         body + "<div id=\"tip\"></div>" +
         svg::TipScript("String(document.querySelectorAll('svg.chart').length)") +
         "</body></html>\n";
}

Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  if (!out) return Status::Invalid(path + ": cannot write");
  out << text;
  return out ? Status::Ok() : Status::Invalid(path + ": write failed");
}

}  // namespace gpuorch::sim
