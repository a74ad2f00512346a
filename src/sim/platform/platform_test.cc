// The platform experiment: config, workloads, partitions, the driver on small hand-computed
// cases, the outputs, and one run on the real traces.
#include "sim/platform/platform.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sim/platform/config.h"
#include "sim/platform/experiment.h"
#include "sim/platform/report.h"
#include "sim/platform/workloads.h"

namespace gpuorch::sim::platform {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kHourMs = 3600 * core::kSecond;

fs::path TempDir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("gpuorch_platform_" + std::to_string(getpid())) / name;
  fs::create_directories(d);
  return d;
}

// ---- config ----

TEST(PlatformConfig, DefaultsAreValidAndTheHeadlineSetup) {
  const PlatformConfig c = DefaultPlatformConfig();
  EXPECT_TRUE(c.Validate().ok()) << c.Validate().message();
  EXPECT_EQ(c.cluster.total_gpus(), 512);
  EXPECT_EQ(c.cluster.nodes.size(), 64u);
  EXPECT_EQ(c.cluster.nodes[8].rack, "rack-1");  // racks of 8
  EXPECT_EQ(c.days, 7);
  ASSERT_EQ(c.inference.services.size(), 2u);
  EXPECT_EQ(c.inference.services[0].name, "chat");
  EXPECT_EQ(c.inference.services[1].name, "code");
  EXPECT_EQ(c.inference.services[0].capacity.gpus_per_replica, 4);
  EXPECT_EQ(c.training.teams.size(), 2u);
}

TEST(PlatformConfig, FileOverridesDefaultsFieldByField) {
  const std::string text =
      "days: 3\n"
      "seed: 9\n"
      "inference:\n"
      "  envelope: {peak_trough_ratio: 5}\n"
      "  services:\n"
      "    - {name: a, trace: x.csv, rate_scale: 2, capacity: {gpus_per_replica: 8}}\n"
      "training:\n"
      "  teams: [{name: t1, share: 1}]\n"
      "experiments: {nodes: 2, max_wait_h: 1}\n";
  auto c = ParsePlatformConfig(text, "p.yaml", "");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->days, 3);
  EXPECT_EQ(c->seed, 9u);
  EXPECT_EQ(c->inference.envelope.peak_trough_ratio, 5);
  EXPECT_EQ(c->inference.envelope.weekend_factor, Envelope{}.weekend_factor);
  ASSERT_EQ(c->inference.services.size(), 1u);
  EXPECT_EQ(c->inference.services[0].capacity.gpus_per_replica, 8);
  // Capacity fields not given keep the default profile's.
  EXPECT_EQ(c->inference.services[0].capacity.prefill_tokens_per_s,
            DefaultLlama70bCapacity().prefill_tokens_per_s);
  EXPECT_EQ(c->experiments.nodes, 2);
  EXPECT_EQ(c->experiments.max_wait_h, 1);
  EXPECT_EQ(c->experiments.offered_gpus, ExperimentsConfig{}.offered_gpus);
}

TEST(PlatformConfig, ErrorsNameFileLineAndField) {
  struct Case {
    std::string text, error;
  };
  for (const Case& k : std::vector<Case>{
           {"dayz: 3\n", "p.yaml:1: dayz: unknown key"},
           {"days: 0\n", "p.yaml:1: days: must be in 1..366"},
           {"days: many\n", "p.yaml:1: days: not a valid value"},
           {"inference:\n  envelope: {peak_trough_ratio: 0.5}\n",
            "p.yaml:2: inference.envelope.peak_trough_ratio: must be a number in 1..1000"},
           {"inference:\n  services:\n    - {name: a}\n", "inference.services[0].trace: required"},
           {"inference:\n  services:\n    - {name: a, trace: t, capacity: {prefill: 1}}\n",
            "inference.services[0].capacity.prefill: unknown key"},
           {"training:\n  teams: [{name: a, share: 1}, {name: a, share: 1}]\n",
            "training.teams[1].name: must be non-empty and unique"},
           {"experiments: {fraction_milli: 1000}\n",
            "p.yaml:1: experiments.fraction_milli: must be in 1..999"},
           {"cluster: /nonexistent/cluster.yaml\n", "cluster: "},
           {"[1, 2]\n", "p.yaml:1"},
           {"days: 366\n", "p.yaml: days: days + warmup_days must be at most 366"},
           {"inference: {drain_s: -1}\n", "inference.drain_s: must be in 0..86400"},
           {"inference:\n  services:\n    - {name: a, trace: t, autoscale: {target: 0}}\n",
            "inference.services[0].autoscale.target: must be a number in"},
       }) {
    auto c = ParsePlatformConfig(k.text, "p.yaml", "");
    ASSERT_FALSE(c.ok()) << k.text;
    EXPECT_NE(c.status().message().find(k.error), std::string::npos)
        << k.text << " -> " << c.status().message();
  }
}

// A service's own knobs replace only the keys it gives: the inference-wide ones still reach
// it (the shipped `code` service keeps its target_utilization and follows the rest).
TEST(PlatformConfig, ServiceAutoscaleOverridesOnlyItsKeys) {
  auto c =
      ParsePlatformConfig("inference:\n  autoscale: {scale_down_delay_s: 120}\n", "p.yaml", "");
  ASSERT_TRUE(c.ok()) << c.status().message();
  const autoscale::ServiceParams chat = c->inference.services[0].Autoscale(c->inference);
  const autoscale::ServiceParams code = c->inference.services[1].Autoscale(c->inference);
  EXPECT_EQ(chat.scale_down_delay_s, 120);
  EXPECT_EQ(code.scale_down_delay_s, 120);
  EXPECT_EQ(chat.target_utilization, 0.9);
  EXPECT_EQ(code.target_utilization, 0.7);
}

TEST(PlatformConfig, ClusterFileIsRelativeToTheConfig) {
  const fs::path d = TempDir("cluster");
  std::ofstream(d / "c.yaml") << "node_groups:\n  - {name: n, count: 3, gpus: 8, model: A100}\n";
  std::ofstream(d / "p.yaml") << "cluster: c.yaml\n";
  auto c = LoadPlatformConfig((d / "p.yaml").string());
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->cluster.total_gpus(), 24);
}

// examples/platform/platform.yaml writes the defaults out: it must read back as them.
TEST(PlatformConfig, ShippedExampleIsTheDefaults) {
  auto c = LoadPlatformConfig(std::string(GPUORCH_SOURCE_DIR) + "/examples/platform/platform.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  const PlatformConfig d = DefaultPlatformConfig();
  EXPECT_EQ(c->days, d.days);
  EXPECT_EQ(c->warmup_days, d.warmup_days);
  EXPECT_EQ(c->seed, d.seed);
  EXPECT_EQ(c->cluster.total_gpus(), d.cluster.total_gpus());
  EXPECT_EQ(c->grace_period_s, d.grace_period_s);
  EXPECT_EQ(c->scheduling_period_s, d.scheduling_period_s);
  EXPECT_EQ(c->checkpoint_on_sigterm, d.checkpoint_on_sigterm);
  EXPECT_EQ(c->idle_reclaim_after_s, d.idle_reclaim_after_s);
  const InferenceConfig &a = c->inference, &b = d.inference;
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.startup_s, b.startup_s);
  EXPECT_EQ(a.drain_s, b.drain_s);
  EXPECT_EQ(a.envelope.peak_trough_ratio, b.envelope.peak_trough_ratio);
  EXPECT_EQ(a.envelope.weekend_factor, b.envelope.weekend_factor);
  EXPECT_EQ(a.envelope.peak_hour, b.envelope.peak_hour);
  EXPECT_EQ(a.envelope.start_weekday, b.envelope.start_weekday);
  auto same_params = [](const autoscale::ServiceParams& x, const autoscale::ServiceParams& y) {
    EXPECT_EQ(x.target, y.target);
    EXPECT_EQ(x.target_utilization, y.target_utilization);
    EXPECT_EQ(x.panic_threshold, y.panic_threshold);
    EXPECT_EQ(x.scale_down_delay_s, y.scale_down_delay_s);
    EXPECT_EQ(x.min_replicas, y.min_replicas);
    EXPECT_EQ(x.stable_window_s, y.stable_window_s);
    EXPECT_EQ(x.max_replicas, y.max_replicas);
  };
  same_params(a.autoscale, b.autoscale);
  ASSERT_EQ(a.services.size(), b.services.size());
  for (size_t i = 0; i < a.services.size(); ++i) {
    const ServiceConfig &x = a.services[i], &y = b.services[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.trace, y.trace);
    EXPECT_EQ(x.rate_scale, y.rate_scale);
    EXPECT_EQ(x.capacity.gpus_per_replica, y.capacity.gpus_per_replica);
    EXPECT_EQ(x.capacity.prefill_tokens_per_s, y.capacity.prefill_tokens_per_s);
    EXPECT_EQ(x.capacity.decode_tokens_per_s, y.capacity.decode_tokens_per_s);
    EXPECT_EQ(x.capacity.ttft_slo_s, y.capacity.ttft_slo_s);
    EXPECT_EQ(x.capacity.itl_slo_s, y.capacity.itl_slo_s);
    EXPECT_EQ(x.capacity.max_utilization, y.capacity.max_utilization);
    same_params(x.Autoscale(a), y.Autoscale(b));
  }
  const TrainingConfig &t = c->training, &u = d.training;
  EXPECT_EQ(t.trace, u.trace);
  EXPECT_EQ(t.trace_start_day, u.trace_start_day);
  EXPECT_EQ(t.load, u.load);
  EXPECT_EQ(t.max_duration_h, u.max_duration_h);
  EXPECT_EQ(t.min_gpus, u.min_gpus);
  EXPECT_EQ(t.priority, u.priority);
  ASSERT_EQ(t.teams.size(), u.teams.size());
  for (size_t i = 0; i < t.teams.size(); ++i) {
    EXPECT_EQ(t.teams[i].name, u.teams[i].name);
    EXPECT_EQ(t.teams[i].share, u.teams[i].share);
  }
  const ExperimentsConfig &e = c->experiments, &f = d.experiments;
  EXPECT_EQ(e.nodes, f.nodes);
  EXPECT_EQ(e.offered_gpus, f.offered_gpus);
  EXPECT_EQ(e.fractional_share, f.fractional_share);
  EXPECT_EQ(e.fraction_milli, f.fraction_milli);
  EXPECT_EQ(e.max_duration_h, f.max_duration_h);
  EXPECT_EQ(e.max_wait_h, f.max_wait_h);
  EXPECT_EQ(e.idle_tail_share, f.idle_tail_share);
  EXPECT_EQ(e.idle_tail_mean_h, f.idle_tail_mean_h);
  EXPECT_EQ(e.priority, f.priority);
  // The variants scripts/record-platform runs read too.
  for (const char* v : {"frontier-0.8", "frontier-0.85", "frontier-0.95", "period-20"}) {
    auto fr =
        LoadPlatformConfig(std::string(GPUORCH_SOURCE_DIR) + "/examples/platform/" + v + ".yaml");
    EXPECT_TRUE(fr.ok()) << v << ": " << fr.status().message();
  }
}

// ---- a small hand-made world ----

// n nodes of 8 GPUs, one service whose replicas take a whole node, one team.
PlatformConfig SmallConfig(int32_t nodes) {
  PlatformConfig c = DefaultPlatformConfig();
  c.days = 1;
  c.warmup_days = 0;
  c.cluster.groups[0].count = nodes;
  EXPECT_TRUE(c.cluster.Expand().ok());
  CapacityProfile cap = DefaultLlama70bCapacity();
  cap.gpus_per_replica = 8;
  c.inference.services = {{"svc", "unused.csv", 1, cap, {}}};
  c.training.teams = {{"team", 1}};
  c.experiments.nodes = 1;
  return c;
}

// A service with the same load every second: `load` replica-seconds per second.
ServiceDemand ConstantDemand(const PlatformConfig& c, double load) {
  const CapacityProfile& cap = c.inference.services[0].capacity;
  Demand d;
  const size_t n = static_cast<size_t>(c.total_days()) * 86400;
  // Prompt tokens only: load = prompt / prefill.
  d.requests.assign(n, 1.0f);
  d.prompt_tokens.assign(n, static_cast<float>(load * cap.prefill_tokens_per_s));
  d.output_tokens.assign(n, 0.0f);
  return MakeServiceDemand("svc", cap, 0.9, d);
}

PlatformJob Job(JobClass cls, core::Time arrival, core::Duration work, int32_t tasks, int32_t gpus,
                int32_t milli = 1000) {
  PlatformJob j;
  j.cls = cls;
  j.arrival = arrival;
  j.work = work;
  j.tasks = tasks;
  j.gpus_per_task = gpus;
  j.gpu_milli = milli;
  return j;
}

TEST(PlatformCapacity, NeededReplicasPerMinuteFromTheMinutesMeanLoad) {
  PlatformConfig c = SmallConfig(4);
  const CapacityProfile& cap = c.inference.services[0].capacity;
  Demand d;
  d.requests.assign(120, 1.0f);
  d.prompt_tokens.assign(120, 0.0f);
  d.output_tokens.assign(120, 0.0f);
  // Minute 0: 30 s at 3.6 replica-seconds of prefill per second, then nothing: mean 1.8,
  // over rho_max 0.9 -> 2 replicas. Minute 1: decode at 0.45 -> 1 replica.
  for (size_t s = 0; s < 30; ++s)
    d.prompt_tokens[s] = static_cast<float>(3.6 * cap.prefill_tokens_per_s);
  for (size_t s = 60; s < 120; ++s)
    d.output_tokens[s] = static_cast<float>(0.45 * cap.decode_tokens_per_s);
  const ServiceDemand sd = MakeServiceDemand("svc", cap, 0.9, d);
  ASSERT_EQ(sd.needed.size(), 2u);
  EXPECT_EQ(sd.needed[0], 2);
  EXPECT_EQ(sd.needed[1], 1);
  EXPECT_EQ(sd.peak_needed, 2);
  EXPECT_DOUBLE_EQ(sd.requests[0], 60);
  EXPECT_NEAR(sd.load[0], 3.6, 1e-4);
}

TEST(PlatformPartitions, InferenceAtItsPeakTeamsSplitTheRest) {
  PlatformConfig c = DefaultPlatformConfig();
  std::vector<ServiceDemand> s(2);
  s[0].capacity.gpus_per_replica = 4, s[0].peak_needed = 27;  // 2 per node -> 14 nodes
  s[1].capacity.gpus_per_replica = 4, s[1].peak_needed = 10;  // 5 nodes
  auto p = PlanPartitions(c, s);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->service_nodes, (std::vector<int32_t>{14, 5}));
  EXPECT_EQ(p->experiment_nodes, 8);
  // 64 - 19 - 8 = 37 nodes at 0.55 / 0.45: 20.35 and 16.65 -> 20 and 17.
  EXPECT_EQ(p->team_nodes, (std::vector<int32_t>{20, 17}));
  s[0].peak_needed = 100;  // 50 + 5 nodes: 1 left for 2 teams
  auto too_many = PlanPartitions(c, s);
  ASSERT_FALSE(too_many.ok());
  EXPECT_NE(too_many.status().message().find("inference needs 55 at its peak"), std::string::npos)
      << too_many.status().message();
  s[0].peak_needed = 200;  // more nodes than the cluster has
  auto too_big = PlanPartitions(c, s);
  ASSERT_FALSE(too_big.ok());
  EXPECT_NE(too_big.status().message().find("needs 100 nodes, more than the cluster's 64"),
            std::string::npos)
      << too_big.status().message();
}

// The same small world under every policy: 4 nodes; the service needs one replica (one
// node) all day; one training gang of 2 x 8 GPUs for an hour; two 1-GPU experiments for 2 h.
TEST(PlatformRun, SmallWorldHandComputed) {
  PlatformConfig c = SmallConfig(4);
  Workloads w;
  w.jobs = {Job(JobClass::kTraining, 0, kHourMs, 2, 8),
            Job(JobClass::kExperiment, 0, 2 * kHourMs, 1, 1),
            Job(JobClass::kExperiment, 0, 2 * kHourMs, 1, 1)};
  auto run = RunPlatformOn(c, {ConstantDemand(c, 0.5)}, w,
                           {Policy::kStatic, Policy::kPoolNoAutoscale, Policy::kGpuorch});
  ASSERT_TRUE(run.ok()) << run.status().message();
  EXPECT_EQ(run->partitions.service_nodes, std::vector<int32_t>{1});
  EXPECT_EQ(run->partitions.team_nodes, std::vector<int32_t>{2});
  const auto summary = SummaryJson(*run, "test")["summary"];
  // Capacity 32 GPUs x 24 h = 768 GPU-hours. Used: the replica 8 x 24 (all needed), the gang
  // 16 x 1, the experiments 2 x 2: 212. Idle: 556 = 72.396%, nothing of it while work waited.
  for (const char* p : {"static", "pool-no-autoscale", "gpuorch"}) {
    SCOPED_TRACE(p);
    const auto& s = summary[p];
    EXPECT_NEAR(s["idle_gpu_hours_pct"].get<double>(), 100.0 * 556 / 768, 0.01);
    EXPECT_EQ(s["idle_while_waiting_pct"].get<double>(), 0);
    EXPECT_EQ(s["inference_overprovisioned_pct"].get<double>(), 0);
    EXPECT_EQ(s["inference_slo_minutes_pct"].get<double>(), 100);
    EXPECT_EQ(s["requests_waiting_pct"].get<double>(), 0);
    EXPECT_EQ(s["replica_minutes"].get<double>(), 1440);
    EXPECT_EQ(s["training_finished"].get<int64_t>(), 1);
    EXPECT_EQ(s["training_jct_mean_s"].get<double>(), 3600);
    EXPECT_EQ(s["training_delay_p95_s"].get<double>(), 0);
    EXPECT_EQ(s["experiment_gpu_hours"].get<double>(), 4);
    EXPECT_EQ(s["experiments_finished"].get<int64_t>(), 2);
  }
}

// A gang larger than its team's partition: infeasible under static, run on borrowed GPUs in
// the pool. Experiments that borrowed the team's guarantee are reclaimed with grace.
TEST(PlatformRun, PoolRunsWhatAPartitionCannotHold) {
  PlatformConfig c = SmallConfig(4);
  Workloads w;
  w.jobs = {Job(JobClass::kExperiment, 0, 10 * kHourMs, 1, 1),
            Job(JobClass::kTraining, kHourMs, kHourMs, 3, 8)};
  auto run = RunPlatformOn(c, {ConstantDemand(c, 0.5)}, w, {Policy::kStatic, Policy::kGpuorch});
  ASSERT_TRUE(run.ok()) << run.status().message();
  const auto summary = SummaryJson(*run, "test")["summary"];
  EXPECT_EQ(summary["static"]["training_infeasible"].get<int64_t>(), 1);
  EXPECT_EQ(summary["static"]["training_finished"].get<int64_t>(), 0);
  EXPECT_EQ(summary["gpuorch"]["training_finished"].get<int64_t>(), 1);
  // 3 whole nodes: the team's 2 and the experiments' node, where the experiment runs within
  // its queue's guarantee (not reclaimable), so the gang borrows that node when it ends at
  // 10 h: a JCT of 10 h, and nothing preempted.
  EXPECT_EQ(summary["gpuorch"]["training_jct_mean_s"].get<double>(), 36000);
  EXPECT_EQ(summary["gpuorch"]["preemptions"].size(), 0u);
}

// The autoscaler follows a step: the service needs 1 replica, then 3 from hour 6 on. New
// replicas are Ready `startup_s` after they are bound, so a few minutes miss the SLO.
TEST(PlatformRun, AutoscaledServiceFollowsAStep) {
  PlatformConfig c = SmallConfig(8);
  c.experiments.nodes = 1;
  const CapacityProfile& cap = c.inference.services[0].capacity;
  Demand d;
  const size_t n = 86400;
  d.requests.assign(n, 1.0f);
  d.prompt_tokens.assign(n, 0.0f);
  d.output_tokens.assign(n, 0.0f);
  for (size_t s = 0; s < n; ++s) {
    const double load = s < 6 * 3600 ? 0.5 : 2.5;  // needed 1, then 3 (2.5 / 0.9)
    d.prompt_tokens[s] = static_cast<float>(load * cap.prefill_tokens_per_s);
  }
  auto run = RunPlatformOn(c, {MakeServiceDemand("svc", cap, 0.9, d)}, Workloads{},
                           {Policy::kPoolNoAutoscale, Policy::kGpuorch});
  ASSERT_TRUE(run.ok()) << run.status().message();
  const PolicyResult& fixed = run->results[0];
  const PolicyResult& auto_ = run->results[1];
  EXPECT_EQ(fixed.ready[0][0], 3);  // the peak, from the start
  EXPECT_EQ(fixed.slo_minutes, 1440);
  EXPECT_EQ(auto_.ready[0][6 * 60 - 1], 1);
  // Desired after the step: ceil(2.5 / 0.9 / 0.75) = 4 replicas, Ready within the stable
  // window plus startup.
  const int64_t settle =
      6 * 60 + (c.inference.autoscale.stable_window_s + c.inference.startup_s) / 60 + 2;
  EXPECT_EQ(auto_.ready[0][static_cast<size_t>(settle)], 4);
  EXPECT_LT(auto_.slo_minutes, 1440);
  EXPECT_GE(auto_.slo_minutes, 1440 - (settle - 6 * 60));
  // Before the step it held one replica (8 GPUs) where the fixed policy held three; after
  // it, four (its target utilization leaves headroom over the need of three).
  EXPECT_EQ(auto_.held[0][100], 8);
  EXPECT_EQ(fixed.held[0][100], 24);
  EXPECT_EQ(auto_.held[0][1000], 32);
}

TEST(PlatformRun, DeterministicOutputs) {
  PlatformConfig c = SmallConfig(4);
  Workloads w;
  for (int k = 0; k < 40; ++k) {
    w.jobs.push_back(Job(JobClass::kExperiment, k * 600 * core::kSecond, 3 * kHourMs, 1, 1,
                         k % 3 == 0 ? 500 : 1000));
  }
  auto a = RunPlatformOn(c, {ConstantDemand(c, 0.5)}, w, {Policy::kStatic, Policy::kGpuorch});
  auto b = RunPlatformOn(c, {ConstantDemand(c, 0.5)}, w, {Policy::kStatic, Policy::kGpuorch});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(SummaryJson(*a, "x").dump(), SummaryJson(*b, "x").dump());
  EXPECT_EQ(TimelineCsv(*a), TimelineCsv(*b));
  // The experiments outgrow their one-node partition under static only.
  const auto s = SummaryJson(*a, "x")["summary"];
  EXPECT_GT(s["gpuorch"]["experiment_gpu_hours"].get<double>(),
            s["static"]["experiment_gpu_hours"].get<double>());
  EXPECT_GT(s["static"]["idle_while_waiting_pct"].get<double>(), 0);
  // The report takes the summary and the timeline.
  nlohmann::ordered_json input = SummaryJson(*a, "x");
  input["timeline"] = TimelineJson(*a, 600);
  EXPECT_TRUE(BuildPlatformReport(input).ok());
  // One row per policy and minute, and a header.
  const std::string csv = TimelineCsv(*a);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 2 * 1440);
}

// ---- workloads ----

TEST(PlatformWorkloads, TrainingWindowTeamsAndExperiments) {
  Trace t;
  const int64_t day = 86400 * core::kSecond;
  // Two VCs; 12-GPU jobs become 2 x 8 after rounding; 1-GPU jobs feed the experiments.
  for (int k = 0; k < 200; ++k) {
    TraceJob j;
    j.arrival = day + k * 3600 * core::kSecond;
    j.duration = 2 * kHourMs;
    j.tenant = t.Tenant(k % 4 == 0 ? "big" : "small");
    j.tasks = 1;
    j.gpus_per_task = k % 4 == 0 ? 12 : 1;
    t.jobs.push_back(j);
  }
  PlatformConfig c = DefaultPlatformConfig();
  c.days = 1;
  c.warmup_days = 0;
  c.training.trace_start_day = 1;
  c.training.min_gpus = 2;
  c.training.load = 0.5;
  c.experiments.offered_gpus = 10;
  auto w = BuildWorkloads(c, t, 8, 16);
  ASSERT_TRUE(w.ok()) << w.status().message();
  // Wanted: 0.5 x 16 GPUs x 24 h = 192 GPU-hours; each 12-GPU job is 16 x 2 = 32: six jobs,
  // the 6th arriving 20 trace hours after the window's start, scaled onto the day.
  EXPECT_EQ(w->training_jobs, 6);
  EXPECT_NEAR(w->compression, 20.0 / 24.0, 1e-9);
  int64_t training = 0;
  for (const PlatformJob& j : w->jobs) {
    if (j.cls != JobClass::kTraining) continue;
    ++training;
    EXPECT_EQ(j.tasks, 2);
    EXPECT_EQ(j.gpus_per_task, 8);
    EXPECT_EQ(j.team, 0u);  // one VC offers all training: to the team furthest below share
  }
  EXPECT_EQ(training, 6);
  // Experiments: Poisson at 10 GPUs / (E[gpus] x 2 h) per hour over 24 h, about 120 x 0.85^-1.
  const double mean_gpus = 0.3 * 0.5 + 0.7;
  const double expected = 10.0 / (mean_gpus * 2) * 24;
  EXPECT_NEAR(static_cast<double>(w->experiment_jobs), expected, 4 * std::sqrt(expected));
  for (const PlatformJob& j : w->jobs) {
    if (j.cls == JobClass::kExperiment) {
      EXPECT_EQ(j.work, 2 * kHourMs);
    }
  }
  for (size_t i = 1; i < w->jobs.size(); ++i) EXPECT_LE(w->jobs[i - 1].arrival, w->jobs[i].arrival);
  // Too little trace for the load asked: an error that says so.
  c.training.load = 4;
  c.days = 30;
  auto short_trace = BuildWorkloads(c, t, 8, 512);
  ASSERT_FALSE(short_trace.ok());
  EXPECT_NE(short_trace.status().message().find("lower training.load"), std::string::npos);
}

// ---- the real traces ----

std::string TracesDir() {
  if (const char* env = std::getenv("GPUORCH_TRACES"); env != nullptr && *env != '\0') return env;
#ifdef GPUORCH_TRACES_DIR
  return GPUORCH_TRACES_DIR;
#else
  return "";
#endif
}

// One day (and the warm-up) of the shipped experiment on the public traces: the outputs are
// written and the policies order as the experiment claims.
TEST(PlatformTraces, OneDayOfTheShippedExperiment) {
  const std::string dir = TracesDir();
  if (dir.empty() || !fs::exists(fs::path(dir) / "azure-llm-2023") ||
      !fs::exists(fs::path(dir) / "philly")) {
    GTEST_SKIP() << "shared traces not found (GPUORCH_TRACES_DIR / GPUORCH_TRACES)";
  }
  PlatformConfig c = DefaultPlatformConfig();
  c.days = 1;
  auto run = RunPlatform(c, dir, {Policy::kStatic, Policy::kPoolNoAutoscale, Policy::kGpuorch});
  ASSERT_TRUE(run.ok()) << run.status().message();
  const fs::path out = TempDir("traces");
  ASSERT_TRUE(WriteOutputs(*run, "gpuorch sim platform --days 1", out.string()).ok());
  for (const char* f : {"summary.json", "timeline.csv", "report.html"}) {
    EXPECT_TRUE(fs::exists(out / f)) << f;
  }
  std::ifstream in(out / "summary.json");
  const auto j = nlohmann::ordered_json::parse(in);
  const auto& s = j["summary"];
  for (const char* key :
       {"idle_gpu_hours_pct", "idle_while_waiting_pct", "inference_slo_minutes_pct",
        "training_jct_mean_s", "training_delay_p95_s", "experiment_gpu_hours"}) {
    EXPECT_TRUE(s["gpuorch"].contains(key)) << key;
  }
  EXPECT_EQ(s["static"]["inference_slo_minutes_pct"].get<double>(), 100);
  EXPECT_LT(s["gpuorch"]["idle_gpu_hours_pct"].get<double>(),
            s["pool-no-autoscale"]["idle_gpu_hours_pct"].get<double>());
  EXPECT_LT(s["pool-no-autoscale"]["idle_gpu_hours_pct"].get<double>(),
            s["static"]["idle_gpu_hours_pct"].get<double>());
  EXPECT_GT(s["gpuorch"]["experiment_gpu_hours"].get<double>(),
            s["static"]["experiment_gpu_hours"].get<double>());
  EXPECT_LT(s["gpuorch"]["replica_minutes"].get<double>(),
            s["pool-no-autoscale"]["replica_minutes"].get<double>());
}

}  // namespace
}  // namespace gpuorch::sim::platform
