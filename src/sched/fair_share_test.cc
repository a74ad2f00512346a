#include "sched/fair_share.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "sched/scheduler.h"
#include "sched/testing.h"

namespace gpuorch::sched {
namespace {

using core::kHour;
using core::QueueId;
using testing::NodeBuilder;
using testing::QueueBuilder;
using testing::WorkloadBuilder;

// ---- Fixed-point arithmetic.

TEST(FairShareMath, DecayFactorInQ32) {
  constexpr core::Duration kH = 3600;
  struct Case {
    core::Duration dt;
    uint64_t want;  // round(2^32 * 2^(-dt / kH)), computed offline
    const char* why;
  };
  const Case cases[] = {
      {0, uint64_t{1} << 32, "nothing elapsed: all history kept"},
      {kH, uint64_t{1} << 31, "one half-life: exactly half"},
      {3 * kH, uint64_t{1} << 29, "three half-lives: an eighth"},
      {kH / 2, 3037000500, "2^-0.5 * 2^32 = 3037000499.98"},
      {kH / 4, 3611622603, "2^-0.25 * 2^32 = 3611622602.84"},
      {3 * kH / 4, 2553802834, "2^-0.75 * 2^32 = 2553802833.55"},
      {kH + kH / 2, 1518500250, "2^-1.5 * 2^32 = 1518500249.99"},
      {kH / 3, 3408917802, "2^-(1/3) * 2^32 = 3408917801.92 (not a dyadic fraction)"},
      {40 * kH, 0, "forty half-lives: below Q32's resolution"},
  };
  for (const Case& c : cases) {
    const uint64_t got = DecayKeepQ32(c.dt, kH);
    // Within 8 units of 2^-32: rounding of the tabled factors, of their products and of the
    // fraction's 32 bits.
    EXPECT_LE(got > c.want ? got - c.want : c.want - got, 8u) << c.why << ": got " << got;
  }
}

TEST(FairShareMath, DecayFactorMatchesLibmAcrossOneHalfLife) {
  // libm is the reference here only; the engine never calls it.
  constexpr core::Duration kH = 3'600'000'007;  // a prime: fractions of every kind
  for (core::Duration dt = 0; dt <= 2 * kH; dt += kH / 997) {
    const double want =
        std::exp2(-static_cast<double>(dt) / static_cast<double>(kH)) * 4294967296.0;
    const double got = static_cast<double>(DecayKeepQ32(dt, kH));
    EXPECT_LE(std::abs(got - want), 8.0) << "dt " << dt;
  }
}

TEST(FairShareMath, MulQ32IsExactFloor) {
  EXPECT_EQ(MulQ32(10, uint64_t{1} << 31), 5u);
  EXPECT_EQ(MulQ32(3, uint64_t{1} << 31), 1u);  // 1.5 floors to 1
  // 2^62 * 0.75 = 3 * 2^60: the high half of the operand takes the first product.
  EXPECT_EQ(MulQ32(uint64_t{1} << 62, 3u << 30), uint64_t{3} << 60);
  EXPECT_EQ(MulQ32((uint64_t{1} << 62) + 7, kOneQ32), (uint64_t{1} << 62) + 7);
}

TEST(FairShareMath, RatioInPartsPerBillion) {
  EXPECT_EQ(RatioPpb(1, 2), 500'000'000);
  EXPECT_EQ(RatioPpb(3, 3), 1'000'000'000);
  EXPECT_EQ(RatioPpb(1, 3), 333'333'333);
  EXPECT_EQ(RatioPpb(5, 0), 0) << "an absent resource weighs nothing";
  EXPECT_EQ(RatioPpb(0, 7), 0);
  // 2^39 / 2^40 after scaling both down by 2^10.
  EXPECT_EQ(RatioPpb(int64_t{1} << 39, int64_t{1} << 40), 500'000'000);
  EXPECT_EQ(RatioPpb(100, 10), 4'000'000'000) << "saturates at 4";
}

// ---- The hierarchical order on its own: shares from a table the test updates.

TEST(BorrowerOrderTest, DescendsByLowestShareAmongSiblings) {
  // 0 ─┬─ 2 ─┬─ 4 (leaf)      1 ─── 3 (leaf)
  //    │     └─ 5 (leaf)
  //    └─ 6 (leaf)
  const QueueId none;
  std::vector<QueueId> parents = {none,       none,       QueueId(0), QueueId(1),
                                  QueueId(2), QueueId(2), QueueId(0)};
  std::vector<size_t> waiting = {0, 0, 0, 1, 1, 1, 1};
  // Leaf 5 has the lowest share of all leaves, but its top-level ancestor 0 (30) is above 1
  // (20): 3 goes first. Then only 0 is left: 2 (15) beats 6 (25), and 5 (1) beats 4 (10).
  // Shares do not change here (the test's table is fixed), so 4 and then 6 follow.
  std::map<uint32_t, int64_t> table = {{0, 30}, {1, 20}, {2, 15}, {3, 50},
                                       {4, 10}, {5, 1},  {6, 25}};
  const BorrowerOrder::ShareFn share = [&](uint32_t q) { return table.at(q); };
  BorrowerOrder order(parents, waiting, share);
  std::vector<uint32_t> got;
  while (auto q = order.Pop()) {
    got.push_back(*q);
    order.Done(share);
  }
  EXPECT_EQ(got, (std::vector<uint32_t>{3, 5, 4, 6}));
}

TEST(BorrowerOrderTest, TiesGoToTheLowerIdAndSharesAreReadAfterEachPick) {
  const QueueId none;
  std::vector<QueueId> parents = {none, none};
  std::vector<size_t> waiting = {2, 2};
  // Both start at 0: queue 0 wins the tie. Each pick adds 10 to the picked queue's share,
  // so they alternate: 0 (0 vs 0), 1 (10 vs 0), 0 (10 vs 10, tie), 1.
  std::map<uint32_t, int64_t> table = {{0, 0}, {1, 0}};
  const BorrowerOrder::ShareFn share = [&](uint32_t q) { return table.at(q); };
  BorrowerOrder order(parents, waiting, share);
  std::vector<uint32_t> got;
  while (auto q = order.Pop()) {
    got.push_back(*q);
    table[*q] += 10;
    order.Done(share);
  }
  EXPECT_EQ(got, (std::vector<uint32_t>{0, 1, 0, 1}));
}

// ---- Through the scheduler: three-level trees, hand-computed.

class TreeFairShareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = Scheduler::Create(SchedulerConfig{.policy = "bestfit"});
    ASSERT_TRUE(s.ok());
    s_ = std::move(s).value();
    // 4 nodes x 8 GPUs = 32 GPUs, 512 CPUs, 4 TiB: the 1-GPU tasks below (0.1 CPU, 1 GiB)
    // make GPUs every queue's dominant resource (1/32 of the GPUs vs 1/5120 of the CPUs).
    for (uint32_t n = 0; n < 4; ++n) {
      ASSERT_TRUE(s_->AddNode(core::NodeId(n), NodeBuilder("n" + std::to_string(n)).Gpus(8)).ok());
    }
  }
  // The tree of both tests (ids in brackets; no guarantees, so all GPU work borrows):
  //   org-a [0] (w1) ─┬─ team-a1 [2] (w1) ─┬─ x [5] (w1)
  //                   │                    └─ y [6] (w1)
  //                   └─ team-a2 [3] (w1)
  //   org-b [1] (wB) ─── team-b1 [4] (w1)
  void Tree(int org_b_weight) {
    Add(0, QueueBuilder("org-a"));
    Add(1, QueueBuilder("org-b").Weight(org_b_weight));
    Add(2, QueueBuilder("team-a1").Parent(0));
    Add(3, QueueBuilder("team-a2").Parent(0));
    Add(4, QueueBuilder("team-b1").Parent(1));
    Add(5, QueueBuilder("x").Parent(2));
    Add(6, QueueBuilder("y").Parent(2));
  }
  void Add(uint32_t id, const core::QueueSpec& q) {
    Status st = s_->AddQueue(QueueId(id), q);
    ASSERT_TRUE(st.ok()) << st.message();
  }
  void Submit(uint32_t id, uint32_t queue, int gpus, int tasks = 1) {
    Status st = s_->Submit(WorkloadId(id), WorkloadBuilder("w" + std::to_string(id), queue)
                                               .Gpus(gpus)
                                               .Cpu(100)
                                               .Tasks(tasks)
                                               .Submitted(static_cast<core::Time>(id)));
    ASSERT_TRUE(st.ok()) << st.message();
  }
  // Leaf queue of each bound workload, in the order the cycle bound them.
  std::vector<std::string> BindOrder(const Plan& p) {
    std::vector<std::string> out;
    for (const Bind& b : p.binds) out.push_back(leaf_of_[b.workload.value()]);
    return out;
  }
  void SubmitBorrowers(uint32_t first, const std::vector<std::pair<uint32_t, std::string>>& qs,
                       int each) {
    uint32_t id = first;
    for (int k = 0; k < each; ++k) {
      for (const auto& [q, name] : qs) {
        leaf_of_[id] = name;
        Submit(id++, q, 1);
      }
    }
  }
  std::unique_ptr<Scheduler> s_;
  std::map<uint32_t, std::string> leaf_of_;
};

TEST_F(TreeFairShareTest, SequenceOfBorrowersFollowsTheTree) {
  Tree(/*org_b_weight=*/2);
  // Usage before the borrowers (one cycle at t=0, so no decayed history yet):
  // x 4 GPUs, team-a2 2 GPUs, team-b1 8 GPUs.
  Submit(1, 5, 4);
  Submit(2, 3, 2);
  Submit(3, 4, 8);
  ASSERT_EQ(s_->Cycle(0).binds.size(), 3u);
  // Three 1-GPU borrowers in each of x, y, team-a2, team-b1: 12 more GPUs, 26 of 32 in all,
  // so every one binds and the bind order is the order the cycle chose. Shares in GPUs
  // (all over the same 32 GPUs), divided by weight:
  //   root:    org-a 6/1 = 6      org-b 8/2 = 4
  //   org-a:   team-a1 4 (x 4, y 0)   team-a2 2
  //  1. org-b 4 < 6 -> b1.            org-b 9/2 = 4.5
  //  2. 4.5 < 6 -> b1.                org-b 10/2 = 5
  //  3. 5 < 6 -> b1 (its last).       org-b has nothing left waiting.
  //  4. org-a: team-a2 2 < team-a1 4 -> a2.      a2 = 3
  //  5. 3 < 4 -> a2.                             a2 = 4
  //  6. 4 = 4: tie, lower id team-a1 [2]; in it y 0 < x 4 -> y.   team-a1 = 5, y = 1
  //  7. a2 4 < 5 -> a2 (its last).
  //  8. team-a1 only: y 1 < x 4 -> y.   9. y 2 < 4 -> y (its last).   10-12. x, x, x.
  // A flat DRF over leaves would have started with y (0 GPUs) instead of team-b1.
  SubmitBorrowers(100, {{5, "x"}, {6, "y"}, {3, "a2"}, {4, "b1"}}, 3);
  const Plan p = s_->Cycle(0);
  EXPECT_EQ(BindOrder(p), (std::vector<std::string>{"b1", "b1", "b1", "a2", "a2", "y", "a2", "y",
                                                    "y", "x", "x", "x"}));
}

TEST_F(TreeFairShareTest, DecayedHistoryCountsAtEveryLevel) {
  Tree(/*org_b_weight=*/1);
  // t=0: x runs 16 GPUs and team-b1 4. The first cycle starts the decay clock.
  Submit(1, 5, 1, 16);
  Submit(2, 4, 4);
  ASSERT_EQ(s_->Cycle(0).binds.size(), 2u);
  // t=1h: one half-life, so history = usage * (1 - 2^-1): x, team-a1 and org-a 16 * 1/2 = 8
  // GPUs; team-b1 and org-b 4 * 1/2 = 2 GPUs. Then x's work ends.
  s_->Cycle(kHour);
  ASSERT_TRUE(s_->WorkloadFinished(WorkloadId(1)).ok());
  // Shares (usage + history, in GPUs of 32, weights 1): org-a 0 + 8 = 8, org-b 4 + 2 = 6.
  // org-b goes first though org-a uses nothing now (without history, org-a's 0 < 4 would).
  //  1. org-b 6 < 8 -> b1 (org-b 7)    2. 7 < 8 -> b1 (org-b 8)
  //  3. 8 = 8: tie, lower id org-a -> y (org-a 9)
  //  4. org-b 8 < 9 -> b1 (its last)   5-6. only org-a is left: y, y.
  SubmitBorrowers(100, {{6, "y"}, {4, "b1"}}, 3);
  const Plan p = s_->Cycle(kHour);
  EXPECT_EQ(BindOrder(p), (std::vector<std::string>{"b1", "b1", "y", "b1", "y", "y"}));
}

}  // namespace
}  // namespace gpuorch::sched
