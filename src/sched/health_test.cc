// GPU health (NodeSpec::unhealthy_gpus): the engine places no new work on an unhealthy GPU,
// counts it as neither capacity nor free, holds none for anyone and evicts nothing to get
// one, while what already runs there keeps running.
#include <gtest/gtest.h>

#include "sched/cluster_state.h"
#include "sched/scheduler.h"
#include "sched/scheduler_fixture.h"
#include "sched/testing.h"

namespace gpuorch::sched {
namespace {

using core::kSecond;
using core::TopologyLevel;
using testing::NodeBuilder;
using testing::QueueBuilder;
using testing::SchedulerTest;
using testing::WorkloadBuilder;

TaskRequest Whole(int n) {
  TaskRequest t;
  t.gpu_count = n;
  t.gpu_milli = 1000;
  t.milli_cpu = 1000;
  return t;
}

TaskRequest Fraction(int milli) {
  TaskRequest t;
  t.gpu_count = 1;
  t.gpu_milli = milli;
  t.milli_cpu = 1000;
  return t;
}

// --- ClusterState

TEST(Health, UnhealthyGpuIsNeitherCapacityNorFreeNorUsable) {
  ClusterState c;
  ASSERT_TRUE(c.AddNode(NodeId(0), NodeBuilder("a").Gpus(8).Unhealthy(0b1001)).ok());
  const NodeState& n = c.node(NodeId(0));
  EXPECT_EQ(n.healthy_gpus(), 0b11110110);
  EXPECT_EQ(UsableGpus(n, WorkloadId(1), kUseLent), 0b11110110);
  EXPECT_EQ(n.full_free_gpus(), 6);
  EXPECT_EQ(n.idle_milli(), 6000);
  EXPECT_FALSE(n.gpus_in_use());
  EXPECT_EQ(c.capacity_milli(GpuModelId(0)), 6000);
  EXPECT_EQ(c.free_milli(GpuModelId(0)), 6000);
  EXPECT_EQ(c.rack_free_histogram(n.rack)[6], 1);
  EXPECT_TRUE(Fits(n, Whole(6), WorkloadId(1), 0));
  EXPECT_FALSE(Fits(n, Whole(7), WorkloadId(1), 0));
  EXPECT_EQ(SelectGpusBestFit(n, Whole(2), UsableGpus(n, WorkloadId(1), 0)), 0b0110);
  // A reservation of the healthy GPUs leaves nothing to others; the bad ones stay out.
  c.Reserve(NodeId(0), n.healthy_gpus(), WorkloadId(9), /*lendable=*/false);
  EXPECT_EQ(UsableGpus(n, WorkloadId(1), 0), 0);
  EXPECT_EQ(UsableGpus(n, WorkloadId(9), 0), 0b11110110);
}

TEST(Health, MaskChangesWhileTasksRunOnTheGpu) {
  ClusterState c;
  ASSERT_TRUE(c.AddNode(NodeId(0), NodeBuilder("a").Gpus(2)).ok());
  c.Allocate(NodeId(0), Fraction(400), 0b01);
  // GPU 0 fails under its task: accepted, the allocation is kept, nothing new fits there.
  ASSERT_TRUE(c.CheckUpdate(NodeId(0), NodeBuilder("a").Gpus(2).Unhealthy(0b01)).ok());
  ASSERT_TRUE(c.UpdateNode(NodeId(0), NodeBuilder("a").Gpus(2).Unhealthy(0b01)).ok());
  const NodeState& n = c.node(NodeId(0));
  EXPECT_EQ(n.gpu_free[0], 600);
  EXPECT_TRUE(n.gpus_in_use());
  EXPECT_EQ(c.capacity_milli(GpuModelId(0)), 1000);
  EXPECT_EQ(c.free_milli(GpuModelId(0)), 1000);
  EXPECT_EQ(SelectGpusBestFit(n, Fraction(500), UsableGpus(n, WorkloadId(1), 0)), 0b10);
  // The task ends on the bad GPU: free totals do not move (it is not capacity).
  c.Release(NodeId(0), Fraction(400), 0b01);
  EXPECT_EQ(n.gpu_free[0], 1000);
  EXPECT_EQ(c.free_milli(GpuModelId(0)), 1000);
  // Healthy again: back in every count.
  ASSERT_TRUE(c.UpdateNode(NodeId(0), NodeBuilder("a").Gpus(2)).ok());
  EXPECT_EQ(c.capacity_milli(GpuModelId(0)), 2000);
  EXPECT_EQ(c.free_milli(GpuModelId(0)), 2000);
  // Both unhealthy: no capacity of the model is left.
  ASSERT_TRUE(c.UpdateNode(NodeId(0), NodeBuilder("a").Gpus(2).Unhealthy(0b11)).ok());
  EXPECT_EQ(c.capacity_milli(GpuModelId(0)), 0);
  EXPECT_EQ(c.free_milli(GpuModelId(0)), 0);
}

TEST(Health, GroupKeySeparatesNodesByUnhealthyGpus) {
  ClusterState c;
  ASSERT_TRUE(c.AddNode(NodeId(0), NodeBuilder("a").Gpus(8)).ok());
  ASSERT_TRUE(c.AddNode(NodeId(1), NodeBuilder("b").Gpus(8)).ok());
  EXPECT_EQ(c.group_count(), 1u);
  ASSERT_TRUE(c.UpdateNode(NodeId(1), NodeBuilder("b").Gpus(8).Unhealthy(0b1)).ok());
  EXPECT_EQ(c.group_count(), 2u);
  ASSERT_TRUE(c.UpdateNode(NodeId(1), NodeBuilder("b").Gpus(8)).ok());
  EXPECT_EQ(c.group_count(), 1u);
}

// Two nodes with GPU 0 unhealthy and the same free amounts on other GPUs: which GPU is
// free decides the fit, so they are not one group (GPUs are not sorted in the key).
TEST(Health, GroupKeyKeepsGpuOrderWhenAGpuIsUnhealthy) {
  ClusterState c;
  ASSERT_TRUE(c.AddNode(NodeId(0), NodeBuilder("a").Gpus(2)).ok());
  ASSERT_TRUE(c.AddNode(NodeId(1), NodeBuilder("b").Gpus(2)).ok());
  c.Allocate(NodeId(0), Fraction(500), 0b10);  // a: {1000, 500}
  c.Allocate(NodeId(1), Fraction(500), 0b01);  // b: {500, 1000}
  EXPECT_EQ(c.group_count(), 1u);              // the same multiset while healthy
  ASSERT_TRUE(c.UpdateNode(NodeId(0), NodeBuilder("a").Gpus(2).Unhealthy(0b01)).ok());
  ASSERT_TRUE(c.UpdateNode(NodeId(1), NodeBuilder("b").Gpus(2).Unhealthy(0b01)).ok());
  EXPECT_EQ(c.group_count(), 2u);
  EXPECT_FALSE(Fits(c.node(NodeId(0)), Whole(1), WorkloadId(1), 0));
  EXPECT_TRUE(Fits(c.node(NodeId(1)), Whole(1), WorkloadId(1), 0));
}

// --- Scheduler

using HealthTest = SchedulerTest;

TEST_F(HealthTest, WholeGpuTasksNeverLandOnAnUnhealthyGpu) {
  Queue(0, QueueBuilder("q"));
  Node(0, NodeBuilder("n0").Gpus(4).Unhealthy(0b0101));
  Submit(1, WorkloadBuilder("a", 0).Gpus(1));
  Submit(2, WorkloadBuilder("b", 0).Gpus(1));
  Submit(3, WorkloadBuilder("c", 0).Gpus(1));
  Plan p = Cycle();
  GpuMask used = 0;
  for (uint32_t w : {1u, 2u}) {
    ASSERT_NE(BindOf(p, w), nullptr) << w;
    used |= BindOf(p, w)->tasks[0].gpus;
  }
  EXPECT_EQ(used, 0b1010);
  EXPECT_EQ(BindOf(p, 3), nullptr);  // two healthy GPUs, both taken
  EXPECT_EQ(ReasonOf(p, 3), PendingReason::kReserved);
}

TEST_F(HealthTest, FractionsNeverLandOnAnUnhealthyGpu) {
  Queue(0, QueueBuilder("q"));
  Node(0, NodeBuilder("n0").Gpus(2).Unhealthy(0b10));
  for (uint32_t w = 1; w <= 3; ++w) Submit(w, WorkloadBuilder("f", 0).Fraction(500));
  Plan p = Cycle();
  for (uint32_t w : {1u, 2u}) {
    ASSERT_NE(BindOf(p, w), nullptr) << w;
    EXPECT_EQ(BindOf(p, w)->tasks[0].gpus, 0b01) << w;
  }
  EXPECT_EQ(BindOf(p, 3), nullptr);
}

// Two otherwise identical nodes, GPU 0 of node 0 unhealthy. Best fit sees node 0 as the
// fuller one (one healthy GPU) and takes its healthy GPU; the next fraction no longer fits
// there and goes to node 1.
TEST_F(HealthTest, BestFitScoresTheHealthyGpusOnly) {
  Queue(0, QueueBuilder("q"));
  Node(0, NodeBuilder("n0").Gpus(2).Unhealthy(0b01));
  Node(1, NodeBuilder("n1").Gpus(2));
  EXPECT_EQ(s_->cluster().group_count(), 2u);
  Submit(1, WorkloadBuilder("a", 0).Fraction(600));
  Plan p = Cycle();
  ASSERT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(BindOf(p, 1)->tasks[0].node, NodeId(0));
  EXPECT_EQ(BindOf(p, 1)->tasks[0].gpus, 0b10);
  Submit(2, WorkloadBuilder("b", 0).Fraction(500));
  p = Cycle(1);
  ASSERT_NE(BindOf(p, 2), nullptr);
  EXPECT_EQ(BindOf(p, 2)->tasks[0].node, NodeId(1));
}

TEST_F(HealthTest, GangAvoidsTheNodeWithABadGpuOrWaits) {
  Queue(0, QueueBuilder("q"));
  Node(0, NodeBuilder("n0").Gpus(4).Unhealthy(0b1000));
  Node(1, NodeBuilder("n1").Gpus(4));
  // Four tasks on one node: only node 1 has four healthy GPUs.
  Submit(1, WorkloadBuilder("node-gang", 0).Gpus(1).Tasks(4).Require(TopologyLevel::kNode));
  Plan p = Cycle();
  ASSERT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(NodesOf(*BindOf(p, 1)), std::set<uint32_t>{1});
  // Three more tasks anywhere: node 0's three healthy GPUs.
  Submit(2, WorkloadBuilder("spread", 0).Gpus(1).Tasks(3));
  p = Cycle(1);
  ASSERT_NE(BindOf(p, 2), nullptr);
  for (const TaskBinding& t : BindOf(p, 2)->tasks) {
    EXPECT_EQ(t.node, NodeId(0));
    EXPECT_EQ(t.gpus & 0b1000, 0);
  }
  // Every healthy GPU is taken: one more task waits, the bad GPU stays idle.
  Submit(3, WorkloadBuilder("one-more", 0).Gpus(1));
  p = Cycle(2);
  EXPECT_EQ(BindOf(p, 3), nullptr);
  EXPECT_EQ(s_->cluster().node(NodeId(0)).gpu_free[3], 1000);
}

// Work that could run only with the unhealthy GPUs does not fit the cluster as it is: it
// is Unschedulable (it waits for the cluster to change), not waiting for busy GPUs.
TEST_F(HealthTest, WorkThatNeedsUnhealthyGpusIsUnschedulable) {
  Queue(0, QueueBuilder("q"));
  Node(0, NodeBuilder("n0").Gpus(8).Unhealthy(0b1));
  Node(1, NodeBuilder("n1").Gpus(4, /*model=*/1).Unhealthy(0b1111));
  Submit(1, WorkloadBuilder("eight", 0).Gpus(8));
  Submit(2, WorkloadBuilder("on-model-1", 0).Gpus(1).Model(1));
  Plan p = Cycle();
  EXPECT_EQ(BindOf(p, 1), nullptr);
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kUnschedulable);
  // No healthy GPU of model 1 anywhere: the model is unavailable.
  EXPECT_EQ(ReasonOf(p, 2), PendingReason::kModelUnavailable);
  EXPECT_EQ(s_->holds().reserved_nodes, 0u);
  // The GPUs recover: both start.
  ASSERT_TRUE(s_->UpdateNode(NodeId(0), NodeBuilder("n0").Gpus(8)).ok());
  ASSERT_TRUE(s_->UpdateNode(NodeId(1), NodeBuilder("n1").Gpus(4, 1)).ok());
  p = Cycle(1);
  EXPECT_NE(BindOf(p, 1), nullptr);
  EXPECT_NE(BindOf(p, 2), nullptr);
}

// A GPU fails under a running task: the task keeps running (no eviction: an operator
// drains), nothing new lands on that GPU, and once healthy it is used again.
TEST_F(HealthTest, RunningTaskStaysWhenItsGpuTurnsUnhealthy) {
  Queue(0, QueueBuilder("q"));
  Node(0, NodeBuilder("n0").Gpus(2));
  Submit(1, WorkloadBuilder("a", 0).Fraction(500));
  Plan p = Cycle();
  ASSERT_NE(BindOf(p, 1), nullptr);
  ASSERT_EQ(BindOf(p, 1)->tasks[0].gpus, 0b01);
  ASSERT_TRUE(s_->UpdateNode(NodeId(0), NodeBuilder("n0").Gpus(2).Unhealthy(0b01)).ok());
  // Best fit would put a fraction next to a on GPU 0; it goes to GPU 1 instead.
  Submit(2, WorkloadBuilder("b", 0).Fraction(300));
  p = Cycle(1);
  EXPECT_TRUE(p.evictions.empty());
  EXPECT_EQ(s_->state(WorkloadId(1)), WorkloadState::kRunning);
  EXPECT_EQ(s_->Placement(WorkloadId(1))[0].gpus, 0b01);
  ASSERT_NE(BindOf(p, 2), nullptr);
  EXPECT_EQ(BindOf(p, 2)->tasks[0].gpus, 0b10);
  // A whole GPU: GPU 1 is partly taken, GPU 0 unhealthy.
  Submit(3, WorkloadBuilder("c", 0).Gpus(1));
  p = Cycle(2);
  EXPECT_EQ(BindOf(p, 3), nullptr);
  EXPECT_EQ(s_->cluster().free_milli(GpuModelId(0)), 700);
  // a ends on the bad GPU, and the GPU recovers: c takes it.
  ASSERT_TRUE(s_->WorkloadFinished(WorkloadId(1)).ok());
  p = Cycle(3);
  EXPECT_EQ(BindOf(p, 3), nullptr);
  ASSERT_TRUE(s_->UpdateNode(NodeId(0), NodeBuilder("n0").Gpus(2)).ok());
  p = Cycle(4);
  ASSERT_NE(BindOf(p, 3), nullptr);
  EXPECT_EQ(BindOf(p, 3)->tasks[0].gpus, 0b01);
}

// A control plane restarting while a GPU is bad re-enters the work running on it.
TEST_F(HealthTest, AdoptsWorkRunningOnAnUnhealthyGpu) {
  Queue(0, QueueBuilder("q"));
  Node(0, NodeBuilder("n0").Gpus(2).Unhealthy(0b01));
  ASSERT_TRUE(
      s_->Adopt(WorkloadId(1), WorkloadBuilder("a", 0).Gpus(1), {{0, NodeId(0), 0b01, 1000}}, 0)
          .ok());
  EXPECT_EQ(s_->cluster().free_milli(GpuModelId(0)), 1000);
  EXPECT_EQ(s_->cluster().node(NodeId(0)).full_free_gpus(), 1);
}

// Preemption frees room only where the preemptor can run: evicting the cheaper victim on
// the node with a bad GPU would free only that GPU, so the victim on the healthy node goes.
TEST_F(HealthTest, PreemptionEvictsNothingToGetAnUnhealthyGpu) {
  Queue(0, QueueBuilder("prod").Guarantee(4));
  Queue(1, QueueBuilder("research"));
  Node(0, NodeBuilder("n0").Gpus(2));
  Node(1, NodeBuilder("n1").Gpus(2));
  Submit(101, WorkloadBuilder("small", 1).Gpus(1).Grace(kSecond));
  Submit(102, WorkloadBuilder("big", 1).Gpus(2).Grace(kSecond));
  Plan p = Cycle(0);
  ASSERT_EQ(p.binds.size(), 2u);
  ASSERT_EQ(s_->Placement(WorkloadId(101))[0].node, NodeId(0));
  ASSERT_EQ(s_->Placement(WorkloadId(101))[0].gpus, 0b01);
  ASSERT_EQ(s_->Placement(WorkloadId(102))[0].node, NodeId(1));
  ASSERT_TRUE(s_->UpdateNode(NodeId(0), NodeBuilder("n0").Gpus(2).Unhealthy(0b01)).ok());
  Submit(1, WorkloadBuilder("prod-job", 0).Gpus(2).Submitted(10));
  p = Cycle(10);
  ASSERT_EQ(p.evictions.size(), 1u);
  EXPECT_EQ(p.evictions[0].workload, WorkloadId(102));
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kPreempting);
  ASSERT_TRUE(s_->EvictionCompleted(WorkloadId(102)).ok());
  p = Cycle(11);
  ASSERT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(NodesOf(*BindOf(p, 1)), std::set<uint32_t>{1});
  EXPECT_EQ(s_->state(WorkloadId(101)), WorkloadState::kRunning);
}

// A head-of-line reservation holds healthy GPUs only, and is planned again when a GPU it
// holds turns unhealthy.
TEST_F(HealthTest, ReservationsHoldNoUnhealthyGpu) {
  Make(SchedulerConfig{.policy = "bestfit", .preemption = false});
  Queue(0, QueueBuilder("q"));
  Node(0, NodeBuilder("n0").Gpus(2).Unhealthy(0b01));
  Node(1, NodeBuilder("n1").Gpus(2));
  Submit(1, WorkloadBuilder("x", 0).Gpus(1).Estimate(100 * kSecond));
  Submit(2, WorkloadBuilder("y", 0).Gpus(2).Estimate(100 * kSecond));
  Plan p = Cycle(0);
  ASSERT_EQ(p.binds.size(), 2u);
  // Three one-GPU tasks: the cluster's three healthy GPUs, all busy now.
  Submit(3, WorkloadBuilder("gang", 0).Gpus(1).Tasks(3).Submitted(1));
  p = Cycle(1);
  ASSERT_EQ(ReasonOf(p, 3), PendingReason::kReserved);
  const ClusterState& c = s_->cluster();
  EXPECT_EQ(c.node(NodeId(0)).reserved_gpus, 0b10);
  EXPECT_EQ(c.node(NodeId(1)).reserved_gpus, 0b11);
  // A held GPU fails: the hold is released, and the gang no longer fits the cluster.
  ASSERT_TRUE(s_->UpdateNode(NodeId(1), NodeBuilder("n1").Gpus(2).Unhealthy(0b10)).ok());
  EXPECT_EQ(s_->holds().holders, 0u);
  EXPECT_EQ(c.node(NodeId(0)).reserved_gpus, 0);
  p = Cycle(2);
  EXPECT_EQ(ReasonOf(p, 3), PendingReason::kUnschedulable);
  EXPECT_EQ(s_->holds().reserved_nodes, 0u);
}

// A GPU that recovers on a node held head-of-line joins the hold: the holder counts on
// every healthy GPU of its nodes, and nobody else takes the recovered one.
TEST_F(HealthTest, RecoveredGpuJoinsTheHeadOfLineHold) {
  Make(SchedulerConfig{.policy = "bestfit", .preemption = false});
  Queue(0, QueueBuilder("q"));
  Node(0, NodeBuilder("n0").Gpus(4).Unhealthy(0b0001));
  Submit(1, WorkloadBuilder("x", 0).Gpus(1).Estimate(100 * kSecond));
  Plan p = Cycle(0);
  ASSERT_NE(BindOf(p, 1), nullptr);
  const GpuMask x_gpus = BindOf(p, 1)->tasks[0].gpus;
  Submit(2, WorkloadBuilder("three", 0).Gpus(3).Submitted(1));
  p = Cycle(1);
  ASSERT_EQ(ReasonOf(p, 2), PendingReason::kReserved);
  EXPECT_EQ(s_->cluster().node(NodeId(0)).reserved_gpus, 0b1110);
  ASSERT_TRUE(s_->UpdateNode(NodeId(0), NodeBuilder("n0").Gpus(4)).ok());
  EXPECT_EQ(s_->cluster().node(NodeId(0)).reserved_gpus, 0b1111);
  // The holder now fits (x's GPU aside, three are free) and binds.
  p = Cycle(2);
  ASSERT_NE(BindOf(p, 2), nullptr);
  EXPECT_EQ(BindOf(p, 2)->tasks[0].gpus & x_gpus, 0);
}

// The room a preemptor's victims are freeing turns unhealthy while they leave: it cannot
// run at all now, so it stops waiting for them (Unschedulable) and gives up its hold and
// claim; the victims still stop.
TEST_F(HealthTest, PreemptorWhoseRoomTurnsUnhealthyIsUnschedulable) {
  Queue(0, QueueBuilder("prod").Guarantee(2));
  Queue(1, QueueBuilder("research"));
  Node(0, NodeBuilder("n0").Gpus(2));
  Submit(101, WorkloadBuilder("r", 1).Gpus(2).Grace(30 * kSecond));
  Plan p = Cycle(0);
  ASSERT_EQ(p.binds.size(), 1u);
  Submit(1, WorkloadBuilder("prod-job", 0).Gpus(2).Submitted(10));
  p = Cycle(10);
  ASSERT_NE(EvictionOf(p, 101), nullptr);
  ASSERT_EQ(ReasonOf(p, 1), PendingReason::kPreempting);
  ASSERT_TRUE(s_->UpdateNode(NodeId(0), NodeBuilder("n0").Gpus(2).Unhealthy(0b10)).ok());
  p = Cycle(11);
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kUnschedulable);
  EXPECT_EQ(s_->state(WorkloadId(101)), WorkloadState::kEvicting);
  const Scheduler::Holds h = s_->holds();
  EXPECT_EQ(h.victim_links, 0u);
  EXPECT_EQ(h.claimed_milli, 0);
  EXPECT_EQ(h.reserved_nodes, 0u);
  ASSERT_TRUE(s_->EvictionCompleted(WorkloadId(101)).ok());
}

}  // namespace
}  // namespace gpuorch::sched
