#include "sim/replay/replay.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/rng.h"
#include "sim/replay/metrics.h"

namespace gpuorch::sim {
namespace {

using core::kSecond;

constexpr int64_t kGpuSecond = 1000 * kSecond;  // milli-GPU x ms in one GPU-second

// Two 4-GPU nodes, one owned by each of tenants a and b, each guaranteed 4 GPUs.
struct Toy {
  ClusterConfig cluster;
  QueuesConfig queues;
  Trace trace;

  Toy() {
    cluster.groups = {NodeGroup{"na", 1, 4, "gpu", 16384, 64000, 1 << 19, "a", "", ""},
                      NodeGroup{"nb", 1, 4, "gpu", 16384, 64000, 1 << 19, "b", "", ""}};
    EXPECT_TRUE(cluster.Expand().ok());
    queues.queues = {TenantQueue{"a", 4000}, TenantQueue{"b", 4000}};
    trace.name = "toy";
    // a submits 4-GPU jobs at 0 and 1 s; b one at 50 s. All run 100 s.
    Add(0, "a");
    Add(1, "a");
    Add(50, "b");
  }
  void Add(int64_t at_s, const std::string& tenant) {
    TraceJob j;
    j.name = "j" + std::to_string(trace.jobs.size() + 1);
    j.arrival = at_s * kSecond;
    j.duration = 100 * kSecond;
    j.gpus_per_task = 4;
    j.tenant = trace.Tenant(tenant);
    trace.jobs.push_back(j);
  }
  ReplayResult Run(ReplayPolicy p) {
    ReplayOptions o;
    o.policy = p;
    o.grace_period = 30 * kSecond;
    auto r = RunReplay(trace, cluster, queues, o);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::move(r).value() : ReplayResult{};
  }
};

// The expected numbers are worked out by hand in the comments.
TEST(Replay, StaticPartitionsLeaveIdleGpusWhileWorkWaits) {
  Toy toy;
  ReplayResult r = toy.Run(ReplayPolicy::kStatic);
  // a's second job waits for a's own node (1..100 s) while b's node idles 1..50 s.
  EXPECT_EQ(r.jobs[0].first_start, 0);
  EXPECT_EQ(r.jobs[1].first_start, 100 * kSecond);
  EXPECT_EQ(r.jobs[1].finish, 200 * kSecond);
  EXPECT_EQ(r.jobs[2].first_start, 50 * kSecond);
  EXPECT_EQ(r.end, 200 * kSecond);
  EXPECT_EQ(r.idle_while_waiting, 4 * 49 * kGpuSecond);
  EXPECT_EQ(r.busy, (4 * 50 + 8 * 100 + 4 * 50) * kGpuSecond);
  EXPECT_EQ(r.preemptions, 0);
  // b's job was in quota and started at once; a's second job was never in quota.
  for (const JobOutcome& j : r.jobs) EXPECT_FALSE(j.violated);
}

TEST(Replay, FifoPoolUsesIdleGpusButBreaksGuarantees) {
  Toy toy;
  ReplayResult r = toy.Run(ReplayPolicy::kFifo);
  EXPECT_EQ(r.jobs[1].first_start, 1 * kSecond);  // borrows b's idle node
  EXPECT_EQ(r.jobs[2].first_start, 100 * kSecond);
  EXPECT_EQ(r.idle_while_waiting, 0);
  // b's job is within b's guarantee from 50 s but waits 50 s > 30 s grace.
  EXPECT_TRUE(r.jobs[2].violated);
  EXPECT_EQ(r.jobs[2].entitled_wait, 50 * kSecond);
}

TEST(Replay, GpuorchLendsThenReclaimsWithinTheGracePeriod) {
  Toy toy;
  ReplayResult r = toy.Run(ReplayPolicy::kGpuorch);
  // a borrows the second node at 1 s; b's job at 50 s reclaims it: one of a's jobs (the
  // engine may pick either, both leave a at its guarantee) gets 30 s of grace, keeps its
  // progress (checkpoint on SIGTERM) and restarts when a's other job ends.
  EXPECT_EQ(r.jobs[1].first_start, 1 * kSecond);
  ASSERT_EQ(r.jobs[0].preemptions + r.jobs[1].preemptions, 1);
  const size_t v = r.jobs[0].preemptions == 1 ? 0 : 1, other = 1 - v;
  EXPECT_EQ(r.jobs[other].finish, toy.trace.jobs[other].arrival + 100 * kSecond);
  const core::Duration kept = 50 * kSecond - toy.trace.jobs[v].arrival;
  EXPECT_EQ(r.jobs[v].finish, r.jobs[other].finish + 100 * kSecond - kept);
  EXPECT_EQ(r.jobs[2].first_start, 80 * kSecond);
  EXPECT_EQ(r.jobs[2].finish, 180 * kSecond);
  EXPECT_EQ(r.preemptions, 1);
  EXPECT_EQ(r.lost, 4 * 30 * kGpuSecond);
  EXPECT_EQ(r.idle_while_waiting, 0);
  for (const JobOutcome& j : r.jobs) EXPECT_FALSE(j.violated);
  EXPECT_EQ(r.jobs[2].entitled_wait, 30 * kSecond);
  EXPECT_EQ(r.end, std::max<core::Time>(180 * kSecond, r.jobs[v].finish));
}

TEST(Replay, RestartFromScratchLosesProgress) {
  Toy toy;
  ReplayOptions o;
  o.restart = RestartMode::kScratch;
  auto r = RunReplay(toy.trace, toy.cluster, toy.queues, o);
  ASSERT_TRUE(r.ok());
  const size_t v = r->jobs[0].preemptions == 1 ? 0 : 1, other = 1 - v;
  const core::Duration ran = 50 * kSecond - toy.trace.jobs[v].arrival;
  EXPECT_EQ(r->jobs[v].finish, r->jobs[other].finish + 100 * kSecond);  // runs it all again
  EXPECT_EQ(r->lost, 4 * (ran + 30 * kSecond) * 1000);
}

TEST(Replay, UnknownTenantAndInfeasibleJobs) {
  Toy toy;
  toy.Add(60, "nobody");
  auto bad = RunReplay(toy.trace, toy.cluster, toy.queues, ReplayOptions{});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tenant nobody"), std::string::npos);
  Toy big;
  big.trace.jobs[0].tasks = 3;  // 12 GPUs on an 8-GPU cluster (and a 4-GPU partition)
  for (ReplayPolicy p : {ReplayPolicy::kStatic, ReplayPolicy::kGpuorch}) {
    ReplayResult r = big.Run(p);
    EXPECT_TRUE(r.jobs[0].infeasible);
    EXPECT_EQ(r.jobs[1].first_start, big.trace.jobs[1].arrival);
  }
}

// What the engine is told of run times changes its plans: with exact estimates a short job
// that cannot be evicted backfills before a reserved gang (EASY backfill); with none it
// must wait; noisy estimates with f = 0 are exact. One 8-GPU node, one queue guaranteed
// more than all its jobs (so B's reservation is in quota and C may not take its GPUs by
// quota), nothing preemptible (so nothing borrows or is evicted):
//   A 4 GPUs at 0 s for 1000 s; B 8 GPUs at 1 s for 100 s (cannot start: the head-of-line
//   reservation, due when A ends); C 4 GPUs at 2 s for 500 s.
TEST(Replay, EstimateModeChangesWhatTheEngineSees) {
  ClusterConfig c;
  NodeGroup g;
  g.name = "n";
  c.groups = {g};
  ASSERT_TRUE(c.Expand().ok());
  QueuesConfig q;
  q.queues = {TenantQueue{"t", 16000}};
  Trace t;
  const int64_t kShape[][3] = {{0, 4, 1000}, {1, 8, 100}, {2, 4, 500}};  // at, GPUs, run (s)
  for (const auto& s : kShape) {
    TraceJob j;
    j.name = "j" + std::to_string(t.jobs.size());
    j.arrival = s[0] * kSecond;
    j.gpus_per_task = static_cast<int32_t>(s[1]);
    j.duration = s[2] * kSecond;
    j.preemptible = false;
    j.tenant = t.Tenant("t");
    t.jobs.push_back(j);
  }
  auto run = [&](EstimateOptions e) {
    ReplayOptions o;
    o.estimates = e;
    auto r = RunReplay(t, c, q, o);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::move(r).value() : ReplayResult{};
  };
  EstimateOptions exact, none, zero_noise, noisy;
  none.mode = EstimateMode::kNone;
  zero_noise.mode = noisy.mode = EstimateMode::kNoisy;
  zero_noise.f_permille = 0;
  const ReplayResult re = run(exact), rn = run(none), rz = run(zero_noise);
  // Exact: C ends at 502 s, before B's reservation is due at 1000 s, so it backfills.
  EXPECT_EQ(re.jobs[2].first_start, 2 * kSecond);
  EXPECT_EQ(re.jobs[1].first_start, 1000 * kSecond);
  // None: C's end is unknown, so it may not use B's reserved GPUs; it starts after B.
  EXPECT_EQ(rn.jobs[1].first_start, 1000 * kSecond);
  EXPECT_EQ(rn.jobs[2].first_start, 1100 * kSecond);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(rz.jobs[i].first_start, re.jobs[i].first_start) << i;
  }
  // Noisy runs are repeatable for a seed.
  const ReplayResult n1 = run(noisy), n2 = run(noisy);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(n1.jobs[i].first_start, n2.jobs[i].first_start) << i;
  // A bad model is refused, naming the field.
  EstimateOptions bad = noisy;
  bad.a_min_permille = 0;
  ReplayOptions o;
  o.estimates = bad;
  auto refused = RunReplay(t, c, q, o);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("estimates.a_min"), std::string::npos);
}

// A few hundred random jobs over a small cluster, to exercise preemption and reservations.
Trace RandomTrace(uint64_t seed, int n) {
  core::Rng rng(seed);
  Trace t;
  t.name = "random";
  core::Time at = 0;
  for (int i = 0; i < n; ++i) {
    TraceJob j;
    j.name = "r" + std::to_string(i);
    at += static_cast<core::Time>(rng.Uniform(60)) * kSecond;
    j.arrival = at;
    j.duration = static_cast<core::Duration>(60 + rng.Uniform(3600)) * kSecond;
    const int shape = static_cast<int>(rng.Uniform(10));
    j.gpus_per_task = shape < 6 ? 1 : shape < 8 ? 4 : 8;
    j.tasks = shape == 9 ? 2 : 1;
    j.tenant = t.Tenant(std::string(1, static_cast<char>('a' + rng.Uniform(3))));
    t.jobs.push_back(j);
  }
  t.Normalize();
  return t;
}

std::string MetricsText(const Trace& t, const ClusterConfig& c, const QueuesConfig& q) {
  ReplayRun run;
  run.trace_label = t.name;
  run.trace = &t;
  run.cluster = &c;
  run.queues = &q;
  for (ReplayPolicy p : {ReplayPolicy::kStatic, ReplayPolicy::kFifo, ReplayPolicy::kGpuorch}) {
    ReplayOptions o;
    o.policy = p;
    auto r = RunReplay(t, c, q, o);
    EXPECT_TRUE(r.ok()) << r.status().message();
    if (r.ok()) run.results.push_back(std::move(r).value());
  }
  const auto m = MetricsJson(run);
  const auto dir = std::filesystem::temp_directory_path() / "gpuorch_replay_det";
  EXPECT_TRUE(WriteMetrics(m, dir.string()).ok());
  std::ifstream in(dir / "metrics.json", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Replay, SameInputGivesByteIdenticalMetrics) {
  ClusterConfig c;
  c.rack_size = 2;
  NodeGroup g;
  g.name = "n";
  g.count = 6;
  c.groups = {g};
  ASSERT_TRUE(c.Expand().ok());
  QueuesConfig q;
  q.queues = {TenantQueue{"a", 24000}, TenantQueue{"b", 16000}, TenantQueue{"c", 8000}};
  const Trace t = RandomTrace(7, 400);
  const std::string first = MetricsText(t, c, q);
  const std::string second = MetricsText(t, c, q);
  EXPECT_GT(first.size(), 1000u);
  EXPECT_EQ(first, second);
  // And the pool beats the partitions on this load.
  auto m = nlohmann::json::parse(first);
  const auto& ps = m["policies"];
  EXPECT_LT(ps[2]["summary"]["idle_while_waiting_gpu_hours"].get<double>(),
            ps[0]["summary"]["idle_while_waiting_gpu_hours"].get<double>());
}

// A two-level tenant tree: org-a (teams a1, a2) and org-b (team b1), nothing guaranteed, so
// every job borrows and fair share alone orders them. 8 GPUs; each team submits four 1-GPU
// jobs of 100 s at t=0. Weights are relative to siblings: the orgs split the 8 GPUs 4:4
// first, then org-a splits its 4 between a1 and a2. Bind order (ties to the lower queue id;
// ids: org-a 0, a1 1, a2 2, org-b 3, b1 4), GPUs per org / per team:
//   org-a 0 = org-b 0 -> org-a; a1 0 = a2 0 -> a1.   org-b 0 < 1 -> b1.
//   1 = 1 -> org-a; a2 0 < a1 1 -> a2.                org-b 1 < 2 -> b1.
//   2 = 2 -> org-a; a1 1 = a2 1 -> a1.                org-b 2 < 3 -> b1.
//   3 = 3 -> org-a; a2 1 < a1 2 -> a2.                org-b 3 < 4 -> b1. 8 GPUs in use.
// So b1 runs 4 jobs at 0, a1 and a2 2 each; their other two start at 100 s. A flat fair
// share over the three teams would give a1 and a2 3 each and b1 only 2.
TEST(Replay, TwoLevelTreeSplitsBetweenOrgsThenTeams) {
  ClusterConfig c;
  NodeGroup g;
  g.name = "n";
  g.count = 2;
  g.gpus = 4;
  c.groups = {g};
  ASSERT_TRUE(c.Expand().ok());
  QueuesConfig q;
  q.queues = {TenantQueue{.name = "org-a"}, TenantQueue{.name = "a1", .parent = "org-a"},
              TenantQueue{.name = "a2", .parent = "org-a"}, TenantQueue{.name = "org-b"},
              TenantQueue{.name = "b1", .parent = "org-b"}};
  Trace t;
  t.name = "tree";
  for (const char* team : {"a1", "a2", "b1"}) {
    for (int k = 0; k < 4; ++k) {
      TraceJob j;
      j.name = std::string(team) + "-" + std::to_string(k);
      j.duration = 100 * kSecond;
      j.tenant = t.Tenant(team);
      t.jobs.push_back(j);
    }
  }
  ReplayOptions o;
  o.policy = ReplayPolicy::kGpuorch;
  auto r = RunReplay(t, c, q, o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  std::map<std::string, int> at_zero;
  for (size_t i = 0; i < t.jobs.size(); ++i) {
    const core::Time start = r->jobs[i].first_start;
    EXPECT_TRUE(start == 0 || start == 100 * kSecond) << t.jobs[i].name << " " << start;
    if (start == 0) ++at_zero[t.tenants[t.jobs[i].tenant]];
  }
  EXPECT_EQ(at_zero, (std::map<std::string, int>{{"a1", 2}, {"a2", 2}, {"b1", 4}}));
}

// The shipped two-level example (two organizations of two teams) runs under every policy.
TEST(Replay, ExampleQueueTreeRunsUnderEveryPolicy) {
  const std::string dir = std::string(GPUORCH_SOURCE_DIR) + "/examples/replay/";
  auto trace = ReadGenericTrace(dir + "jobs.csv");
  ASSERT_TRUE(trace.ok()) << trace.status().message();
  auto cluster = LoadClusterYaml(dir + "cluster.yaml");
  ASSERT_TRUE(cluster.ok()) << cluster.status().message();
  auto queues = LoadQueuesYaml(dir + "queues-tree.yaml");
  ASSERT_TRUE(queues.ok()) << queues.status().message();
  EXPECT_EQ(queues->queues[1].parent, "product");
  EXPECT_FALSE(queues->IsLeaf(0));
  EXPECT_TRUE(queues->IsLeaf(1));
  for (ReplayPolicy p : {ReplayPolicy::kStatic, ReplayPolicy::kFifo, ReplayPolicy::kGpuorch}) {
    ReplayOptions o;
    o.policy = p;
    auto r = RunReplay(*trace, *cluster, *queues, o);
    ASSERT_TRUE(r.ok()) << r.status().message();
    for (size_t i = 0; i < r->jobs.size(); ++i) {
      EXPECT_TRUE(r->jobs[i].finish >= 0 || r->jobs[i].infeasible) << int(p) << " job " << i;
    }
  }
  // A tenant must be a leaf: make `prod` a parent and the replay refuses the trace.
  QueuesConfig bad = *queues;
  bad.queues.push_back(TenantQueue{.name = "prod-sub", .parent = "prod"});
  ReplayOptions o;
  o.policy = ReplayPolicy::kGpuorch;
  auto r = RunReplay(*trace, *cluster, bad, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tenant prod: its queue has child queues"), std::string::npos)
      << r.status().message();
}

TEST(Metrics, PercentileAndJain) {
  EXPECT_EQ(Percentile({}, 50), 0);
  EXPECT_EQ(Percentile({1, 2, 3, 4}, 50), 2);
  EXPECT_EQ(Percentile({1, 2, 3, 4}, 51), 3);
  EXPECT_EQ(Percentile({1, 2, 3, 4}, 100), 4);
  EXPECT_EQ(Percentile({1, 2, 3, 4}, 0), 1);
  EXPECT_DOUBLE_EQ(JainIndex({1, 1, 1}), 1.0);
  EXPECT_DOUBLE_EQ(JainIndex({1, 0}), 0.5);
}

}  // namespace
}  // namespace gpuorch::sim
