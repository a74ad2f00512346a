// `gpuorch sim ...`: the simulator's experiments. `sim fgd` replays the FGD (ATC'23)
// placement experiment on the Alibaba openb traces (shared/traces/FGD-PROTOCOL.md).
#include <charconv>
#include <cstdio>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "sched/policy.h"
#include "sim/fgd_report.h"

namespace gpuorch::cli {

namespace {

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

bool ParseU64(const std::string& s, uint64_t& v) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// "42-51", "42,45" or a mix ("42-44,50"). Empty on a malformed list.
std::vector<uint64_t> ParseSeeds(const std::string& s) {
  std::vector<uint64_t> out;
  for (const std::string& part : SplitList(s)) {
    const size_t dash = part.find('-');
    uint64_t a = 0, b = 0;
    if (dash == std::string::npos) {
      if (!ParseU64(part, a)) return {};
      out.push_back(a);
    } else {
      if (!ParseU64(part.substr(0, dash), a) || !ParseU64(part.substr(dash + 1), b) || b < a ||
          b - a > 100000) {
        return {};
      }
      for (uint64_t x = a; x <= b; ++x) out.push_back(x);
    }
  }
  return out;
}

struct FgdOptions {
  std::string traces = "../shared/traces";
  std::string workload = "openb_pod_list_default";
  std::string policy = "all";
  std::string seeds = "42-51";
  std::string out = "out/fgd";
  int jobs = 0;
};

int RunFgdCommand(const FgdOptions& o) {
  std::vector<std::string> workloads =
      o.workload == "all" ? sim::AuthorWorkloads() : SplitList(o.workload);
  std::vector<std::string> policies =
      o.policy == "all" ? sched::PolicyNames() : SplitList(o.policy);
  const std::set<std::string> known(sched::PolicyNames().begin(), sched::PolicyNames().end());
  for (const std::string& p : policies) {
    if (!known.count(p)) {
      std::fprintf(stderr, "error: --policy: unknown policy '%s'\n", p.c_str());
      return 2;
    }
  }
  const std::vector<uint64_t> seeds = ParseSeeds(o.seeds);
  if (seeds.empty() || workloads.empty() || policies.empty()) {
    std::fprintf(stderr, "error: --seeds, --workload and --policy must name at least one\n");
    return 2;
  }
  const int jobs =
      o.jobs > 0 ? o.jobs : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto batch = sim::RunFgdBatch(o.traces, workloads, policies, seeds, jobs);
  if (!batch.ok()) {
    std::fprintf(stderr, "error: %s\n", batch.status().message().c_str());
    return 1;
  }
  std::string table;
  if (core::Status s = sim::WriteFgdReport(batch.value(), o.traces, o.out, &table); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    return 1;
  }
  double total = 0, slowest = 0;
  for (double t : batch.value().seconds) total += t, slowest = std::max(slowest, t);
  std::fputs(table.c_str(), stdout);
  std::fprintf(stdout, "%zu runs, %.2f s per run on average, slowest %.2f s; wrote %s\n",
               batch.value().seconds.size(),
               total / static_cast<double>(batch.value().seconds.size()), slowest, o.out.c_str());
  return 0;
}

}  // namespace

void RegisterSimCommands(CLI::App& app, int& exit_code) {
  CLI::App* sim_cmd = app.add_subcommand("sim", "Run simulator experiments on public traces");
  sim_cmd->require_subcommand(1);
  auto opts = std::make_shared<FgdOptions>();
  CLI::App* fgd = sim_cmd->add_subcommand(
      "fgd", "Replay the FGD (ATC'23) fragmentation experiment on the Alibaba openb traces");
  fgd->add_option("--traces", opts->traces, "Folder of the public traces")->capture_default_str();
  fgd->add_option("--workload", opts->workload,
                  "Pod-list name(s), comma-separated, or 'all' (the authors' 17)")
      ->capture_default_str();
  fgd->add_option("--policy", opts->policy, "Policy name(s), comma-separated, or 'all'")
      ->capture_default_str();
  fgd->add_option("--seeds", opts->seeds, "Seeds: 42-51, 42,45 or a mix")->capture_default_str();
  fgd->add_option("--out", opts->out, "Output folder (alloc.csv, frag.csv, summary.json)")
      ->capture_default_str();
  fgd->add_option("--jobs", opts->jobs, "Parallel runs (0 = one per core)")->capture_default_str();
  fgd->callback([opts, &exit_code]() { exit_code = RunFgdCommand(*opts); });
  AddReplayCommand(sim_cmd, exit_code);
  AddPlatformCommand(sim_cmd, exit_code);
  AddMigCommand(sim_cmd, exit_code);
}

}  // namespace gpuorch::cli
