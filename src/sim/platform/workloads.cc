// Training gangs from Philly and a Poisson stream of experiments (workloads.h).
#include "sim/platform/workloads.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/rng.h"

namespace gpuorch::sim::platform {

using core::Result;
using core::Status;

namespace {

constexpr int64_t kDayMs = 86400 * core::kSecond;

// Uniform in (0, 1).
double Unit(core::Rng& rng) {
  return (static_cast<double>(rng.Next() >> 11) + 0.5) / 9007199254740992.0;
}
double Exponential(core::Rng& rng, double mean) { return -std::log(Unit(rng)) * mean; }

}  // namespace

Result<Workloads> BuildWorkloads(const PlatformConfig& config, const Trace& philly,
                                 int32_t node_gpus, int64_t training_gpus) {
  const TrainingConfig& tc = config.training;
  const ExperimentsConfig& ec = config.experiments;
  const int64_t horizon = int64_t{config.total_days()} * kDayMs;
  Workloads w;
  if (node_gpus < 1) return Status::Invalid("cluster: nodes have no GPUs");

  // Training: the window of the trace that offers the wanted GPU time.
  const double want = tc.load * static_cast<double>(training_gpus) * static_cast<double>(horizon);
  const core::Time start = int64_t{tc.trace_start_day} * kDayMs;
  const core::Duration cap = int64_t{tc.max_duration_h} * 3600 * core::kSecond;
  struct Picked {
    size_t job;
    int32_t gpus;
    core::Duration work;
  };
  std::vector<Picked> picked;
  double offered = 0;
  core::Time last = start;
  for (size_t i = 0; i < philly.jobs.size() && offered < want; ++i) {
    const TraceJob& j = philly.jobs[i];
    const int32_t gpus = j.tasks * j.gpus_per_task;
    if (j.arrival < start || gpus < tc.min_gpus || j.duration <= 0) continue;
    const core::Duration work = std::min(j.duration, cap);
    const int32_t rounded =
        gpus <= node_gpus ? gpus : (gpus + node_gpus - 1) / node_gpus * node_gpus;
    picked.push_back({i, rounded, work});
    offered += static_cast<double>(rounded) * static_cast<double>(work);
    last = j.arrival;
  }
  if (picked.empty() || offered < want) {
    return Status::Invalid("training: the trace from day " + std::to_string(tc.trace_start_day) +
                           " holds " + std::to_string(static_cast<int64_t>(offered / 3.6e6)) +
                           " GPU-hours of jobs of at least " + std::to_string(tc.min_gpus) +
                           " GPUs, less than the " +
                           std::to_string(static_cast<int64_t>(want / 3.6e6)) +
                           " the week needs (lower training.load or trace_start_day)");
  }
  const double span = static_cast<double>(std::max<core::Time>(last - start, core::kSecond));
  w.compression = span / static_cast<double>(horizon);
  w.trace_first_day = static_cast<double>(start) / kDayMs;
  w.trace_last_day = static_cast<double>(last) / kDayMs;

  // Virtual clusters to teams: largest first, each to the team furthest below its share.
  std::map<uint32_t, double> vc_load;
  for (const Picked& p : picked) {
    vc_load[philly.jobs[p.job].tenant] += static_cast<double>(p.gpus) * static_cast<double>(p.work);
  }
  std::vector<std::pair<double, uint32_t>> vcs;
  for (const auto& [vc, load] : vc_load) vcs.emplace_back(-load, vc);
  std::sort(vcs.begin(), vcs.end());
  double share_sum = 0;
  for (const TeamConfig& t : tc.teams) share_sum += t.share;
  std::vector<double> team_load(tc.teams.size(), 0);
  std::map<uint32_t, uint32_t> team_of;
  for (const auto& [neg, vc] : vcs) {
    uint32_t best = 0;
    for (uint32_t t = 1; t < tc.teams.size(); ++t) {
      if (team_load[t] / tc.teams[t].share < team_load[best] / tc.teams[best].share) best = t;
    }
    team_of[vc] = best;
    team_load[best] -= neg;
  }
  for (const Picked& p : picked) {
    const TraceJob& j = philly.jobs[p.job];
    PlatformJob job;
    job.cls = JobClass::kTraining;
    job.team = team_of[j.tenant];
    job.arrival = static_cast<core::Time>(static_cast<double>(j.arrival - start) / w.compression);
    job.arrival = std::min(job.arrival, horizon - 1);
    job.work = p.work;
    job.tasks = p.gpus <= node_gpus ? 1 : p.gpus / node_gpus;
    job.gpus_per_task = p.gpus <= node_gpus ? p.gpus : node_gpus;
    w.jobs.push_back(job);
  }
  w.training_jobs = static_cast<int64_t>(w.jobs.size());
  w.training_offered_gpus = offered / static_cast<double>(horizon);

  // Experiments: durations from the trace's short single-GPU jobs.
  const core::Duration exp_cap = int64_t{ec.max_duration_h} * 3600 * core::kSecond;
  std::vector<core::Duration> durations;
  for (const TraceJob& j : philly.jobs) {
    if (j.tasks * j.gpus_per_task == 1 && j.duration > 0 && j.duration <= exp_cap) {
      durations.push_back(j.duration);
    }
  }
  if (durations.empty()) return Status::Invalid("experiments: the trace has no single-GPU jobs");
  double mean_work = 0;
  for (core::Duration d : durations) mean_work += static_cast<double>(d);
  mean_work /= static_cast<double>(durations.size());
  const double mean_gpus =
      ec.fractional_share * ec.fraction_milli / 1000.0 + (1 - ec.fractional_share);
  // Arrivals per millisecond that offer offered_gpus GPUs on average.
  const double rate = ec.offered_gpus / (mean_gpus * mean_work);
  core::Rng rng(config.seed * 0x9e3779b97f4a7c15ull + 11);
  double t = Exponential(rng, 1 / rate);
  double exp_offered = 0;
  while (t < static_cast<double>(horizon)) {
    PlatformJob job;
    job.cls = JobClass::kExperiment;
    job.arrival = static_cast<core::Time>(t);
    job.work = durations[rng.Uniform(durations.size())];
    if (Unit(rng) < ec.fractional_share) job.gpu_milli = ec.fraction_milli;
    if (Unit(rng) < ec.idle_tail_share) {
      job.idle_tail = std::max<core::Duration>(
          core::kSecond, static_cast<core::Duration>(
                             Exponential(rng, ec.idle_tail_mean_h * 3600 * core::kSecond)));
    }
    exp_offered += static_cast<double>(job.total_milli()) / 1000.0 * static_cast<double>(job.work);
    w.jobs.push_back(job);
    ++w.experiment_jobs;
    t += Exponential(rng, 1 / rate);
  }
  w.experiment_offered_gpus = exp_offered / static_cast<double>(horizon);
  std::stable_sort(w.jobs.begin(), w.jobs.end(), [](const PlatformJob& a, const PlatformJob& b) {
    return a.arrival < b.arrival;
  });
  return w;
}

}  // namespace gpuorch::sim::platform
