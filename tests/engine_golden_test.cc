// Golden plan hash: the same events must give the same plans on every machine and compiler
// (docs/scheduling.md, "The engine's contract"). A fixed scenario (a queue tree with GPU, CPU and
// memory quotas, two GPU models, a few hundred workloads of varied shapes, cycles with time
// advancing, evictions and resizes completed) runs through the engine, and every plan is
// folded into one FNV-1a hash over its explicit integer fields (never over struct bytes,
// whose padding is unspecified), compared with a constant.
//
// When an intended change of the engine changes plans, the test fails and prints the new
// hash: check that the change is meant, then paste the new value into kGolden.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <string>

#include "core/rng.h"
#include "sched/scheduler.h"
#include "sched/testing.h"

namespace gpuorch::sched {
namespace {

using core::kMinute;
using core::kSecond;
using core::QueueId;
using core::TopologyLevel;
using testing::NodeBuilder;
using testing::QueueBuilder;
using testing::WorkloadBuilder;

constexpr uint64_t kGolden = 6307289988443664522ull;

// FNV-1a (64-bit) over integers, each fed as 8 little-endian bytes whatever the platform.
class PlanHash {
 public:
  void Add(int64_t v) {
    const auto u = static_cast<uint64_t>(v);
    for (int i = 0; i < 8; ++i) {
      h_ ^= (u >> (8 * i)) & 0xffu;
      h_ *= 0x100000001b3ull;
    }
  }
  void Add(const Plan& p) {
    Add(p.now);
    Add(static_cast<int64_t>(p.binds.size()));
    for (const Bind& b : p.binds) {
      Add(b.workload.value());
      Add(b.elastic ? 1 : 0);
      Add(static_cast<int64_t>(b.tasks.size()));
      for (const TaskBinding& t : b.tasks) {
        Add(t.task);
        Add(t.node.value());
        Add(t.gpus);
        Add(t.gpu_milli);
      }
    }
    Add(static_cast<int64_t>(p.evictions.size()));
    for (const Eviction& e : p.evictions) {
      Add(e.workload.value());
      Add(static_cast<int64_t>(e.reason));
      Add(e.preemptor.valid() ? e.preemptor.value() : -1);
      Add(e.grace_period);
    }
    Add(static_cast<int64_t>(p.resizes.size()));
    for (const Resize& r : p.resizes) {
      Add(r.workload.value());
      Add(static_cast<int64_t>(r.tasks.size()));
      for (int32_t t : r.tasks) Add(t);
      Add(static_cast<int64_t>(r.reason));
      Add(r.preemptor.valid() ? r.preemptor.value() : -1);
      Add(r.grace_period);
    }
    Add(static_cast<int64_t>(p.pending.size()));
    for (const PendingExplanation& e : p.pending) {
      Add(e.workload.value());
      Add(static_cast<int64_t>(e.reason));
    }
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

struct Outcome {
  uint64_t hash = 0;
  int binds = 0, elastic_binds = 0, evictions = 0, resizes = 0, cpu_only_binds = 0;
  std::map<PendingReason, int> reasons;  // over all cycles' pending explanations
};

// Leaves of the tree below, where workloads go.
constexpr uint32_t kLeaves[] = {2, 3, 4, 5};

WorkloadSpec Shape(core::Rng& rng, core::Time now) {
  WorkloadBuilder b("w", kLeaves[rng.Uniform(4)]);
  static constexpr int kGpus[] = {0, -1, 2, 4, 8, 1, 1, 1};  // 0: CPU only, -1: a fraction
  const int gpus = kGpus[rng.Uniform(8)];
  if (gpus == 0) {
    b.CpuOnly(static_cast<int64_t>(1 + rng.Uniform(16)) * 1000);
  } else if (gpus < 0) {
    b.Fraction(static_cast<int>(250 * (1 + rng.Uniform(3))), 8192);
  } else {
    b.Gpus(gpus);
  }
  b.Cpu(static_cast<int64_t>(1 + rng.Uniform(8)) * 1000);
  const int min = rng.Uniform(4) == 0 ? static_cast<int>(2 + rng.Uniform(3)) : 1;
  const int max = rng.Uniform(5) == 0 ? min + static_cast<int>(1 + rng.Uniform(3)) : min;
  b.Tasks(min, max).Priority(static_cast<int>(rng.Uniform(3)) * 50).Submitted(now);
  b.Grace(static_cast<core::Duration>(rng.Uniform(3)) * 30 * kSecond);
  if (rng.Uniform(6) == 0) b.NonPreemptible();
  if (rng.Uniform(5) == 0) b.MinRuntime(10 * kMinute);
  if (rng.Uniform(3) == 0) b.Estimate(static_cast<core::Duration>(5 + rng.Uniform(60)) * kMinute);
  switch (rng.Uniform(5)) {
    case 0:
      b.Require(TopologyLevel::kRack);
      break;
    case 1:
      b.Prefer(TopologyLevel::kNode);
      break;
    default:
      break;
  }
  // Model 1 nodes have 4 GPUs: only smaller tasks ask for it, so that every workload can
  // run on the cluster as it is (an impossible one would stop elastic growth for all).
  const uint32_t model = static_cast<uint32_t>(rng.Uniform(2));
  if (rng.Uniform(6) == 0 && (model == 0 || gpus <= 4)) b.Model(model);
  return b;
}

Outcome RunScenario() {
  Outcome out;
  auto created = Scheduler::Create(
      SchedulerConfig{.policy = "gpuorch", .seed = 7, .fair_share_half_life = 30 * kMinute});
  EXPECT_TRUE(created.ok());
  std::unique_ptr<Scheduler> s = std::move(created).value();
  // The tree: org-a [0] ─┬─ team-a1 [2], team-a2 [3] (weight 2); org-b [1] (weight 2) ─
  // team-b1 [4] (does not lend); scratch [5]: no guarantee, limits on GPUs and CPU.
  core::QueueSpec org_a = QueueBuilder("org-a").Guarantee(24);
  org_a.cpu_quota.guaranteed = 96000;
  core::QueueSpec team_a1 = QueueBuilder("team-a1").Guarantee(16).Parent(0);
  team_a1.cpu_quota.guaranteed = 64000;
  core::QueueSpec scratch = QueueBuilder("scratch").Guarantee(0, 24);
  scratch.cpu_quota.limit = 64000;
  scratch.memory_quota.limit = 64 * 1024;
  const core::QueueSpec queues[] = {org_a,
                                    QueueBuilder("org-b").Guarantee(16).Weight(2),
                                    team_a1,
                                    QueueBuilder("team-a2").Guarantee(8).Weight(2).Parent(0),
                                    QueueBuilder("team-b1").Guarantee(16).NoLend().Parent(1),
                                    scratch};
  for (uint32_t q = 0; q < 6; ++q) EXPECT_TRUE(s->AddQueue(QueueId(q), queues[q]).ok()) << q;
  // 8 nodes of model 0 (8 GPUs in two NVLink domains, racks of 4) and 4 of model 1 (4 GPUs).
  for (uint32_t n = 0; n < 12; ++n) {
    NodeBuilder b("n" + std::to_string(n));
    if (n < 8) {
      b.Gpus(8, 0).Nvlink(4).Rack("r" + std::to_string(n / 4));
    } else {
      b.Gpus(4, 1, 40960).Rack("r2");
    }
    EXPECT_TRUE(s->AddNode(core::NodeId(n), b.Cpu(64000).Memory(512 * 1024)).ok());
  }

  core::Rng rng(2026);
  PlanHash hash;
  std::map<uint32_t, core::Duration> runtime;
  std::map<uint32_t, core::Time> started;  // last bind of each workload
  std::multimap<core::Time, std::pair<uint32_t, core::Time>> finish_at;  // id, its bind time
  std::multimap<core::Time, uint32_t> evict_at;
  std::multimap<core::Time, std::pair<uint32_t, int32_t>> shrink_at;
  uint32_t next_id = 1;
  constexpr int kCycles = 60;
  for (int c = 0; c < kCycles; ++c) {
    const core::Time now = c * 5 * kMinute;
    // Drive what came due: evictions, shrinks, then workloads that ran their time.
    while (!evict_at.empty() && evict_at.begin()->first <= now) {
      const WorkloadId w(evict_at.begin()->second);
      evict_at.erase(evict_at.begin());
      if (s->state(w) == WorkloadState::kEvicting) {
        EXPECT_TRUE(s->EvictionCompleted(w).ok());
      }
    }
    while (!shrink_at.empty() && shrink_at.begin()->first <= now) {
      const auto [w, t] = shrink_at.begin()->second;
      shrink_at.erase(shrink_at.begin());
      if (s->state(WorkloadId(w)) == WorkloadState::kRunning) {
        (void)s->TaskFinished(WorkloadId(w), t);
      }
    }
    while (!finish_at.empty() && finish_at.begin()->first <= now) {
      const auto [w, at] = finish_at.begin()->second;
      finish_at.erase(finish_at.begin());
      if (s->state(WorkloadId(w)) == WorkloadState::kRunning && started[w] == at) {
        EXPECT_TRUE(s->WorkloadFinished(WorkloadId(w)).ok());
      }
    }
    // Arrivals: six per cycle for 2 hours, none for the next 1.5 hours, then ten per cycle:
    // 324 in all.
    const int arrivals = c < 24 ? 6 : c < 42 ? 0 : 10;
    for (int k = 0; k < arrivals; ++k) {
      const uint32_t id = next_id++;
      runtime[id] = static_cast<core::Duration>(5 + rng.Uniform(90)) * kMinute;
      const WorkloadSpec spec = Shape(rng, now);
      EXPECT_TRUE(s->Submit(WorkloadId(id), spec).ok()) << id;
    }
    const Plan p = s->Cycle(now);
    hash.Add(p);
    for (const Bind& b : p.binds) {
      ++out.binds;
      if (b.elastic) {
        ++out.elastic_binds;
        continue;
      }
      const uint32_t w = b.workload.value();
      started[w] = now;
      finish_at.emplace(now + runtime[w], std::make_pair(w, now));
      if (b.tasks.front().gpus == 0) ++out.cpu_only_binds;
    }
    for (const Eviction& e : p.evictions) {
      ++out.evictions;
      evict_at.emplace(now + e.grace_period, e.workload.value());
    }
    for (const Resize& r : p.resizes) {
      ++out.resizes;
      for (int32_t t : r.tasks) {
        shrink_at.emplace(now + r.grace_period, std::make_pair(r.workload.value(), t));
      }
    }
    for (const PendingExplanation& e : p.pending) ++out.reasons[e.reason];
  }
  out.hash = hash.value();
  return out;
}

TEST(EngineGoldenTest, PlansHashToTheGoldenValue) {
  Outcome a = RunScenario();
  // The scenario must exercise what it claims to, or the hash proves little.
  EXPECT_GT(a.binds, 200);
  EXPECT_GT(a.evictions, 0);
  EXPECT_GT(a.cpu_only_binds, 0);
  EXPECT_GT(a.reasons[PendingReason::kNoFit], 0);
  EXPECT_GT(a.reasons[PendingReason::kWaitingForQuota] + a.reasons[PendingReason::kOverLimit], 0);
  // Same process, same events: same plans (no dependence on addresses or iteration order).
  EXPECT_EQ(RunScenario().hash, a.hash);
  EXPECT_EQ(a.hash, kGolden) << "plans changed: if the change is intended, set kGolden to "
                             << a.hash << "ull (binds " << a.binds << ", elastic "
                             << a.elastic_binds << ", evictions " << a.evictions << ", resizes "
                             << a.resizes << ")";
}

}  // namespace
}  // namespace gpuorch::sched
