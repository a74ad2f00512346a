// Inference replicas and preemption (issue 10): an inference replica beyond its queue's
// guarantee harvests strictly lower-priority borrowed work of other queues; an inference
// preemptor takes other queues' borrowed work before its own queue's; another queue's work
// taken for an inference preemptor is evicted as Harvested.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "sched/scheduler.h"
#include "sched/scheduler_fixture.h"
#include "sched/testing.h"

namespace gpuorch::sched {
namespace {

using core::kSecond;
using core::QueueId;
using core::WorkloadKind;
using testing::NodeBuilder;
using testing::QueueBuilder;
using testing::SchedulerTest;
using testing::WorkloadBuilder;

class HarvestTest : public SchedulerTest {
 protected:
  void Fresh() { Make(SchedulerConfig{.policy = "bestfit"}); }
  static WorkloadBuilder Replica(uint32_t queue, int priority = 100) {
    return WorkloadBuilder("replica", queue)
        .Gpus(1)
        .Kind(WorkloadKind::kInference)
        .Priority(priority);
  }
  // Completes every eviction and resize of `p` (the driver reports them done).
  void Complete(const Plan& p) {
    for (const Eviction& e : p.evictions) ASSERT_TRUE(s_->EvictionCompleted(e.workload).ok());
    for (const Resize& r : p.resizes) {
      for (int32_t t : r.tasks) ASSERT_TRUE(s_->TaskFinished(r.workload, t).ok());
    }
  }
};

// Rule 2: who may harvest, and what. One 8-GPU node; serving (queue 0, guaranteed 1 GPU)
// runs one replica inside its guarantee; batch (queue 1, guaranteed 2) borrows the other
// 7 GPUs. A second serving replica is beyond serving's guarantee.
struct HarvestCase {
  const char* name;
  bool harvests;
  // The replica's reason if it does not harvest: waiting at the head of the line for
  // capacity to free, or kept from borrowing.
  PendingReason otherwise = PendingReason::kReserved;
  int batch_priority = 0;
  bool batch_young = false;  // within min_runtime
  bool batch_non_preemptible = false;
  WorkloadKind kind = WorkloadKind::kInference;
  bool replica_preemptible = true;
  bool serving_borrows = true;
  int serving_limit = -1;  // GPUs
  int parent_limit = -1;   // GPUs; serving sits under a parent with this limit
};

TEST_F(HarvestTest, InferenceBeyondGuaranteeHarvestsLowerPriorityBorrowers) {
  const HarvestCase cases[] = {
      {.name = "lower-priority borrowers are harvested", .harvests = true},
      {.name = "equal priority is never harvested", .harvests = false, .batch_priority = 100},
      {.name = "higher priority is never harvested", .harvests = false, .batch_priority = 200},
      {.name = "work within min_runtime", .harvests = false, .batch_young = true},
      {.name = "non-preemptible work", .harvests = false, .batch_non_preemptible = true},
      {.name = "a training preemptor beyond its guarantee",
       .harvests = false,
       .kind = WorkloadKind::kTraining},
      {.name = "an experiment beyond its guarantee",
       .harvests = false,
       .kind = WorkloadKind::kExperiment},
      {.name = "a non-preemptible replica may not borrow",
       .harvests = false,
       .otherwise = PendingReason::kWaitingForQuota,
       .replica_preemptible = false},
      {.name = "serving may not borrow",
       .harvests = false,
       .otherwise = PendingReason::kWaitingForQuota,
       .serving_borrows = false},
      {.name = "serving at its limit",
       .harvests = false,
       .otherwise = PendingReason::kOverLimit,
       .serving_limit = 1},
      {.name = "serving's parent at its limit",
       .harvests = false,
       .otherwise = PendingReason::kOverLimit,
       .parent_limit = 1},
  };
  for (const HarvestCase& c : cases) {
    SCOPED_TRACE(c.name);
    Fresh();
    QueueBuilder serving("serving");
    serving.Guarantee(1, c.serving_limit);
    if (!c.serving_borrows) serving.NoBorrow();
    if (c.parent_limit >= 0) {
      Queue(2, QueueBuilder("parent").Guarantee(1, c.parent_limit));
      serving.Parent(2);
    }
    Queue(0, serving);
    // Non-preemptible work starts only inside a guarantee: batch's shrinks afterwards.
    Queue(1, QueueBuilder("batch").Guarantee(c.batch_non_preemptible ? 7 : 2));
    Nodes(0, 1, 8);
    Submit(10, Replica(0));
    for (uint32_t i = 0; i < 7; ++i) {
      WorkloadBuilder b("batch", 1);
      b.Gpus(1).Priority(c.batch_priority).Grace(5 * kSecond).Submitted(i);
      if (c.batch_young) b.MinRuntime(60 * kSecond);
      if (c.batch_non_preemptible) b.NonPreemptible();
      Submit(100 + i, b);
    }
    ASSERT_EQ(Cycle(0).binds.size(), 8u);
    ASSERT_TRUE(s_->UpdateQueue(QueueId(1), QueueBuilder("batch").Guarantee(2)).ok());

    WorkloadBuilder replica = Replica(0);
    replica.Kind(c.kind).Submitted(10 * kSecond);
    if (!c.replica_preemptible) replica.NonPreemptible();
    Submit(1, replica);
    Plan p = Cycle(10 * kSecond);
    if (!c.harvests) {
      EXPECT_TRUE(p.evictions.empty());
      EXPECT_TRUE(p.resizes.empty());
      EXPECT_EQ(ReasonOf(p, 1), c.otherwise);
      continue;
    }
    ASSERT_EQ(p.evictions.size(), 1u) << "one 1-GPU victim is enough";
    const Eviction& e = p.evictions[0];
    EXPECT_GE(e.workload.value(), 100u);
    EXPECT_EQ(e.reason, EvictionReason::kHarvested);
    EXPECT_EQ(e.preemptor, WorkloadId(1));
    EXPECT_EQ(e.grace_period, 5 * kSecond) << "the victim's grace period";
    EXPECT_EQ(ReasonOf(p, 1), PendingReason::kPreempting);
    Complete(p);
    p = Cycle(11 * kSecond);
    EXPECT_NE(BindOf(p, 1), nullptr);
    EXPECT_EQ(Usage(0), 2000);
    EXPECT_EQ(Usage(1), 6000);
  }
}

// Rule 2 reuses the reclaim rule's check: batch (guaranteed 8) runs x (4 GPUs) and the
// younger y (8): y is the cheaper victim by age, but taking it would leave batch at 4 of
// 8, so the replica harvests x, and nothing once batch is at its guarantee.
TEST_F(HarvestTest, HarvestNeverTakesAQueueBelowItsGuarantee) {
  Queue(0, QueueBuilder("serving").Guarantee(4));
  Queue(1, QueueBuilder("batch").Guarantee(8));
  Nodes(0, 2, 8);
  Submit(100, WorkloadBuilder("x", 1).Gpus(4));
  Submit(10, Replica(0).Gpus(4));
  ASSERT_EQ(Cycle(0).binds.size(), 2u);
  Submit(101, WorkloadBuilder("y", 1).Gpus(8).Submitted(1));
  ASSERT_EQ(Cycle(1).binds.size(), 1u);
  ASSERT_EQ(Usage(1), 12000);

  Submit(1, Replica(0).Gpus(4).Submitted(2));
  Plan p = Cycle(2);
  EXPECT_EQ(EvictionOf(p, 101), nullptr) << "evicting y would leave batch at 4 of 8";
  ASSERT_EQ(p.evictions.size(), 1u);
  EXPECT_EQ(p.evictions[0].workload, WorkloadId(100));
  EXPECT_EQ(p.evictions[0].reason, EvictionReason::kHarvested);
  Complete(p);
  p = Cycle(3);
  EXPECT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(Usage(1), 8000);

  Submit(2, Replica(0).Gpus(4).Submitted(4));
  for (Time t = 4; t < 10; ++t) {
    p = Cycle(t);
    EXPECT_TRUE(p.evictions.empty()) << "batch is at its guarantee";
    EXPECT_EQ(ReasonOf(p, 2), PendingReason::kReserved);
  }
  EXPECT_EQ(Usage(1), 8000);
}

// No thrash: two services of equal priority in two queues (each guaranteed 2 of 8 GPUs).
// A runs 8 replicas; B's first two replicas reclaim B's guarantee (Harvested), then
// neither takes from the other, however many replicas wait on either side.
TEST_F(HarvestTest, EqualPriorityInferenceDoesNotPreemptAcrossQueues) {
  Queue(0, QueueBuilder("a").Guarantee(2));
  Queue(1, QueueBuilder("b").Guarantee(2));
  Nodes(0, 2, 4);
  for (uint32_t i = 0; i < 8; ++i) Submit(10 + i, Replica(0).Submitted(i));
  ASSERT_EQ(Cycle(0).binds.size(), 8u);
  for (uint32_t i = 0; i < 4; ++i) Submit(20 + i, Replica(1).Submitted(10 + i));
  int evictions = 0;
  for (Time t = 1; t < 40; ++t) {
    // A's evicted replicas wait to come back, and A asks for more.
    if (t == 10) Submit(30, Replica(0).Submitted(t));
    Plan p = Cycle(t * kSecond);
    for (const Eviction& e : p.evictions) {
      EXPECT_EQ(e.reason, EvictionReason::kHarvested);
      EXPECT_LT(e.workload.value(), 20u) << "only A's replicas are victims";
      EXPECT_GE(e.preemptor.value(), 20u);
      ++evictions;
    }
    EXPECT_TRUE(p.resizes.empty());
    Complete(p);
  }
  EXPECT_EQ(evictions, 2) << "B reclaims its guarantee, nothing more, and A nothing back";
  EXPECT_EQ(Usage(0), 6000);
  EXPECT_EQ(Usage(1), 2000);
}

// No thrash either way: a harvested service (lower priority) is borrowing once its victims
// leave and has lower priority, so it cannot take anything back; harvest stops at its
// guarantee.
TEST_F(HarvestTest, HarvestedReplicasDoNotPreemptBack) {
  Queue(0, QueueBuilder("chat").Guarantee(2));
  Queue(1, QueueBuilder("embed").Guarantee(2));
  Nodes(0, 1, 8);
  for (uint32_t i = 0; i < 6; ++i) Submit(20 + i, Replica(1, 50).Submitted(i));
  for (uint32_t i = 0; i < 2; ++i) Submit(10 + i, Replica(0).Submitted(i));
  ASSERT_EQ(Cycle(0).binds.size(), 8u);
  for (uint32_t i = 0; i < 6; ++i) Submit(12 + i, Replica(0).Submitted(10 + i));
  int harvested = 0;
  for (Time t = 1; t < 40; ++t) {
    Plan p = Cycle(t * kSecond);
    for (const Eviction& e : p.evictions) {
      EXPECT_EQ(e.reason, EvictionReason::kHarvested);
      EXPECT_GE(e.workload.value(), 20u) << "only embed's replicas are victims";
      EXPECT_LT(e.preemptor.value(), 20u);
      ++harvested;
    }
    Complete(p);
  }
  EXPECT_EQ(harvested, 4) << "embed keeps its guarantee";
  EXPECT_EQ(Usage(0), 6000);
  EXPECT_EQ(Usage(1), 2000);
}

// A harvest borrows: what its victims do not free comes from idle GPUs, which may not be
// the unused guarantee of a queue that does not lend. Model 0 (8 GPUs): batch borrows 6,
// the 2 idle GPUs are `reserved`'s guarantee; model 1 (8 GPUs) runs batch work the replica
// may not harvest (equal priority). A 3-GPU replica would take one victim and both idle
// GPUs, so it harvests only when `reserved` lends.
TEST_F(HarvestTest, HarvestKeepsHeldBackGuaranteesIdle) {
  for (bool lends : {false, true}) {
    SCOPED_TRACE(lends ? "reserved lends" : "reserved does not lend");
    Fresh();
    Queue(0, QueueBuilder("serving"));
    Queue(1, QueueBuilder("batch"));
    QueueBuilder reserved("reserved");
    reserved.Guarantee(2, -1, /*model=*/0);
    if (!lends) reserved.NoLend();
    Queue(2, reserved);
    Node(0, NodeBuilder("n0").Gpus(8, 0));
    Node(1, NodeBuilder("n1").Gpus(8, 1));
    for (uint32_t i = 0; i < 6; ++i) Submit(100 + i, WorkloadBuilder("b", 1).Gpus(1).Model(0));
    for (uint32_t i = 0; i < 8; ++i) {
      Submit(200 + i, WorkloadBuilder("b1", 1).Gpus(1).Model(1).Priority(100));
    }
    ASSERT_EQ(Cycle(0).binds.size(), 14u);
    Submit(1, Replica(0).Gpus(3).Model(0).Model(1).Submitted(1));
    Plan p = Cycle(kSecond);
    if (lends) {
      ASSERT_EQ(p.evictions.size(), 1u);
      EXPECT_EQ(p.evictions[0].reason, EvictionReason::kHarvested);
      EXPECT_EQ(ReasonOf(p, 1), PendingReason::kPreempting);
    } else {
      EXPECT_TRUE(p.evictions.empty()) << "it would leave 0 of reserved's 2 GPUs idle";
      EXPECT_NE(ReasonOf(p, 1), PendingReason::kPreempting);
    }
  }
}

// A replica of several tasks harvests too (the gang victim search), all of it Harvested.
TEST_F(HarvestTest, GangReplicaHarvestsLowerPriorityBorrowers) {
  Queue(0, QueueBuilder("serving"));
  Queue(1, QueueBuilder("batch"));
  Nodes(0, 2, 4);
  for (uint32_t i = 0; i < 8; ++i) Submit(100 + i, WorkloadBuilder("b", 1).Gpus(1).Submitted(i));
  ASSERT_EQ(Cycle(0).binds.size(), 8u);
  Submit(1, Replica(0).Gpus(2).Tasks(2).Submitted(10));
  Plan p = Cycle(kSecond);
  ASSERT_EQ(p.evictions.size(), 4u);
  for (const Eviction& e : p.evictions) EXPECT_EQ(e.reason, EvictionReason::kHarvested);
  Complete(p);
  EXPECT_NE(BindOf(Cycle(2 * kSecond), 1), nullptr);
}

// Rule 3: an inference preemptor takes other queues' borrowed work before any of its own
// queue's, elastic tasks included; other preemptors shrink their queue's lower-priority
// elastic work first. serving runs `low` (2 GPUs, priority 10) and `el` (elastic, priority
// 50, grown to 3 tasks); batch borrows 3 GPUs with `b` (priority 0). The preemptor asks 1.
struct OrderCase {
  const char* name;
  WorkloadKind kind;
  int serving_guarantee;  // 6: the preemptor is in quota; 2: it borrows
  bool harvests;          // b evicted (else one task of el stops)
};

TEST_F(HarvestTest, HarvestableVictimsComeFirstForInference) {
  const OrderCase cases[] = {
      {"inference in quota", WorkloadKind::kInference, 6, true},
      {"inference beyond its guarantee", WorkloadKind::kInference, 2, true},
      {"training in quota", WorkloadKind::kTraining, 6, false},
      {"training beyond its guarantee", WorkloadKind::kTraining, 2, false},
  };
  for (const OrderCase& c : cases) {
    SCOPED_TRACE(c.name);
    Fresh();
    Queue(0, QueueBuilder("serving").Guarantee(c.serving_guarantee));
    Queue(1, QueueBuilder("batch"));
    Nodes(0, 1, 8);
    Submit(100, WorkloadBuilder("low", 0).Gpus(2).Priority(10));
    Submit(101, WorkloadBuilder("b", 1).Gpus(3));
    Submit(102, WorkloadBuilder("el", 0).Gpus(1).Tasks(1, 3).Priority(50));
    Cycle(0);
    ASSERT_EQ(Usage(0) + Usage(1), 8000);
    Submit(1, WorkloadBuilder("p", 0).Gpus(1).Kind(c.kind).Priority(100).Submitted(1));
    Plan p = Cycle(kSecond);
    EXPECT_EQ(EvictionOf(p, 100), nullptr) << "own lower-priority work comes last";
    if (c.harvests) {
      ASSERT_NE(EvictionOf(p, 101), nullptr);
      EXPECT_EQ(EvictionOf(p, 101)->reason, EvictionReason::kHarvested);
      EXPECT_TRUE(p.resizes.empty()) << "serving's own elastic tasks come after batch's work";
    } else {
      EXPECT_TRUE(p.evictions.empty());
      ASSERT_EQ(p.resizes.size(), 1u);
      EXPECT_EQ(p.resizes[0].workload, WorkloadId(102));
      EXPECT_EQ(p.resizes[0].tasks.size(), 1u);
      EXPECT_EQ(p.resizes[0].reason, EvictionReason::kPriority);
    }
  }
}

// The eviction reason of another queue's work taken by a preemptor: 8 one-GPU borrowers
// (evictions) or one elastic borrower of 8 tasks (a resize) in research; prod, guaranteed
// `prod_guarantee`, asks for 2 GPUs at a higher priority.
struct ReasonCase {
  const char* name;
  WorkloadKind kind;
  int prod_guarantee;  // 8: a guarantee reclaim; 0: beyond its guarantee
  bool elastic;        // research runs one elastic workload (a resize) instead of eight
  std::optional<EvictionReason> reason;  // nothing: no preemption at all
};

class ReclaimReasonTest : public HarvestTest {
 protected:
  void Check(const ReasonCase& c) {
    SCOPED_TRACE(c.name);
    Fresh();
    Queue(0, QueueBuilder("prod").Guarantee(c.prod_guarantee));
    Queue(1, QueueBuilder("research"));
    Nodes(0, 1, 8);
    if (c.elastic) {
      Submit(100, WorkloadBuilder("el", 1).Gpus(1).Tasks(1, 8));
    } else {
      for (uint32_t i = 0; i < 8; ++i) Submit(100 + i, WorkloadBuilder("r", 1).Gpus(1));
    }
    Cycle(0);
    ASSERT_EQ(Usage(1), 8000);
    Submit(1, WorkloadBuilder("p", 0).Gpus(2).Kind(c.kind).Priority(100).Submitted(1));
    Plan p = Cycle(kSecond);
    std::vector<EvictionReason> reasons;
    for (const Eviction& e : p.evictions) reasons.push_back(e.reason);
    for (const Resize& r : p.resizes) reasons.push_back(r.reason);
    if (!c.reason) {
      EXPECT_TRUE(reasons.empty());
      return;
    }
    ASSERT_FALSE(reasons.empty());
    for (EvictionReason r : reasons) EXPECT_STREQ(ToString(r), ToString(*c.reason));
    if (c.elastic) {
      ASSERT_EQ(p.resizes.size(), 1u);
      EXPECT_EQ(p.resizes[0].tasks.size(), 2u);
      EXPECT_TRUE(p.evictions.empty());
    } else {
      EXPECT_EQ(p.evictions.size(), 2u);
    }
  }
};

TEST_F(ReclaimReasonTest, HarvestedReasonForInferencePreemptor) {
  const ReasonCase cases[] = {
      {"reclaim, evictions", WorkloadKind::kInference, 8, false, EvictionReason::kHarvested},
      {"reclaim, resize", WorkloadKind::kInference, 8, true, EvictionReason::kHarvested},
      {"harvest, evictions", WorkloadKind::kInference, 0, false, EvictionReason::kHarvested},
      {"harvest, resize", WorkloadKind::kInference, 0, true, EvictionReason::kHarvested},
  };
  for (const ReasonCase& c : cases) Check(c);
  EXPECT_STREQ(ToString(EvictionReason::kHarvested), "Harvested");
}

TEST_F(ReclaimReasonTest, TrainingPreemptorKeepsReclaimGuaranteeReason) {
  const ReasonCase cases[] = {
      {"training, evictions", WorkloadKind::kTraining, 8, false, EvictionReason::kReclaimGuarantee},
      {"training, resize", WorkloadKind::kTraining, 8, true, EvictionReason::kReclaimGuarantee},
      {"experiment, evictions", WorkloadKind::kExperiment, 8, false,
       EvictionReason::kReclaimGuarantee},
      {"experiment, resize", WorkloadKind::kExperiment, 8, true, EvictionReason::kReclaimGuarantee},
      // Beyond its guarantee, training never reaches another queue.
      {"training beyond its guarantee", WorkloadKind::kTraining, 0, false, std::nullopt},
  };
  for (const ReasonCase& c : cases) Check(c);
}

}  // namespace
}  // namespace gpuorch::sched
