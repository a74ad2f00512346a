#include "sim/mig/experiment.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

namespace gpuorch::sim::mig {
namespace {

using core::Status;
using nlohmann::ordered_json;

double Round(double v, double unit) { return std::round(v / unit) * unit; }

ordered_json RunJson(const RunResult& r) {
  ordered_json j;
  j["pool_gpus"] = r.pool_gpus;
  ordered_json req, unp;
  for (int k = 0; k < kClasses; ++k) {
    req[std::string(Classes()[static_cast<size_t>(k)].name)] = r.requests[static_cast<size_t>(k)];
    unp[std::string(Classes()[static_cast<size_t>(k)].name)] = r.unplaced[static_cast<size_t>(k)];
  }
  j["requests"] = r.total_requests();
  j["requests_by_class"] = req;
  j["unplaced"] = r.total_unplaced();
  j["unplaced_by_class"] = unp;
  j["late"] = r.late;
  j["late_fraction"] = Round(r.late_fraction, 1e-5);
  j["wait_p50_s"] = Round(r.wait_p50_s, 1e-3);
  j["wait_p99_s"] = Round(r.wait_p99_s, 1e-3);
  j["reconfigs"] = r.reconfigs;
  j["reconfigs_per_hour"] = Round(r.reconfigs_per_hour, 0.01);
  j["peak_gpus_busy"] = r.peak_gpus_busy;
  j["mean_gpus_busy"] = Round(r.mean_gpus_busy, 0.01);
  j["max_tasks_per_gpu"] = r.max_tasks_per_gpu;
  j["mig_binds"] = r.mig_binds;
  j["cycles"] = r.cycles;
  return j;
}

}  // namespace

core::Result<MigRun> RunMigOn(const MigConfig& cfg, Workload workload,
                              const std::vector<Policy>& policies) {
  if (Status s = cfg.Validate(); !s.ok()) return s;
  MigRun run;
  run.config = cfg;
  run.workload = std::move(workload);
  run.outcomes.resize(policies.size());
  std::vector<Status> errors(policies.size(), Status::Ok());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < policies.size(); ++i) {
    threads.emplace_back([&run, &errors, &policies, i]() {
      PolicyOutcome& o = run.outcomes[i];
      o.policy = policies[i];
      auto needed = SearchGpusNeeded(run.workload, run.config, o.policy);
      if (!needed.ok()) {
        errors[i] = needed.status();
        return;
      }
      o.needed = *needed;
      auto fixed = RunPolicy(run.workload, run.config, o.policy, run.config.pool_gpus);
      if (!fixed.ok()) {
        errors[i] = fixed.status();
        return;
      }
      o.fixed = *fixed;
    });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < policies.size(); ++i) {
    if (!errors[i].ok()) {
      return Status::Invalid(std::string(ToString(policies[i])) + ": " + errors[i].message());
    }
  }
  return run;
}

core::Result<MigRun> RunMig(const MigConfig& cfg, const std::string& traces_dir,
                            const std::vector<Policy>& policies) {
  auto w = LoadWorkload(cfg, traces_dir);
  if (!w.ok()) return w.status();
  return RunMigOn(cfg, std::move(w).value(), policies);
}

ordered_json SummaryJson(const MigRun& run, const std::string& command) {
  const MigConfig& c = run.config;
  ordered_json j;
  j["command"] = command;
  j["config"] = {{"seed", c.seed},
                 {"hours", c.hours},
                 {"window_s", c.window_s},
                 {"peak_7b", c.peak[k7b]},
                 {"peak_13b", c.peak[k13b]},
                 {"peak_70b", c.peak[k70b]},
                 {"notebooks_peak", c.notebooks_peak},
                 {"notebook_mean_min", c.notebook_mean_min},
                 {"peak_trough_ratio", c.envelope.peak_trough_ratio},
                 {"reconfig_delay_s", c.reconfig_delay_s},
                 {"static_whole_gpus", c.static_whole_gpus},
                 {"gpus_per_node", c.gpus_per_node},
                 {"pool_gpus", c.pool_gpus},
                 {"wait_bound_s", c.wait_bound_s},
                 {"max_late_fraction", c.max_late_fraction},
                 {"gpu", std::string(kGpuModel)},
                 {"static_layout", std::string(kAllBalanced)}};
  ordered_json classes = ordered_json::array();
  const core::MigModel& m = *core::FindMigModel(kGpuModel);
  for (const ModelClass& cl : Classes()) {
    const int p = ProfileFor(cl);
    classes.push_back({{"name", std::string(cl.name)},
                       {"what", std::string(cl.what)},
                       {"memory_mib", MemoryNeedMib(cl)},
                       {"mig_compute", cl.mig_compute},
                       {"profile", p >= 0 ? std::string(m.profiles[static_cast<size_t>(p)].name)
                                          : std::string("none")},
                       {"whole_gpus", TaskFor(cl, Policy::kWhole).gpu_count},
                       {"timeslice_milli", TaskFor(cl, Policy::kTimeslice).gpu_milli},
                       {"fits_all_balanced", FitsAllBalanced(cl)}});
  }
  j["classes"] = classes;
  j["workload"] = {{"windows", run.workload.wanted[k7b].size()},
                   {"notebook_sessions", run.workload.notebooks.size()},
                   {"peak_whole_gpus", run.workload.peak_whole_gpus}};
  ordered_json pol;
  int32_t whole = -1;
  for (const PolicyOutcome& o : run.outcomes) {
    if (o.policy == Policy::kWhole) whole = o.needed.gpus;
  }
  for (const PolicyOutcome& o : run.outcomes) {
    ordered_json p;
    p["gpus_needed"] = o.needed.gpus;
    if (whole > 0 && o.needed.gpus > 0) {
      p["fewer_gpus_than_whole"] = Round(1.0 - static_cast<double>(o.needed.gpus) / whole, 1e-4);
    } else {
      p["fewer_gpus_than_whole"] = nullptr;
    }
    p["search_probes"] = o.needed.probes;
    p["at_gpus_needed"] = RunJson(o.needed.run);
    p["at_fixed_pool"] = RunJson(o.fixed);
    pol[ToString(o.policy)] = p;
  }
  j["policies"] = pol;
  j["anchor"] = {{"paper",
                  "Tan et al., Serving DNN Models with Multi-Instance GPUs: A Case of the "
                  "Reconfigurable Machine Scheduling Problem, arXiv 2109.11067"},
                 {"paper_claim", "up to 40% fewer GPUs than whole-GPU allocation"},
                 {"paper_fewer_gpus", 0.40}};
  return j;
}

std::string SummaryTable(const ordered_json& s) {
  const ordered_json& pol = s["policies"];
  std::string out;
  char b[256];
  auto row = [&](const char* name, auto cell) {
    std::snprintf(b, sizeof b, "%-38s", name);
    out += b;
    for (auto it = pol.begin(); it != pol.end(); ++it) {
      std::snprintf(b, sizeof b, " %14s", cell(it.value()).c_str());
      out += b;
    }
    out += "\n";
  };
  auto num = [](const ordered_json& v) {
    if (v.is_null()) return std::string("-");
    char t[64];
    if (v.is_number_integer()) {
      std::snprintf(t, sizeof t, "%lld", static_cast<long long>(v.get<int64_t>()));
    } else {
      std::snprintf(t, sizeof t, "%.4g", v.get<double>());
    }
    return std::string(t);
  };
  std::snprintf(b, sizeof b, "%-38s", "policy");
  out += b;
  for (auto it = pol.begin(); it != pol.end(); ++it) {
    std::snprintf(b, sizeof b, " %14s", it.key().c_str());
    out += b;
  }
  out += "\n";
  row("GPUs needed (search)", [&](const ordered_json& p) {
    return p["gpus_needed"].get<int>() < 0 ? std::string("not met") : num(p["gpus_needed"]);
  });
  row("  fewer GPUs than whole", [&](const ordered_json& p) {
    if (p["fewer_gpus_than_whole"].is_null()) return std::string("-");
    std::snprintf(b, sizeof b, "%.1f%%", 100 * p["fewer_gpus_than_whole"].get<double>());
    return std::string(b);
  });
  row("  late requests there, %", [&](const ordered_json& p) {
    std::snprintf(b, sizeof b, "%.2f", 100 * p["at_gpus_needed"]["late_fraction"].get<double>());
    return std::string(b);
  });
  row("  peak GPUs busy there",
      [&](const ordered_json& p) { return num(p["at_gpus_needed"]["peak_gpus_busy"]); });
  row("  reconfigurations/hour there",
      [&](const ordered_json& p) { return num(p["at_gpus_needed"]["reconfigs_per_hour"]); });
  std::snprintf(b, sizeof b, "at the fixed pool (%d GPUs):", s["config"]["pool_gpus"].get<int>());
  out += std::string(b) + "\n";
  row("  requests", [&](const ordered_json& p) { return num(p["at_fixed_pool"]["requests"]); });
  row("  never placed", [&](const ordered_json& p) { return num(p["at_fixed_pool"]["unplaced"]); });
  row("  late (> bound or never), %", [&](const ordered_json& p) {
    std::snprintf(b, sizeof b, "%.2f", 100 * p["at_fixed_pool"]["late_fraction"].get<double>());
    return std::string(b);
  });
  row("  wait p99, s",
      [&](const ordered_json& p) { return num(p["at_fixed_pool"]["wait_p99_s"]); });
  row("  peak / mean GPUs busy", [&](const ordered_json& p) {
    return num(p["at_fixed_pool"]["peak_gpus_busy"]) + " / " +
           num(p["at_fixed_pool"]["mean_gpus_busy"]);
  });
  row("  reconfigurations/hour",
      [&](const ordered_json& p) { return num(p["at_fixed_pool"]["reconfigs_per_hour"]); });
  return out;
}

Status WriteOutputs(const ordered_json& summary, const std::string& out_dir) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return Status::Invalid("--out " + out_dir + ": " + ec.message());
  std::ofstream f(out_dir + "/summary.json");
  f << summary.dump(2) << "\n";
  if (!f) return Status::Invalid("--out " + out_dir + ": cannot write summary.json");
  return Status::Ok();
}

core::Result<std::vector<Policy>> ParsePolicies(const std::string& text) {
  std::vector<Policy> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t c = text.find(',', start);
    if (c == std::string::npos) c = text.size();
    const std::string name = text.substr(start, c - start);
    Policy p;
    if (!ParsePolicy(name, p)) {
      return core::Status::Invalid("--policy: unknown policy '" + name +
                                   "' (whole, timeslice, static-mig, dynamic-mig, "
                                   "comma-separated)");
    }
    if (std::find(out.begin(), out.end(), p) != out.end()) {
      return core::Status::Invalid("--policy: '" + name + "' is listed twice");
    }
    out.push_back(p);
    start = c + 1;
  }
  return out;
}

core::Status ValidateFlags(const MigConfig& cfg) {
  core::Status s = cfg.Validate();
  if (s.ok()) return s;
  std::string m = s.message();
  const size_t colon = m.find(": ");
  if (colon == std::string::npos) return s;
  std::string fields = m.substr(0, colon);
  if (fields.rfind("envelope.", 0) == 0) fields = fields.substr(9);
  std::string flags = "--";
  for (char ch : fields) {
    if (ch == '_') {
      flags += '-';
    } else if (ch == ' ') {
      flags += " --";
    } else {
      flags += ch;
    }
  }
  return core::Status::Invalid(flags + m.substr(colon));
}

}  // namespace gpuorch::sim::mig
