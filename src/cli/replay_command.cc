// `gpuorch sim replay`: replays a job trace (Philly, Pollux or the generic format) through
// the engine under static partitioning, one shared FIFO pool and gpuorch's full policy, and
// writes metrics (JSON + CSV) and a self-contained HTML report. `gpuorch sim report`
// rebuilds the report from a metrics.json (and, optionally, the FGD experiment's output).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "sched/policy.h"
#include "sim/replay/config.h"
#include "sim/replay/metrics.h"
#include "sim/replay/replay.h"
#include "sim/replay/trace.h"
#include "sim/report/report.h"

namespace gpuorch::cli {

namespace {

struct ReplayCliOptions {
  std::string trace = "philly";
  std::string traces = "../shared/traces";
  std::string cluster;
  std::string queues;
  std::string policy = "static,fifo,gpuorch";
  std::string placement = "gpuorch";
  int32_t max_reservations = 8;
  std::string out = "out/replay";
  std::string fgd;
  double grace_s = 30;
  std::string restart = "checkpoint";
  double checkpoint_interval_s = 0;
  int scale = 100;
  uint64_t seed = 0;
  std::string estimates = "exact";
  std::string estimate_model = "factor";
  double estimate_f = 4.0;
  double estimate_a_min = 0.1;
  uint64_t estimate_seed = 1;
  bool estimate_round = false;
};

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t c = s.find(',', start);
    if (c == std::string::npos) c = s.size();
    if (c > start) out.push_back(s.substr(start, c - start));
    start = c + 1;
  }
  return out;
}

int Fail(const std::string& m, int code = 1) {
  std::fprintf(stderr, "error: %s\n", m.c_str());
  return code;
}

int RunReplayCommand(const ReplayCliOptions& o) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  std::vector<sim::ReplayPolicy> policies;
  for (const std::string& p : Split(o.policy)) {
    sim::ReplayPolicy rp;
    if (!sim::ParseReplayPolicy(p, rp)) {
      return Fail("--policy: unknown policy '" + p + "' (static, fifo, gpuorch)", 2);
    }
    policies.push_back(rp);
  }
  if (policies.empty()) return Fail("--policy: name at least one policy", 2);
  sim::ReplayOptions ro;
  ro.placement = o.placement;
  if (o.max_reservations < 1 || o.max_reservations > 1000) {
    return Fail("--max-reservations: must be in 1..1000", 2);
  }
  ro.max_reservations = o.max_reservations;
  ro.grace_period = static_cast<core::Duration>(o.grace_s * 1000.0 + 0.5);
  ro.checkpoint_interval = static_cast<core::Duration>(o.checkpoint_interval_s * 1000.0 + 0.5);
  ro.seed = o.seed;
  if (o.restart == "scratch") {
    ro.restart = sim::RestartMode::kScratch;
  } else if (o.restart != "checkpoint") {
    return Fail("--restart: expected checkpoint or scratch", 2);
  }
  if (!sim::ParseEstimateMode(o.estimates, ro.estimates.mode)) {
    return Fail("--estimates: expected exact, noisy or none", 2);
  }
  if (!sim::ParseNoiseModel(o.estimate_model, ro.estimates.model)) {
    return Fail("--estimate-model: expected factor or accuracy", 2);
  }
  if (o.estimate_f < 0 || o.estimate_f > 1000) return Fail("--estimate-f: must be in 0..1000", 2);
  if (o.estimate_a_min < 0.001 || o.estimate_a_min > 1) {
    return Fail("--estimate-a-min: must be in 0.001..1", 2);
  }
  ro.estimates.f_permille = static_cast<int32_t>(o.estimate_f * 1000.0 + 0.5);
  ro.estimates.a_min_permille = static_cast<int32_t>(o.estimate_a_min * 1000.0 + 0.5);
  ro.estimates.seed = o.estimate_seed;
  ro.estimates.round_up = o.estimate_round;
  if (o.grace_s < 0 || o.checkpoint_interval_s < 0)
    return Fail("--grace/--checkpoint-interval: must be >= 0", 2);

  // The trace, and the cluster it needs to split gangs into node-sized tasks.
  sim::ClusterConfig cluster;
  sim::QueuesConfig queues;
  std::vector<std::string> notes;
  if (!o.cluster.empty()) {
    auto c = sim::LoadClusterYaml(o.cluster);
    if (!c.ok()) return Fail(c.status().message());
    cluster = std::move(c).value();
  }
  const int32_t node_gpus =
      o.cluster.empty() ? (o.trace.rfind("pollux", 0) == 0 ? 4 : 8) : cluster.max_node_gpus();
  core::Result<sim::Trace> trace = core::Status::Invalid("no trace");
  std::string label = o.trace;
  if (o.trace == "philly") {
    trace = sim::ReadPhillyTrace(o.traces + "/philly/philly_pollux_artifact.csv", node_gpus);
  } else if (o.trace.rfind("pollux", 0) == 0) {
    // pollux = workloads/workload-1; pollux:SET/NAME picks another (e.g. workloads-2.0/workload-3).
    const std::string which = o.trace == "pollux" ? "workloads/workload-1" : o.trace.substr(7);
    trace = sim::ReadPolluxTrace(o.traces + "/pollux/" + which + ".csv",
                                 o.traces + "/pollux/results-jobload", node_gpus);
  } else {
    trace = sim::ReadGenericTrace(o.trace);
  }
  if (!trace.ok()) return Fail(trace.status().message());
  if (o.cluster.empty() || o.queues.empty()) {
    if (o.trace == "philly") {
      auto d = sim::DerivePhillySetup(
          *trace, o.traces + "/philly/philly_vc_nodes_helios_artifact.csv", o.scale);
      if (!d.ok()) return Fail(d.status().message());
      if (o.cluster.empty()) cluster = std::move(d.value().cluster);
      if (o.queues.empty()) queues = std::move(d.value().queues);
      notes = d.value().notes;
    } else if (o.trace.rfind("pollux", 0) == 0 && o.cluster.empty() && o.queues.empty()) {
      // Pollux's simulated cluster: 16 nodes x 4 GPUs; tenants (applications) share it by
      // their GPU-time demand.
      sim::NodeGroup g;
      g.name = "node";
      g.count = 16;
      g.gpus = 4;
      cluster.groups.push_back(g);
      if (core::Status s = cluster.Expand(); !s.ok()) return Fail(s.message());
      std::vector<int64_t> demand(trace->tenants.size(), 0);
      int64_t total = 0;
      for (const auto& j : trace->jobs)
        demand[j.tenant] += j.total_milli() / 1000 * j.duration,
            total += j.total_milli() / 1000 * j.duration;
      for (size_t t = 0; t < trace->tenants.size(); ++t) {
        sim::TenantQueue q;
        q.name = trace->tenants[t];
        q.guarantee_milli = total > 0 ? 64 * demand[t] / total * 1000 : 0;
        queues.queues.push_back(q);
      }
      notes.push_back("pollux: 16 nodes x 4 GPUs; guarantees proportional to GPU-time demand");
    } else {
      return Fail("--cluster and --queues are required for this trace", 2);
    }
  }
  if (!o.queues.empty()) {
    auto q = sim::LoadQueuesYaml(o.queues);
    if (!q.ok()) return Fail(q.status().message());
    queues = std::move(q).value();
  }
  const auto t_read = Clock::now();

  sim::ReplayRun run;
  run.trace_label = trace->name;
  run.trace = &trace.value();
  run.cluster = &cluster;
  run.queues = &queues;
  run.options = ro;
  run.setup_notes = notes;
  std::vector<double> seconds;
  for (sim::ReplayPolicy p : policies) {
    ro.policy = p;
    const auto a = Clock::now();
    auto r = sim::RunReplay(*trace, cluster, queues, ro);
    if (!r.ok()) return Fail(std::string(sim::ToString(p)) + ": " + r.status().message());
    seconds.push_back(std::chrono::duration<double>(Clock::now() - a).count());
    run.results.push_back(std::move(r).value());
  }
  const nlohmann::ordered_json metrics = sim::MetricsJson(run);
  if (core::Status s = sim::WriteMetrics(metrics, o.out); !s.ok()) return Fail(s.message());
  {
    std::FILE* f = std::fopen((o.out + "/cluster.yaml").c_str(), "w");
    std::FILE* g = std::fopen((o.out + "/queues.yaml").c_str(), "w");
    if (f) std::fputs(sim::ClusterToYaml(cluster).c_str(), f), std::fclose(f);
    if (g) std::fputs(sim::QueuesToYaml(queues).c_str(), g), std::fclose(g);
  }
  auto html = sim::BuildReport(metrics, o.fgd.empty() ? "" : o.fgd + "/alloc.csv");
  if (!html.ok()) return Fail(html.status().message());
  if (core::Status s = sim::WriteText(o.out + "/report.html", *html); !s.ok())
    return Fail(s.message());
  std::fputs(sim::SummaryTable(metrics).c_str(), stdout);
  std::printf("trace %s: %zu jobs, %lld GPUs; read in %.2f s;", run.trace_label.c_str(),
              trace->jobs.size(), static_cast<long long>(cluster.total_gpus()),
              std::chrono::duration<double>(t_read - t0).count());
  for (size_t i = 0; i < policies.size(); ++i) {
    std::printf(" %s %.2f s;", sim::ToString(policies[i]), seconds[i]);
  }
  std::printf(" wrote %s/{metrics.json,summary.csv,tenants.csv,timeline.csv,report.html}\n",
              o.out.c_str());
  return 0;
}

}  // namespace

void AddReplayCommand(CLI::App* sim, int& exit_code) {
  auto o = std::make_shared<ReplayCliOptions>();
  CLI::App* c = sim->add_subcommand(
      "replay", "Replay a job trace: static partitions vs one FIFO pool vs gpuorch's policy");
  c->add_option("--trace", o->trace,
                "philly, pollux[:SET/NAME] (e.g. pollux:workloads-2.0/workload-3), or a file in "
                "the generic format (.csv or .jsonl; docs/simulator.md)")
      ->capture_default_str();
  c->add_option("--traces", o->traces, "Folder of the public traces")->capture_default_str();
  c->add_option("--cluster", o->cluster, "CLUSTER.yaml (default for philly/pollux: derived)");
  c->add_option("--queues", o->queues, "QUEUES.yaml (default for philly/pollux: derived)");
  c->add_option("--policy", o->policy, "static, fifo, gpuorch, or a comma-separated list")
      ->capture_default_str();
  c->add_option("--max-reservations", o->max_reservations,
                "gpuorch: head-of-line reservations held at once per GPU model")
      ->capture_default_str();
  c->add_option("--placement", o->placement, "Placement policy of the engine")
      ->capture_default_str();
  c->add_option("--grace", o->grace_s, "Grace period of an evicted job, seconds")
      ->capture_default_str();
  c->add_option("--restart", o->restart, "After eviction: checkpoint or scratch")
      ->capture_default_str();
  c->add_option("--checkpoint-interval", o->checkpoint_interval_s,
                "Seconds between checkpoints (0: checkpoint on SIGTERM)")
      ->capture_default_str();
  c->add_option("--scale", o->scale, "Philly: percent of each VC's node count")
      ->capture_default_str();
  c->add_option("--seed", o->seed, "Seed for the engine")->capture_default_str();
  c->add_option("--estimates", o->estimates,
                "Run-time estimates the engine sees: exact, noisy (user overestimates) or none")
      ->capture_default_str();
  c->add_option("--estimate-model", o->estimate_model,
                "noisy: factor (runtime x U[1, 1+f]) or accuracy (runtime / U[a_min, 1])")
      ->capture_default_str();
  c->add_option("--estimate-f", o->estimate_f, "noisy, factor: f")->capture_default_str();
  c->add_option("--estimate-a-min", o->estimate_a_min, "noisy, accuracy: a_min")
      ->capture_default_str();
  c->add_option("--estimate-seed", o->estimate_seed, "noisy: seed of the per-job draws")
      ->capture_default_str();
  c->add_flag("--estimate-round", o->estimate_round,
              "noisy: round each estimate up to a round value (15 min, 1 h, 1 day, ...)");
  c->add_option("--fgd", o->fgd, "FGD experiment output folder (adds its alloc.csv curves)");
  c->add_option("--out", o->out, "Output folder")->capture_default_str();
  c->callback([o, &exit_code]() { exit_code = RunReplayCommand(*o); });

  auto r = std::make_shared<std::pair<std::string, std::string>>();
  auto fgd = std::make_shared<std::string>();
  CLI::App* rep = sim->add_subcommand("report", "Build the HTML report from replay/FGD outputs");
  rep->add_option("--replay", r->first, "A replay's metrics.json");
  rep->add_option("--fgd", *fgd, "FGD experiment output folder (alloc.csv)");
  rep->add_option("--out", r->second, "The HTML file to write")->required();
  rep->callback([r, fgd, &exit_code]() {
    nlohmann::ordered_json m;
    if (!r->first.empty()) {
      auto text = sim::ReadWholeFile(r->first);
      if (!text.ok()) exit_code = Fail(text.status().message());
      if (!text.ok()) return;
      m = nlohmann::ordered_json::parse(*text, nullptr, false);
      if (m.is_discarded()) {
        exit_code = Fail(r->first + ": not valid JSON");
        return;
      }
    }
    auto html = sim::BuildReport(m, fgd->empty() ? "" : *fgd + "/alloc.csv");
    if (!html.ok()) {
      exit_code = Fail(html.status().message());
      return;
    }
    if (core::Status s = sim::WriteText(r->second, *html); !s.ok()) {
      exit_code = Fail(s.message());
      return;
    }
    exit_code = 0;
  });
}

}  // namespace gpuorch::cli
