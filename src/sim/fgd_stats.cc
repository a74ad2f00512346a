#include "sim/fgd_stats.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace gpuorch::sim {

SeedSpread Spread(const std::vector<double>& values) {
  SeedSpread s;
  s.n = static_cast<int>(values.size());
  if (values.empty()) return s;
  s.min = *std::min_element(values.begin(), values.end());
  s.max = *std::max_element(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / s.n;
  if (s.n > 1) {
    double ss = 0;
    for (double v : values) ss += (v - s.mean) * (v - s.mean);
    s.sd = std::sqrt(ss / (s.n - 1));
  }
  return s;
}

namespace {

double Pct(int64_t centi) { return static_cast<double>(centi) / 100.0; }

}  // namespace

FgdSpreads ComputeSpreads(const FgdBatch& batch) {
  FgdSpreads out;
  // (workload, policy) -> seed -> {alloc at 100, at 130} in hundredths of a percent, and the
  // first-seen order of the pairs so that the output follows the batch.
  std::map<std::pair<std::string, std::string>, std::map<uint64_t, std::pair<int64_t, int64_t>>>
      runs;
  std::vector<std::pair<std::string, std::string>> order;
  for (size_t i = 0; i < batch.keys.size(); ++i) {
    const FgdRunKey& k = batch.keys[i];
    auto [it, fresh] = runs.try_emplace({k.workload, k.policy});
    if (fresh) order.push_back({k.workload, k.policy});
    it->second[k.seed] = {batch.results[i].alloc_centi[100], batch.results[i].alloc_centi[130]};
  }
  std::vector<double> gpuorch_all;
  for (const auto& key : order) {
    const auto& per_seed = runs[key];
    PolicySpread p{key.first, key.second, {}, {}, {}};
    std::vector<double> a100, a130;
    for (const auto& [seed, a] : per_seed) {
      p.seeds.push_back(seed);
      a100.push_back(Pct(a.first));
      a130.push_back(Pct(a.second));
    }
    p.at100 = Spread(a100);
    p.at130 = Spread(a130);
    out.policies.push_back(std::move(p));
    if (key.second == "fgd") continue;
    auto fgd = runs.find({key.first, "fgd"});
    if (fgd == runs.end()) continue;
    MarginSpread m{key.first, key.second, {}, {}, 0};
    std::vector<double> d100, d130;
    for (const auto& [seed, a] : per_seed) {
      auto f = fgd->second.find(seed);
      if (f == fgd->second.end()) continue;
      d100.push_back(Pct(a.first - f->second.first));
      d130.push_back(Pct(a.second - f->second.second));
      if (a.second > f->second.second) ++m.wins130;
      if (key.second == "gpuorch") gpuorch_all.push_back(d130.back());
    }
    m.at100 = Spread(d100);
    m.at130 = Spread(d130);
    out.margins.push_back(std::move(m));
  }
  out.gpuorch_all130 = Spread(gpuorch_all);
  return out;
}

}  // namespace gpuorch::sim
