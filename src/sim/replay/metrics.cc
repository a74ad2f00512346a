#include "sim/replay/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

namespace gpuorch::sim {

using core::Status;
using nlohmann::ordered_json;

namespace {

constexpr double kMsPerHour = 3600.0 * 1000.0;
constexpr int kTimelineBins = 400;

double Round(double x, int digits) {
  const double s = std::pow(10.0, digits);
  return std::round(x * s) / s;
}
double Seconds(int64_t ms) { return static_cast<double>(ms) / 1000.0; }
// milli-GPU x ms -> GPU-hours.
double GpuHours(int64_t milli_ms) {
  return Round(static_cast<double>(milli_ms) / 1000.0 / kMsPerHour, 3);
}

ordered_json Dist(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  int64_t sum = 0;
  for (int64_t x : v) sum += x;
  ordered_json j;
  j["n"] = v.size();
  j["mean"] = v.empty() ? 0.0 : Round(Seconds(sum) / static_cast<double>(v.size()), 3);
  j["p50"] = Seconds(Percentile(v, 50));
  j["p95"] = Seconds(Percentile(v, 95));
  j["p99"] = Seconds(Percentile(v, 99));
  j["max"] = Seconds(v.empty() ? 0 : v.back());
  return j;
}

// Averages of the piecewise-constant segments over fixed bins [k*w, (k+1)*w).
ordered_json Timeline(const ReplayResult& r, int64_t bin_ms, int bins) {
  std::vector<int64_t> busy(bins, 0), waiting(bins, 0), iww(bins, 0);
  for (size_t i = 0; i < r.segments.size(); ++i) {
    const Segment& s = r.segments[i];
    const core::Time end = i + 1 < r.segments.size() ? r.segments[i + 1].t : r.end;
    const int64_t idle_waiting = std::min(r.capacity_milli - s.busy_milli, s.runnable_milli);
    for (core::Time t = s.t; t < end;) {
      const int64_t b = std::min<int64_t>(t / bin_ms, bins - 1);
      const core::Time stop = std::min(end, (b + 1) * bin_ms);
      const int64_t dt = (b == bins - 1 ? end : stop) - t;
      busy[b] += s.busy_milli * dt;
      waiting[b] += s.waiting_milli * dt;
      iww[b] += idle_waiting * dt;
      t += dt;
    }
  }
  ordered_json j;
  auto avg = [&](const std::vector<int64_t>& v) {
    ordered_json a = ordered_json::array();
    for (int64_t x : v)
      a.push_back(Round(static_cast<double>(x) / 1000.0 / static_cast<double>(bin_ms), 2));
    return a;
  };
  j["bin_hours"] = Round(static_cast<double>(bin_ms) / kMsPerHour, 6);
  j["busy_gpus"] = avg(busy);
  j["waiting_gpus"] = avg(waiting);
  j["idle_while_waiting_gpus"] = avg(iww);
  return j;
}

ordered_json PolicyJson(const ReplayRun& run, const ReplayResult& r, int64_t bin_ms) {
  const Trace& tr = *run.trace;
  const QueuesConfig& qs = *run.queues;
  ordered_json p;
  p["policy"] = ToString(r.policy);
  std::vector<int64_t> delay, jct;
  size_t tenants = tr.tenants.size();
  std::vector<std::vector<int64_t>> t_delay(tenants), t_jct(tenants);
  std::vector<double> t_ratio_sum(tenants, 0);
  std::vector<int64_t> t_jobs(tenants, 0), t_viol(tenants, 0), t_pre(tenants, 0), t_fin(tenants, 0);
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<int64_t>>> kinds;
  int64_t finished = 0, infeasible = 0, unfinished = 0, violations = 0, max_entitled = 0;
  for (size_t i = 0; i < tr.jobs.size(); ++i) {
    const TraceJob& j = tr.jobs[i];
    const JobOutcome& o = r.jobs[i];
    ++t_jobs[j.tenant];
    t_pre[j.tenant] += o.preemptions;
    if (o.violated) ++violations, ++t_viol[j.tenant];
    max_entitled = std::max(max_entitled, o.entitled_wait);
    if (o.infeasible) {
      ++infeasible;
      continue;
    }
    if (o.finish < 0) {
      ++unfinished;
      continue;
    }
    ++finished;
    const int64_t d = o.first_start - j.arrival, c = o.finish - j.arrival;
    delay.push_back(d);
    jct.push_back(c);
    t_delay[j.tenant].push_back(d);
    t_jct[j.tenant].push_back(c);
    ++t_fin[j.tenant];
    t_ratio_sum[j.tenant] += static_cast<double>(j.duration) / static_cast<double>(c);
    auto& k = kinds[core::ToString(j.kind)];
    k.first.push_back(d);
    k.second.push_back(c);
  }
  std::vector<double> ratios;
  for (size_t t = 0; t < tenants; ++t) {
    if (t_fin[t] > 0) ratios.push_back(t_ratio_sum[t] / static_cast<double>(t_fin[t]));
  }
  const int64_t capacity = r.capacity_milli * r.end;
  auto pct = [&](int64_t x) {
    return capacity > 0 ? Round(100.0 * static_cast<double>(x) / static_cast<double>(capacity), 4)
                        : 0.0;
  };
  ordered_json s;
  s["jobs"] = tr.jobs.size();
  s["finished"] = finished;
  s["infeasible"] = infeasible;
  s["unfinished"] = unfinished;
  s["makespan_hours"] = Round(static_cast<double>(r.end) / kMsPerHour, 3);
  s["capacity_gpu_hours"] = GpuHours(capacity);
  s["busy_gpu_hours"] = GpuHours(r.busy);
  s["utilization_pct"] = pct(r.busy);
  s["idle_while_waiting_gpu_hours"] = GpuHours(r.idle_while_waiting);
  s["idle_while_waiting_pct"] = pct(r.idle_while_waiting);
  s["waiting_gpu_hours"] = GpuHours(r.waiting);
  s["queueing_delay_s"] = Dist(delay);
  s["jct_s"] = Dist(jct);
  s["guarantee_violations"] = violations;
  s["max_in_quota_wait_s"] = Seconds(max_entitled);
  s["preemptions"] = r.preemptions;
  s["lost_gpu_hours"] = GpuHours(r.lost);
  s["jain_fairness"] = Round(JainIndex(ratios), 4);
  s["engine_cycles"] = r.cycles;
  p["summary"] = s;
  ordered_json per_tenant = ordered_json::array();
  ordered_json cdf = ordered_json::array();
  for (size_t t = 0; t < tenants; ++t) {
    ordered_json e;
    e["tenant"] = tr.tenants[t];
    e["jobs"] = t_jobs[t];
    const int q = qs.Find(tr.tenants[t]);
    e["guarantee_gpus"] = q >= 0 ? qs.queues[static_cast<size_t>(q)].guarantee_milli / 1000 : 0;
    e["queueing_delay_s"] = Dist(t_delay[t]);
    e["jct_s"] = Dist(t_jct[t]);
    e["service_ratio"] =
        t_fin[t] > 0 ? Round(t_ratio_sum[t] / static_cast<double>(t_fin[t]), 4) : 0.0;
    e["guarantee_violations"] = t_viol[t];
    e["preemptions"] = t_pre[t];
    per_tenant.push_back(e);
    std::sort(t_delay[t].begin(), t_delay[t].end());
    ordered_json c;
    c["tenant"] = tr.tenants[t];
    ordered_json qv = ordered_json::array();
    for (int k = 0; k <= 100; ++k) qv.push_back(Seconds(Percentile(t_delay[t], k)));
    c["delay_s_at_pct"] = qv;
    cdf.push_back(c);
  }
  p["per_tenant"] = per_tenant;
  ordered_json per_kind = ordered_json::array();
  for (auto& [kind, v] : kinds) {
    ordered_json e;
    e["kind"] = kind;
    e["queueing_delay_s"] = Dist(v.first);
    e["jct_s"] = Dist(v.second);
    per_kind.push_back(e);
  }
  p["per_kind"] = per_kind;
  p["wait_cdf"] = cdf;
  p["timeline"] = Timeline(r, bin_ms, kTimelineBins);
  return p;
}

Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  if (!out) return Status::Invalid(path + ": cannot write");
  out << text;
  if (!out) return Status::Invalid(path + ": write failed");
  return Status::Ok();
}

// Appends ",<value>" (kept out of operator+ chains, which trip GCC 12's -Wrestrict).
void Cell(std::string& out, const ordered_json& v) {
  out += ',';
  out += v.dump();
}

// The estimate model, with only the parameters that apply to it.
ordered_json EstimatesJson(const EstimateOptions& e) {
  ordered_json j = {{"mode", ToString(e.mode)}};
  if (e.mode != EstimateMode::kNoisy) return j;
  j["model"] = ToString(e.model);
  if (e.model == NoiseModel::kFactor) {
    j["f"] = static_cast<double>(e.f_permille) / 1000.0;
  } else {
    j["a_min"] = static_cast<double>(e.a_min_permille) / 1000.0;
  }
  j["round_up"] = e.round_up;
  j["seed"] = e.seed;
  return j;
}

}  // namespace

int64_t Percentile(const std::vector<int64_t>& sorted, int p) {
  if (sorted.empty()) return 0;
  if (p <= 0) return sorted.front();
  const size_t n = sorted.size();
  const size_t rank = (static_cast<size_t>(p) * n + 99) / 100;  // ceil(p/100 * n)
  return sorted[std::min(n, std::max<size_t>(rank, 1)) - 1];
}

double JainIndex(const std::vector<double>& x) {
  if (x.empty()) return 1.0;
  double s = 0, s2 = 0;
  for (double v : x) s += v, s2 += v * v;
  return s2 > 0 ? s * s / (static_cast<double>(x.size()) * s2) : 1.0;
}

ordered_json MetricsJson(const ReplayRun& run) {
  const Trace& tr = *run.trace;
  ordered_json m;
  int64_t gpu_ms = 0;
  for (const TraceJob& j : tr.jobs) gpu_ms += j.total_milli() * j.duration;
  m["trace"] = {
      {"name", run.trace_label},
      {"jobs", tr.jobs.size()},
      {"tenants", tr.tenants.size()},
      {"demand_gpu_hours", GpuHours(gpu_ms)},
      {"last_arrival_hours",
       tr.jobs.empty() ? 0.0 : Round(static_cast<double>(tr.jobs.back().arrival) / kMsPerHour, 3)}};
  m["cluster"] = {{"nodes", run.cluster->nodes.size()}, {"gpus", run.cluster->total_gpus()}};
  m["options"] = {
      {"grace_period_s", Seconds(run.options.grace_period)},
      {"restart", run.options.restart == RestartMode::kCheckpoint ? "checkpoint" : "scratch"},
      {"checkpoint_interval_s", Seconds(run.options.checkpoint_interval)},
      {"placement", run.options.placement},
      {"max_reservations", run.options.max_reservations},
      {"estimates", EstimatesJson(run.options.estimates)}};
  m["setup_notes"] = run.setup_notes;
  core::Time horizon = 1;
  for (const ReplayResult& r : run.results) horizon = std::max(horizon, r.end);
  const int64_t bin_ms = (horizon + kTimelineBins - 1) / kTimelineBins;
  ordered_json ps = ordered_json::array();
  for (const ReplayResult& r : run.results) ps.push_back(PolicyJson(run, r, bin_ms));
  m["policies"] = ps;
  return m;
}

std::string SummaryTable(const ordered_json& m) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-8s %7s %9s %9s %10s %10s %10s %10s %6s %7s %9s %6s\n",
                "policy", "util%", "idleww%", "idlewwGPUh", "delay_p50", "delay_p95", "delay_p99",
                "jct_mean", "viol", "preempt", "lostGPUh", "jain");
  out += line;
  for (const auto& p : m["policies"]) {
    const auto& s = p["summary"];
    std::snprintf(
        line, sizeof line,
        "%-8s %7.2f %9.4f %10.1f %9.0fs %9.0fs %9.0fs %9.0fs %6lld %7lld %9.1f %6.3f\n",
        p["policy"].get<std::string>().c_str(), s["utilization_pct"].get<double>(),
        s["idle_while_waiting_pct"].get<double>(), s["idle_while_waiting_gpu_hours"].get<double>(),
        s["queueing_delay_s"]["p50"].get<double>(), s["queueing_delay_s"]["p95"].get<double>(),
        s["queueing_delay_s"]["p99"].get<double>(), s["jct_s"]["mean"].get<double>(),
        static_cast<long long>(s["guarantee_violations"].get<int64_t>()),
        static_cast<long long>(s["preemptions"].get<int64_t>()), s["lost_gpu_hours"].get<double>(),
        s["jain_fairness"].get<double>());
    out += line;
  }
  return out;
}

Status WriteMetrics(const ordered_json& m, const std::string& out_dir) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return Status::Invalid(out_dir + ": cannot create: " + ec.message());
  if (Status s = WriteFile(out_dir + "/metrics.json", m.dump(1) + "\n"); !s.ok()) return s;
  std::string summary =
      "policy,jobs,finished,infeasible,unfinished,makespan_hours,utilization_pct,"
      "idle_while_waiting_gpu_hours,idle_while_waiting_pct,delay_p50_s,delay_p95_s,delay_p99_s,"
      "delay_mean_s,jct_mean_s,jct_p50_s,jct_p99_s,guarantee_violations,preemptions,"
      "lost_gpu_hours,jain_fairness\n";
  std::string tenants =
      "policy,tenant,jobs,guarantee_gpus,delay_p50_s,delay_p95_s,delay_p99_s,delay_mean_s,"
      "jct_mean_s,service_ratio,guarantee_violations,preemptions\n";
  std::string timeline = "policy,t_hours,busy_gpus,waiting_gpus,idle_while_waiting_gpus\n";
  for (const auto& p : m["policies"]) {
    const std::string pol = p["policy"].get<std::string>();
    const auto& s = p["summary"];
    summary += pol;
    for (const char* k :
         {"jobs", "finished", "infeasible", "unfinished", "makespan_hours", "utilization_pct",
          "idle_while_waiting_gpu_hours", "idle_while_waiting_pct"}) {
      Cell(summary, s[k]);
    }
    for (const char* k : {"p50", "p95", "p99", "mean"}) Cell(summary, s["queueing_delay_s"][k]);
    for (const char* k : {"mean", "p50", "p99"}) Cell(summary, s["jct_s"][k]);
    for (const char* k :
         {"guarantee_violations", "preemptions", "lost_gpu_hours", "jain_fairness"}) {
      Cell(summary, s[k]);
    }
    summary += "\n";
    for (const auto& t : p["per_tenant"]) {
      tenants += pol;
      tenants += ',';
      tenants += t["tenant"].get<std::string>();
      Cell(tenants, t["jobs"]);
      Cell(tenants, t["guarantee_gpus"]);
      for (const char* k : {"p50", "p95", "p99", "mean"}) Cell(tenants, t["queueing_delay_s"][k]);
      for (const auto* v : {&t["jct_s"]["mean"], &t["service_ratio"], &t["guarantee_violations"],
                            &t["preemptions"]}) {
        Cell(tenants, *v);
      }
      tenants += '\n';
    }
    const auto& tl = p["timeline"];
    const double w = tl["bin_hours"].get<double>();
    for (size_t k = 0; k < tl["busy_gpus"].size(); ++k) {
      char t[64];
      std::snprintf(t, sizeof t, "%.4f", w * static_cast<double>(k));
      timeline += pol;
      timeline += ',';
      timeline += t;
      Cell(timeline, tl["busy_gpus"][k]);
      Cell(timeline, tl["waiting_gpus"][k]);
      Cell(timeline, tl["idle_while_waiting_gpus"][k]);
      timeline += '\n';
    }
  }
  for (auto [name, text] : {std::pair{"summary.csv", &summary}, std::pair{"tenants.csv", &tenants},
                            std::pair{"timeline.csv", &timeline}}) {
    if (Status s = WriteFile(out_dir + "/" + name, *text); !s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace gpuorch::sim
