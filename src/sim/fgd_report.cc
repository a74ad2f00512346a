#include "sim/fgd_report.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "sim/fgd_stats.h"

namespace gpuorch::sim {

using core::Result;
using core::Status;

const std::vector<std::string>& AuthorWorkloads() {
  static const std::vector<std::string> kNames = {
      "openb_pod_list_default",    "openb_pod_list_cpu050",     "openb_pod_list_cpu100",
      "openb_pod_list_cpu200",     "openb_pod_list_cpu250",     "openb_pod_list_gpushare40",
      "openb_pod_list_gpushare60", "openb_pod_list_gpushare80", "openb_pod_list_gpushare100",
      "openb_pod_list_gpuspec10",  "openb_pod_list_gpuspec20",  "openb_pod_list_gpuspec25",
      "openb_pod_list_gpuspec33",  "openb_pod_list_multigpu20", "openb_pod_list_multigpu30",
      "openb_pod_list_multigpu40", "openb_pod_list_multigpu50"};
  return kNames;
}

std::string AuthorPolicyName(const std::string& policy) {
  static const std::map<std::string, std::string> kNames = {{"random", "01-Random"},
                                                            {"dotprod", "02-DotProd"},
                                                            {"gpuclustering", "03-GpuClustering"},
                                                            {"gpupacking", "04-GpuPacking"},
                                                            {"bestfit", "05-BestFit"},
                                                            {"fgd", "06-FGD"}};
  auto it = kNames.find(policy);
  return it == kNames.end() ? "" : it->second;
}

Result<FgdBatch> RunFgdBatch(const std::string& traces_dir,
                             const std::vector<std::string>& workloads,
                             const std::vector<std::string>& policies,
                             const std::vector<uint64_t>& seeds, int threads) {
  const std::string base = traces_dir + "/alibaba-v2023/";
  auto nodes = ReadOpenbNodes(base + "openb_node_list_gpu_node.csv");
  if (!nodes.ok()) return nodes.status();
  std::vector<FgdWorkload> prepared;
  for (const std::string& wname : workloads) {
    auto pods = ReadOpenbPods(base + wname + ".csv");
    if (!pods.ok()) return pods.status();
    prepared.push_back(PrepareWorkload(wname, nodes.value(), std::move(pods).value()));
  }
  FgdBatch batch;
  std::vector<size_t> workload_of;
  for (size_t w = 0; w < workloads.size(); ++w) {
    for (const std::string& p : policies) {
      for (uint64_t s : seeds) {
        batch.keys.push_back({workloads[w], p, s});
        workload_of.push_back(w);
      }
    }
  }
  const size_t n = batch.keys.size();
  batch.results.resize(n);
  batch.seconds.resize(n);
  std::vector<Status> errors(n);
  std::atomic<size_t> next{0};
  auto worker = [&]() {
    for (size_t i = next++; i < n; i = next++) {
      const auto start = std::chrono::steady_clock::now();
      auto r = RunFgd(prepared[workload_of[i]], batch.keys[i].policy, batch.keys[i].seed);
      batch.seconds[i] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (r.ok()) {
        batch.results[i] = std::move(r).value();
      } else {
        errors[i] = r.status();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::max(threads, 1); ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
  for (const Status& s : errors) {
    if (!s.ok()) return s;
  }
  return batch;
}

namespace {

std::vector<std::string> Split(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string cell;
  while (std::getline(ss, cell, ',')) out.push_back(cell);
  return out;
}

std::string Fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

std::string Centi(int64_t c) { return c < 0 ? "" : Fixed(static_cast<double>(c) / 100.0, 2); }

std::string SpreadJson(const SeedSpread& s) {
  return "{\"n\": " + std::to_string(s.n) + ", \"mean\": " + Fixed(s.mean, 3) +
         ", \"min\": " + Fixed(s.min, 3) + ", \"max\": " + Fixed(s.max, 3) +
         ", \"sd\": " + Fixed(s.sd, 3) + "}";
}

// The margins over FGD (paired by seed) as summary.json's "margins_vs_fgd" and a second
// table: a margin is quoted with its spread, and with how many seeds it won.
void AppendMargins(const FgdSpreads& spreads, std::string& json, std::string* table) {
  json += "  \"margins_vs_fgd\": [\n";
  char line[512];
  std::snprintf(line, sizeof(line), "\nmargin over fgd, paired by seed (points of allocation)\n");
  std::string text = line;
  std::snprintf(line, sizeof(line), "%-28s %-14s %5s %8s %6s %8s %8s %8s %6s %5s\n", "workload",
                "policy", "seeds", "mean100", "sd100", "mean130", "min130", "max130", "sd130",
                "wins");
  text += line;
  for (size_t i = 0; i < spreads.margins.size(); ++i) {
    const MarginSpread& m = spreads.margins[i];
    json += "    {\"workload\": \"" + m.workload + "\", \"policy\": \"" + m.policy +
            "\", \"at_100\": " + SpreadJson(m.at100) + ", \"at_130\": " + SpreadJson(m.at130) +
            ", \"wins_at_130\": " + std::to_string(m.wins130) + "}" +
            (i + 1 < spreads.margins.size() ? ",\n" : "\n");
    std::snprintf(line, sizeof(line),
                  "%-28s %-14s %5d %+8.2f %6.2f %+8.2f %+8.2f %+8.2f %6.2f %5d\n",
                  m.workload.c_str(), m.policy.c_str(), m.at130.n, m.at100.mean, m.at100.sd,
                  m.at130.mean, m.at130.min, m.at130.max, m.at130.sd, m.wins130);
    text += line;
  }
  json +=
      "  ],\n  \"gpuorch_minus_fgd_at_130_all_runs\": " + SpreadJson(spreads.gpuorch_all130) + "\n";
  const SeedSpread& g = spreads.gpuorch_all130;
  if (g.n > 0) {
    std::snprintf(line, sizeof(line),
                  "gpuorch - fgd at 130%%, all %d (workload, seed) pairs: mean %+.2f, min %+.2f, "
                  "max %+.2f, sd %.2f\n",
                  g.n, g.mean, g.min, g.max, g.sd);
    text += line;
  }
  if (table != nullptr) *table += text;
}

}  // namespace

Result<std::map<std::pair<std::string, std::string>, AuthorMeans>> ReadAuthorSummary(
    const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  std::stringstream ss(text.value());
  std::string line;
  std::getline(ss, line);
  const std::vector<std::string> header = Split(line);
  auto col = [&](const std::string& name) {
    return static_cast<int>(std::find(header.begin(), header.end(), name) - header.begin());
  };
  const int c100 = col("alloc_at_100pct_arrived"), c130 = col("alloc_at_130pct_arrived");
  if (c100 >= static_cast<int>(header.size()) || c130 >= static_cast<int>(header.size())) {
    return Status::Invalid(path + ":1: missing alloc_at_100pct_arrived/alloc_at_130pct_arrived");
  }
  std::map<std::pair<std::string, std::string>, AuthorMeans> out;
  int line_no = 1;
  while (std::getline(ss, line)) {
    ++line_no;
    if (line.empty()) continue;
    const std::vector<std::string> f = Split(line);
    if (f.size() < header.size()) {
      return Status::Invalid(path + ":" + std::to_string(line_no) + ": too few fields");
    }
    char* end = nullptr;
    const double a100 = std::strtod(f[c100].c_str(), &end);
    const double a130 = std::strtod(f[c130].c_str(), &end);
    out[{f[0], f[1]}] = AuthorMeans{a100, a130};
  }
  return out;
}

Status WriteFgdReport(const FgdBatch& batch, const std::string& traces_dir,
                      const std::string& out_dir, std::string* table) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return Status::Invalid(out_dir + ": cannot create: " + ec.message());
  std::string header;
  for (int k = 0; k < kBuckets; ++k) header += "," + std::to_string(k);
  std::string alloc = "workload,policy,seed,total_gpus" + header + "\n";
  std::string frag = "workload,policy,seed" + header + "\n";
  std::string ratio = frag;
  for (size_t i = 0; i < batch.keys.size(); ++i) {
    const FgdRunKey& key = batch.keys[i];
    const FgdRunResult& r = batch.results[i];
    const std::string id = key.workload + "," + key.policy + "," + std::to_string(key.seed);
    alloc += id + "," + std::to_string(r.total_gpus);
    frag += id;
    ratio += id;
    for (int k = 0; k < kBuckets; ++k) {
      alloc += "," + Centi(r.alloc_centi[k]);
      frag += "," + (r.alloc_centi[k] < 0 ? "" : Fixed(r.frag_pct[k], 2));
      ratio += "," + (r.alloc_centi[k] < 0 ? "" : Fixed(r.frag_ratio_pct[k], 4));
    }
    alloc += "\n";
    frag += "\n";
    ratio += "\n";
  }
  const FgdSpreads spreads = ComputeSpreads(batch);
  auto authors =
      ReadAuthorSummary(traces_dir + "/fgd-results/summary_gpu_alloc_pct_mean10seeds.csv");
  std::string json = "{\n  \"experiment\": \"fgd\",\n  \"arrival_ratio_percent\": 130,\n";
  json += "  \"rows\": [\n";
  char line[512];
  std::snprintf(line, sizeof(line), "%-28s %-14s %5s %8s %6s %8s %6s %8s %8s %7s %7s\n", "workload",
                "policy", "seeds", "ours100", "sd100", "ours130", "sd130", "auth100", "auth130",
                "d100", "d130");
  if (table != nullptr) *table = line;
  const std::vector<PolicySpread>& means = spreads.policies;
  for (size_t i = 0; i < means.size(); ++i) {
    const PolicySpread& m = means[i];
    const double o100 = m.at100.mean, o130 = m.at130.mean;
    json += "    {\"workload\": \"" + m.workload + "\", \"policy\": \"" + m.policy +
            "\", \"seeds\": " + std::to_string(m.at100.n) +
            ", \"alloc_at_100\": " + Fixed(o100, 3) + ", \"alloc_at_130\": " + Fixed(o130, 3) +
            ", \"alloc_at_100_spread\": " + SpreadJson(m.at100) +
            ", \"alloc_at_130_spread\": " + SpreadJson(m.at130);
    std::string a100 = "-", a130 = "-", d100 = "-", d130 = "-";
    const std::string author_policy = AuthorPolicyName(m.policy);
    if (authors.ok()) {
      auto it =
          authors.value().find({m.workload, author_policy.empty() ? "06-FGD" : author_policy});
      if (it != authors.value().end()) {
        const std::string label = author_policy.empty() ? "fgd_" : "";
        json += ", \"authors_" + label + "alloc_at_100\": " + Fixed(it->second.at100, 2) +
                ", \"authors_" + label + "alloc_at_130\": " + Fixed(it->second.at130, 2) +
                ", \"diff_" + label + "at_100\": " + Fixed(o100 - it->second.at100, 3) +
                ", \"diff_" + label + "at_130\": " + Fixed(o130 - it->second.at130, 3);
        a100 = Fixed(it->second.at100, 2);
        a130 = Fixed(it->second.at130, 2);
        d100 = Fixed(o100 - it->second.at100, 2);
        d130 = Fixed(o130 - it->second.at130, 2);
        if (author_policy.empty()) a100 = "fgd:" + a100, a130 = "fgd:" + a130;
      }
    }
    json += i + 1 < means.size() ? "},\n" : "}\n";
    std::snprintf(line, sizeof(line), "%-28s %-14s %5d %8.2f %6.2f %8.2f %6.2f %8s %8s %7s %7s\n",
                  m.workload.c_str(), m.policy.c_str(), m.at100.n, o100, m.at100.sd, o130,
                  m.at130.sd, a100.c_str(), a130.c_str(), d100.c_str(), d130.c_str());
    if (table != nullptr) *table += line;
  }
  json += "  ],\n";
  AppendMargins(spreads, json, table);
  json += "}\n";
  for (const auto& [name, content] :
       {std::pair<std::string, const std::string*>{"alloc.csv", &alloc},
        {"frag.csv", &frag},
        {"frag_ratio.csv", &ratio},
        {"summary.json", &json}}) {
    std::ofstream out(out_dir + "/" + name, std::ios::binary);
    out << *content;
    if (!out) return Status::Invalid(out_dir + "/" + name + ": write failed");
  }
  return Status::Ok();
}

}  // namespace gpuorch::sim
