#include "sched/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "sched/scheduler_fixture.h"
#include "sched/testing.h"

namespace gpuorch::sched {
namespace {

using core::kSecond;
using core::NodeStatus;
using core::QueueId;
using core::TopologyLevel;
using testing::NodeBuilder;
using testing::QueueBuilder;
using testing::WorkloadBuilder;

using testing::SchedulerTest;

// 1. Gangs: all min_tasks in one cycle or none.
TEST_F(SchedulerTest, GangIsAllOrNothing) {
  Queue(0, QueueBuilder("q"));
  Nodes(0, 3, 8);
  Submit(1, WorkloadBuilder("gang", 0).Gpus(8).Tasks(4));
  Plan p = Cycle();
  EXPECT_EQ(BindOf(p, 1), nullptr);
  // Nothing held partially; the gang could not run even on the empty cluster.
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kUnschedulable);
  for (uint32_t n = 0; n < 3; ++n) EXPECT_EQ(s_->cluster().node(NodeId(n)).full_free_gpus(), 8);
  EXPECT_EQ(Usage(0), 0);
  Node(3, NodeBuilder("n3").Gpus(8));
  p = Cycle(1);
  ASSERT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(BindOf(p, 1)->tasks.size(), 4u);
  EXPECT_EQ(NodesOf(*BindOf(p, 1)).size(), 4u);
  EXPECT_EQ(Usage(0), 32000);
}

// 2. Topology: required level is hard; a gang goes to the lowest domain that fits.
TEST_F(SchedulerTest, RequiredRackIsHard) {
  Queue(0, QueueBuilder("q"));
  Nodes(0, 4, 8, /*per_rack=*/2);  // r0: n0,n1  r1: n2,n3
  Submit(1, WorkloadBuilder("filler", 0).Gpus(8));
  Plan p = Cycle();
  ASSERT_NE(BindOf(p, 1), nullptr);
  uint32_t used = BindOf(p, 1)->tasks[0].node.value();
  Submit(2, WorkloadBuilder("gang", 0).Gpus(8).Tasks(2).Require(TopologyLevel::kRack));
  p = Cycle(1);
  ASSERT_NE(BindOf(p, 2), nullptr);
  for (uint32_t n : NodesOf(*BindOf(p, 2)))
    EXPECT_NE(n / 2, used / 2) << "must avoid the used rack";
}

TEST_F(SchedulerTest, TopologyUnsatisfiableWhenCapacityIsSplitAcrossRacks) {
  Queue(0, QueueBuilder("q"));
  Nodes(0, 4, 8, /*per_rack=*/2);
  // One node of each rack is busy: 16 GPUs are free, but not 16 in one rack.
  for (uint32_t n : {1u, 3u}) {
    ASSERT_TRUE(s_->Adopt(WorkloadId(10 + n), WorkloadBuilder("busy", 0).Gpus(8),
                          {{0, NodeId(n), 0xFF, 1000}}, 0)
                    .ok());
  }
  Submit(3, WorkloadBuilder("gang", 0).Gpus(8).Tasks(2).Require(TopologyLevel::kRack));
  Plan p = Cycle(2);
  EXPECT_EQ(BindOf(p, 3), nullptr);
  EXPECT_EQ(ReasonOf(p, 3), PendingReason::kTopologyUnsatisfiable);
  Submit(4, WorkloadBuilder("anywhere", 0).Gpus(8).Tasks(2));
  p = Cycle(3);
  EXPECT_NE(BindOf(p, 4), nullptr) << "without the constraint it fits";
}

TEST_F(SchedulerTest, GangGoesToLowestDomain) {
  Queue(0, QueueBuilder("q"));
  Nodes(0, 4, 8, 2);
  Submit(1, WorkloadBuilder("small-gang", 0).Gpus(2).Tasks(3));
  Plan p = Cycle();
  ASSERT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(NodesOf(*BindOf(p, 1)).size(), 1u) << "3x2 GPUs fit one node";
  Submit(2, WorkloadBuilder("rack-gang", 0).Gpus(8).Tasks(2).Prefer(TopologyLevel::kRack));
  p = Cycle(1);
  ASSERT_NE(BindOf(p, 2), nullptr);
  std::set<uint32_t> racks;
  for (uint32_t n : NodesOf(*BindOf(p, 2))) racks.insert(n / 2);
  EXPECT_EQ(racks.size(), 1u) << "preferred rack is honoured when possible";
}

TEST_F(SchedulerTest, NvlinkDomainKeepsGpusTogether) {
  Queue(0, QueueBuilder("q"));
  Node(0, NodeBuilder("n0").Gpus(8).Nvlink(4));
  Submit(1, WorkloadBuilder("a", 0).Gpus(2));
  Submit(2, WorkloadBuilder("b", 0).Gpus(4).Require(TopologyLevel::kNvlink));
  Plan p = Cycle();
  ASSERT_NE(BindOf(p, 1), nullptr);
  ASSERT_NE(BindOf(p, 2), nullptr);
  GpuMask m = BindOf(p, 2)->tasks[0].gpus;
  EXPECT_TRUE(m == 0x0F || m == 0xF0) << std::hex << m;
}

TEST_F(SchedulerTest, OneTaskChoosesAmongAllModelsByPolicy) {
  Queue(0, QueueBuilder("q"));
  Node(0, NodeBuilder("h100").Gpus(8, 0));
  Node(1, NodeBuilder("a100").Gpus(8, 1));
  Submit(1, WorkloadBuilder("a", 0).Gpus(4).Model(1));
  Plan p = Cycle(0);
  ASSERT_NE(BindOf(p, 1), nullptr);
  Submit(2, WorkloadBuilder("any", 0).Gpus(2));  // best fit is the half-used A100 node
  p = Cycle(1);
  ASSERT_NE(BindOf(p, 2), nullptr);
  EXPECT_EQ(BindOf(p, 2)->tasks[0].node, NodeId(1));
  EXPECT_EQ(s_->QueueUsage(QueueId(0), GpuModelId(1)), 6000);
}

// 3. Quotas and fair share.
TEST_F(SchedulerTest, InQuotaWorkGoesBeforeOlderBorrowers) {
  Queue(0, QueueBuilder("prod").Guarantee(8));
  Queue(1, QueueBuilder("research").Guarantee(0));
  Nodes(0, 1, 8);
  Submit(1, WorkloadBuilder("borrower", 1).Gpus(8).Submitted(0));
  Submit(2, WorkloadBuilder("owner", 0).Gpus(8).Submitted(100));
  Plan p = Cycle(200);
  EXPECT_NE(BindOf(p, 2), nullptr);
  EXPECT_EQ(BindOf(p, 1), nullptr);
}

TEST_F(SchedulerTest, InQuotaOrderIsPriorityThenAge) {
  Queue(0, QueueBuilder("q").Guarantee(8));
  Nodes(0, 1, 8);
  Submit(1, WorkloadBuilder("old-low", 0).Gpus(8).Submitted(0).Priority(0));
  Submit(2, WorkloadBuilder("new-high", 0).Gpus(8).Submitted(50).Priority(10));
  Submit(3, WorkloadBuilder("newer-high", 0).Gpus(8).Submitted(60).Priority(10));
  Plan p = Cycle(100);
  EXPECT_NE(BindOf(p, 2), nullptr);
  EXPECT_EQ(BindOf(p, 1), nullptr);
  EXPECT_EQ(BindOf(p, 3), nullptr);
}

TEST_F(SchedulerTest, LimitIsNeverExceeded) {
  Queue(0, QueueBuilder("q").Guarantee(2, 4));
  Nodes(0, 2, 8);
  for (uint32_t i = 1; i <= 3; ++i) Submit(i, WorkloadBuilder("w", 0).Gpus(2));
  Plan p = Cycle();
  EXPECT_EQ(p.binds.size(), 2u);
  EXPECT_EQ(Usage(0), 4000);
  EXPECT_EQ(ReasonOf(p, 3), PendingReason::kOverLimit);
}

TEST_F(SchedulerTest, ParentLimitHoldsForChildren) {
  Queue(0, QueueBuilder("org").Guarantee(0, 3));
  Queue(1, QueueBuilder("team-a").Parent(0));
  Queue(2, QueueBuilder("team-b").Parent(0));
  Nodes(0, 1, 8);
  Submit(1, WorkloadBuilder("a", 1).Gpus(2));
  Submit(2, WorkloadBuilder("b", 2).Gpus(2));
  Plan p = Cycle();
  EXPECT_EQ(p.binds.size(), 1u);
  EXPECT_EQ(s_->QueueUsage(QueueId(0), GpuModelId(0)), 2000);
  EXPECT_FALSE(s_->Submit(WorkloadId(3), WorkloadBuilder("x", 0)).ok()) << "inner queue";
}

TEST_F(SchedulerTest, QueueThatMayNotBorrowWaits) {
  Queue(0, QueueBuilder("q").Guarantee(2).NoBorrow());
  Nodes(0, 1, 8);
  Submit(1, WorkloadBuilder("a", 0).Gpus(2));
  Submit(2, WorkloadBuilder("b", 0).Gpus(2));
  Plan p = Cycle();
  EXPECT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(ReasonOf(p, 2), PendingReason::kWaitingForQuota);
}

TEST_F(SchedulerTest, UnusedGuaranteeOfNonLendingQueueIsHeldBack) {
  Queue(0, QueueBuilder("private").Guarantee(6).NoLend());
  Queue(1, QueueBuilder("borrower"));
  Nodes(0, 1, 8);
  for (uint32_t i = 1; i <= 4; ++i) Submit(i, WorkloadBuilder("b", 1).Gpus(1));
  Plan p = Cycle();
  EXPECT_EQ(p.binds.size(), 2u) << "only 8 - 6 GPUs may be borrowed";
  EXPECT_EQ(ReasonOf(p, 3), PendingReason::kWaitingForQuota);
}

TEST_F(SchedulerTest, NonPreemptibleWorkRunsOnlyInsideGuarantee) {
  Queue(0, QueueBuilder("q").Guarantee(2));
  Nodes(0, 1, 8);
  Submit(1, WorkloadBuilder("a", 0).Gpus(2).NonPreemptible());
  Submit(2, WorkloadBuilder("b", 0).Gpus(2).NonPreemptible());
  Plan p = Cycle();
  EXPECT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(ReasonOf(p, 2), PendingReason::kWaitingForQuota);
}

TEST_F(SchedulerTest, FairShareSplitsSurplusByWeight) {
  Queue(0, QueueBuilder("a").Weight(3));
  Queue(1, QueueBuilder("b").Weight(1));
  Nodes(0, 1, 8);
  for (uint32_t i = 0; i < 10; ++i) {
    Submit(100 + i, WorkloadBuilder("a", 0).Gpus(1).Submitted(i));
    Submit(200 + i, WorkloadBuilder("b", 1).Gpus(1).Submitted(i));
  }
  Cycle();
  EXPECT_EQ(Usage(0), 6000);
  EXPECT_EQ(Usage(1), 2000);
}

TEST_F(SchedulerTest, DecayedPastUsageLowersPriorityInFairShare) {
  Make(SchedulerConfig{.policy = "bestfit", .fair_share_half_life = 10 * kSecond});
  Queue(0, QueueBuilder("heavy"));
  Queue(1, QueueBuilder("light"));
  Nodes(0, 1, 8);
  Submit(1, WorkloadBuilder("hog", 0).Gpus(8));
  Cycle(0);
  for (Time t = 1; t <= 60; ++t) Cycle(t * kSecond);  // heavy accumulates history
  ASSERT_TRUE(s_->WorkloadFinished(WorkloadId(1)).ok());
  Submit(2, WorkloadBuilder("heavy-next", 0).Gpus(8).Submitted(0));
  Submit(3, WorkloadBuilder("light-next", 1).Gpus(8).Submitted(100 * kSecond));
  Plan p = Cycle(61 * kSecond);
  EXPECT_NE(BindOf(p, 3), nullptr) << "the queue with less history goes first";
  EXPECT_EQ(BindOf(p, 2), nullptr);
}

// 4. Preemption.
class PreemptionTest : public SchedulerTest {
 protected:
  // prod owns 8 GPUs; research borrows everything first.
  void Fill(int borrowers, int gpus_each) {
    Queue(0, QueueBuilder("prod").Guarantee(8));
    Queue(1, QueueBuilder("research"));
    Nodes(0, 2, 8);
    for (int i = 0; i < borrowers; ++i) {
      Submit(100 + static_cast<uint32_t>(i),
             WorkloadBuilder("r", 1).Gpus(gpus_each).Submitted(i).Grace(5 * kSecond));
    }
    Plan p = Cycle(0);
    ASSERT_EQ(p.binds.size(), static_cast<size_t>(borrowers));
  }
};

TEST_F(PreemptionTest, ReclaimsGuaranteeWithSmallestVictimSet) {
  Fill(16, 1);
  Submit(1, WorkloadBuilder("prod-job", 0).Gpus(2).Submitted(10));
  Plan p = Cycle(10);
  ASSERT_EQ(p.evictions.size(), 2u) << "two 1-GPU victims suffice";
  std::set<uint32_t> nodes;
  for (const Eviction& e : p.evictions) {
    EXPECT_EQ(e.reason, EvictionReason::kReclaimGuarantee);
    EXPECT_EQ(e.preemptor, WorkloadId(1));
    EXPECT_EQ(e.grace_period, 5 * kSecond);
    for (const TaskBinding& t : s_->Placement(e.workload)) nodes.insert(t.node.value());
  }
  EXPECT_EQ(nodes.size(), 1u) << "victims free one node, not scattered GPUs";
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kPreempting);
  // No second round of victims while the first is being evicted.
  p = Cycle(11);
  EXPECT_TRUE(p.evictions.empty());
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kPreempting);
}

TEST_F(PreemptionTest, FreedCapacityIsReservedForThePreemptor) {
  Fill(16, 1);
  Submit(1, WorkloadBuilder("prod-job", 0).Gpus(2).Submitted(10));
  Plan p = Cycle(10);
  ASSERT_EQ(p.evictions.size(), 2u);
  // A research job arrives that would fit in the freed GPUs; it must not take them.
  Submit(2, WorkloadBuilder("sneaky", 1).Gpus(1).Submitted(11));
  for (const Eviction& e : p.evictions) ASSERT_TRUE(s_->EvictionCompleted(e.workload).ok());
  p = Cycle(12);
  ASSERT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(BindOf(p, 2), nullptr);
  EXPECT_EQ(Usage(0), 2000);
}

TEST_F(PreemptionTest, NeverEvictsNonPreemptibleOrYoungWork) {
  Queue(0, QueueBuilder("prod").Guarantee(8));
  Queue(1, QueueBuilder("research").Guarantee(8));
  Nodes(0, 1, 8);
  // research has a guarantee so non-preemptible work could start in it; it then
  // over-uses nothing: these may not be victims anyway.
  Submit(100, WorkloadBuilder("np", 1).Gpus(4).NonPreemptible());
  Submit(101, WorkloadBuilder("young", 1).Gpus(4).MinRuntime(60 * kSecond));
  Cycle(0);
  ASSERT_TRUE(s_->UpdateQueue(QueueId(1), QueueBuilder("research")).ok());  // now borrowing
  Submit(1, WorkloadBuilder("prod", 0).Gpus(4).Submitted(1));
  Plan p = Cycle(10 * kSecond);
  EXPECT_TRUE(p.evictions.empty());
  p = Cycle(61 * kSecond);
  ASSERT_EQ(p.evictions.size(), 1u);
  EXPECT_EQ(p.evictions[0].workload, WorkloadId(101));
}

TEST_F(PreemptionTest, BorrowerIsNotEvictedBelowItsGuarantee) {
  Queue(0, QueueBuilder("prod").Guarantee(4));
  Queue(1, QueueBuilder("research").Guarantee(4));
  Nodes(0, 1, 8);
  for (uint32_t i = 0; i < 8; ++i) Submit(100 + i, WorkloadBuilder("r", 1).Gpus(1).Submitted(i));
  Cycle(0);
  Submit(1, WorkloadBuilder("prod", 0).Gpus(4).Submitted(10));
  Submit(2, WorkloadBuilder("prod2", 0).Gpus(1).Submitted(11));
  Plan p = Cycle(10);
  EXPECT_EQ(p.evictions.size(), 4u) << "research keeps its 4 guaranteed GPUs";
}

// Regression: a borrower's head-of-line reservation must neither make the engine evict
// in-quota work nor keep what a victim frees from the preemptor.
TEST_F(PreemptionTest, ReclaimTakesTheBorrowedPartOnlyAndHoldsItForThePreemptor) {
  Queue(0, QueueBuilder("A").Guarantee(4));
  Queue(1, QueueBuilder("C").Guarantee(4));
  Node(0, NodeBuilder("n0").Gpus(4).Rack("r"));
  Node(1, NodeBuilder("n1").Gpus(4).Rack("r"));
  Submit(10, WorkloadBuilder("c1", 1).Gpus(4).Submitted(0));
  Cycle(0);
  Submit(11, WorkloadBuilder("c2", 1).Gpus(1).Submitted(1));
  Cycle(1);
  Submit(12, WorkloadBuilder("a1", 0).Gpus(3).Submitted(2));
  Cycle(2);
  Submit(13, WorkloadBuilder("c3", 1).Gpus(4).Tasks(2).Submitted(3));
  Plan p = Cycle(3);
  ASSERT_EQ(ReasonOf(p, 13), PendingReason::kReserved);
  Submit(1, WorkloadBuilder("a2", 0).Gpus(1).Submitted(4));
  p = Cycle(4);
  ASSERT_EQ(p.evictions.size(), 1u);
  EXPECT_EQ(p.evictions[0].workload, WorkloadId(11)) << "c1 is inside C's guarantee";
  ASSERT_TRUE(s_->EvictionCompleted(WorkloadId(11)).ok());
  p = Cycle(30004);
  EXPECT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(BindOf(p, 11), nullptr);
  EXPECT_EQ(s_->QueueUsage(QueueId(1), GpuModelId(0)), 4000);
}

TEST_F(SchedulerTest, WithoutPreemptionReservationsAreNotLent) {
  Make(SchedulerConfig{.policy = "bestfit", .preemption = false});
  Queue(0, QueueBuilder("q"));
  Nodes(0, 2, 8);
  Submit(100, WorkloadBuilder("long", 0).Gpus(4).Estimate(1000 * kSecond));
  Cycle(0);
  Submit(1, WorkloadBuilder("big", 0).Gpus(8).Tasks(2).Submitted(1));
  Plan p = Cycle(1);
  ASSERT_EQ(ReasonOf(p, 1), PendingReason::kReserved);
  Submit(2, WorkloadBuilder("small", 0).Gpus(4).Submitted(2));
  p = Cycle(2);
  EXPECT_EQ(BindOf(p, 2), nullptr) << "nothing could evict it later";
  EXPECT_EQ(ReasonOf(p, 2), PendingReason::kBlockedByReservation);
}

// Without explanations (explain_pending off, as the simulator runs) a cycle explains
// nothing and decides the same: the blocked job still waits, the rest binds as before.
TEST_F(SchedulerTest, WithoutExplanationsTheSameBindsAndNoPending) {
  Make(SchedulerConfig{.policy = "bestfit", .preemption = false, .explain_pending = false});
  Queue(0, QueueBuilder("q"));
  Nodes(0, 2, 8);
  Submit(100, WorkloadBuilder("long", 0).Gpus(4).Estimate(1000 * kSecond));
  Cycle(0);
  Submit(1, WorkloadBuilder("big", 0).Gpus(8).Tasks(2).Submitted(1));
  Plan p = Cycle(1);
  EXPECT_TRUE(p.pending.empty());
  EXPECT_TRUE(p.binds.empty());
  Submit(2, WorkloadBuilder("small", 0).Gpus(4).Submitted(2));
  Submit(3, WorkloadBuilder("tiny", 0).Gpus(2).Submitted(3));
  p = Cycle(2);
  EXPECT_TRUE(p.pending.empty());
  EXPECT_EQ(BindOf(p, 2), nullptr) << "the reservation still blocks it";
  EXPECT_EQ(BindOf(p, 3), nullptr);
  ASSERT_TRUE(s_->WorkloadFinished(WorkloadId(100)).ok());
  p = Cycle(3);
  EXPECT_NE(BindOf(p, 1), nullptr) << "the gang starts on its reservation";
}

TEST_F(PreemptionTest, HigherPriorityInSameQueue) {
  Queue(0, QueueBuilder("q"));
  Nodes(0, 1, 8);
  Submit(100, WorkloadBuilder("low", 0).Gpus(8).Priority(0));
  Cycle(0);
  Submit(1, WorkloadBuilder("high", 0).Gpus(4).Priority(100).Submitted(1));
  Plan p = Cycle(1);
  ASSERT_EQ(p.evictions.size(), 1u);
  EXPECT_EQ(p.evictions[0].reason, EvictionReason::kPriority);
  // Same priority: no preemption.
  Submit(2, WorkloadBuilder("peer", 0).Gpus(8).Priority(0).Submitted(2));
  p = Cycle(2);
  EXPECT_EQ(EvictionOf(p, 100), nullptr);
}

// 5. Reservations: no starvation, no idle.
TEST_F(SchedulerTest, HeadOfLineGangReservesAndLendsToPreemptibleWork) {
  Queue(0, QueueBuilder("q").Guarantee(32));  // the gang is in-quota
  Nodes(0, 2, 8);
  Submit(100, WorkloadBuilder("long", 0).Gpus(4).NonPreemptible().Estimate(1000 * kSecond));
  Submit(101, WorkloadBuilder("short", 0).Gpus(4).NonPreemptible().Estimate(10 * kSecond));
  Plan p = Cycle(0);
  ASSERT_EQ(p.binds.size(), 2u);
  Submit(1, WorkloadBuilder("big", 0).Gpus(8).Tasks(2).Submitted(1));
  p = Cycle(1);
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kReserved);
  // Non-preemptible work without an estimate would delay the reservation: blocked.
  Submit(2, WorkloadBuilder("np", 0).Gpus(4).NonPreemptible().Submitted(2));
  // Preemptible work borrows the reserved GPUs meanwhile.
  Submit(3, WorkloadBuilder("opportunistic", 0).Gpus(4).Submitted(3));
  p = Cycle(2);
  EXPECT_EQ(ReasonOf(p, 2), PendingReason::kBlockedByReservation);
  ASSERT_NE(BindOf(p, 3), nullptr);
  // The long job ends: the gang would fit if the lent work left: it is evicted for it.
  ASSERT_TRUE(s_->WorkloadFinished(WorkloadId(100)).ok());
  ASSERT_TRUE(s_->WorkloadFinished(WorkloadId(101)).ok());
  p = Cycle(20 * kSecond);
  const Eviction* e = EvictionOf(p, 3);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->reason, EvictionReason::kReservationReady);
  EXPECT_EQ(e->preemptor, WorkloadId(1));
  ASSERT_TRUE(s_->EvictionCompleted(WorkloadId(3)).ok());
  p = Cycle(21 * kSecond);
  EXPECT_NE(BindOf(p, 1), nullptr);
}

TEST_F(SchedulerTest, ShortWorkBackfillsWithoutDelayingTheReservation) {
  Queue(0, QueueBuilder("q").Guarantee(16));
  Nodes(0, 2, 8);
  Submit(100, WorkloadBuilder("long", 0).Gpus(4).NonPreemptible().Estimate(1000 * kSecond));
  Cycle(0);
  Submit(1, WorkloadBuilder("big", 0).Gpus(8).Tasks(2).Submitted(1));
  Plan p = Cycle(1);
  ASSERT_EQ(ReasonOf(p, 1), PendingReason::kReserved);
  Submit(2, WorkloadBuilder("quick", 0).Gpus(4).NonPreemptible().Estimate(100 * kSecond));
  p = Cycle(2);
  EXPECT_NE(BindOf(p, 2), nullptr) << "ends before the reservation is due";
}

TEST_F(SchedulerTest, BorrowersReservationDoesNotBlockInQuotaWork) {
  Queue(0, QueueBuilder("prod").Guarantee(8));
  Queue(1, QueueBuilder("exp"));
  Nodes(0, 2, 8);
  Submit(100, WorkloadBuilder("a", 1).Gpus(4).Estimate(1000 * kSecond));
  Submit(101, WorkloadBuilder("b", 1).Gpus(4).Estimate(1000 * kSecond));
  Plan p = Cycle(0);
  ASSERT_EQ(p.binds.size(), 2u);
  Submit(1, WorkloadBuilder("exp-gang", 1).Gpus(8).Tasks(2).Submitted(1));
  p = Cycle(1);
  ASSERT_EQ(ReasonOf(p, 1), PendingReason::kReserved);
  Submit(2, WorkloadBuilder("prod", 0).Gpus(4).NonPreemptible().Submitted(2));
  p = Cycle(2);
  EXPECT_NE(BindOf(p, 2), nullptr) << "a guarantee outranks a borrower's reservation";
  EXPECT_TRUE(p.evictions.empty());
}

// 6. Fractional GPUs.
TEST_F(SchedulerTest, FractionsShareAGpuUpToItsCapacityAndMemory) {
  Queue(0, QueueBuilder("q"));
  Node(0, NodeBuilder("n0").Gpus(1, 0, 40000));
  for (uint32_t i = 1; i <= 3; ++i) Submit(i, WorkloadBuilder("f", 0).Fraction(300, 10000));
  Submit(4, WorkloadBuilder("f4", 0).Fraction(200, 20000));  // fits milli, not memory
  Submit(5, WorkloadBuilder("f5", 0).Fraction(100, 5000));
  Plan p = Cycle();
  EXPECT_NE(BindOf(p, 1), nullptr);
  EXPECT_NE(BindOf(p, 2), nullptr);
  EXPECT_NE(BindOf(p, 3), nullptr);
  EXPECT_EQ(BindOf(p, 4), nullptr);
  EXPECT_NE(BindOf(p, 5), nullptr);
  EXPECT_EQ(s_->cluster().node(NodeId(0)).gpu_free[0], 0);
  EXPECT_EQ(s_->cluster().node(NodeId(0)).gpu_mem_free[0], 5000);
}

// 8. Elastic workloads.
TEST_F(SchedulerTest, ElasticTasksGrowFromIdleAndShrinkFirst) {
  Queue(0, QueueBuilder("prod").Guarantee(8));
  Queue(1, QueueBuilder("research"));
  Nodes(0, 1, 8);
  Submit(100, WorkloadBuilder("elastic", 1).Gpus(2).Tasks(1, 4));
  Submit(101, WorkloadBuilder("fixed", 1).Gpus(2));
  Plan p = Cycle(0);
  int granted = 0;
  for (const Bind& b : p.binds) granted += static_cast<int>(b.tasks.size());
  EXPECT_EQ(granted, 4) << "1 + 3 elastic + fixed = 8 GPUs";
  Submit(1, WorkloadBuilder("prod", 0).Gpus(4).Submitted(1));
  p = Cycle(1);
  EXPECT_TRUE(p.evictions.empty()) << "elastic tasks go before whole workloads";
  ASSERT_EQ(p.resizes.size(), 1u);
  EXPECT_EQ(p.resizes[0].workload, WorkloadId(100));
  EXPECT_EQ(p.resizes[0].tasks.size(), 2u);
  EXPECT_EQ(p.resizes[0].preemptor, WorkloadId(1));
  for (int32_t t : p.resizes[0].tasks) ASSERT_TRUE(s_->TaskFinished(WorkloadId(100), t).ok());
  p = Cycle(2);
  EXPECT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(s_->state(WorkloadId(100)), WorkloadState::kRunning);
}

TEST_F(SchedulerTest, FinishedGangRanksAreNotReplaced) {
  Queue(0, QueueBuilder("q"));
  Nodes(0, 1, 8);
  Submit(1, WorkloadBuilder("gang", 0).Gpus(2).Tasks(2));
  Submit(2, WorkloadBuilder("elastic", 0).Gpus(1).Tasks(1, 2));
  Plan p = Cycle(0);
  ASSERT_NE(BindOf(p, 1), nullptr);
  ASSERT_TRUE(s_->TaskFinished(WorkloadId(1), 0).ok());  // rank 0 done, rank 1 still running
  ASSERT_TRUE(s_->TaskFinished(WorkloadId(2), 0).ok());
  p = Cycle(1);
  EXPECT_TRUE(p.binds.empty()) << "neither the gang nor the finished elastic task regrows";
  EXPECT_EQ(s_->Placement(WorkloadId(1)).size(), 1u);
}

// 9. Explain.
TEST_F(SchedulerTest, EveryPendingWorkloadHasAReason) {
  Queue(0, QueueBuilder("q").Guarantee(0, 1));
  Queue(1, QueueBuilder("free"));
  Nodes(0, 1, 8, 1000, /*model=*/0);
  Submit(1, WorkloadBuilder("t4", 1).Gpus(1).Model(5));
  Submit(2, WorkloadBuilder("over", 0).Gpus(2));
  Submit(3, WorkloadBuilder("huge", 1).Gpus(16));
  Plan p = Cycle();
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kModelUnavailable);
  EXPECT_EQ(ReasonOf(p, 2), PendingReason::kOverLimit);
  EXPECT_EQ(ReasonOf(p, 3), PendingReason::kUnschedulable) << "16 GPUs on 8-GPU nodes";
  EXPECT_EQ(p.pending.size(), 3u);
}

// Node loss: gangs are requeued as a whole.
TEST_F(SchedulerTest, LostNodeRequeuesTheWholeGang) {
  Queue(0, QueueBuilder("q"));
  Nodes(0, 3, 8);
  Submit(1, WorkloadBuilder("gang", 0).Gpus(8).Tasks(2));
  Plan p = Cycle(0);
  ASSERT_NE(BindOf(p, 1), nullptr);
  uint32_t lost = BindOf(p, 1)->tasks[0].node.value();
  ASSERT_TRUE(
      s_->UpdateNode(
            NodeId(lost),
            NodeBuilder("n" + std::to_string(lost)).Gpus(8).Rack("r0").Status(NodeStatus::kDown))
          .ok());
  p = Cycle(1);
  const Eviction* e = EvictionOf(p, 1);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->reason, EvictionReason::kNodeLost);
  ASSERT_TRUE(s_->EvictionCompleted(WorkloadId(1)).ok());
  p = Cycle(2);
  ASSERT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(NodesOf(*BindOf(p, 1)).count(lost), 0u);
}

TEST_F(SchedulerTest, AdoptRestoresRunningWorkAfterARestart) {
  Queue(0, QueueBuilder("q").Guarantee(8));
  Nodes(0, 2, 8);
  WorkloadSpec gang = WorkloadBuilder("gang", 0).Gpus(4).Tasks(2);
  std::vector<TaskBinding> tasks = {{0, NodeId(1), 0x0F, 1000}, {1, NodeId(1), 0xF0, 1000}};
  ASSERT_TRUE(s_->Adopt(WorkloadId(7), gang, tasks, 0).ok());
  EXPECT_EQ(s_->state(WorkloadId(7)), WorkloadState::kRunning);
  EXPECT_EQ(Usage(0), 8000);
  EXPECT_EQ(s_->cluster().node(NodeId(1)).full_free_gpus(), 0);
  // The same GPUs cannot be adopted twice; nothing changes on failure.
  Status st =
      s_->Adopt(WorkloadId(8), WorkloadBuilder("dup", 0).Gpus(4), {{0, NodeId(1), 0x0F, 1000}}, 0);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(s_->state(WorkloadId(8)), WorkloadState::kFinished);
  EXPECT_EQ(s_->cluster().node(NodeId(1)).full_free_gpus(), 0);
  EXPECT_FALSE(
      s_->Adopt(WorkloadId(9), WorkloadBuilder("bad", 0).Gpus(2), {{0, NodeId(0), 0x1, 1000}}, 0)
          .ok());
  Submit(1, WorkloadBuilder("next", 0).Gpus(8));
  Plan p = Cycle(1);
  ASSERT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(BindOf(p, 1)->tasks[0].node, NodeId(0));
  ASSERT_TRUE(s_->WorkloadFinished(WorkloadId(7)).ok());
  EXPECT_EQ(s_->cluster().node(NodeId(1)).full_free_gpus(), 8);
}

TEST_F(SchedulerTest, BadInputIsRejectedAndChangesNothing) {
  Queue(0, QueueBuilder("q"));
  EXPECT_FALSE(s_->Submit(WorkloadId(1), WorkloadBuilder("w", 7)).ok());
  EXPECT_FALSE(s_->AddQueue(QueueId(0), QueueBuilder("dup")).ok());
  EXPECT_FALSE(s_->AddQueue(QueueId(3), QueueBuilder("orphan").Parent(9)).ok());
  Submit(1, WorkloadBuilder("w", 0));
  EXPECT_EQ(s_->Submit(WorkloadId(1), WorkloadBuilder("w", 0)).code(),
            core::StatusCode::kAlreadyExists);
  EXPECT_FALSE(s_->Cancel(WorkloadId(99)).ok());
  EXPECT_FALSE(s_->EvictionCompleted(WorkloadId(1)).ok());
  EXPECT_FALSE(s_->TaskFinished(WorkloadId(1), 0).ok());
  EXPECT_FALSE(Scheduler::Create(SchedulerConfig{.policy = "nope"}).ok());
  EXPECT_EQ(s_->state(WorkloadId(1)), WorkloadState::kPending);
}

}  // namespace
}  // namespace gpuorch::sched
