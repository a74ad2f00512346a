// Randomized property tests: long event sequences against the engine, with a small driver
// that applies plans the way a real one does (evictions complete after the grace period,
// tasks finish after their runtime). After every cycle the invariants are checked.
#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "core/rng.h"
#include "sched/scheduler.h"
#include "sched/testing.h"

namespace gpuorch::sched {
namespace {

using core::kSecond;
using core::QueueId;
using core::TopologyLevel;
using testing::NodeBuilder;
using testing::QueueBuilder;
using testing::WorkloadBuilder;

struct Driver {
  explicit Driver(uint64_t seed, const std::string& policy = "gpuorch") : rng(seed) {
    auto s = Scheduler::Create(SchedulerConfig{.policy = policy, .seed = seed});
    EXPECT_TRUE(s.ok());
    sched = std::move(s).value();
  }

  // Applies a plan: binds start tasks; evictions/resizes complete after their grace period.
  void Apply(const Plan& p) {
    for (const Bind& b : p.binds) {
      Time end = p.now + runtime[b.workload];
      if (!b.elastic) finish_at.emplace(end, b.workload);
    }
    for (const Eviction& e : p.evictions) evict_at.emplace(p.now + e.grace_period, e.workload);
    for (const Resize& r : p.resizes) {
      for (int32_t t : r.tasks)
        shrink_at.emplace(p.now + r.grace_period, std::make_pair(r.workload, t));
    }
  }

  // Advances time to `now`, completing due evictions, resizes and finishes.
  void Advance(Time now) {
    while (!evict_at.empty() && evict_at.begin()->first <= now) {
      WorkloadId w = evict_at.begin()->second;
      evict_at.erase(evict_at.begin());
      if (sched->state(w) == WorkloadState::kEvicting) {
        EXPECT_TRUE(sched->EvictionCompleted(w).ok());
        ++evictions_done;
      }
    }
    while (!shrink_at.empty() && shrink_at.begin()->first <= now) {
      auto [w, t] = shrink_at.begin()->second;
      shrink_at.erase(shrink_at.begin());
      if (sched->state(w) == WorkloadState::kRunning) (void)sched->TaskFinished(w, t);
    }
    while (!finish_at.empty() && finish_at.begin()->first <= now) {
      WorkloadId w = finish_at.begin()->second;
      finish_at.erase(finish_at.begin());
      if (sched->state(w) == WorkloadState::kRunning) {
        EXPECT_TRUE(sched->WorkloadFinished(w).ok());
      }
    }
  }

  core::Rng rng;
  std::unique_ptr<Scheduler> sched;
  std::map<WorkloadId, Duration> runtime;
  std::map<WorkloadId, WorkloadSpec> specs;
  std::multimap<Time, WorkloadId> finish_at, evict_at;
  std::multimap<Time, std::pair<WorkloadId, int32_t>> shrink_at;
  int evictions_done = 0;
};

std::string Serialize(const Plan& p) {
  std::ostringstream o;
  o << "t" << p.now;
  for (const Bind& b : p.binds) {
    o << " B" << b.workload.value() << (b.elastic ? "e" : "");
    for (const TaskBinding& t : b.tasks)
      o << ":" << t.task << "@" << t.node.value() << "/" << t.gpus;
  }
  for (const Eviction& e : p.evictions) {
    o << " E" << e.workload.value() << ">" << e.preemptor.value() << "r" << int(e.reason);
  }
  for (const Resize& r : p.resizes) o << " R" << r.workload.value() << "x" << r.tasks.size();
  for (const PendingExplanation& e : p.pending)
    o << " P" << e.workload.value() << "r" << int(e.reason);
  return o.str();
}

WorkloadSpec RandomWorkload(core::Rng& rng, uint32_t queues, Time now) {
  static const int kGpus[] = {1, 1, 1, 2, 4, 8};
  WorkloadBuilder b("w", static_cast<uint32_t>(rng.Uniform(queues)));
  if (rng.Uniform(5) == 0) {
    b.Fraction(static_cast<int>(100 + rng.Uniform(800)));
  } else {
    b.Gpus(kGpus[rng.Uniform(6)]);
  }
  int min = rng.Uniform(4) == 0 ? static_cast<int>(1 + rng.Uniform(4)) : 1;
  int max = rng.Uniform(4) == 0 ? min + static_cast<int>(rng.Uniform(3)) : min;
  b.Tasks(min, max).Priority(static_cast<int>(rng.Uniform(3)) * 10).Submitted(now);
  b.Grace(static_cast<Duration>(rng.Uniform(4)) * kSecond);
  if (rng.Uniform(6) == 0) b.NonPreemptible();
  if (rng.Uniform(5) == 0) b.MinRuntime(static_cast<Duration>(rng.Uniform(5)) * kSecond);
  if (rng.Uniform(4) == 0) b.Estimate(static_cast<Duration>(1 + rng.Uniform(30)) * kSecond);
  switch (rng.Uniform(6)) {
    case 0:
      b.Require(TopologyLevel::kRack);
      break;
    case 1:
      b.Prefer(TopologyLevel::kRack);
      break;
    case 2:
      b.Require(TopologyLevel::kNode);
      break;
    default:
      break;
  }
  if (rng.Uniform(5) == 0) b.Model(static_cast<uint32_t>(rng.Uniform(2)));
  return b;
}

// Checks what must hold after every cycle; returns the first violation, or "".
std::string CheckInvariants(const Driver& d, const Plan& p, uint32_t queues, uint32_t nodes,
                            const std::vector<int64_t>& limits) {
  const ClusterState& c = d.sched->cluster();
  // No GPU over-committed, and the engine's accounting matches the placements.
  std::map<std::pair<uint32_t, int>, int64_t> used;
  for (const auto& [w, spec] : d.specs) {
    WorkloadState st = d.sched->state(w);
    if (st != WorkloadState::kRunning && st != WorkloadState::kEvicting) continue;
    auto tasks = d.sched->Placement(w);
    if (st == WorkloadState::kRunning && static_cast<int>(tasks.size()) < spec.min_tasks) {
      return "running gang below min_tasks: " + std::to_string(w.value());
    }
    if (static_cast<int>(tasks.size()) > spec.max_tasks) return "more than max_tasks";
    for (const TaskBinding& t : tasks) {
      for (int j = 0; j < 16; ++j) {
        if ((t.gpus >> j) & 1u) used[{t.node.value(), j}] += t.gpu_milli;
      }
    }
  }
  for (uint32_t n = 0; n < nodes; ++n) {
    if (!c.Has(NodeId(n))) continue;
    const NodeState& s = c.node(NodeId(n));
    for (int j = 0; j < s.gpu_count; ++j) {
      int64_t u = used.count({n, j}) ? used[{n, j}] : 0;
      if (u > 1000) return "GPU over-committed";
      if (u != 1000 - s.gpu_free[j]) return "accounting differs from placements";
    }
  }
  // Gangs atomic: a bind carries at least min_tasks.
  for (const Bind& b : p.binds) {
    if (!b.elastic && static_cast<int>(b.tasks.size()) < d.specs.at(b.workload).min_tasks) {
      return "partial gang bound";
    }
  }
  // Limits held.
  for (uint32_t q = 0; q < queues; ++q) {
    for (uint32_t m = 0; m < 2; ++m) {
      int64_t u = d.sched->QueueUsage(QueueId(q), GpuModelId(m));
      if (limits[q] >= 0 && u > limits[q]) return "queue limit exceeded";
    }
  }
  // Every pending workload is explained; every eviction names its preemptor.
  for (const Eviction& e : p.evictions) {
    if (e.reason != EvictionReason::kNodeLost && !e.preemptor.valid()) return "anonymous eviction";
  }
  return "";
}

// What a history exercised, so the test can tell that it covered each mechanism.
struct Coverage {
  int binds = 0, elastic = 0, evictions = 0, resizes = 0, reserved = 0, node_lost = 0;
};

// Runs one random history; returns the concatenated plans.
std::string RunHistory(uint64_t seed, int steps, const std::string& policy,
                       Coverage* cov = nullptr) {
  Driver d(seed, policy);
  core::Rng& rng = d.rng;
  const uint32_t queues = 4;
  std::vector<int64_t> limits(queues, -1);
  for (uint32_t q = 0; q < queues; ++q) {
    QueueBuilder b("q" + std::to_string(q));
    int64_t g = static_cast<int64_t>(rng.Uniform(12));
    int64_t lim = rng.Uniform(3) == 0 ? g + static_cast<int64_t>(rng.Uniform(16)) : -1;
    b.Guarantee(g, lim).Weight(static_cast<int>(1 + rng.Uniform(3)));
    if (rng.Uniform(4) == 0) b.NoBorrow();
    if (rng.Uniform(4) == 0) b.NoLend();
    limits[q] = lim < 0 ? -1 : lim * 1000;
    EXPECT_TRUE(d.sched->AddQueue(QueueId(q), b).ok());
  }
  const uint32_t nodes = static_cast<uint32_t>(6 + rng.Uniform(10));
  for (uint32_t n = 0; n < nodes; ++n) {
    EXPECT_TRUE(d.sched
                    ->AddNode(NodeId(n), NodeBuilder("n" + std::to_string(n))
                                             .Gpus(rng.Uniform(3) == 0 ? 4 : 8, n % 2)
                                             .Rack("r" + std::to_string(n / 4))
                                             .Nvlink(4))
                    .ok());
  }
  std::string trace;
  uint32_t next_id = 0;
  std::set<uint32_t> down;
  for (int step = 0; step < steps; ++step) {
    Time now = step * kSecond;
    d.Advance(now);
    for (uint64_t k = rng.Uniform(4); k > 0; --k) {
      WorkloadId id(next_id++);
      WorkloadSpec spec = RandomWorkload(rng, queues, now);
      d.specs[id] = spec;
      d.runtime[id] = static_cast<Duration>(1 + rng.Uniform(40)) * kSecond;
      EXPECT_TRUE(d.sched->Submit(id, spec).ok());
    }
    if (rng.Uniform(25) == 0) {  // a node fails or comes back
      uint32_t n = static_cast<uint32_t>(rng.Uniform(nodes));
      bool goes_down = !down.count(n);
      core::NodeSpec spec =
          NodeBuilder("n" + std::to_string(n))
              .Gpus(d.sched->cluster().node(NodeId(n)).gpu_count, n % 2)
              .Rack("r" + std::to_string(n / 4))
              .Nvlink(4)
              .Status(goes_down ? core::NodeStatus::kDown : core::NodeStatus::kReady);
      EXPECT_TRUE(d.sched->UpdateNode(NodeId(n), spec).ok());
      goes_down ? (void)down.insert(n) : (void)down.erase(n);
    }
    if (rng.Uniform(10) == 0 && next_id > 0)
      (void)d.sched->Cancel(WorkloadId(static_cast<uint32_t>(rng.Uniform(next_id))));
    Plan p = d.sched->Cycle(now);
    std::string bad = CheckInvariants(d, p, queues, nodes, limits);
    EXPECT_EQ(bad, "") << "seed " << seed << " step " << step;
    if (!bad.empty()) return trace;
    d.Apply(p);
    trace += Serialize(p) + "\n";
    if (cov != nullptr) {
      for (const Bind& b : p.binds) ++(b.elastic ? cov->elastic : cov->binds);
      for (const Eviction& e : p.evictions) {
        ++(e.reason == EvictionReason::kNodeLost ? cov->node_lost : cov->evictions);
      }
      cov->resizes += static_cast<int>(p.resizes.size());
      for (const auto& e : p.pending) cov->reserved += e.reason == PendingReason::kReserved;
    }
  }
  return trace;
}

TEST(EngineProperty, InvariantsHoldOverLongRandomHistories) {
  Coverage cov;
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    RunHistory(seed, 300, seed % 3 == 0 ? "bestfit" : "gpuorch", &cov);
    if (HasFailure()) break;
  }
  // The histories must exercise every mechanism, or the invariants prove little.
  EXPECT_GT(cov.binds, 1000);
  EXPECT_GT(cov.elastic, 10);
  EXPECT_GT(cov.evictions, 50);
  EXPECT_GT(cov.resizes, 5);
  EXPECT_GT(cov.reserved, 10);
  EXPECT_GT(cov.node_lost, 0);
  std::cout << "coverage: binds " << cov.binds << " elastic " << cov.elastic << " evictions "
            << cov.evictions << " resizes " << cov.resizes << " reserved " << cov.reserved
            << " node_lost " << cov.node_lost << "\n";
}

TEST(EngineProperty, SameInputSamePlan) {
  for (uint64_t seed = 100; seed < 105; ++seed) {
    std::string a = RunHistory(seed, 200, "gpuorch");
    std::string b = RunHistory(seed, 200, "gpuorch");
    ASSERT_FALSE(a.empty());
    EXPECT_EQ(a, b) << "seed " << seed;
    std::string r1 = RunHistory(seed, 100, "random");
    std::string r2 = RunHistory(seed, 100, "random");
    EXPECT_EQ(r1, r2) << "seeded randomness only";
  }
}

// A queue whose guarantee was lent out gets it back within the grace period (plus the
// cycles that evict and bind), whatever shapes the borrowers run.
TEST(EngineProperty, GuaranteesAreRestoredAfterTheGracePeriod) {
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    Driver d(seed);
    core::Rng& rng = d.rng;
    ASSERT_TRUE(d.sched->AddQueue(QueueId(0), QueueBuilder("owner").Guarantee(16)).ok());
    ASSERT_TRUE(d.sched->AddQueue(QueueId(1), QueueBuilder("borrower")).ok());
    for (uint32_t n = 0; n < 4; ++n) {
      ASSERT_TRUE(d.sched->AddNode(NodeId(n), NodeBuilder("n" + std::to_string(n)).Gpus(8)).ok());
    }
    const Duration grace = static_cast<Duration>(1 + rng.Uniform(5)) * kSecond;
    uint32_t id = 0;
    static const int kGpus[] = {1, 2, 4, 8};
    for (int i = 0; i < 40; ++i) {  // borrowers fill the cluster with random shapes
      WorkloadSpec s = WorkloadBuilder("b", 1).Gpus(kGpus[rng.Uniform(4)]).Grace(grace);
      d.specs[WorkloadId(id)] = s;
      d.runtime[WorkloadId(id)] = 1000 * kSecond;
      ASSERT_TRUE(d.sched->Submit(WorkloadId(id++), s).ok());
    }
    d.Apply(d.sched->Cycle(0));
    // The owner asks for random shapes within its 16-GPU guarantee.
    std::vector<WorkloadId> owned;
    int64_t left = 16;
    while (left > 0) {
      int g = kGpus[rng.Uniform(4)];
      if (g > left) continue;
      left -= g;
      WorkloadSpec s = WorkloadBuilder("o", 0).Gpus(g).Submitted(kSecond);
      d.specs[WorkloadId(id)] = s;
      d.runtime[WorkloadId(id)] = 1000 * kSecond;
      owned.push_back(WorkloadId(id));
      ASSERT_TRUE(d.sched->Submit(WorkloadId(id++), s).ok());
    }
    // Each cycle may start one round of evictions per shape; allow a cycle per workload.
    Time deadline = kSecond + grace + static_cast<Duration>(owned.size() + 2) * kSecond;
    std::string history;
    for (Time t = kSecond; t <= deadline; t += kSecond) {
      d.Advance(t);
      Plan p = d.sched->Cycle(t);
      history += Serialize(p) + "\n";
      d.Apply(p);
    }
    SCOPED_TRACE(history);
    EXPECT_GT(d.evictions_done, 0) << "borrowers had to be evicted";
    for (WorkloadId w : owned) {
      EXPECT_EQ(d.sched->state(w), WorkloadState::kRunning)
          << "seed " << seed << " w " << w.value();
    }
    EXPECT_EQ(d.sched->QueueUsage(QueueId(0), GpuModelId(0)), 16000) << "seed " << seed;
    if (HasFailure()) break;
  }
}

}  // namespace
}  // namespace gpuorch::sched
