#include "sched/cluster_state.h"

#include <gtest/gtest.h>

#include "sched/testing.h"

namespace gpuorch::sched {
namespace {

using testing::NodeBuilder;

TaskRequest Whole(int n) {
  TaskRequest t;
  t.gpu_count = n;
  t.milli_cpu = 1000;
  return t;
}

TEST(ClusterState, GroupsIdenticalNodes) {
  ClusterState c;
  for (uint32_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(c.AddNode(NodeId(i), NodeBuilder("n" + std::to_string(i)).Gpus(8)).ok());
  }
  EXPECT_EQ(c.group_count(), 1u);
  c.Allocate(NodeId(3), Whole(2), 0b11);
  EXPECT_EQ(c.group_count(), 2u);
  c.Allocate(NodeId(5), Whole(2), 0b1100);  // same multiset of free GPUs as node 3
  EXPECT_EQ(c.group_count(), 2u);
  c.Release(NodeId(3), Whole(2), 0b11);
  c.Release(NodeId(5), Whole(2), 0b1100);
  EXPECT_EQ(c.group_count(), 1u);
  EXPECT_EQ(c.free_milli(GpuModelId(0)), 80000);
  EXPECT_EQ(c.capacity_milli(GpuModelId(0)), 80000);
}

TEST(ClusterState, RackHistogramTracksFreeGpus) {
  ClusterState c;
  ASSERT_TRUE(c.AddNode(NodeId(0), NodeBuilder("a").Gpus(8).Rack("r1")).ok());
  ASSERT_TRUE(c.AddNode(NodeId(1), NodeBuilder("b").Gpus(8).Rack("r1")).ok());
  uint32_t r = c.node(NodeId(0)).rack;
  EXPECT_EQ(c.rack_free_histogram(r)[8], 2);
  c.Allocate(NodeId(1), Whole(3), 0b111);
  EXPECT_EQ(c.rack_free_histogram(r)[8], 1);
  EXPECT_EQ(c.rack_free_histogram(r)[5], 1);
  c.SetStatus(NodeId(0), core::NodeStatus::kDraining);
  EXPECT_EQ(c.rack_free_histogram(r)[8], 0);
  EXPECT_EQ(c.capacity_milli(GpuModelId(0)), 8000);
}

TEST(ClusterState, FitsHonoursModelMemoryCpuAndReservations) {
  ClusterState c;
  ASSERT_TRUE(c.AddNode(NodeId(0), NodeBuilder("a").Gpus(4, 1, 16000).Cpu(4000)).ok());
  const NodeState& n = c.node(NodeId(0));
  TaskRequest t = Whole(2);
  EXPECT_TRUE(Fits(n, t, WorkloadId(1), false));
  t.models.Add(GpuModelId(0));
  EXPECT_FALSE(Fits(n, t, WorkloadId(1), false));
  t = Whole(2);
  t.gpu_memory_mib = 32000;
  EXPECT_FALSE(Fits(n, t, WorkloadId(1), false));
  t = Whole(2);
  t.milli_cpu = 5000;
  EXPECT_FALSE(Fits(n, t, WorkloadId(1), false));
  c.Reserve(NodeId(0), 0b1110, WorkloadId(7), /*lendable=*/true);
  t = Whole(2);
  EXPECT_FALSE(Fits(n, t, WorkloadId(1), false));
  EXPECT_TRUE(Fits(n, t, WorkloadId(1), true)) << "lent to preemptible work";
  EXPECT_TRUE(Fits(n, t, WorkloadId(7), false)) << "the holder";
}

TEST(ClusterState, BestFitSelectionPrefersTightestGpuAndOneNvlinkDomain) {
  ClusterState c;
  ASSERT_TRUE(c.AddNode(NodeId(0), NodeBuilder("a").Gpus(8).Nvlink(4)).ok());
  c.Allocate(NodeId(0), Whole(1), 0b1);  // domain 0 has 3 free, domain 1 has 4
  TaskRequest frac;
  frac.gpu_count = 1;
  frac.gpu_milli = 300;
  GpuMask m = SelectGpusBestFit(c.node(NodeId(0)), frac, 0xFF);
  c.Allocate(NodeId(0), frac, m);
  EXPECT_EQ(m, 0b10);  // lowest index among equally free GPUs
  frac.gpu_milli = 600;
  EXPECT_EQ(SelectGpusBestFit(c.node(NodeId(0)), frac, 0xFF), 0b10) << "700 free is tightest";
  EXPECT_EQ(SelectGpusBestFit(c.node(NodeId(0)), Whole(2), 0xFF), 0b1100)
      << "fullest domain that can hold the task";
  EXPECT_EQ(SelectGpusBestFit(c.node(NodeId(0)), Whole(4), 0xFF), 0xF0);
}

TEST(ClusterState, UpdateKeepsAllocationsAndRejectsShrinkingBelowUse) {
  ClusterState c;
  ASSERT_TRUE(c.AddNode(NodeId(0), NodeBuilder("a").Gpus(8).Cpu(8000)).ok());
  c.Allocate(NodeId(0), Whole(2), 0b11);
  EXPECT_FALSE(c.UpdateNode(NodeId(0), NodeBuilder("a").Gpus(4).Cpu(8000)).ok());
  EXPECT_FALSE(c.UpdateNode(NodeId(0), NodeBuilder("a").Gpus(8).Cpu(500)).ok());
  ASSERT_TRUE(c.UpdateNode(NodeId(0), NodeBuilder("a").Gpus(8).Cpu(16000).Rack("r9")).ok());
  EXPECT_EQ(c.node(NodeId(0)).full_free_gpus(), 6);
  EXPECT_EQ(c.node(NodeId(0)).cpu_free, 15000);
  EXPECT_EQ(c.rack_name(c.node(NodeId(0)).rack), "/r9");
  EXPECT_FALSE(c.AddNode(NodeId(0), NodeBuilder("a").Gpus(8)).ok());
}

}  // namespace
}  // namespace gpuorch::sched
