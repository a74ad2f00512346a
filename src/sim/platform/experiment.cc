// `gpuorch sim platform` end to end (experiment.h).
#include "sim/platform/experiment.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "sim/platform/report.h"
#include "sim/replay/metrics.h"
#include "sim/replay/trace.h"

namespace gpuorch::sim::platform {

using core::Result;
using core::Status;
using nlohmann::ordered_json;

namespace {

std::string Fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// Rounded for JSON, so that the files read well and compare byte for byte.
double Round(double v, int digits) {
  const double m = std::pow(10.0, digits);
  return std::round(v * m) / m;
}

std::vector<std::string> Assumptions(const PlatformRun& run) {
  const PlatformConfig& c = run.config;
  const Envelope& e = c.inference.envelope;
  std::vector<std::string> a;
  a.push_back("Demand: each hour of the " + std::to_string(c.total_days()) + " simulated days (" +
              std::to_string(c.warmup_days) +
              " of warm-up) superposes rate_scale copies of its service's one-hour Azure LLM "
              "trace (2023), each read from its own random offset (seed " +
              std::to_string(c.seed) +
              "), scaled by a diurnal and weekly envelope that is an "
              "assumption, not data: peak/trough " +
              Fmt("%g", e.peak_trough_ratio) + " on weekdays (cosine, peak at " +
              Fmt("%g", e.peak_hour) + ":00), weekends x" + Fmt("%g", e.weekend_factor) + ".");
  for (const ServiceDemand& s : run.services) {
    const CapacityProfile& k = s.capacity;
    a.push_back("Service " + s.name + ": replicas of " + std::to_string(k.gpus_per_replica) +
                " GPUs serving " + Fmt("%.0f", k.prefill_tokens_per_s) + " prefill and " +
                Fmt("%.0f", k.decode_tokens_per_s) +
                " decode tokens/s (throughput-bound, TensorRT-LLM's published Llama-3.3-70B "
                "FP8 H100 numbers); TTFT SLO " +
                Fmt("%g", k.ttft_slo_s) + " s and ITL SLO " + Fmt("%g", k.itl_slo_s) +
                " s; a replica may run at rho_max " + Fmt("%.3f", s.rho_max) +
                " (M/M/1 time to first token within the SLO); mean " + Fmt("%.0f", s.mean_prompt) +
                " prompt and " + Fmt("%.0f", s.mean_output) +
                " output tokens per request; peak need " + std::to_string(s.peak_needed) +
                " replicas.");
  }
  std::string scalers;
  for (const ServiceConfig& sc : c.inference.services) {
    const autoscale::ServiceParams p = sc.Autoscale(c.inference);
    scalers += " " + sc.name + ": target_utilization " + Fmt("%g", p.target_utilization) +
               ", scale-down delay " + std::to_string(p.scale_down_delay_s) + " s;";
  }
  a.push_back(
      "Autoscaler: src/autoscale fed once per simulated second with the offered in-flight "
      "requests of a perfectly calibrated target (a replica at rho_max carries target=" +
      Fmt("%g", c.inference.autoscale.target) + ");" + scalers + " a new replica is Ready " +
      std::to_string(c.inference.startup_s) + " s after it is bound, a removed one drains for " +
      std::to_string(c.inference.drain_s) + " s.");
  a.push_back("Training: Philly jobs of at least " + std::to_string(c.training.min_gpus) +
              " GPUs from trace day " + Fmt("%.1f", run.work.trace_first_day) + " to " +
              Fmt("%.1f", run.work.trace_last_day) + ", their arrivals spread over the " +
              std::to_string(c.total_days()) + " simulated days (x" +
              Fmt("%.2f", run.work.compression) + " trace time per simulated time) to offer " +
              Fmt("%.0f", run.work.training_offered_gpus) + " GPUs on average (" +
              Fmt("%g", c.training.load * 100) + "% of the teams' guarantees), durations cut at " +
              std::to_string(c.training.max_duration_h) +
              " h, gangs above a node rounded up to "
              "whole nodes; each virtual cluster goes to one team.");
  a.push_back("Experiments: Poisson arrivals offering " +
              Fmt("%.0f", run.work.experiment_offered_gpus) +
              " GPUs on average, durations drawn "
              "from Philly's single-GPU jobs up to " +
              std::to_string(c.experiments.max_duration_h) + " h, " +
              Fmt("%g", c.experiments.fractional_share * 100) + "% ask " +
              Fmt("%g", c.experiments.fraction_milli / 1000.0) + " GPU, " +
              Fmt("%g", c.experiments.idle_tail_share * 100) +
              "% keep their GPU idle afterwards (a notebook left open; exponential, mean " +
              Fmt("%g", c.experiments.idle_tail_mean_h) + " h); one not started within " +
              Fmt("%g", c.experiments.max_wait_h) + " h is withdrawn.");
  std::string parts = "Partitions (static) and guarantees (pools), in nodes of " +
                      std::to_string(c.cluster.nodes.front().gpu_count) + " GPUs: ";
  for (size_t s = 0; s < run.services.size(); ++s) {
    parts += run.services[s].name + " " + std::to_string(run.partitions.service_nodes[s]) + ", ";
  }
  for (size_t t = 0; t < c.training.teams.size(); ++t) {
    parts += c.training.teams[t].name + " " + std::to_string(run.partitions.team_nodes[t]) + ", ";
  }
  parts += "experiments " + std::to_string(run.partitions.experiment_nodes) + ".";
  a.push_back(parts);
  a.push_back("Preemption: " + std::to_string(c.grace_period_s) + " s grace; " +
              (c.checkpoint_on_sigterm ? "jobs checkpoint on SIGTERM (only the grace is lost)"
                                       : "jobs restart from scratch") +
              "; idle reclaim (gpuorch only) evicts an experiment idle for " +
              std::to_string(c.idle_reclaim_after_s) + " s.");
  return a;
}

double Pct(double part, double whole) { return whole > 0 ? 100.0 * part / whole : 0; }

ordered_json PolicyJson(const PolicyResult& r, const std::vector<ServiceDemand>& services) {
  ordered_json j;
  j["idle_gpu_hours_pct"] = Round(Pct(r.idle, r.capacity), 3);
  j["idle_while_waiting_pct"] = Round(Pct(r.idle_while_waiting, r.capacity), 3);
  j["idle_nothing_to_run_pct"] = Round(Pct(r.idle_nothing_to_run, r.capacity), 3);
  j["idle_held_pct"] = Round(Pct(r.idle_held, r.capacity), 3);
  j["inference_overprovisioned_pct"] = Round(Pct(r.overprovisioned, r.capacity), 3);
  j["inference_slo_minutes_pct"] =
      Round(Pct(static_cast<double>(r.slo_minutes), static_cast<double>(r.service_minutes)), 3);
  ordered_json missed = ordered_json::object(), by_one = ordered_json::object();
  for (size_t s = 0; s < services.size() && s < r.missed.size(); ++s) {
    missed[services[s].name] = r.missed[s];
    by_one[services[s].name] = r.missed_by_one[s];
  }
  j["slo_missed_minutes"] = missed;
  j["slo_missed_by_one_replica"] = by_one;
  j["requests_waiting_pct"] = Round(Pct(r.requests_waiting, r.requests), 4);
  j["replica_minutes"] = Round(r.replica_minutes, 1);
  j["training_jobs"] = r.training_jobs;
  j["training_finished"] = r.training_finished;
  j["training_infeasible"] = r.training_infeasible;
  double mean = 0;
  for (int64_t v : r.training_jct_ms) mean += static_cast<double>(v);
  if (!r.training_jct_ms.empty()) mean /= static_cast<double>(r.training_jct_ms.size());
  j["training_jct_mean_s"] = Round(mean / 1000, 1);
  j["training_delay_p50_s"] =
      Round(static_cast<double>(Percentile(r.training_delay_ms, 50)) / 1000, 1);
  j["training_delay_p95_s"] =
      Round(static_cast<double>(Percentile(r.training_delay_ms, 95)) / 1000, 1);
  const double gpu_hour = core::kMilliGpu * 3600.0 * core::kSecond;
  j["experiment_gpu_hours"] = Round((r.experiment_work - r.experiment_lost) / gpu_hour, 1);
  j["experiments"] = r.experiments;
  j["experiments_finished"] = r.experiments_finished;
  j["experiments_withdrawn"] = r.experiments_withdrawn;
  j["experiment_lost_pct"] = Round(Pct(r.experiment_lost, r.experiment_work), 3);
  // The same evictions, had the jobs not checkpointed: all progress since their start lost.
  j["experiment_lost_pct_without_checkpoint"] =
      Round(Pct(r.experiment_lost_without_checkpoint,
                r.experiment_work - r.experiment_lost + r.experiment_lost_without_checkpoint),
            3);
  ordered_json pre = ordered_json::object();
  for (const auto& [reason, n] : r.preemptions) pre[reason] = n;
  j["preemptions"] = pre;
  j["engine_cycles"] = r.cycles;
  return j;
}

const PolicyResult* Find(const PlatformRun& run, Policy p) {
  for (const PolicyResult& r : run.results) {
    if (r.policy == p) return &r;
  }
  return nullptr;
}

}  // namespace

Result<PlatformRun> RunPlatformOn(const PlatformConfig& config, std::vector<ServiceDemand> services,
                                  Workloads work, const std::vector<Policy>& policies) {
  for (size_t i = 0; i < policies.size(); ++i) {
    if (std::find(policies.begin(), policies.begin() + static_cast<std::ptrdiff_t>(i),
                  policies[i]) != policies.begin() + static_cast<std::ptrdiff_t>(i)) {
      return Status::Invalid(std::string("policy ") + ToString(policies[i]) + " listed twice");
    }
  }
  PlatformRun run;
  run.config = config;
  run.services = std::move(services);
  run.work = std::move(work);
  auto parts = PlanPartitions(run.config, run.services);
  if (!parts.ok()) return parts.status();
  run.partitions = std::move(parts).value();
  PlatformInput input;
  input.config = &run.config;
  input.services = &run.services;
  input.work = &run.work;
  input.partitions = run.partitions;
  std::vector<Result<PolicyResult>> out(policies.size(), Status::Invalid("not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < policies.size(); ++i) {
    threads.emplace_back([&, i] { out[i] = RunPolicy(input, policies[i]); });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < policies.size(); ++i) {
    if (!out[i].ok()) {
      return Status::Invalid(std::string(ToString(policies[i])) + ": " + out[i].status().message());
    }
    run.results.push_back(std::move(out[i]).value());
  }
  run.assumptions = Assumptions(run);
  return run;
}

Result<PlatformRun> RunPlatform(const PlatformConfig& config, const std::string& traces_dir,
                                const std::vector<Policy>& policies) {
  namespace fs = std::filesystem;
  std::vector<ServiceDemand> services;
  for (size_t i = 0; i < config.inference.services.size(); ++i) {
    const ServiceConfig& s = config.inference.services[i];
    auto profile = ReadAzureTrace((fs::path(traces_dir) / s.trace).string());
    if (!profile.ok())
      return Status::Invalid("inference.services." + s.name + ": " + profile.status().message());
    auto demand = TileDemand(*profile, config.inference.envelope, s.rate_scale, config.total_days(),
                             config.seed * 1000003 + i);
    if (!demand.ok())
      return Status::Invalid("inference.services." + s.name + ": " + demand.status().message());
    auto rho = MaxUtilization(s.capacity, profile->mean_prompt);
    if (!rho.ok())
      return Status::Invalid("inference.services." + s.name + ": " + rho.status().message());
    services.push_back(MakeServiceDemand(s.name, s.capacity, *rho, *demand));
  }
  const int32_t node_gpus = config.cluster.max_node_gpus();
  auto philly = ReadPhillyTrace((fs::path(traces_dir) / config.training.trace).string(), node_gpus);
  if (!philly.ok()) return Status::Invalid("training.trace: " + philly.status().message());
  auto parts = PlanPartitions(config, services);
  if (!parts.ok()) return parts.status();
  const int64_t training_gpus = int64_t{parts->training_nodes()} * node_gpus;
  auto work = BuildWorkloads(config, *philly, node_gpus, training_gpus);
  if (!work.ok()) return work.status();
  return RunPlatformOn(config, std::move(services), std::move(work).value(), policies);
}

ordered_json SummaryJson(const PlatformRun& run, const std::string& command) {
  ordered_json j;
  j["command"] = command;
  j["assumptions"] = run.assumptions;
  ordered_json names = ordered_json::array();
  for (const PolicyResult& r : run.results) names.push_back(ToString(r.policy));
  j["policies"] = names;
  ordered_json setup;
  setup["days"] = run.config.days;
  setup["seed"] = run.config.seed;
  setup["gpus"] = run.config.cluster.total_gpus();
  ordered_json svc = ordered_json::object();
  for (size_t s = 0; s < run.services.size(); ++s) {
    const ServiceDemand& d = run.services[s];
    svc[d.name] = {{"peak_needed_replicas", d.peak_needed},
                   {"rho_max", Round(d.rho_max, 4)},
                   {"partition_nodes", run.partitions.service_nodes[s]}};
  }
  setup["services"] = svc;
  ordered_json teams = ordered_json::object();
  for (size_t t = 0; t < run.config.training.teams.size(); ++t) {
    teams[run.config.training.teams[t].name] = run.partitions.team_nodes[t];
  }
  setup["team_nodes"] = teams;
  setup["experiment_nodes"] = run.partitions.experiment_nodes;
  setup["training_jobs"] = run.work.training_jobs;
  setup["training_offered_gpus"] = Round(run.work.training_offered_gpus, 1);
  setup["experiment_jobs"] = run.work.experiment_jobs;
  setup["experiment_offered_gpus"] = Round(run.work.experiment_offered_gpus, 1);
  j["setup"] = setup;
  ordered_json summary = ordered_json::object();
  for (const PolicyResult& r : run.results)
    summary[ToString(r.policy)] = PolicyJson(r, run.services);
  // The goals, judged on this run.
  const PolicyResult* g = Find(run, Policy::kGpuorch);
  const PolicyResult* st = Find(run, Policy::kStatic);
  if (g != nullptr) {
    const ordered_json& gj = summary["gpuorch"];
    ordered_json goals = ordered_json::array();
    auto goal = [&](const char* metric, const char* text, double value, bool met) {
      goals.push_back({{"metric", metric}, {"goal", text}, {"value", value}, {"met", met}});
    };
    const double idle = gj["idle_gpu_hours_pct"].get<double>();
    const double iww = gj["idle_while_waiting_pct"].get<double>();
    const double slo = gj["inference_slo_minutes_pct"].get<double>();
    goal("idle_gpu_hours_pct", "<= 5", idle, idle <= 5);
    goal("idle_while_waiting_pct", "<= 1", iww, iww <= 1);
    goal("inference_slo_minutes_pct", ">= 99.9", slo, slo >= 99.9);
    if (st != nullptr) {
      const ordered_json& sj = summary["static"];
      const double jct = gj["training_jct_mean_s"].get<double>();
      const double sjct = sj["training_jct_mean_s"].get<double>();
      goal("training_jct_mean_s", "<= static's", jct, jct <= sjct);
      const double eh = gj["experiment_gpu_hours"].get<double>();
      const double seh = sj["experiment_gpu_hours"].get<double>();
      goal("experiment_gpu_hours_vs_static", ">= 3x static's", Round(seh > 0 ? eh / seh : 0, 3),
           eh >= 3 * seh);
    }
    summary["gpuorch"]["goals"] = goals;
  }
  j["summary"] = summary;
  return j;
}

ordered_json TimelineJson(const PlatformRun& run, int32_t step_s) {
  ordered_json t;
  const int64_t per = std::max<int64_t>(1, step_s / 60);
  t["step_s"] = per * 60;
  t["capacity_gpus"] = run.config.cluster.total_gpus();
  const size_t first = static_cast<size_t>(run.config.warmup_days) * 1440;
  for (const PolicyResult& r : run.results) {
    ordered_json p;
    std::vector<double> th, inf, tr, ex, held, fr;
    const size_t n = r.minutes.size();
    std::vector<std::vector<double>> need(run.services.size()), ready(run.services.size());
    for (size_t m0 = 0; m0 < n; m0 += static_cast<size_t>(per)) {
      const size_t m1 = std::min(n, m0 + static_cast<size_t>(per));
      double a = 0, b = 0, c = 0, d = 0, e = 0;
      for (size_t m = m0; m < m1; ++m) {
        a += r.minutes[m].inference, b += r.minutes[m].training, c += r.minutes[m].experiment;
        d += r.minutes[m].idle_held, e += r.minutes[m].free;
      }
      const double k = static_cast<double>(m1 - m0);
      th.push_back(Round(static_cast<double>(m0) / 60.0, 4));
      inf.push_back(Round(a / k, 2)), tr.push_back(Round(b / k, 2)), ex.push_back(Round(c / k, 2));
      held.push_back(Round(d / k, 2)), fr.push_back(Round(e / k, 2));
      for (size_t s = 0; s < run.services.size(); ++s) {
        int32_t mx = 0, mn = INT32_MAX;
        for (size_t m = m0; m < m1; ++m) {
          mx = std::max(mx, run.services[s].needed[first + m]);
          mn = std::min(mn, r.ready[s][m]);
        }
        need[s].push_back(mx);
        ready[s].push_back(mn);
      }
    }
    p["t_h"] = th;
    p["inference"] = inf;
    p["training"] = tr;
    p["experiment"] = ex;
    p["idle_held"] = held;
    p["free"] = fr;
    ordered_json sv = ordered_json::object();
    for (size_t s = 0; s < run.services.size(); ++s) {
      sv[run.services[s].name] = {{"needed", need[s]}, {"ready", ready[s]}};
    }
    p["services"] = sv;
    t[ToString(r.policy)] = p;
  }
  return t;
}

std::string TimelineCsv(const PlatformRun& run) {
  std::string out =
      "policy,minute,inference_gpus,training_gpus,experiment_gpus,idle_held_gpus,free_gpus,"
      "idle_while_waiting_gpus,overprovisioned_gpus";
  for (const ServiceDemand& s : run.services) {
    out += "," + s.name + "_needed," + s.name + "_ready_min," + s.name + "_held_gpus";
  }
  out += "\n";
  const size_t first = static_cast<size_t>(run.config.warmup_days) * 1440;
  for (const PolicyResult& r : run.results) {
    const std::string name = ToString(r.policy);
    for (size_t m = 0; m < r.minutes.size(); ++m) {
      const MinuteRow& row = r.minutes[m];
      out += name + "," + std::to_string(m);
      for (float v : {row.inference, row.training, row.experiment, row.idle_held, row.free,
                      row.idle_while_waiting, row.overprovisioned}) {
        out += Fmt(",%.3f", v);
      }
      for (size_t s = 0; s < run.services.size(); ++s) {
        out += "," + std::to_string(run.services[s].needed[first + m]) + "," +
               std::to_string(r.ready[s][m]) + Fmt(",%.3f", r.held[s][m]);
      }
      out += "\n";
    }
  }
  return out;
}

std::string SummaryTable(const ordered_json& summary) {
  std::string out =
      "policy             idle%  idle-wait%  SLO-min%  wait-req%  train-JCT-h  delay-p95-h  "
      "exp-GPU-h  exp-lost%\n";
  for (const auto& [name, p] : summary["summary"].items()) {
    char line[256];
    std::snprintf(
        line, sizeof line, "%-18s %6.2f %10.2f %9.3f %10.4f %12.2f %12.2f %10.0f %10.2f\n",
        name.c_str(), p["idle_gpu_hours_pct"].get<double>(),
        p["idle_while_waiting_pct"].get<double>(), p["inference_slo_minutes_pct"].get<double>(),
        p["requests_waiting_pct"].get<double>(), p["training_jct_mean_s"].get<double>() / 3600,
        p["training_delay_p95_s"].get<double>() / 3600, p["experiment_gpu_hours"].get<double>(),
        p["experiment_lost_pct"].get<double>());
    out += line;
  }
  return out;
}

Status WriteOutputs(const PlatformRun& run, const std::string& command,
                    const std::string& out_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return Status::Invalid("--out " + out_dir + ": " + ec.message());
  ordered_json summary = SummaryJson(run, command);
  auto write = [&](const std::string& name, const std::string& text) -> Status {
    const fs::path p = fs::path(out_dir) / name;
    std::ofstream f(p, std::ios::binary);
    f << text;
    f.close();
    if (!f) return Status::Invalid(p.string() + ": cannot write");
    return Status::Ok();
  };
  if (Status s = write("summary.json", summary.dump(2) + "\n"); !s.ok()) return s;
  if (Status s = write("timeline.csv", TimelineCsv(run)); !s.ok()) return s;
  ordered_json input = summary;
  input["timeline"] = TimelineJson(run, 600);
  auto html = BuildPlatformReport(input);
  if (!html.ok()) return Status::Invalid("report: " + html.status().message());
  return write("report.html", *html);
}

}  // namespace gpuorch::sim::platform
