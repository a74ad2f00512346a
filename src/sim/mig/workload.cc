#include "sim/mig/workload.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/rng.h"

namespace gpuorch::sim::mig {
namespace {

using core::Status;

Status Range(const char* field, double v, double lo, double hi) {
  if (!(v >= lo && v <= hi)) {
    char b[160];
    std::snprintf(b, sizeof b, "%s: must be in [%g, %g], got %g", field, lo, hi, v);
    return Status::Invalid(b);
  }
  return Status::Ok();
}

double Uniform01(core::Rng& r) { return static_cast<double>(r.Next() >> 11) * 0x1.0p-53; }

}  // namespace

Status MigConfig::Validate() const {
  const Status checks[] = {
      Range("hours", hours, 1, 168),
      Range("window_s", window_s, 10, 3600),
      Range("peak_7b", peak[k7b], 0, 10000),
      Range("peak_13b", peak[k13b], 0, 10000),
      Range("peak_70b", peak[k70b], 0, 10000),
      Range("notebooks_peak", notebooks_peak, 0, 10000),
      Range("notebook_mean_min", notebook_mean_min, 1, 24 * 60),
      Range("reconfig_delay_s", reconfig_delay_s, 0, 600),
      Range("static_whole_gpus", static_whole_gpus, -1, 100000),
      Range("gpus_per_node", gpus_per_node, 1, core::kMaxGpusPerNode),
      Range("pool_gpus", pool_gpus, 1, 100000),
      Range("wait_bound_s", wait_bound_s, 0, 86400),
      Range("max_late_fraction", max_late_fraction, 0, 1),
  };
  for (const Status& c : checks) {
    if (!c.ok()) return c;
  }
  if (peak[k7b] + peak[k13b] + peak[k70b] + notebooks_peak == 0) {
    return Status::Invalid("peak_7b, peak_13b, peak_70b, notebooks_peak: all zero");
  }
  if (Status s = envelope.Validate(); !s.ok()) return s;
  return Status::Ok();
}

core::Result<Workload> BuildWorkload(const MigConfig& cfg, const platform::HourProfile& code,
                                     const platform::HourProfile& conv) {
  if (Status s = cfg.Validate(); !s.ok()) return s;
  Workload w;
  w.window_s = cfg.window_s;
  w.horizon_s = int64_t{cfg.hours} * 3600;
  const int32_t days = (cfg.hours + 23) / 24;
  const int64_t windows = (w.horizon_s + cfg.window_s - 1) / cfg.window_s;
  const platform::CapacityProfile cap = platform::DefaultLlama70bCapacity();
  const platform::HourProfile* source[3] = {&code, &conv, &conv};
  std::vector<int32_t> total(static_cast<size_t>(windows), 0);
  for (int k = 0; k < 3; ++k) {
    // Each class its own offsets: seed * 4 + k.
    auto d = platform::TileDemand(*source[k], cfg.envelope, 1.0, days, cfg.seed * 4 + k);
    if (!d.ok()) return d.status();
    std::vector<double> work(static_cast<size_t>(windows), 0);
    for (int64_t t = 0; t < w.horizon_s; ++t) {
      const auto i = static_cast<size_t>(t);
      work[static_cast<size_t>(t / cfg.window_s)] +=
          platform::ReplicaLoad(cap, d->prompt_tokens[i], d->output_tokens[i]);
    }
    const double peak_work = *std::max_element(work.begin(), work.end());
    std::vector<int32_t>& row = w.wanted[static_cast<size_t>(k)];
    row.resize(static_cast<size_t>(windows));
    for (size_t i = 0; i < row.size(); ++i) {
      row[i] = peak_work > 0 ? static_cast<int32_t>(std::ceil(
                                   cfg.peak[static_cast<size_t>(k)] * work[i] / peak_work - 1e-9))
                             : 0;
      total[i] += row[i] * TaskFor(Classes()[static_cast<size_t>(k)], Policy::kWhole).gpu_count;
    }
  }
  // Notebooks: thinning of a Poisson process at the peak rate.
  core::Rng rng(cfg.seed * 4 + 3);
  const double mean_s = cfg.notebook_mean_min * 60;
  const double peak_rate = cfg.notebooks_peak / mean_s;  // arrivals per second at the peak
  double t = 0;
  while (peak_rate > 0) {
    t += -std::log(1 - Uniform01(rng)) / peak_rate;
    if (t >= static_cast<double>(w.horizon_s)) break;
    const double keep = platform::EnvelopeFactor(cfg.envelope, static_cast<int64_t>(t));
    const double u = Uniform01(rng);
    const double len = -std::log(1 - Uniform01(rng)) * mean_s;
    if (u >= keep) continue;
    const auto start = static_cast<int64_t>(t);
    w.notebooks.push_back(
        {start, std::min(w.horizon_s, start + std::max<int64_t>(1, std::llround(len)))});
  }
  // Concurrent notebooks per window (the most at any start inside it, an upper bound).
  std::vector<int32_t> open(static_cast<size_t>(windows) + 1, 0);
  for (const Workload::Session& s : w.notebooks) {
    ++open[static_cast<size_t>(s.start_s / cfg.window_s)];
    --open[static_cast<size_t>((s.end_s + cfg.window_s - 1) / cfg.window_s)];
  }
  int32_t run = 0;
  for (size_t i = 0; i < total.size(); ++i) {
    run += open[i];
    w.peak_whole_gpus = std::max(w.peak_whole_gpus, total[i] + run);
  }
  return w;
}

core::Result<Workload> LoadWorkload(const MigConfig& cfg, const std::string& traces_dir) {
  const std::string dir = traces_dir + "/azure-llm-2023/";
  auto code = platform::ReadAzureTrace(dir + "AzureLLMInferenceTrace_code.csv");
  if (!code.ok()) return code.status();
  auto conv = platform::ReadAzureTrace(dir + "AzureLLMInferenceTrace_conv.csv");
  if (!conv.ok()) return conv.status();
  return BuildWorkload(cfg, *code, *conv);
}

}  // namespace gpuorch::sim::mig
