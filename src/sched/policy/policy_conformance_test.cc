// One conformance suite for every name in PolicyNames(), plus a hand-computed table of
// scores and winners per policy (numbers worked out from FGD-PROTOCOL.md §4-5 on paper,
// not by calling the code).
#include <gtest/gtest.h>

#include <bit>
#include <memory>
#include <tuple>

#include "core/rng.h"
#include "sched/placer.h"
#include "sched/policy.h"

namespace gpuorch::sched {
namespace {

using core::GpuModelId;
using core::NodeSpec;

TaskRequest Whole(int32_t gpus, int64_t cpu) {
  TaskRequest t;
  t.gpu_count = gpus;
  t.gpu_milli = 1000;
  t.milli_cpu = cpu;
  return t;
}

TaskRequest Fraction(int32_t milli, int64_t cpu) {
  TaskRequest t;
  t.gpu_count = 1;
  t.gpu_milli = milli;
  t.milli_cpu = cpu;
  return t;
}

TaskRequest CpuOnly(int64_t cpu) {
  TaskRequest t;
  t.gpu_count = 0;
  t.milli_cpu = cpu;
  return t;
}

// A node state built by hand: GPUs with the given free milli, model 0.
NodeState State(uint32_t id, int64_t cpu_free, std::vector<int16_t> gpu_free) {
  NodeState n;
  n.id = NodeId(id);
  n.present = true;
  n.model = GpuModelId(0);
  n.gpu_count = static_cast<int8_t>(gpu_free.size());
  n.cpu_capacity = 128000;
  n.cpu_free = cpu_free;
  n.memory_capacity = n.memory_free = 1 << 20;
  for (size_t j = 0; j < gpu_free.size(); ++j) n.gpu_free[j] = gpu_free[j];
  return n;
}

NodeSpec Spec(std::string name, int32_t gpus, int64_t cpu) {
  NodeSpec s;
  s.name = std::move(name);
  s.gpu_model = GpuModelId(0);
  s.gpu_count = gpus;
  s.milli_cpu = cpu;
  s.memory_mib = 1 << 20;
  return s;
}

PolicySetup MakeSetup(const std::string& name, core::Rng* rng) {
  auto p = MakePolicy(name, rng);
  EXPECT_TRUE(p.ok()) << p.status().message();
  return std::move(p).value();
}

std::unique_ptr<PlacementPolicy> Make(const std::string& name, core::Rng* rng) {
  return MakeSetup(name, rng).policy;
}

// The view of a whole node, every GPU usable.
NodeView All(const NodeState& n) { return NodeView(n, n.all_gpus()); }

class PolicyConformance : public testing::TestWithParam<std::string> {};

// A cluster of mixed nodes, then a few hundred random tasks placed one by one.
struct Replay {
  std::vector<std::pair<NodeId, GpuMask>> choices;
  int failures = 0;
};

Replay RunReplay(const std::string& name, uint64_t seed, bool check) {
  core::Rng rng(seed);
  PolicySetup setup = MakeSetup(name, &rng);
  ClusterState cluster;
  core::Rng shapes(1234);  // the cluster and tasks are the same for every policy and seed
  for (uint32_t i = 0; i < 40; ++i) {
    NodeSpec s;
    s.name = "n" + std::to_string(i);
    s.gpu_count = i % 4 == 0 ? 8 : (i % 4 == 1 ? 2 : (i % 4 == 2 ? 4 : 1));
    s.gpu_model = GpuModelId(i % 3);
    s.milli_cpu = 16000 * (1 + static_cast<int64_t>(shapes.Uniform(6)));
    s.memory_mib = 256 * 1024;
    EXPECT_TRUE(cluster.AddNode(NodeId(i), s).ok());
  }
  Replay out;
  for (int k = 0; k < 400; ++k) {
    TaskRequest t;
    switch (shapes.Uniform(5)) {
      case 0:
        t = CpuOnly(1000 * (1 + static_cast<int64_t>(shapes.Uniform(16))));
        break;
      case 1:
        t = Whole(1 << shapes.Uniform(4), 4000);
        break;
      default:
        t = Fraction(static_cast<int32_t>(50 * (1 + shapes.Uniform(19))), 2000);
        break;
    }
    if (shapes.Uniform(4) == 0)
      t.models = core::ModelSet::Of(GpuModelId(static_cast<uint32_t>(shapes.Uniform(3))));
    auto p = ChooseNode(cluster, *setup.policy, setup.choice, t, core::WorkloadId(1), false, rng);
    bool any_fits = false;
    for (const NodeState& n : cluster.nodes()) any_fits |= Fits(n, t, core::WorkloadId(1), false);
    if (check) {
      EXPECT_EQ(p.has_value(), any_fits) << name << " task " << k;
    }
    if (!p) {
      ++out.failures;
      continue;
    }
    if (check) {
      const NodeState& n = cluster.node(p->node);
      EXPECT_TRUE(Fits(n, t, core::WorkloadId(1), false)) << name << " task " << k;
      EXPECT_EQ(std::popcount(p->gpus), t.gpu_count) << name << " task " << k;
      for (int j = 0; j < n.gpu_count; ++j) {
        if ((p->gpus >> j) & 1u) {
          EXPECT_GE(n.gpu_free[j], t.gpu_milli) << name;
        }
      }
      EXPECT_EQ(p->gpus & ~n.all_gpus(), 0) << name;
    }
    out.choices.emplace_back(p->node, p->gpus);
    cluster.Allocate(p->node, t, p->gpus);
  }
  return out;
}

TEST_P(PolicyConformance, ChosenNodeFitsAndGpusAreExact) {
  Replay r = RunReplay(GetParam(), 42, /*check=*/true);
  EXPECT_GT(r.choices.size(), 100u);
  EXPECT_GT(r.failures, 0);  // the cluster fills up: infeasible tasks return nothing
}

TEST_P(PolicyConformance, SameSeedSameChoices) {
  Replay a = RunReplay(GetParam(), 7, false), b = RunReplay(GetParam(), 7, false);
  EXPECT_EQ(a.choices, b.choices);
}

TEST_P(PolicyConformance, SelectGpusRespectsUsable) {
  core::Rng rng(3);
  auto policy = Make(GetParam(), &rng);
  NodeState n = State(0, 64000, {1000, 300, 1000, 700, 1000, 1000, 0, 1000});
  const GpuMask usable = 0b10111010;  // GPUs 1, 3, 4, 5, 7
  for (int trial = 0; trial < 20; ++trial) {
    for (const TaskRequest& t : {Whole(1, 0), Whole(2, 0), Whole(3, 0), Fraction(250, 0),
                                 Fraction(600, 0), Fraction(900, 0)}) {
      const GpuMask m = policy->SelectGpus(NodeView(n, usable), t);
      EXPECT_EQ(std::popcount(m), t.gpu_count) << GetParam();
      EXPECT_EQ(m & ~usable, 0) << GetParam();
      for (int j = 0; j < 8; ++j) {
        if ((m >> j) & 1u) {
          EXPECT_GE(n.gpu_free[j], t.gpu_milli) << GetParam();
        }
      }
    }
  }
  // Whole GPUs are the lowest-index fully free usable ones for every policy (§4).
  EXPECT_EQ(policy->SelectGpus(NodeView(n, usable), Whole(2, 0)), 0b00110000) << GetParam();
  EXPECT_EQ(policy->SelectGpus(NodeView(n, usable), Whole(4, 0)), 0) << GetParam();
}

TEST_P(PolicyConformance, WorksWithAndWithoutTypicalTasks) {
  core::Rng rng(5);
  auto policy = Make(GetParam(), &rng);
  EXPECT_EQ(policy->name(), GetParam());
  NodeState n = State(0, 64000, {1000, 500});
  (void)policy->Score(All(n), Fraction(500, 1000));
  policy->SetTypicalTasks({{Fraction(500, 1000), 0.5}, {Whole(1, 1000), 0.5}});
  (void)policy->Score(All(n), Whole(1, 1000));
  EXPECT_NE(policy->SelectGpus(All(n), Fraction(400, 0)), 0);
  // A policy that uses typical tasks reports the ones it was given; the others none.
  const std::vector<TypicalTask> typical = policy->typical_tasks();
  if (GetParam() == "fgd" || GetParam() == "gpuorch") {
    ASSERT_EQ(typical.size(), 2u) << GetParam();
    EXPECT_EQ(typical[0].task.gpu_milli, 500);
    EXPECT_EQ(typical[1].weight, 0.5);
  } else {
    EXPECT_TRUE(typical.empty()) << GetParam();
  }
}

// Only `random` draws the node; every other policy is scored.
TEST_P(PolicyConformance, NodeChoiceComesWithTheName) {
  core::Rng rng(5);
  EXPECT_EQ(MakeSetup(GetParam(), &rng).choice,
            GetParam() == "random" ? NodeChoice::kUniform : NodeChoice::kBestScore);
}

// A score is a function of the node's state alone: nodes that differ only in identity,
// topology or reservation holder score the same, and the fragmentation policies' memo
// (keyed by content) gives the same scores as a fresh policy, whatever the order of calls.
TEST_P(PolicyConformance, ScoreDependsOnlyOnState) {
  core::Rng rng(11), fresh_rng(11);
  auto policy = Make(GetParam(), &rng);
  core::Rng shapes(99);
  std::vector<NodeState> states;
  for (int k = 0; k < 60; ++k) {
    std::vector<int16_t> free;
    const int gpus = 1 + static_cast<int>(shapes.Uniform(8));
    for (int j = 0; j < gpus; ++j) free.push_back(static_cast<int16_t>(250 * shapes.Uniform(5)));
    states.push_back(State(static_cast<uint32_t>(k % 3), 8000 * (1 + shapes.Uniform(8)), free));
  }
  for (int k = 0; k < 300; ++k) {
    NodeState n = states[shapes.Uniform(states.size())];
    const TaskRequest t = k % 2 == 0 ? Fraction(250, 2000) : Whole(1, 4000);
    const int64_t memo = policy->Score(All(n), t);
    n.id = NodeId(1000 + static_cast<uint32_t>(k));
    n.zone = 7;
    n.rack = 9;
    n.reserved_for = core::WorkloadId(3);
    EXPECT_EQ(policy->Score(All(n), t), memo) << GetParam() << " call " << k;
    if (k % 3 == 0) {
      auto fresh = Make(GetParam(), &fresh_rng);
      EXPECT_EQ(fresh->Score(All(n), t), memo) << GetParam() << " call " << k;
    }
  }
}

// The contract of CpuHeadroom: beyond it, Score reads neither the node's free CPU and memory
// nor the task's CPU and memory. Random GPU states, CPU and memory on both sides.
// Typical tasks whose CPU is not proportional to their GPUs (the default's is), so that the
// headroom depends on the GPU state.
std::vector<TypicalTask> SkewedTypicalTasks() {
  return {{Whole(1, 8000), 0.5}, {Fraction(250, 4000), 0.3}, {Whole(2, 2000), 0.2}};
}

class PolicyHeadroom : public testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(PolicyHeadroom, ScoreBeyondCpuHeadroomReadsNoHostResources) {
  const auto& [name, skewed] = GetParam();
  core::Rng rng(7);
  PolicySetup setup = MakeSetup(name, &rng);
  if (setup.choice != NodeChoice::kBestScore) GTEST_SKIP() << "does not score";
  if (skewed) setup.policy->SetTypicalTasks(SkewedTypicalTasks());
  core::Rng draw(99);
  int saturated_cases = 0;
  for (int k = 0; k < 3000; ++k) {
    std::vector<int16_t> gpus(1 + draw.Uniform(8));
    for (int16_t& g : gpus)
      g = static_cast<int16_t>(draw.Uniform(5) == 0 ? 1000 : draw.Uniform(1001));
    TaskRequest t = draw.Uniform(3) == 0
                        ? Whole(1 + static_cast<int32_t>(draw.Uniform(2)), 0)
                        : Fraction(static_cast<int32_t>(50 + draw.Uniform(900)), 0);
    t.milli_cpu = static_cast<int64_t>(draw.Uniform(32000));
    t.memory_mib = static_cast<int64_t>(draw.Uniform(65536));
    NodeState n = State(1, 0, gpus);
    if (!FitsGpus(n, t, core::WorkloadId(1), 0)) continue;
    {  // At any CPU level, Score does not read the node's free memory.
      NodeState a = n, b = n;
      a.cpu_free = b.cpu_free = t.milli_cpu + static_cast<int64_t>(draw.Uniform(128000));
      a.memory_free = t.memory_mib + static_cast<int64_t>(draw.Uniform(1 << 20));
      b.memory_free = t.memory_mib + static_cast<int64_t>(draw.Uniform(1 << 20));
      EXPECT_EQ(setup.policy->Score(All(a), t), setup.policy->Score(All(b), t)) << name;
    }
    const int64_t headroom = setup.policy->CpuHeadroom(All(n), t);
    ASSERT_GE(headroom, 0);
    if (headroom >= PlacementPolicy::kAlwaysReadsHost) continue;
    ++saturated_cases;
    n.cpu_free = t.milli_cpu + headroom + static_cast<int64_t>(draw.Uniform(1000));
    n.memory_free = t.memory_mib + static_cast<int64_t>(draw.Uniform(1 << 20));
    const int64_t s = setup.policy->Score(All(n), t);
    // Another node beyond the headroom, another task with the same GPU request.
    TaskRequest u = t;
    u.milli_cpu = static_cast<int64_t>(draw.Uniform(32000));
    u.memory_mib = static_cast<int64_t>(draw.Uniform(65536));
    NodeState m = n;
    m.cpu_free = u.milli_cpu + setup.policy->CpuHeadroom(All(m), u) +
                 static_cast<int64_t>(draw.Uniform(1 << 20));
    m.memory_free = u.memory_mib + static_cast<int64_t>(draw.Uniform(1 << 20));
    EXPECT_EQ(setup.policy->CpuHeadroom(All(m), u), headroom) << name;
    EXPECT_EQ(setup.policy->Score(All(m), u), s) << name << " case " << k;
  }
  if (name != "bestfit" && name != "dotprod") EXPECT_GT(saturated_cases, 100);
}

// The grouped search (groups of equal GPU state, CPU headroom, ScoreCache) answers what
// scoring every feasible node answers, on a cluster where every node and task has its own
// CPU and memory, while placements, releases and reservations change it.
TEST_P(PolicyHeadroom, GroupedChoiceEqualsScoringEveryNode) {
  const auto& [name, skewed] = GetParam();
  core::Rng rng(11);
  PolicySetup setup = MakeSetup(name, &rng);
  if (setup.choice != NodeChoice::kBestScore) GTEST_SKIP() << "draws, does not score";
  if (skewed) setup.policy->SetTypicalTasks(SkewedTypicalTasks());
  core::Rng draw(2024);
  ClusterState cluster;
  for (uint32_t i = 0; i < 120; ++i) {
    NodeSpec s = Spec("n" + std::to_string(i), i % 5 == 0 ? 4 : 8,
                      32000 + static_cast<int64_t>(draw.Uniform(96000)));
    s.gpu_model = GpuModelId(i % 2);
    s.memory_mib = 65536 + static_cast<int64_t>(draw.Uniform(1 << 19));
    s.gpu_memory_mib = 40960;
    ASSERT_TRUE(cluster.AddNode(NodeId(i), s).ok());
  }
  ScoreCache cache;
  struct Placed {
    NodeId node;
    TaskRequest t;
    GpuMask gpus;
  };
  std::vector<Placed> placed;
  int compared = 0;
  for (int k = 0; k < 1500; ++k) {
    if (k % 97 == 0) {  // a reservation comes or goes
      const NodeId id(static_cast<uint32_t>(draw.Uniform(120)));
      if (cluster.node(id).reserved_gpus != 0) {
        cluster.ClearReservation(id);
      } else {
        cluster.Reserve(id, 0b11, core::WorkloadId(static_cast<uint32_t>(2 + draw.Uniform(3))),
                        draw.Uniform(2) == 0);
      }
    }
    if (!placed.empty() && draw.Uniform(3) == 0) {
      const size_t i = draw.Uniform(placed.size());
      cluster.Release(placed[i].node, placed[i].t, placed[i].gpus);
      placed.erase(placed.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    TaskRequest t;
    switch (draw.Uniform(4)) {
      case 0:
        t = CpuOnly(500 + static_cast<int64_t>(draw.Uniform(16000)));
        break;
      case 1:
        t = Whole(1 << draw.Uniform(3), 1000 + static_cast<int64_t>(draw.Uniform(24000)));
        break;
      default:
        t = Fraction(static_cast<int32_t>(100 + draw.Uniform(800)),
                     500 + static_cast<int64_t>(draw.Uniform(8000)));
        t.gpu_memory_mib = 1024 + static_cast<int64_t>(draw.Uniform(20000));
        break;
    }
    t.memory_mib = static_cast<int64_t>(draw.Uniform(65536));
    if (draw.Uniform(4) == 0) t.models = core::ModelSet::Of(GpuModelId(draw.Uniform(2)));
    const core::WorkloadId as(static_cast<uint32_t>(1 + draw.Uniform(3)));
    const ReservationAccess access = static_cast<ReservationAccess>(draw.Uniform(4));
    auto grouped =
        ChooseNode(cluster, *setup.policy, setup.choice, t, as, access, rng, nullptr, &cache);
    NodeId best;
    int64_t best_score = 0;
    for (const NodeState& n : cluster.nodes()) {
      if (!Fits(n, t, as, access)) continue;
      const int64_t s = setup.policy->Score(NodeView(n, UsableGpus(n, as, access)), t);
      if (!best.valid() || s > best_score) best = n.id, best_score = s;  // ascending ids
    }
    ASSERT_EQ(grouped.has_value(), best.valid()) << name << " step " << k;
    if (!grouped) continue;
    ++compared;
    ASSERT_EQ(grouped->node.value(), best.value()) << name << " step " << k;
    cluster.Allocate(grouped->node, t, grouped->gpus);
    placed.push_back({grouped->node, t, grouped->gpus});
  }
  EXPECT_GT(compared, 500);
  EXPECT_LT(cluster.group_count(), 120u);
}

INSTANTIATE_TEST_SUITE_P(All, PolicyHeadroom,
                         testing::Combine(testing::ValuesIn(PolicyNames()), testing::Bool()),
                         [](const testing::TestParamInfo<PolicyHeadroom::ParamType>& info) {
                           return std::get<0>(info.param) +
                                  (std::get<1>(info.param) ? "_skewed" : "_default");
                         });

INSTANTIATE_TEST_SUITE_P(All, PolicyConformance, testing::ValuesIn(PolicyNames()),
                         [](const auto& param_info) { return param_info.param; });

TEST(PolicyRegistry, UnknownNameAndNames) {
  core::Rng rng(1);
  auto p = MakePolicy("tetris", &rng);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("tetris"), std::string::npos);
  EXPECT_EQ(PolicyNames().size(), 7u);
  EXPECT_EQ(PolicyNames().back(), "gpuorch");
}

// Hand-computed scores. A: 8 free GPUs, 96 cores free. B: 2 GPUs with {1000, 190} free and one
// fractional task on it, 64 cores free. C: 2 GPUs {600, 1000}, 64 cores.
struct ScoreCase {
  const char* policy;
  const char* node;
  TaskRequest task;
  int64_t score;
};

NodeState NamedNode(const std::string& which) {
  if (which == "A") return State(0, 96000, {1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000});
  if (which == "B") {
    NodeState b = State(1, 64000, {1000, 190});
    b.tag_counts[0] = 1;
    return b;
  }
  if (which == "C") return State(2, 64000, {600, 1000});
  return State(3, 32000, {1000, 1000});  // "E"
}

class HandTable : public testing::TestWithParam<ScoreCase> {};

TEST_P(HandTable, Score) {
  const ScoreCase& c = GetParam();
  core::Rng rng(1);
  auto policy = Make(c.policy, &rng);
  // One typical task for the fragmentation policies: half a GPU with 30 cores.
  policy->SetTypicalTasks({{Fraction(500, 30000), 1.0}});
  EXPECT_EQ(policy->Score(All(NamedNode(c.node)), c.task), c.score) << c.policy << " on " << c.node;
}

// DotProd, whole GPU + 8 cores: A d = (96000*8000 + 256*8000*1000)/128000^2 = 0.171875,
//   100 - 50d = 91.41 -> 91; B d = (64000*8000 + 256*1190*1000)/128000^2 = 0.04984 -> 97.
// BestFit, same task: A 100 - 50*88000/128000 - 50*7000/8000 = 21.875 -> 21;
//   B 100 - 50*56000/128000 - 50*190/8000 = 76.94 -> 76.
// GpuClustering: A is empty, b = 0 -> 25 for any GPU task; B holds only fractions,
//   b = floor(25*6810/8000) = 21: a whole GPU gets 0+21, a fraction 75+21 = 96.
// GpuPacking: A idle with 8 GPUs -> max(33-8, 8) = 25; B takes its one fresh GPU -> 49;
//   a 500 fraction on C takes the 600 GPU (f = 0) -> 100 - floor(60/10) = 94.
// FGD with tau = (500, 30 cores): on A a 500 fraction + 4 cores leaves tau fitting and no GPU
//   below 500 -> delta 0 -> 50. On E (32 cores, {1000,1000}) 28 cores are left < 30, so all
//   1500 idle becomes fragment: delta -1500, 100*sigmoid(-1.5) = 18.24 -> 18.
// gpuorch, same tau: on A stranded goes 8000-3*500 = 6500 -> 7500-3*500 = 6000 and frag
//   stays 0: damage -500 -> floor(500/200) = 2. On E frag 0 -> 1500 (x16 = 24000) and
//   stranded 1500 -> 1500: damage 24000 -> floor(-24000/200) = -120.
INSTANTIATE_TEST_SUITE_P(FromTheProtocol, HandTable,
                         testing::Values(ScoreCase{"dotprod", "A", Whole(1, 8000), 91},
                                         ScoreCase{"dotprod", "B", Whole(1, 8000), 97},
                                         ScoreCase{"bestfit", "A", Whole(1, 8000), 21},
                                         ScoreCase{"bestfit", "B", Whole(1, 8000), 76},
                                         ScoreCase{"gpuclustering", "A", Whole(1, 8000), 25},
                                         ScoreCase{"gpuclustering", "B", Whole(1, 8000), 21},
                                         ScoreCase{"gpuclustering", "B", Fraction(100, 1000), 96},
                                         ScoreCase{"gpuclustering", "A", CpuOnly(1000), 0},
                                         ScoreCase{"gpupacking", "A", Whole(1, 8000), 25},
                                         ScoreCase{"gpupacking", "B", Whole(1, 8000), 49},
                                         ScoreCase{"gpupacking", "C", Fraction(500, 4000), 94},
                                         ScoreCase{"fgd", "A", Fraction(500, 4000), 50},
                                         ScoreCase{"fgd", "E", Fraction(500, 4000), 18},
                                         ScoreCase{"gpuorch", "A", Fraction(500, 4000), 2},
                                         ScoreCase{"gpuorch", "E", Fraction(500, 4000), -120}));

// Winners through the engine's ChooseNode: ties go to the lowest node id.
TEST(HandTable, Winners) {
  struct Case {
    const char* policy;
    TaskRequest task;
    uint32_t winner;
  };
  // Node 0 = A (8 fresh GPUs), node 1 = B (2 GPUs, one with 190 left, holds a fraction).
  for (const Case& c :
       {Case{"dotprod", Whole(1, 8000), 1}, Case{"bestfit", Whole(1, 8000), 1},
        Case{"gpuclustering", Whole(1, 8000), 0}, Case{"gpuclustering", Fraction(100, 1000), 1},
        Case{"gpupacking", Whole(1, 8000), 1}, Case{"gpuclustering", CpuOnly(1000), 0}}) {
    core::Rng rng(1);
    PolicySetup setup = MakeSetup(c.policy, &rng);
    ClusterState cluster;
    ASSERT_TRUE(cluster.AddNode(NodeId(0), Spec("a", 8, 96000)).ok());
    ASSERT_TRUE(cluster.AddNode(NodeId(1), Spec("b", 2, 64000)).ok());
    cluster.Allocate(NodeId(1), Fraction(810, 0), 0b10);
    auto p =
        ChooseNode(cluster, *setup.policy, setup.choice, c.task, core::WorkloadId(1), false, rng);
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->node.value(), c.winner) << c.policy;
  }
}

// Random draws the node uniformly: over many draws both feasible nodes are chosen.
TEST(RandomPolicy, DrawsEveryFeasibleNode) {
  core::Rng rng(9);
  PolicySetup setup = MakeSetup("random", &rng);
  ASSERT_EQ(setup.choice, NodeChoice::kUniform);
  ClusterState cluster;
  for (uint32_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(cluster.AddNode(NodeId(i), Spec("n" + std::to_string(i), 2, 8000)).ok());
  }
  cluster.Allocate(NodeId(2), Whole(2, 0), 0b11);  // node 2 cannot take a GPU task
  int hits[3] = {0, 0, 0};
  for (int k = 0; k < 200; ++k) {
    auto p = ChooseNode(cluster, *setup.policy, setup.choice, Fraction(100, 0), core::WorkloadId(1),
                        false, rng);
    ASSERT_TRUE(p.has_value());
    ++hits[p->node.value()];
  }
  EXPECT_GT(hits[0], 50);
  EXPECT_GT(hits[1], 50);
  EXPECT_EQ(hits[2], 0);
}

}  // namespace
}  // namespace gpuorch::sched
