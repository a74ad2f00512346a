// Queue quotas on the tree: guarantees that nest, and CPU and memory quotas and limits.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "sched/scheduler.h"
#include "sched/testing.h"

namespace gpuorch::sched {
namespace {

using core::HostQuota;
using core::QueueId;
using core::QueueSpec;
using testing::NodeBuilder;
using testing::QueueBuilder;
using testing::WorkloadBuilder;

QueueSpec WithCpu(QueueSpec q, int64_t guaranteed, int64_t limit = core::kUnlimited) {
  q.cpu_quota = HostQuota{.guaranteed = guaranteed, .limit = limit};
  return q;
}
QueueSpec WithMemory(QueueSpec q, int64_t guaranteed, int64_t limit = core::kUnlimited) {
  q.memory_quota = HostQuota{.guaranteed = guaranteed, .limit = limit};
  return q;
}

class QuotaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = Scheduler::Create(SchedulerConfig{.policy = "bestfit"});
    ASSERT_TRUE(s.ok());
    s_ = std::move(s).value();
  }
  void Add(uint32_t id, const QueueSpec& q) {
    Status st = s_->AddQueue(QueueId(id), q);
    ASSERT_TRUE(st.ok()) << st.message();
  }
  void Node(uint32_t id, const core::NodeSpec& n) { ASSERT_TRUE(s_->AddNode(NodeId(id), n).ok()); }
  void Submit(uint32_t id, const WorkloadSpec& w) {
    Status st = s_->Submit(WorkloadId(id), w);
    ASSERT_TRUE(st.ok()) << st.message();
  }
  static std::optional<PendingReason> ReasonOf(const Plan& p, uint32_t id) {
    for (const PendingExplanation& e : p.pending) {
      if (e.workload == WorkloadId(id)) return e.reason;
    }
    return std::nullopt;
  }
  static bool Bound(const Plan& p, uint32_t id) {
    for (const Bind& b : p.binds) {
      if (b.workload == WorkloadId(id)) return true;
    }
    return false;
  }
  std::unique_ptr<Scheduler> s_;
};

// ---- A parent's guarantee covers its children's.

TEST_F(QuotaTest, ChildrenMayNotBeGuaranteedMoreThanTheirParent) {
  struct Case {
    const char* name;
    QueueSpec parent, first, second;
    const char* error;  // of adding `second`; nullptr: accepted
  };
  const QueueSpec org = QueueBuilder("research").Guarantee(64);
  const Case cases[] = {
      {"within", org, QueueBuilder("a").Guarantee(32).Parent(0),
       QueueBuilder("b").Guarantee(32).Parent(0), nullptr},
      {"over", org, QueueBuilder("a").Guarantee(32).Parent(0),
       QueueBuilder("b").Guarantee(64).Parent(0),
       "queue.quota.guaranteed: children of \"research\" guarantee 96 GPUs of model 0, more "
       "than its 64 GPUs"},
      // The parent's entry for every model covers model 1 too: 8 (a, its own entry) + 60
      // (b, by its default) = 68 > 64.
      {"default entry", org, QueueBuilder("a").Guarantee(8, -1, 1).Parent(0),
       QueueBuilder("b").Guarantee(60).Parent(0),
       "queue.quota.guaranteed: children of \"research\" guarantee 68 GPUs of model 1, more "
       "than its 64 GPUs"},
      {"parent without a guarantee", QueueBuilder("research"), QueueBuilder("a").Parent(0),
       QueueBuilder("b").Guarantee(1).Parent(0),
       "queue.quota.guaranteed: children of \"research\" guarantee 1 GPUs of model 0, more than "
       "its 0 GPUs"},
      {"cpu over", WithCpu(org, 10000), WithCpu(QueueBuilder("a").Parent(0), 6000),
       WithCpu(QueueBuilder("b").Parent(0), 6000),
       "queue.cpu_quota.guaranteed: children of \"research\" guarantee 12000 milli-CPU, more "
       "than its 10000 milli-CPU"},
      {"parent sets no cpu quota", org, WithCpu(QueueBuilder("a").Parent(0), 6000),
       WithCpu(QueueBuilder("b").Parent(0), 6000), nullptr},
      {"memory over", WithMemory(org, 1024), WithMemory(QueueBuilder("a").Parent(0), 1024),
       WithMemory(QueueBuilder("b").Parent(0), 1),
       "queue.memory_quota.guaranteed: children of \"research\" guarantee 1025 MiB, more than "
       "its 1024 MiB"},
  };
  for (const Case& c : cases) {
    SetUp();
    Add(0, c.parent);
    Add(1, c.first);
    Status st = s_->AddQueue(QueueId(2), c.second);
    if (c.error == nullptr) {
      EXPECT_TRUE(st.ok()) << c.name << ": " << st.message();
    } else {
      EXPECT_EQ(st.message(), c.error) << c.name;
      // A refused call changes nothing: the id is still free.
      EXPECT_TRUE(s_->AddQueue(QueueId(2), QueueBuilder("c").Parent(0)).ok()) << c.name;
    }
  }
}

TEST_F(QuotaTest, UpdatesKeepGuaranteesNested) {
  Add(0, QueueBuilder("org").Guarantee(16));
  Add(1, QueueBuilder("a").Guarantee(8).Parent(0));
  Add(2, QueueBuilder("b").Guarantee(8).Parent(0));
  // The parent may not drop below its children, nor a child grow past the parent.
  EXPECT_EQ(s_->UpdateQueue(QueueId(0), QueueBuilder("org").Guarantee(12)).message(),
            "queue.quota.guaranteed: children of \"org\" guarantee 16 GPUs of model 0, more than "
            "its 12 GPUs");
  EXPECT_EQ(s_->UpdateQueue(QueueId(1), QueueBuilder("a").Guarantee(9).Parent(0)).message(),
            "queue.quota.guaranteed: children of \"org\" guarantee 17 GPUs of model 0, more than "
            "its 16 GPUs");
  // Moving guarantee between siblings is fine in the right order.
  EXPECT_TRUE(s_->UpdateQueue(QueueId(2), QueueBuilder("b").Guarantee(4).Parent(0)).ok());
  EXPECT_TRUE(s_->UpdateQueue(QueueId(1), QueueBuilder("a").Guarantee(12).Parent(0)).ok());
}

// ---- CPU and memory quotas.

TEST_F(QuotaTest, WithoutCpuQuotasCpuOnlyWorkRunsWhenItFits) {
  Add(0, QueueBuilder("q"));
  Node(0, NodeBuilder("n0").Gpus(8).Cpu(4000));
  for (uint32_t i = 0; i < 5; ++i) Submit(i, WorkloadBuilder("c", 0).CpuOnly(1000));
  const Plan p = s_->Cycle(0);
  EXPECT_EQ(p.binds.size(), 4u);
  EXPECT_EQ(ReasonOf(p, 4), PendingReason::kNoFit);
}

TEST_F(QuotaTest, CpuAndMemoryLimitsHoldAtEveryLevelForEveryTask) {
  // org may use 3 CPUs in all; team-a 1.5 GiB of memory. Limits without guarantees leave
  // in-quota status to the GPU guarantees: all this work is in quota, tried by age.
  Add(0, WithCpu(QueueBuilder("org").Guarantee(1), core::kNoGuarantee, 3000));
  Add(1, WithMemory(QueueBuilder("team-a").Guarantee(1).Parent(0), core::kNoGuarantee, 1536));
  Add(2, QueueBuilder("team-b").Parent(0));
  Node(0, NodeBuilder("n0").Gpus(8));
  // The GPU task's CPU (1 CPU, 1 GiB by the builder) counts against both limits.
  Submit(1, WorkloadBuilder("gpu", 1).Gpus(1).Submitted(1));
  Submit(2, WorkloadBuilder("cpu-a", 1).CpuOnly(500).Submitted(2));  // 1 GiB more: over 1.5
  Submit(3, WorkloadBuilder("cpu-b", 2).CpuOnly(1500).Submitted(3));
  Submit(4, WorkloadBuilder("cpu-b2", 2).CpuOnly(1000).Submitted(4));  // org: 1 + 1.5 + 1 > 3
  const Plan p = s_->Cycle(0);
  EXPECT_TRUE(Bound(p, 1));
  EXPECT_EQ(ReasonOf(p, 2), PendingReason::kOverLimit);
  EXPECT_TRUE(Bound(p, 3));
  EXPECT_EQ(ReasonOf(p, 4), PendingReason::kOverLimit);
  EXPECT_EQ(s_->QueueUsage(QueueId(0), GpuModelId(0)), 1000);
}

TEST_F(QuotaTest, CpuOnlyWorkBeyondItsCpuGuaranteeBorrows) {
  // 2 CPUs guaranteed. Beyond that, CPU-only work is over quota: it borrows idle CPUs if it is
  // preemptible and the queue may borrow, and waits for quota otherwise.
  Add(0, WithCpu(QueueBuilder("borrower"), 2000));
  Add(1, WithCpu(QueueBuilder("strict").NoBorrow(), 2000));
  Node(0, NodeBuilder("n0").Gpus(8).Cpu(16000));
  Submit(1, WorkloadBuilder("in", 0).CpuOnly(2000).Submitted(1));
  Submit(2, WorkloadBuilder("borrows", 0).CpuOnly(2000).Submitted(2));
  Submit(3, WorkloadBuilder("no-preempt", 0).CpuOnly(2000).NonPreemptible().Submitted(3));
  Submit(4, WorkloadBuilder("in", 1).CpuOnly(2000).Submitted(4));
  Submit(5, WorkloadBuilder("may-not", 1).CpuOnly(2000).Submitted(5));
  const Plan p = s_->Cycle(0);
  EXPECT_TRUE(Bound(p, 1));
  EXPECT_TRUE(Bound(p, 2));
  EXPECT_EQ(ReasonOf(p, 3), PendingReason::kWaitingForQuota);
  EXPECT_TRUE(Bound(p, 4));
  EXPECT_EQ(ReasonOf(p, 5), PendingReason::kWaitingForQuota);
}

TEST_F(QuotaTest, CpuGuaranteeAlsoDecidesWhetherGpuWorkIsInQuota) {
  // 2 GPUs guaranteed but only 1 CPU: a 1-GPU task asking for 2 CPUs is over quota, so a
  // non-preemptible one waits for quota; within both guarantees it runs.
  Add(0, WithCpu(QueueBuilder("q").Guarantee(2), 1000));
  Node(0, NodeBuilder("n0").Gpus(8));
  Submit(1, WorkloadBuilder("fat", 0).Gpus(1).Cpu(2000).NonPreemptible().Submitted(1));
  Submit(2, WorkloadBuilder("thin", 0).Gpus(1).Cpu(1000).NonPreemptible().Submitted(2));
  const Plan p = s_->Cycle(0);
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kWaitingForQuota);
  EXPECT_TRUE(Bound(p, 2));
}

TEST_F(QuotaTest, WorkOverItsCpuGuaranteeDoesNotReclaimGpus) {
  // a is guaranteed 4 GPUs but only 1 CPU; b borrows all 8 GPUs. a's 1-GPU task asking for
  // 2 CPUs is over a's CPU guarantee, so it is a borrower like b's work: it may not reclaim.
  Add(0, WithCpu(QueueBuilder("a").Guarantee(4), 1000));
  Add(1, QueueBuilder("b"));
  Node(0, NodeBuilder("n0").Gpus(8));
  for (uint32_t i = 0; i < 8; ++i) Submit(10 + i, WorkloadBuilder("b", 1).Gpus(1));
  ASSERT_EQ(s_->Cycle(0).binds.size(), 8u);
  Submit(1, WorkloadBuilder("fat", 0).Gpus(1).Cpu(2000));
  Plan p = s_->Cycle(core::kHour);
  EXPECT_TRUE(p.evictions.empty());
  EXPECT_NE(ReasonOf(p, 1), PendingReason::kPreempting);
  // Within both guarantees it reclaims.
  Submit(2, WorkloadBuilder("thin", 0).Gpus(1).Cpu(1000));
  p = s_->Cycle(core::kHour);
  EXPECT_EQ(p.evictions.size(), 1u);
  EXPECT_EQ(ReasonOf(p, 2), PendingReason::kPreempting);
}

TEST_F(QuotaTest, DominantShareCountsCpu) {
  // 8 GPUs and 64 CPUs. "cpu-heavy" runs 32 CPUs (half the cluster's CPU) and no GPU;
  // "gpu" runs 1 GPU (1/8 of the GPUs, 1/64 of the CPUs). Dominant shares: 1/2 and 1/8, so
  // gpu's borrower goes first. Counting GPUs only (as before), cpu-heavy's 0 would win.
  Add(0, QueueBuilder("cpu-heavy"));
  Add(1, QueueBuilder("gpu"));
  Node(0, NodeBuilder("n0").Gpus(8).Cpu(64000));
  Submit(1, WorkloadBuilder("hog", 0).CpuOnly(32000));
  Submit(2, WorkloadBuilder("one", 1).Gpus(1));
  ASSERT_EQ(s_->Cycle(0).binds.size(), 2u);
  EXPECT_EQ(s_->cluster().cpu_capacity(), 64000);
  Submit(3, WorkloadBuilder("heavy-gpu", 0).Gpus(1).Submitted(3));
  Submit(4, WorkloadBuilder("gpu-next", 1).Gpus(1).Submitted(4));
  const Plan p = s_->Cycle(0);
  ASSERT_EQ(p.binds.size(), 2u);
  EXPECT_EQ(p.binds[0].workload, WorkloadId(4));
  EXPECT_EQ(p.binds[1].workload, WorkloadId(3));
}

TEST_F(QuotaTest, ClusterTotalsOfCpuAndMemoryFollowSchedulableNodes) {
  Node(0, NodeBuilder("n0").Gpus(8).Cpu(4000).Memory(100));
  Node(1, NodeBuilder("n1").Gpus(8).Cpu(6000).Memory(50));
  EXPECT_EQ(s_->cluster().cpu_capacity(), 10000);
  EXPECT_EQ(s_->cluster().memory_capacity(), 150);
  ASSERT_TRUE(s_->UpdateNode(NodeId(1), NodeBuilder("n1").Gpus(8).Cpu(6000).Memory(50).Status(
                                            core::NodeStatus::kDraining))
                  .ok());
  EXPECT_EQ(s_->cluster().cpu_capacity(), 4000);
  EXPECT_EQ(s_->cluster().memory_capacity(), 100);
  ASSERT_TRUE(s_->RemoveNode(NodeId(0)).ok());
  EXPECT_EQ(s_->cluster().cpu_capacity(), 0);
}

TEST_F(QuotaTest, CpuQuotaValidation) {
  EXPECT_EQ(WithCpu(QueueBuilder("q"), -2).Validate().message(),
            "queue.cpu_quota.guaranteed: must be in 0..2^48 or unset");
  EXPECT_EQ(WithMemory(QueueBuilder("q"), 10, 5).Validate().message(),
            "queue.memory_quota.limit: must be in guaranteed..2^48 or unlimited");
  EXPECT_EQ(WithMemory(QueueBuilder("q"), core::kNoGuarantee, -5).Validate().message(),
            "queue.memory_quota.limit: must be in guaranteed..2^48 or unlimited");
  EXPECT_TRUE(WithCpu(QueueBuilder("q"), 0, 0).Validate().ok());
  EXPECT_TRUE(WithCpu(QueueBuilder("q"), core::kNoGuarantee, 0).Validate().ok());
}

}  // namespace
}  // namespace gpuorch::sched
