// `gpuorch sim platform`: the mixed LLM platform experiment (docs/platform.md). Inference
// services, training gangs and experiments on one cluster under static partitions, one pool
// without autoscaling, and gpuorch; writes OUT/summary.json, OUT/timeline.csv and
// OUT/report.html and prints the headline table.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "sim/platform/config.h"
#include "sim/platform/experiment.h"

namespace gpuorch::cli {

namespace {

struct PlatformCliOptions {
  std::string config;
  std::string traces = "../shared/traces";
  std::string policy = "static,pool-no-autoscale,gpuorch";
  std::string out = "out/platform";
  int32_t days = 0;
  uint64_t seed = 0;
  bool seed_set = false;
  double peak_trough_ratio = 0;
  std::string command;
};

int Fail(const std::string& m) {
  std::fprintf(stderr, "error: %s\n", m.c_str());
  return 1;
}

int RunPlatformCommand(const PlatformCliOptions& o) {
  namespace sp = sim::platform;
  const auto t0 = std::chrono::steady_clock::now();
  core::Result<sp::PlatformConfig> loaded =
      o.config.empty() ? core::Result<sp::PlatformConfig>(sp::DefaultPlatformConfig())
                       : sp::LoadPlatformConfig(o.config);
  if (!loaded.ok()) return Fail(loaded.status().message());
  sp::PlatformConfig cfg = std::move(loaded).value();
  if (o.days > 0) cfg.days = o.days;
  if (o.seed_set) cfg.seed = o.seed;
  if (o.peak_trough_ratio > 0) cfg.inference.envelope.peak_trough_ratio = o.peak_trough_ratio;
  if (core::Status s = cfg.Validate(); !s.ok()) return Fail(s.message());
  std::vector<sp::Policy> policies;
  size_t start = 0;
  while (start <= o.policy.size()) {
    size_t c = o.policy.find(',', start);
    if (c == std::string::npos) c = o.policy.size();
    const std::string name = o.policy.substr(start, c - start);
    sp::Policy p;
    if (!sp::ParsePolicy(name, p)) {
      return Fail("--policy: unknown policy '" + name +
                  "' (static, pool-no-autoscale, gpuorch, comma-separated)");
    }
    if (std::find(policies.begin(), policies.end(), p) != policies.end()) {
      return Fail("--policy: '" + name + "' is listed twice");
    }
    policies.push_back(p);
    start = c + 1;
  }
  auto run = sp::RunPlatform(cfg, o.traces, policies);
  if (!run.ok()) {
    return Fail(run.status().message() + " (traces folder: --traces " + o.traces + ")");
  }
  if (core::Status s = sp::WriteOutputs(*run, o.command, o.out); !s.ok()) return Fail(s.message());
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s", sp::SummaryTable(sp::SummaryJson(*run, o.command)).c_str());
  std::printf(
      "%d days on %lld GPUs, %zu policies in %.2f s; wrote %s/{summary.json,timeline.csv,"
      "report.html}\n",
      cfg.days, static_cast<long long>(cfg.cluster.total_gpus()), policies.size(), wall,
      o.out.c_str());
  return 0;
}

}  // namespace

void AddPlatformCommand(CLI::App* sim, int& exit_code) {
  auto o = std::make_shared<PlatformCliOptions>();
  CLI::App* c = sim->add_subcommand(
      "platform",
      "The mixed LLM platform experiment: inference, training and experiments on one cluster, "
      "static partitions vs one pool vs gpuorch");
  c->add_option("--config", o->config, "platform.yaml (default: the shipped experiment)");
  c->add_option("--traces", o->traces, "Folder of the public traces")->capture_default_str();
  c->add_option("--days", o->days, "Simulated days (overrides the config)")
      ->check(CLI::Range(1, 366));
  c->add_option("--seed", o->seed, "Seed of the demand tiling and the experiments (overrides)")
      ->each([o](const std::string&) { o->seed_set = true; });
  c->add_option("--peak-trough-ratio", o->peak_trough_ratio,
                "Inference demand's weekday peak/trough ratio (overrides)")
      ->check(CLI::Range(1.0, 1000.0));
  c->add_option("--policy", o->policy, "static, pool-no-autoscale, gpuorch, comma-separated")
      ->capture_default_str();
  c->add_option("--out", o->out, "Output folder")->capture_default_str();
  c->callback([o, &exit_code]() {
    // The command as given, for summary.json and the report.
    o->command = "gpuorch sim platform";
    if (!o->config.empty()) o->command += " --config " + o->config;
    o->command += " --traces " + o->traces;
    if (o->days > 0) o->command += " --days " + std::to_string(o->days);
    if (o->seed_set) o->command += " --seed " + std::to_string(o->seed);
    if (o->peak_trough_ratio > 0) {
      char b[32];
      std::snprintf(b, sizeof b, "%g", o->peak_trough_ratio);
      o->command += std::string(" --peak-trough-ratio ") + b;
    }
    o->command += " --policy " + o->policy + " --out " + o->out;
    exit_code = RunPlatformCommand(*o);
  });
}

}  // namespace gpuorch::cli
