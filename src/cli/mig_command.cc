// `gpuorch sim mig`: the GPU partitioning experiment (docs/partitioning.md, "The experiment"). An
// inference-heavy mix on H100-80GB GPUs under whole GPUs, time-slicing, static MIG and
// gpuorch's dynamic MIG; writes OUT/summary.json and prints the table.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "sim/mig/experiment.h"

namespace gpuorch::cli {

namespace {

struct MigCliOptions {
  sim::mig::MigConfig cfg;
  std::string traces = "../shared/traces";
  std::string policy = "whole,timeslice,static-mig,dynamic-mig";
  std::string out = "out/mig";
  std::string command;
};

int Fail(const std::string& m) {
  std::fprintf(stderr, "error: %s\n", m.c_str());
  return 1;
}

int RunMigCommand(const MigCliOptions& o) {
  namespace sm = sim::mig;
  const auto t0 = std::chrono::steady_clock::now();
  if (core::Status s = sm::ValidateFlags(o.cfg); !s.ok()) return Fail(s.message());
  auto policies = sm::ParsePolicies(o.policy);
  if (!policies.ok()) return Fail(policies.status().message());
  auto run = sm::RunMig(o.cfg, o.traces, *policies);
  if (!run.ok())
    return Fail(run.status().message() + " (traces folder: --traces " + o.traces + ")");
  nlohmann::ordered_json summary = sm::SummaryJson(*run, o.command);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  summary["wall_s"] = std::round(wall * 1000) / 1000;
  if (core::Status s = sm::WriteOutputs(summary, o.out); !s.ok()) return Fail(s.message());
  std::printf("%s", sm::SummaryTable(summary).c_str());
  std::printf("%d h, %zu policies in %.2f s; wrote %s/summary.json\n", o.cfg.hours,
              policies->size(), wall, o.out.c_str());
  return 0;
}

}  // namespace

void AddMigCommand(CLI::App* sim, int& exit_code) {
  auto o = std::make_shared<MigCliOptions>();
  CLI::App* c = sim->add_subcommand(
      "mig",
      "The GPU partitioning experiment: 7B/13B/70B replicas and notebooks on H100s, whole GPUs "
      "vs time-slicing vs static MIG vs gpuorch's dynamic MIG");
  sim::mig::MigConfig& cfg = o->cfg;
  c->add_option("--traces", o->traces, "Folder of the public traces")->capture_default_str();
  c->add_option("--policy", o->policy, "whole, timeslice, static-mig, dynamic-mig, comma-separated")
      ->capture_default_str();
  c->add_option("--out", o->out, "Output folder")->capture_default_str();
  c->add_option("--seed", cfg.seed, "Seed of the demand tiling and the notebooks")
      ->capture_default_str();
  c->add_option("--hours", cfg.hours, "Simulated hours")->capture_default_str();
  c->add_option("--window-s", cfg.window_s, "Replica targets change once a window (s)")
      ->capture_default_str();
  c->add_option("--peak-7b", cfg.peak[sim::mig::k7b], "Peak 7B replicas")->capture_default_str();
  c->add_option("--peak-13b", cfg.peak[sim::mig::k13b], "Peak 13B replicas")->capture_default_str();
  c->add_option("--peak-70b", cfg.peak[sim::mig::k70b], "Peak 70B replicas")->capture_default_str();
  c->add_option("--notebooks-peak", cfg.notebooks_peak, "Concurrent notebooks at the peak")
      ->capture_default_str();
  c->add_option("--notebook-mean-min", cfg.notebook_mean_min, "Mean notebook session (min)")
      ->capture_default_str();
  c->add_option("--peak-trough-ratio", cfg.envelope.peak_trough_ratio,
                "Daily demand envelope's peak/trough ratio")
      ->capture_default_str();
  c->add_option("--reconfig-delay-s", cfg.reconfig_delay_s, "One MIG layout change (s)")
      ->capture_default_str();
  c->add_option("--static-whole-gpus", cfg.static_whole_gpus,
                "Static MIG: GPUs left whole for the 70B replicas (-1 = peak 70B)")
      ->capture_default_str();
  c->add_option("--gpus-per-node", cfg.gpus_per_node, "GPUs per node")->capture_default_str();
  c->add_option("--pool-gpus", cfg.pool_gpus, "The fixed pool (unplaced, reconfigurations)")
      ->capture_default_str();
  c->add_option("--wait-bound-s", cfg.wait_bound_s, "A request waiting longer is late (s)")
      ->capture_default_str();
  c->add_option("--max-late-fraction", cfg.max_late_fraction,
                "GPUs needed: the smallest pool with at most this fraction late")
      ->capture_default_str();
  c->callback([o, c, &exit_code]() {
    // The command as given (non-default options only), for summary.json.
    o->command = "gpuorch sim mig";
    for (const CLI::Option* opt : c->get_options()) {
      if (opt->count() == 0 || opt->get_name() == "--help") continue;
      o->command += " " + opt->get_name() + " " + opt->as<std::string>();
    }
    exit_code = RunMigCommand(*o);
  });
}

}  // namespace gpuorch::cli
