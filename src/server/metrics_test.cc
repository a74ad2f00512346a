// The server's metric computations: fair shares, the engine gauges and the exposition.
#include "server/metrics.h"

#include <gtest/gtest.h>

#include "sched/policy/fragmentation.h"
#include "server/engine_gauges.h"
#include "server/queue_shares.h"

namespace gpuorch::server {
namespace {

using core::GpuModelId;
using core::NodeId;

// ---- FairShares.

ShareQueue Q(int64_t guaranteed, int64_t demand, int64_t weight = 1, int parent = -1) {
  ShareQueue q;
  q.parent = parent;
  q.guaranteed = guaranteed;
  q.demand = demand;
  q.weight = weight;
  return q;
}

TEST(FairShares, GuaranteesUpToDemandThenSurplusByWeight) {
  struct Case {
    const char* name;
    std::vector<ShareQueue> queues;
    int64_t capacity;
    std::vector<int64_t> want;
  };
  ShareQueue capped = Q(0, 8000, 1);
  capped.limit = 2000;
  ShareQueue lender = Q(4000, 0);
  lender.can_lend = false;
  ShareQueue no_borrow = Q(1000, 8000, 5);
  no_borrow.can_borrow = false;
  const Case cases[] = {
      {"all idle: nothing", {Q(4000, 0), Q(4000, 0)}, 8000, {0, 0}},
      {"demand within guarantee", {Q(4000, 3000), Q(4000, 1000)}, 8000, {3000, 1000}},
      {"unused guarantee lent to the other", {Q(4000, 8000), Q(4000, 0)}, 8000, {8000, 0}},
      {"surplus by weight 3:1", {Q(0, 8000, 3), Q(0, 8000, 1)}, 8000, {6000, 2000}},
      {"a small demand leaves the rest to the other",
       {Q(0, 1000, 3), Q(0, 8000, 1)},
       8000,
       {1000, 7000}},
      {"limit caps, the rest goes on", {capped, Q(0, 8000)}, 8000, {2000, 6000}},
      {"may not lend: keeps its guarantee idle", {lender, Q(0, 8000)}, 8000, {4000, 4000}},
      {"may not borrow: guarantee only", {no_borrow, Q(0, 8000)}, 8000, {1000, 7000}},
      {"guarantees beyond capacity scale down", {Q(6000, 8000), Q(6000, 8000)}, 8000, {4000, 4000}},
      // A parent's share is split among its children; its own demand is theirs.
      {"hierarchy",
       {Q(0, 0, 1), Q(0, 0, 1), Q(0, 8000, 1, 0), Q(0, 8000, 3, 0), Q(0, 8000, 1, 1)},
       8000,
       {4000, 4000, 1000, 3000, 4000}},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(FairShares(c.queues, c.capacity), c.want) << c.name;
  }
}

// ---- ComputeModelGauges.

core::NodeSpec Node(const std::string& name, uint32_t model, int gpus,
                    core::NodeStatus status = core::NodeStatus::kReady) {
  core::NodeSpec s;
  s.name = name;
  s.gpu_model = GpuModelId(model);
  s.gpu_count = gpus;
  s.gpu_memory_mib = 80'000;
  s.milli_cpu = 64'000;
  s.memory_mib = 512'000;
  s.status = status;
  return s;
}

core::TaskRequest Gpus(int count, int32_t milli = core::kMilliGpu) {
  core::TaskRequest t;
  t.gpu_count = count;
  t.gpu_milli = milli;
  t.milli_cpu = 1000;
  return t;
}

TEST(EngineGauges, CountsGpusByStateAndIdleWhileRunnableWorkWaits) {
  sched::ClusterState c;
  ASSERT_TRUE(c.AddNode(NodeId(0), Node("a", 0, 8)).ok());
  ASSERT_TRUE(c.AddNode(NodeId(1), Node("b", 0, 8)).ok());
  ASSERT_TRUE(c.AddNode(NodeId(2), Node("c", 0, 4, core::NodeStatus::kDown)).ok());
  ASSERT_TRUE(c.AddNode(NodeId(3), Node("d", 1, 2, core::NodeStatus::kDraining)).ok());
  // a: 6 GPUs taken and one shared by a half; b: 5 taken. 1 + 3 GPUs free.
  c.Allocate(NodeId(0), Gpus(6), 0b00111111);
  c.Allocate(NodeId(0), Gpus(1, 500), 0b01000000);
  c.Allocate(NodeId(1), Gpus(5), 0b00011111);

  // Nothing pending: nothing idle while waiting.
  std::vector<ModelGauges> g = ComputeModelGauges(c, 2, {}, {});
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].allocated, 12);
  EXPECT_EQ(g[0].free, 4);
  EXPECT_EQ(g[0].down, 4);
  EXPECT_EQ(g[0].draining, 0);
  EXPECT_EQ(g[0].allocated_milli, 11'500);
  EXPECT_EQ(g[0].idle_while_waiting, 0);
  EXPECT_EQ(g[1].draining, 2);
  EXPECT_EQ(g[1].free, 0);

  // A gang of two 4-GPU tasks waits (NoFit): no node has 4 free, so none of it counts.
  std::vector<PendingWork> gang = {{core::WorkloadId(1), sched::PendingReason::kNoFit, Gpus(4), 2}};
  EXPECT_EQ(ComputeModelGauges(c, 2, gang, {})[0].idle_while_waiting, 0);
  // Two-GPU tasks fit on b only: b's 3 free GPUs count, capped by the 2 x 2 asked.
  std::vector<PendingWork> pairs = {
      {core::WorkloadId(1), sched::PendingReason::kNoFit, Gpus(2), 2}};
  EXPECT_EQ(ComputeModelGauges(c, 2, pairs, {})[0].idle_while_waiting, 3);
  std::vector<PendingWork> one_pair = {
      {core::WorkloadId(1), sched::PendingReason::kNoFit, Gpus(2), 1}};
  EXPECT_EQ(ComputeModelGauges(c, 2, one_pair, {})[0].idle_while_waiting, 2);
  // Work held by quota is a policy decision, not idle compute.
  std::vector<PendingWork> quota = {
      {core::WorkloadId(1), sched::PendingReason::kWaitingForQuota, Gpus(1), 4},
      {core::WorkloadId(1), sched::PendingReason::kOverLimit, Gpus(1), 4}};
  EXPECT_EQ(ComputeModelGauges(c, 2, quota, {})[0].idle_while_waiting, 0);
  // A task for the other model does not count here.
  core::TaskRequest other = Gpus(1);
  other.models.Add(GpuModelId(1));
  std::vector<PendingWork> elsewhere = {
      {core::WorkloadId(1), sched::PendingReason::kNoFit, other, 4}};
  EXPECT_EQ(ComputeModelGauges(c, 2, elsewhere, {})[0].idle_while_waiting, 0);
  // GPUs reserved (not lendable) for a gang are explained, not idle-while-waiting.
  c.Reserve(NodeId(1), 0b11100000, core::WorkloadId(9), /*lendable=*/false);
  std::vector<PendingWork> singles = {
      {core::WorkloadId(1), sched::PendingReason::kNoFit, Gpus(1), 8}};
  EXPECT_EQ(ComputeModelGauges(c, 2, singles, {})[0].idle_while_waiting, 1);
  c.Reserve(NodeId(1), 0b11100000, core::WorkloadId(9), /*lendable=*/true);
  EXPECT_EQ(ComputeModelGauges(c, 2, singles, {})[0].idle_while_waiting, 4);
  // ... but not when the only work that fits there is the holder's own: it gathers them.
  std::vector<PendingWork> holder = {
      {core::WorkloadId(9), sched::PendingReason::kReserved, Gpus(1), 8}};
  EXPECT_EQ(ComputeModelGauges(c, 2, holder, {})[0].idle_while_waiting, 1);
}

TEST(EngineGauges, FragmentationIsTheFgdMeasureOfTheMix) {
  sched::ClusterState c;
  ASSERT_TRUE(c.AddNode(NodeId(0), Node("a", 0, 8)).ok());
  // 3 GPUs free, one of them with only 300 milli free.
  c.Allocate(NodeId(0), Gpus(5), 0b00011111);
  c.Allocate(NodeId(0), Gpus(1, 700), 0b00100000);
  // Whole 1-GPU tasks cannot use the 300 milli; 4-GPU tasks cannot use any of the 2,300.
  std::vector<sched::TypicalTask> mix = {{Gpus(1), 0.5}, {Gpus(4), 0.5}};
  const sched::NodeState& n = c.node(NodeId(0));
  EXPECT_EQ(sched::TaskFragment(n, Gpus(1)), 300);
  EXPECT_EQ(sched::TaskFragment(n, Gpus(4)), 2300);
  EXPECT_DOUBLE_EQ(ComputeModelGauges(c, 1, {}, mix)[0].fragmented_milli, 1300.0);
}

TEST(EngineGauges, AnUnhealthyFreeGpuIsNeitherFreeNorFragmented) {
  sched::ClusterState c;
  core::NodeSpec spec = Node("a", 0, 8);
  spec.unhealthy_gpus = 0b10000000;  // GPU 7
  ASSERT_TRUE(c.AddNode(NodeId(0), spec).ok());
  c.Allocate(NodeId(0), Gpus(5), 0b00011111);
  c.Allocate(NodeId(0), Gpus(1, 700), 0b00100000);
  // Free: GPU 6 whole and 300 milli of GPU 5; GPU 7 is unhealthy.
  const sched::NodeState& n = c.node(NodeId(0));
  EXPECT_EQ(sched::TaskFragment(n, Gpus(1)), 300);
  EXPECT_EQ(sched::TaskFragment(n, Gpus(4)), 1300) << "GPU 7 is no capacity to waste";
  const ModelGauges g = ComputeModelGauges(c, 1, {}, {{Gpus(1), 1.0}})[0];
  EXPECT_EQ(g.free, 1);
  EXPECT_EQ(g.unhealthy, 1);
  EXPECT_EQ(g.allocated, 6);
}

// ---- The exposition.

TEST(ServerMetrics, RendersEveryFamilyOnceSortedWithTypes) {
  ServerMetrics m;
  m.InitQueue("prod", {"training"});
  m.ObserveCycle(0.002);
  m.ObserveWait("prod", "training", 3);
  m.CountPreemption("ReclaimGuarantee", "prod");
  m.ObserveRequest("GET", "/v1/workloads/*", 404, 0.001);
  m.ObserveCommit(0.004);
  m.AddIdleWhileWaitingSeconds("H100", 2.5);
  auto g = GaugeFamily("gpuorch_gpus", "GPUs.");
  AddSample(g, {{"state", "free"}, {"model", "H100 \"80GB\""}}, 3);
  m.PublishEngineGauges({g});
  auto extra = GaugeFamily("gpuorch_watches_held", "Watches.");
  AddSample(extra, {}, 2);
  const std::string text = m.Render({extra});
  for (const char* want : {
           "# TYPE gpuorch_cycle_seconds histogram\n",
           "gpuorch_cycle_seconds_count 1\n",
           "gpuorch_queue_wait_seconds_count{kind=\"training\",queue=\"prod\"} 1\n",
           "gpuorch_preemptions_total{queue=\"prod\",reason=\"ReclaimGuarantee\"} 1\n",
           "gpuorch_preemptions_total{queue=\"prod\",reason=\"Priority\"} 0\n",
           "gpuorch_preemptions_total{queue=\"prod\",reason=\"Harvested\"} 0\n",
           "gpuorch_preemptions_total{queue=\"prod\",reason=\"IdleReclaimed\"} 0\n",
           "gpuorch_api_request_duration_seconds_count{code=\"404\",method=\"GET\",route=\"/v1/"
           "workloads/*\"} 1\n",
           "gpuorch_store_commit_seconds_count 1\n",
           "gpuorch_gpu_idle_while_waiting_seconds_total{model=\"H100\"} 2.5\n",
           "gpuorch_gpus{model=\"H100 \\\"80GB\\\"\",state=\"free\"} 3\n",
           "gpuorch_watches_held 2\n",
       }) {
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  }
  // Families sorted by name, each with one TYPE line.
  std::vector<std::string> names;
  for (size_t at = text.find("# TYPE "); at != std::string::npos;
       at = text.find("# TYPE ", at + 1)) {
    names.push_back(text.substr(at + 7, text.find(' ', at + 7) - at - 7));
  }
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end());
}

}  // namespace
}  // namespace gpuorch::server
