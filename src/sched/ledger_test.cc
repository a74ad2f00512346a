#include "sched/ledger.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "sched/testing.h"

namespace gpuorch::sched {
namespace {

using core::QueueId;
using testing::NodeBuilder;

// A cluster of four 8-GPU nodes (model 0) and the ledger that writes its reservations.
class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (uint32_t i = 0; i < 4; ++i) {
      ASSERT_TRUE(cluster_.AddNode(NodeId(i), NodeBuilder("n" + std::to_string(i)).Gpus(8)).ok());
    }
  }
  const NodeState& Node(uint32_t i) const { return cluster_.node(NodeId(i)); }
  // Reserved nodes, and whether each is reserved for the holder whose hold lists it.
  int ReservedNodes() const {
    int n = 0;
    for (const NodeState& s : cluster_.nodes()) {
      if (s.reserved_gpus == 0) continue;
      ++n;
      const Hold& h = ledger_.HoldOf(s.reserved_for);
      EXPECT_NE(std::find(h.nodes.begin(), h.nodes.end(), s.id), h.nodes.end())
          << "node " << s.id.value() << " reserved for a holder that does not list it";
    }
    return n;
  }

  ClusterState cluster_;
  Ledger ledger_{cluster_};
};

TEST_F(LedgerTest, HeadOfLineHoldReservesWholeNodesAndCountsPerModel) {
  ledger_.HoldHeadOfLine(WorkloadId(1), {NodeId(0), NodeId(1)}, 50, GpuModelId(0),
                         /*in_quota=*/false, /*lends=*/true);
  EXPECT_EQ(ledger_.KindOf(WorkloadId(1)), HoldKind::kHeadOfLine);
  EXPECT_EQ(ledger_.HoldOf(WorkloadId(1)).eta, 50);
  EXPECT_EQ(ledger_.HoldersOn(GpuModelId(0)), 1);
  EXPECT_EQ(ledger_.HoldersOn(GpuModelId(1)), 0);
  EXPECT_EQ(Node(0).reserved_for, WorkloadId(1));
  EXPECT_EQ(Node(0).reserved_gpus, Node(0).all_gpus());
  EXPECT_TRUE(Node(0).reservation_lendable);
  EXPECT_TRUE(Node(0).reservation_borrowed) << "not in quota: a borrower's reservation";
  EXPECT_EQ(ReservedNodes(), 2);

  ledger_.StopLending(WorkloadId(1));
  EXPECT_FALSE(Node(1).reservation_lendable);
  EXPECT_FALSE(ledger_.HoldOf(WorkloadId(1)).lends);

  ledger_.Release(WorkloadId(1));
  EXPECT_EQ(ReservedNodes(), 0);
  EXPECT_TRUE(ledger_.holders().empty());
  EXPECT_EQ(ledger_.HoldersOn(GpuModelId(0)), 0);
}

// A node is reserved for one holder at most: a preemptor's hold outranks a lendable
// head-of-line reservation (whose holder loses its whole hold), never another preemptor's.
TEST_F(LedgerTest, PreemptorHoldsOutrankLendableReservationsOnly) {
  struct Case {
    const char* name;
    bool lends;            // the head-of-line reservation on node 0 is lendable
    bool other_preemptor;  // node 0 is held by preemptor 3 instead
    bool taken;
  } cases[] = {
      {"lendable reservation gives way", true, false, true},
      {"closed reservation stands", false, false, false},
      {"another preemptor's hold stands", false, true, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ClusterState cluster;
    for (uint32_t i = 0; i < 2; ++i) {
      ASSERT_TRUE(cluster.AddNode(NodeId(i), NodeBuilder("n" + std::to_string(i)).Gpus(8)).ok());
    }
    Ledger ledger(cluster);
    if (c.other_preemptor) {
      ledger.StartPreemption(WorkloadId(3));
      ASSERT_TRUE(ledger.HoldGpus(WorkloadId(3), NodeId(0), 0b1));
    } else {
      ledger.HoldHeadOfLine(WorkloadId(1), {NodeId(0), NodeId(1)}, 10, GpuModelId(0), true,
                            c.lends);
    }
    ledger.StartPreemption(WorkloadId(2));
    EXPECT_EQ(ledger.HoldGpus(WorkloadId(2), NodeId(0), 0b110), c.taken);
    if (c.taken) {
      EXPECT_EQ(cluster.node(NodeId(0)).reserved_for, WorkloadId(2));
      EXPECT_EQ(cluster.node(NodeId(0)).reserved_gpus, 0b110);
      EXPECT_EQ(cluster.node(NodeId(1)).reserved_gpus, 0) << "the holder plans again";
      EXPECT_EQ(ledger.KindOf(WorkloadId(1)), HoldKind::kNone);
      EXPECT_TRUE(ledger.holders().empty());
    } else {
      EXPECT_NE(cluster.node(NodeId(0)).reserved_for, WorkloadId(2));
    }
  }
}

TEST_F(LedgerTest, PreemptorHoldGrowsAsVictimsLeaveAndSurvivesNodeLoss) {
  ledger_.StartPreemption(WorkloadId(5));
  ASSERT_TRUE(ledger_.HoldGpus(WorkloadId(5), NodeId(2), 0b0011));
  ASSERT_TRUE(ledger_.HoldGpus(WorkloadId(5), NodeId(2), 0b1100));
  ASSERT_TRUE(ledger_.HoldGpus(WorkloadId(5), NodeId(3), 0b0001));
  EXPECT_EQ(Node(2).reserved_gpus, 0b1111);
  EXPECT_FALSE(Node(2).reservation_lendable);
  EXPECT_EQ(ledger_.HoldOf(WorkloadId(5)).nodes.size(), 2u);
  ledger_.LoseNode(NodeId(2));
  EXPECT_EQ(Node(2).reserved_gpus, 0);
  EXPECT_EQ(ledger_.KindOf(WorkloadId(5)), HoldKind::kPreemption) << "keeps the rest";
  EXPECT_EQ(ledger_.HoldOf(WorkloadId(5)).nodes, std::vector<NodeId>{NodeId(3)});
  EXPECT_EQ(ReservedNodes(), 1);
}

TEST_F(LedgerTest, HeadOfLineHolderPlansAgainWhenANodeIsLost) {
  ledger_.HoldHeadOfLine(WorkloadId(1), {NodeId(0), NodeId(1)}, 10, GpuModelId(0), true, true);
  ledger_.LoseNode(NodeId(1));
  EXPECT_EQ(ledger_.KindOf(WorkloadId(1)), HoldKind::kNone);
  EXPECT_EQ(ReservedNodes(), 0);
}

TEST_F(LedgerTest, ProbeSeesEveryReservationLentThenRestored) {
  ledger_.HoldHeadOfLine(WorkloadId(1), {NodeId(0)}, 10, GpuModelId(0), true, false);
  ledger_.HoldHeadOfLine(WorkloadId(2), {NodeId(1)}, 20, GpuModelId(0), false, true);
  int lendable = 0;
  ledger_.WithAllLent(
      [&] { lendable = Node(0).reservation_lendable + Node(1).reservation_lendable; });
  EXPECT_EQ(lendable, 2);
  EXPECT_FALSE(Node(0).reservation_lendable);
  EXPECT_TRUE(Node(1).reservation_lendable);
  EXPECT_TRUE(Node(1).reservation_borrowed);
  EXPECT_EQ(ledger_.holders(), (std::vector<WorkloadId>{WorkloadId(1), WorkloadId(2)}));
}

TEST_F(LedgerTest, ClaimsAddUpPerQueueAndModelAndReplaceEachOther) {
  ledger_.AddClaim(WorkloadId(1), QueueId(2), GpuModelId(0), 4000);
  ledger_.AddClaim(WorkloadId(2), QueueId(2), GpuModelId(0), 1000);
  ledger_.AddClaim(WorkloadId(3), QueueId(2), GpuModelId(1), 8000);
  EXPECT_EQ(ledger_.Claimed(QueueId(2), GpuModelId(0)), 5000);
  EXPECT_EQ(ledger_.Claimed(QueueId(2), GpuModelId(1)), 8000);
  EXPECT_EQ(ledger_.Claimed(QueueId(7), GpuModelId(0)), 0);
  ledger_.AddClaim(WorkloadId(1), QueueId(2), GpuModelId(1), 2000);  // replaces its claim
  EXPECT_EQ(ledger_.Claimed(QueueId(2), GpuModelId(0)), 1000);
  EXPECT_EQ(ledger_.Claimed(QueueId(2), GpuModelId(1)), 10000);
  EXPECT_EQ(ledger_.ClaimOf(WorkloadId(1)).milli, 2000);
  ledger_.Unclaim(WorkloadId(3));
  EXPECT_EQ(ledger_.claimed_total(), 3000);
  EXPECT_EQ(ledger_.ClaimOf(WorkloadId(3)).milli, 0);
  EXPECT_FALSE(ledger_.ClaimOf(WorkloadId(3)).model.valid());
}

// Everything a workload has in the ledger drains when it binds or leaves.
TEST_F(LedgerTest, DropDrainsLinksClaimAndHold) {
  ledger_.StartPreemption(WorkloadId(1));
  ASSERT_TRUE(ledger_.HoldGpus(WorkloadId(1), NodeId(0), 0b11));
  ledger_.AddClaim(WorkloadId(1), QueueId(0), GpuModelId(0), 2000);
  ledger_.Link(WorkloadId(1), WorkloadId(9), 0);
  ledger_.Link(WorkloadId(1), WorkloadId(9), 1);
  EXPECT_EQ(ledger_.Leaving(WorkloadId(1)), 2);
  EXPECT_EQ(ledger_.Unlink(WorkloadId(9), 0), WorkloadId(1));
  EXPECT_EQ(ledger_.Leaving(WorkloadId(1)), 1);
  ledger_.Drop(WorkloadId(1));
  EXPECT_EQ(ledger_.links(), 0u);
  EXPECT_EQ(ledger_.claimed_total(), 0);
  EXPECT_EQ(ledger_.KindOf(WorkloadId(1)), HoldKind::kNone);
  EXPECT_EQ(ReservedNodes(), 0);
  EXPECT_FALSE(ledger_.PreemptorOf(WorkloadId(9), 1).valid()) << "stops for nobody now";
}

}  // namespace
}  // namespace gpuorch::sched
