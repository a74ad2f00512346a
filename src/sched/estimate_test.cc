#include "sched/estimate.h"

#include <gtest/gtest.h>

#include "sched/testing.h"

namespace gpuorch::sched {
namespace {

using core::kHour;
using core::kMinute;
using core::kSecond;
using core::QueueId;
using testing::NodeBuilder;
using testing::QueueBuilder;
using testing::WorkloadBuilder;

TEST(CapacityProfileTest, EarliestAndTake) {
  const WorkloadId a(1), b(2), c(3);
  // 2 GPUs free now; `a` frees 4 at 10, `b` frees 2 at 30.
  auto fresh = [&] { return CapacityProfile(0, 2000, {{30, 2000, b}, {10, 4000, a}}); };
  struct Case {
    const char* name;
    int64_t milli;
    Duration duration;
    Time want;
    WorkloadId want_by;
  };
  const Case cases[] = {
      // What fits now still waits for the next change: it did not fit this cycle.
      {"fits already", 1000, 0, 10, a},
      {"after the first release", 6000, 0, 10, a},
      {"after both", 8000, 0, 30, b},
      {"more than will ever be free", 9000, 0, -1, WorkloadId()},
  };
  for (const Case& k : cases) {
    CapacityProfile p = fresh();
    WorkloadId by;
    EXPECT_EQ(p.Earliest(k.milli, k.duration, &by), k.want) << k.name;
    EXPECT_EQ(by, k.want_by) << k.name;
  }
  // `c` takes 4 GPUs during [10, 20): a 4-GPU job for ever must wait until 20 (c's end),
  // but a 2-GPU job for 10 fits the 2 left at 10.
  CapacityProfile p = fresh();
  p.Take(10, 10, 4000, c);
  WorkloadId by;
  EXPECT_EQ(p.Earliest(4000, 0, &by), 20);
  EXPECT_EQ(by, c);
  EXPECT_EQ(p.Earliest(2000, 10), 10);
  EXPECT_EQ(p.Earliest(3000, 10), 20);
  // Releases before now + 1 count as now + 1. An answer of "never" is remembered only
  // until room is added.
  CapacityProfile late(100, 0, {{50, 1000, a}});
  EXPECT_EQ(late.Earliest(1000, 0), 101);
  EXPECT_EQ(late.Earliest(2000, 0), -1);
  EXPECT_EQ(late.Earliest(3000, 0), -1);
  late.Add(500, 1000, b);
  EXPECT_EQ(late.Earliest(2000, 0, &by), 500);
  EXPECT_EQ(by, b);
}

// Earlier answers speed up later queries; they must never hide an answer. A queue of
// same-shaped jobs, each taking its room, gets the same starts as fresh scans would.
TEST(CapacityProfileTest, RememberedAnswersAreOnlyFloors) {
  std::vector<CapacityProfile::Release> releases;
  for (int i = 1; i <= 6; ++i) releases.push_back({i * 10, 1000, WorkloadId(i)});
  CapacityProfile p(0, 0, releases);
  // 2-GPU jobs of 15 each, one GPU freed every 10: the first starts at 20 when two are
  // free, the second at 35 when the first's end leaves three, the third at 40 ...
  const Time want[] = {20, 35, 40, 50, 55, 60};
  for (Time w : want) {
    // The GPU freed at 10 is never taken for 15, so a 1-GPU job for 5 always starts there:
    // the 2-GPU answers are no floor for it.
    EXPECT_EQ(p.Earliest(1000, 5), 10);
    const Time t = p.Earliest(2000, 15);
    EXPECT_EQ(t, w);
    p.Take(t, 15, 2000, WorkloadId(99));
  }
}

class EstimateTest : public ::testing::Test {
 protected:
  void Make(SchedulerConfig config) {
    config.policy = "bestfit";
    auto s = Scheduler::Create(config);
    ASSERT_TRUE(s.ok()) << s.status().message();
    s_ = std::move(s).value();
  }
  void Queue(uint32_t id, const QueueSpec& q) { ASSERT_TRUE(s_->AddQueue(QueueId(id), q).ok()); }
  void Node(uint32_t id, int gpus) {
    ASSERT_TRUE(s_->AddNode(NodeId(id), NodeBuilder("n" + std::to_string(id)).Gpus(gpus)).ok());
  }
  void Submit(uint32_t id, const WorkloadSpec& w) {
    Status st = s_->Submit(WorkloadId(id), w);
    ASSERT_TRUE(st.ok()) << st.message();
  }
  static PendingExplanation Of(const Plan& p, uint32_t id) {
    for (const PendingExplanation& e : p.pending) {
      if (e.workload == WorkloadId(id)) return e;
    }
    ADD_FAILURE() << "workload " << id << " is not pending";
    return {};
  }
  std::unique_ptr<Scheduler> s_;
};

// One 8-GPU node runs A; B, C and D queue behind it (no reservations, no preemption).
// A ends at 1h; B (4 GPUs, 30 min) and C (4 GPUs, 2h) start then; D (8 GPUs) must wait
// for both, until C ends at 3h.
TEST_F(EstimateTest, QueueBehindRunningWork) {
  struct Case {
    const char* name;
    Duration a_runtime;
    int32_t limit;
    Time b, c, d;      // expected starts
    uint32_t d_waits;  // what D waits for (0: nothing)
  };
  const Case cases[] = {
      {"known runtimes", kHour, 1000, kHour, kHour, 3 * kHour, 2},
      {"A's runtime unknown", 0, 1000, -1, -1, -1, 0},
      {"only the first two estimated", kHour, 2, kHour, kHour, -1, 0},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    Make(SchedulerConfig{.preemption = false, .reservations = false, .estimate_limit = k.limit});
    Queue(0, QueueBuilder("q"));
    Node(0, 8);
    Submit(10, WorkloadBuilder("a", 0).Gpus(8).Estimate(k.a_runtime));
    ASSERT_EQ(s_->Cycle(0).binds.size(), 1u);
    Submit(1, WorkloadBuilder("b", 0).Gpus(4).Estimate(30 * kMinute).Submitted(1));
    Submit(2, WorkloadBuilder("c", 0).Gpus(4).Estimate(2 * kHour).Submitted(2));
    Submit(3, WorkloadBuilder("d", 0).Gpus(8).Submitted(3));
    const Plan plan = s_->Cycle(10);
    ASSERT_EQ(plan.pending.size(), 3u);
    EXPECT_EQ(Of(plan, 1).estimated_start, k.b);
    EXPECT_EQ(Of(plan, 2).estimated_start, k.c);
    EXPECT_EQ(Of(plan, 3).estimated_start, k.d);
    EXPECT_EQ(Of(plan, 1).waiting_for, k.b >= 0 ? WorkloadId(10) : WorkloadId());
    EXPECT_EQ(Of(plan, 3).waiting_for, k.d_waits ? WorkloadId(k.d_waits) : WorkloadId());
  }
}

// Two 8-GPU nodes: J1 (4 GPUs on n0) ends at 1h, J2 (8 GPUs on n1) at 2h. Gang G (2 x 8)
// reserves both nodes and starts at 2h, when J2 ends. X (1 GPU, runtime unknown) would fit
// n0's free GPUs but for the reservation: it waits for G, and starts when G ends.
TEST_F(EstimateTest, ReservationAndWorkBlockedByIt) {
  struct Case {
    const char* name;
    Duration g_runtime;
    Time x;
  };
  const Case cases[] = {
      {"G's runtime known", kHour, 3 * kHour},
      {"G's runtime unknown: G keeps the GPUs for ever", 0, -1},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    Make(SchedulerConfig{.preemption = false});
    Queue(0, QueueBuilder("q"));
    Node(0, 8);
    Node(1, 8);
    Submit(1, WorkloadBuilder("j1", 0).Gpus(4).Estimate(kHour));
    Submit(2, WorkloadBuilder("j2", 0).Gpus(8).Estimate(2 * kHour));
    ASSERT_EQ(s_->Cycle(0).binds.size(), 2u);
    Submit(3, WorkloadBuilder("g", 0).Gpus(8).Tasks(2).Estimate(k.g_runtime).Submitted(1));
    ASSERT_EQ(Of(s_->Cycle(1), 3).reason, PendingReason::kReserved);
    Submit(4, WorkloadBuilder("x", 0).Gpus(1).Submitted(2));
    const Plan plan = s_->Cycle(2);
    const PendingExplanation g = Of(plan, 3), x = Of(plan, 4);
    EXPECT_EQ(g.reason, PendingReason::kReserved);
    EXPECT_EQ(g.estimated_start, 2 * kHour);
    EXPECT_EQ(g.waiting_for, WorkloadId(2));
    EXPECT_EQ(x.reason, PendingReason::kBlockedByReservation);
    EXPECT_EQ(x.estimated_start, k.x);
    EXPECT_EQ(x.waiting_for, k.x >= 0 ? WorkloadId(3) : WorkloadId());
  }
}

// With preemption, X is lent n0's reserved GPUs instead of waiting. It is evicted once the
// rest of the reserved nodes is free, so its unknown runtime does not hide G's estimate:
// G starts when J2 ends plus X's grace period.
TEST_F(EstimateTest, ReservationCountsLentWorkAsItsGracePeriod) {
  Make(SchedulerConfig{});
  Queue(0, QueueBuilder("q"));
  Node(0, 8);
  Node(1, 8);
  Submit(1, WorkloadBuilder("j1", 0).Gpus(4).Estimate(kHour));
  Submit(2, WorkloadBuilder("j2", 0).Gpus(8).Estimate(2 * kHour));
  ASSERT_EQ(s_->Cycle(0).binds.size(), 2u);
  Submit(3, WorkloadBuilder("g", 0).Gpus(8).Tasks(2).Submitted(1));
  ASSERT_EQ(Of(s_->Cycle(1), 3).reason, PendingReason::kReserved);
  Submit(4, WorkloadBuilder("x", 0).Gpus(1).Grace(20 * kSecond).Submitted(2));
  const Plan plan = s_->Cycle(2);
  ASSERT_EQ(plan.binds.size(), 1u);
  EXPECT_EQ(plan.binds[0].workload, WorkloadId(4));
  const PendingExplanation g = Of(plan, 3);
  EXPECT_EQ(g.estimated_start, 2 * kHour + 20 * kSecond);
  EXPECT_EQ(g.waiting_for, WorkloadId(2));
}

// A borrower V runs on the only node; P, in-quota, evicts it at 100 and starts when V's
// grace period (30 s) ends, in the cycle that evicts and in the ones after.
TEST_F(EstimateTest, PreemptorWaitsForVictimsGrace) {
  Make(SchedulerConfig{});
  Queue(0, QueueBuilder("hi").Guarantee(8));
  Queue(1, QueueBuilder("lo"));
  Node(0, 8);
  Submit(1, WorkloadBuilder("v", 1).Gpus(8).Grace(30 * kSecond));
  ASSERT_EQ(s_->Cycle(0).binds.size(), 1u);
  Submit(2, WorkloadBuilder("p", 0).Gpus(8).Submitted(100));
  for (Time now : {Time{100}, Time{5000}, Time{60 * kSecond}}) {
    SCOPED_TRACE(now);
    const PendingExplanation p = Of(s_->Cycle(now), 2);
    EXPECT_EQ(p.reason, PendingReason::kPreempting);
    // Overdue victims are expected to leave at any moment.
    EXPECT_EQ(p.estimated_start, std::max(now, 100 + 30 * kSecond));
    EXPECT_EQ(p.waiting_for, WorkloadId(1));
  }
}

// Quota is not capacity: work waiting for its queue's quota gets no estimate.
TEST_F(EstimateTest, NoEstimateForQuota) {
  Make(SchedulerConfig{.preemption = false, .reservations = false});
  Queue(0, QueueBuilder("capped").Guarantee(0, 1));
  Node(0, 8);
  Submit(1, WorkloadBuilder("big", 0).Gpus(2).Estimate(kHour));
  const PendingExplanation p = Of(s_->Cycle(0), 1);
  EXPECT_EQ(p.reason, PendingReason::kOverLimit);
  EXPECT_EQ(p.estimated_start, -1);
  EXPECT_EQ(p.waiting_for, WorkloadId());
}

}  // namespace
}  // namespace gpuorch::sched
