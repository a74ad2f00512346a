// The suspected faults of the engine review (issue 8, section 1), one scenario each. Every
// test states the situation the review described and what the engine must do instead.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "sched/scheduler.h"
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
using testing::SchedulerTest;
using testing::WorkloadBuilder;

class EngineFaultTest : public SchedulerTest {
 protected:
  // Nodes whose GPUs are reserved for `holder` right now.
  std::set<uint32_t> HeldBy(uint32_t holder) const {
    std::set<uint32_t> out;
    for (const NodeState& n : s_->cluster().nodes()) {
      if (n.present && n.reserved_gpus != 0 && n.reserved_for == WorkloadId(holder)) {
        out.insert(n.id.value());
      }
    }
    return out;
  }
  void SetStatus(uint32_t node, NodeStatus st, int gpus = 8) {
    ASSERT_TRUE(
        s_->UpdateNode(NodeId(node), NodeBuilder("n" + std::to_string(node)).Gpus(gpus).Status(st))
            .ok());
  }
  static std::set<int32_t> ResizedTasks(const Plan& p, uint32_t id) {
    std::set<int32_t> out;
    for (const Resize& r : p.resizes) {
      if (r.workload == WorkloadId(id)) out.insert(r.tasks.begin(), r.tasks.end());
    }
    return out;
  }
};

// 1. A head-of-line gang reclaims lent GPUs once, not again while its victims leave.
TEST_F(EngineFaultTest, ReclaimingLentGpusEvictsOnlyWhatIsNeeded) {
  Queue(0, QueueBuilder("q").Guarantee(32));
  Nodes(0, 2, 8);
  Submit(100, WorkloadBuilder("long", 0).Gpus(8).NonPreemptible().Estimate(100 * kSecond));
  Cycle(0);
  Submit(1, WorkloadBuilder("gang", 0).Gpus(4).Tasks(3).Submitted(1));
  Plan p = Cycle(1);
  ASSERT_EQ(ReasonOf(p, 1), PendingReason::kReserved);
  ASSERT_EQ(HeldBy(1).size(), 2u);
  Submit(2, WorkloadBuilder("j1", 0).Gpus(4).Submitted(2));
  Submit(3, WorkloadBuilder("j2", 0).Gpus(4).Submitted(2));
  p = Cycle(2);
  ASSERT_NE(BindOf(p, 2), nullptr);
  ASSERT_NE(BindOf(p, 3), nullptr);
  ASSERT_TRUE(s_->WorkloadFinished(WorkloadId(100)).ok());
  p = Cycle(10 * kSecond);
  ASSERT_EQ(p.evictions.size(), 1u) << "one 4-GPU job frees what the third task needs";
  const uint32_t victim = p.evictions[0].workload.value();
  const uint32_t other = victim == 2 ? 3 : 2;
  EXPECT_EQ(p.evictions[0].reason, EvictionReason::kReservationReady);
  // The victim is still leaving (grace period): nothing else is evicted meanwhile.
  p = Cycle(11 * kSecond);
  EXPECT_TRUE(p.evictions.empty()) << "evicted " << p.evictions.size() << " more";
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kPreempting);
  ASSERT_TRUE(s_->EvictionCompleted(WorkloadId(victim)).ok());
  p = Cycle(12 * kSecond);
  EXPECT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(s_->state(WorkloadId(other)), WorkloadState::kRunning);
}

// 2a. Two preemptors never take the same stopping tasks; both run once their tasks stop.
// (A node holds room for one preemptor at a time, so p2 preempts once p1 has bound.)
TEST_F(EngineFaultTest, PreemptorsDoNotShareStoppingTasks) {
  Queue(0, QueueBuilder("q"));
  Nodes(0, 1, 8);
  Submit(100, WorkloadBuilder("service", 0).Gpus(1).Tasks(1, 8));
  Plan p = Cycle(0);
  ASSERT_EQ(s_->Placement(WorkloadId(100)).size(), 8u);
  Submit(1, WorkloadBuilder("p1", 0).Gpus(1).Priority(10).Submitted(1));
  p = Cycle(1);
  std::set<int32_t> first = ResizedTasks(p, 100);
  ASSERT_EQ(first.size(), 1u);
  Submit(2, WorkloadBuilder("p2", 0).Gpus(1).Priority(10).Submitted(2));
  std::set<int32_t> second;
  for (Time t = 2; t < 8 && s_->state(WorkloadId(2)) == WorkloadState::kPending; ++t) {
    p = Cycle(t);
    for (int32_t task : ResizedTasks(p, 100)) {
      EXPECT_EQ(first.count(task), 0u) << "task " << task << " taken twice";
      second.insert(task);
    }
    // Tasks stop once asked to (a grace period of one cycle).
    for (int32_t task : first) (void)s_->TaskFinished(WorkloadId(100), task);
    for (int32_t task : second) (void)s_->TaskFinished(WorkloadId(100), task);
  }
  EXPECT_EQ(second.size(), 1u);
  EXPECT_EQ(s_->state(WorkloadId(1)), WorkloadState::kRunning);
  EXPECT_EQ(s_->state(WorkloadId(2)), WorkloadState::kRunning);
  EXPECT_EQ(s_->Placement(WorkloadId(100)).size(), 6u);
}

// 2b. A node lost during a shrink releases the preemptor, which then looks again.
TEST_F(EngineFaultTest, NodeLostDuringAShrinkReleasesThePreemptor) {
  Queue(0, QueueBuilder("q"));
  Nodes(0, 2, 8);
  Submit(100, WorkloadBuilder("service", 0).Gpus(1).Tasks(1, 16));
  Cycle(0);
  ASSERT_EQ(s_->Placement(WorkloadId(100)).size(), 16u);
  Submit(1, WorkloadBuilder("p1", 0).Gpus(4).Priority(10).Submitted(1));
  Plan p = Cycle(1);
  ASSERT_EQ(p.resizes.size(), 1u);
  uint32_t shrunk = 0;
  for (const TaskBinding& t : s_->Placement(WorkloadId(100))) {
    if (t.task == p.resizes[0].tasks[0]) shrunk = t.node.value();
  }
  SetStatus(shrunk, NodeStatus::kDown);
  p = Cycle(2);
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kPreempting) << "it preempts again on the other node";
  std::set<int32_t> again = ResizedTasks(p, 100);
  ASSERT_EQ(again.size(), 4u);
  for (int32_t t : again) ASSERT_TRUE(s_->TaskFinished(WorkloadId(100), t).ok());
  p = Cycle(3);
  EXPECT_NE(BindOf(p, 1), nullptr);
}

// 3. A shrink takes only the tasks the preemptor needs, on one node or for a gang.
TEST_F(EngineFaultTest, ShrinksTakeOnlyWhatIsNeeded) {
  Queue(0, QueueBuilder("q"));
  Nodes(0, 1, 8);
  Submit(100, WorkloadBuilder("service", 0).Gpus(1).Tasks(1, 8));
  Cycle(0);
  Submit(1, WorkloadBuilder("one", 0).Gpus(1).Priority(10).Submitted(1));
  Plan p = Cycle(1);
  EXPECT_EQ(ResizedTasks(p, 100).size(), 1u);
  Submit(2, WorkloadBuilder("gang", 0).Gpus(1).Tasks(2).Priority(10).Submitted(2));
  p = Cycle(2);
  EXPECT_EQ(ResizedTasks(p, 100).size(), 2u)
      << "a 2x1-GPU gang needs two tasks; "
      << ToString(ReasonOf(p, 2).value_or(PendingReason::kNoFit));
}

// 4. Reclaim never leaves the victim's queue below its guarantee.
TEST_F(EngineFaultTest, ReclaimNeverTakesAQueueBelowItsGuarantee) {
  Queue(0, QueueBuilder("A").Guarantee(1));
  Queue(1, QueueBuilder("B").Guarantee(64));
  Nodes(0, 9, 8);
  Submit(100, WorkloadBuilder("x", 1).Gpus(8).Submitted(0));
  Submit(101, WorkloadBuilder("y", 1).Gpus(8).Tasks(8).Submitted(1));
  Cycle(0);
  ASSERT_EQ(Usage(1), 72000);
  Submit(1, WorkloadBuilder("p", 0).Gpus(1).Submitted(2));
  Plan p = Cycle(1);
  EXPECT_EQ(EvictionOf(p, 101), nullptr) << "evicting y would leave B at 8 of 64";
  ASSERT_EQ(p.evictions.size(), 1u);
  EXPECT_EQ(p.evictions[0].workload, WorkloadId(100));
  ASSERT_TRUE(s_->EvictionCompleted(WorkloadId(100)).ok());
  EXPECT_EQ(Usage(1), 64000);
  p = Cycle(2);
  EXPECT_NE(BindOf(p, 1), nullptr);
}

// 5. A reservation that becomes ready never evicts non-preemptible or young lent work.
TEST_F(EngineFaultTest, ReadyReservationRespectsProtectedWork) {
  Queue(0, QueueBuilder("q").Guarantee(32));
  Nodes(0, 2, 8);
  Submit(100, WorkloadBuilder("long", 0).Gpus(8).NonPreemptible().Estimate(100 * kSecond));
  Cycle(0);
  Submit(1, WorkloadBuilder("gang", 0).Gpus(8).Tasks(2).Submitted(1));
  ASSERT_EQ(ReasonOf(Cycle(1), 1), PendingReason::kReserved);
  Submit(2, WorkloadBuilder("np", 0).Gpus(4).NonPreemptible().Estimate(50 * kSecond).Submitted(2));
  Submit(3, WorkloadBuilder("young", 0).Gpus(4).MinRuntime(60 * kSecond).Submitted(2));
  Plan p = Cycle(2 * kSecond);
  ASSERT_NE(BindOf(p, 2), nullptr);
  ASSERT_NE(BindOf(p, 3), nullptr);
  ASSERT_TRUE(s_->WorkloadFinished(WorkloadId(100)).ok());
  p = Cycle(10 * kSecond);
  EXPECT_TRUE(p.evictions.empty()) << "np is not preemptible, young is under min_runtime";
  ASSERT_TRUE(s_->WorkloadFinished(WorkloadId(2)).ok());
  p = Cycle(50 * kSecond);
  EXPECT_TRUE(p.evictions.empty()) << "young is still under min_runtime";
  p = Cycle(63 * kSecond);
  ASSERT_NE(EvictionOf(p, 3), nullptr);
  EXPECT_EQ(EvictionOf(p, 3)->reason, EvictionReason::kReservationReady);
}

// 6. A required NVLink task looks past a node whose free GPUs are split across domains.
TEST_F(EngineFaultTest, RequiredNvlinkUsesAnotherNode) {
  Queue(0, QueueBuilder("q"));
  Node(0, NodeBuilder("n0").Gpus(8).Nvlink(4));
  Node(1, NodeBuilder("n1").Gpus(8).Nvlink(4));
  // n0 keeps GPUs 2,3 and 6,7 free: four GPUs, two in each domain.
  ASSERT_TRUE(
      s_->Adopt(WorkloadId(100), WorkloadBuilder("a", 0).Gpus(2), {{0, NodeId(0), 0x03, 1000}}, 0)
          .ok());
  ASSERT_TRUE(
      s_->Adopt(WorkloadId(101), WorkloadBuilder("b", 0).Gpus(2), {{0, NodeId(0), 0x30, 1000}}, 0)
          .ok());
  Submit(1, WorkloadBuilder("tp4", 0).Gpus(4).Require(TopologyLevel::kNvlink));
  Plan p = Cycle(1);
  ASSERT_NE(BindOf(p, 1), nullptr) << ToString(ReasonOf(p, 1).value_or(PendingReason::kNoFit));
  EXPECT_EQ(BindOf(p, 1)->tasks[0].node, NodeId(1));
  EXPECT_TRUE(p.evictions.empty());
  // A two-task gang needing one domain for all its GPUs goes the same way.
  Submit(2, WorkloadBuilder("tp2x2", 0).Gpus(2).Tasks(2).Require(TopologyLevel::kNvlink));
  p = Cycle(2);
  ASSERT_NE(BindOf(p, 2), nullptr);
  EXPECT_EQ(NodesOf(*BindOf(p, 2)), std::set<uint32_t>{1});
}

// 7. Work that cannot fit even the empty cluster is Unschedulable and blocks nobody.
TEST_F(EngineFaultTest, UnschedulableWorkBlocksNobody) {
  Queue(0, QueueBuilder("q"));
  Nodes(0, 2, 8, /*per_rack=*/1);
  Submit(1, WorkloadBuilder("16gpu", 0).Gpus(16));
  Submit(2, WorkloadBuilder("too-big-gang", 0).Gpus(8).Tasks(3));
  Submit(3, WorkloadBuilder("no-rack-holds-it", 0).Gpus(8).Tasks(2).Require(TopologyLevel::kRack));
  Submit(100, WorkloadBuilder("elastic", 0).Gpus(1).Tasks(1, 16).Submitted(1));
  Plan p = Cycle(0);
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kUnschedulable);
  EXPECT_EQ(ReasonOf(p, 2), PendingReason::kUnschedulable);
  EXPECT_EQ(ReasonOf(p, 3), PendingReason::kUnschedulable);
  EXPECT_EQ(s_->Placement(WorkloadId(100)).size(), 16u) << "growth goes on";
  EXPECT_TRUE(p.evictions.empty());
  EXPECT_TRUE(p.resizes.empty());
  // A third node makes the gang possible: it is re-evaluated and waits for capacity.
  Node(2, NodeBuilder("n2").Gpus(8).Rack("r0"));
  p = Cycle(1);
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kUnschedulable);
  EXPECT_NE(ReasonOf(p, 2), PendingReason::kUnschedulable);
  EXPECT_NE(ReasonOf(p, 3), PendingReason::kUnschedulable);
}

// 8. Several gangs hold reservations at once, and a holder re-plans when a node goes.
TEST_F(EngineFaultTest, SeveralReservationsAndReplanningAfterNodeLoss) {
  Queue(0, QueueBuilder("q").Guarantee(64));
  Nodes(0, 8, 8);
  for (uint32_t i = 0; i < 8; ++i) {
    Submit(100 + i, WorkloadBuilder("long", 0)
                        .Gpus(8)
                        .NonPreemptible()
                        .Estimate((10 + i) * 10 * kSecond)
                        .Submitted(0));
  }
  Cycle(0);
  Submit(1, WorkloadBuilder("g1", 0).Gpus(8).Tasks(2).Submitted(1));
  Submit(2, WorkloadBuilder("g2", 0).Gpus(8).Tasks(2).Submitted(2));
  Plan p = Cycle(1);
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kReserved);
  EXPECT_EQ(ReasonOf(p, 2), PendingReason::kReserved);
  std::set<uint32_t> h1 = HeldBy(1), h2 = HeldBy(2);
  EXPECT_EQ(h1.size(), 2u);
  EXPECT_EQ(h2.size(), 2u);
  for (uint32_t n : h1) EXPECT_EQ(h2.count(n), 0u);
  // A held node goes down: its holder re-plans on nodes that are up.
  const uint32_t lost = *h1.begin();
  SetStatus(lost, NodeStatus::kDown);
  p = Cycle(2);
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kReserved);
  EXPECT_EQ(HeldBy(1).size(), 2u);
  EXPECT_EQ(HeldBy(1).count(lost), 0u);
  // A held node is drained: the same.
  const uint32_t drained = *HeldBy(2).begin();
  SetStatus(drained, NodeStatus::kDraining);
  p = Cycle(3);
  EXPECT_EQ(ReasonOf(p, 2), PendingReason::kReserved);
  EXPECT_EQ(HeldBy(2).size(), 2u);
  EXPECT_EQ(HeldBy(2).count(drained), 0u);
}

TEST_F(EngineFaultTest, ReservationsAreCappedPerModelPool) {
  Make(SchedulerConfig{.policy = "bestfit", .max_reservations = 1});
  Queue(0, QueueBuilder("q").Guarantee(64));
  Nodes(0, 2, 8, 1000, /*model=*/0);
  Nodes(2, 2, 8, 1000, /*model=*/1);
  for (uint32_t n = 0; n < 4; ++n) {
    Submit(100 + n, WorkloadBuilder("long", 0).Gpus(4).Model(n < 2 ? 0 : 1).NonPreemptible());
  }
  Cycle(0);
  Submit(1, WorkloadBuilder("g0", 0).Gpus(8).Tasks(2).Model(0).Submitted(1));
  Submit(2, WorkloadBuilder("g0b", 0).Gpus(8).Tasks(2).Model(0).Submitted(2));
  Submit(3, WorkloadBuilder("g1", 0).Gpus(8).Tasks(2).Model(1).Submitted(3));
  Plan p = Cycle(1);
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kReserved);
  EXPECT_NE(ReasonOf(p, 2), PendingReason::kReserved) << "one reservation per model pool";
  EXPECT_EQ(ReasonOf(p, 3), PendingReason::kReserved) << "the other pool has its own";
}

// 10. A refused call changes nothing; model ids past the limit are refused.
TEST_F(EngineFaultTest, RefusedCallsChangeNothing) {
  Queue(0, QueueBuilder("q"));
  Nodes(0, 1, 8);
  Submit(1, WorkloadBuilder("w", 0).Gpus(8));
  Cycle(0);
  core::NodeSpec bad = NodeBuilder("n0").Gpus(8).Status(NodeStatus::kDown);
  bad.milli_cpu = -5;
  EXPECT_FALSE(s_->UpdateNode(NodeId(0), bad).ok());
  EXPECT_EQ(s_->state(WorkloadId(1)), WorkloadState::kRunning) << "a refused Down lost nothing";
  EXPECT_EQ(s_->Placement(WorkloadId(1)).size(), 1u);
  EXPECT_FALSE(s_->AddNode(NodeId(5), NodeBuilder("n5").Gpus(8, core::kMaxGpuModels)).ok());
  EXPECT_FALSE(s_->AddNode(NodeId(6), NodeBuilder("n6").Gpus(8, 1000)).ok());
  EXPECT_EQ(s_->cluster().node_count(), 1u);
}

// 10. Finished workloads free their records; any 32-bit id is accepted.
TEST_F(EngineFaultTest, FinishedWorkloadsFreeTheirRecords) {
  Queue(0, QueueBuilder("q"));
  Nodes(0, 1, 8);
  const uint32_t base = 3'000'000'000u;
  for (uint32_t round = 0; round < 50; ++round) {
    for (uint32_t i = 0; i < 8; ++i) Submit(base + round * 8 + i, WorkloadBuilder("w", 0));
    Plan p = Cycle(round);
    ASSERT_EQ(p.binds.size(), 8u);
    for (const Bind& b : p.binds) ASSERT_TRUE(s_->WorkloadFinished(b.workload).ok());
  }
  EXPECT_EQ(s_->workload_records(), 0u);
  EXPECT_LE(s_->workload_capacity(), 16u) << "slots are reused, not grown per id";
}

}  // namespace
}  // namespace gpuorch::sched
