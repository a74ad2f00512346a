// MIG in the engine: instances first, layout changes as plan steps, nothing bound before a
// layout is applied, fragmentation-aware starts, quotas by compute share.
#include "core/mig.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "sched/scheduler_fixture.h"

namespace gpuorch::sched::testing {
namespace {

const core::MigModel& H100() { return *core::FindMigModel("H100-80GB"); }

std::string Layout(const Scheduler& s, uint32_t node, int gpu) {
  return core::FormatLayout(H100(), s.cluster().mig(NodeId(node)).layout[gpu]);
}

class MigTest : public SchedulerTest {
 protected:
  void SetUp() override {
    SchedulerTest::SetUp();
    Queue(0, QueueBuilder("q").Guarantee(1000));
  }
  // Applies every reconfiguration of a plan as an agent would.
  void Apply(const Plan& p) {
    for (const MigReconfig& r : p.reconfigs) {
      Status st = s_->MigLayoutApplied(r.node, r.gpu, r.layout);
      ASSERT_TRUE(st.ok()) << st.message();
    }
  }
};

TEST_F(MigTest, AnIdleInstanceIsUsedAtOnce) {
  Node(0, NodeBuilder("n0").Gpus(2).Mig(0b01, "H100-80GB", "3g.40gb@0,3g.40gb@4"));
  Submit(1, WorkloadBuilder("w", 0).Mig(3));
  Plan p = Cycle();
  const Bind* b = BindOf(p, 1);
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(p.reconfigs.empty());
  EXPECT_EQ(b->tasks[0].gpus, 0b01);
  EXPECT_EQ(b->tasks[0].mig_start, 0);
  // Quotas count the compute share: 3 of 7 slices.
  EXPECT_EQ(Usage(0), 428);
  // The second 3g takes the other instance; a third finds none (GPU 1 is not in MIG mode).
  Submit(2, WorkloadBuilder("w2", 0).Mig(3));
  Submit(3, WorkloadBuilder("w3", 0).Mig(3));
  p = Cycle(1);
  ASSERT_NE(BindOf(p, 2), nullptr);
  EXPECT_EQ(BindOf(p, 2)->tasks[0].mig_start, 4);
  EXPECT_EQ(BindOf(p, 3), nullptr);
  EXPECT_EQ(ReasonOf(p, 3), PendingReason::kNoFit);
}

TEST_F(MigTest, ALayoutChangeComesFirstAndNothingIsBoundBeforeItIsApplied) {
  Node(0, NodeBuilder("n0").Gpus(1).Mig(0b1));
  Submit(1, WorkloadBuilder("w", 0).Mig(3));
  Plan p = Cycle();
  EXPECT_EQ(BindOf(p, 1), nullptr);
  ASSERT_EQ(p.reconfigs.size(), 1u);
  EXPECT_EQ(p.reconfigs[0].for_workload, WorkloadId(1));
  EXPECT_EQ(core::FormatLayout(H100(), p.reconfigs[0].layout), "3g.40gb@0");
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kMigReconfiguring);
  // While it is applied, neither it nor anyone else is placed on that GPU, and no second
  // change is planned for it.
  Submit(2, WorkloadBuilder("w2", 0).Mig(1));
  p = Cycle(1);
  EXPECT_TRUE(p.binds.empty());
  EXPECT_TRUE(p.reconfigs.empty());
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kMigReconfiguring);
  ASSERT_TRUE(s_->MigLayoutApplied(NodeId(0), 0,
                                   p.reconfigs.empty() ? *core::ParseLayout(H100(), "3g.40gb@0")
                                                       : p.reconfigs[0].layout)
                  .ok());
  p = Cycle(2);
  ASSERT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(BindOf(p, 1)->tasks[0].mig_start, 0);
}

TEST_F(MigTest, ALayoutChangeNeverTouchesABusyInstance) {
  Node(0, NodeBuilder("n0").Gpus(1).Mig(0b1, "H100-80GB", "1g.10gb@0,1g.10gb@1"));
  Submit(1, WorkloadBuilder("w", 0).Mig(1));
  Plan p = Cycle();
  ASSERT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(BindOf(p, 1)->tasks[0].mig_start, 0);
  // A 4g needs slices 0-3: slice 0 is busy, so no layout can hold it.
  Submit(2, WorkloadBuilder("w4", 0).Mig(4));
  p = Cycle(1);
  EXPECT_TRUE(p.reconfigs.empty());
  EXPECT_EQ(ReasonOf(p, 2), PendingReason::kNoFit);
  // A 3g fits at slice 4 beside both 1g instances (class 2: nothing destroyed).
  Submit(3, WorkloadBuilder("w3", 0).Mig(3));
  p = Cycle(2);
  ASSERT_EQ(p.reconfigs.size(), 1u);
  EXPECT_EQ(core::FormatLayout(H100(), p.reconfigs[0].layout), "1g.10gb@0,1g.10gb@1,3g.40gb@4");
  // The driver may not drop the busy instance.
  auto bad = core::ParseLayout(H100(), "3g.40gb@4");
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(s_->MigLayoutApplied(NodeId(0), 0, *bad).ok());
  Apply(p);
  p = Cycle(3);
  ASSERT_NE(BindOf(p, 3), nullptr);
  EXPECT_EQ(BindOf(p, 3)->tasks[0].mig_start, 4);
}

TEST_F(MigTest, IdleInstancesInTheWayAreDestroyedKeepingTheRest) {
  // Slices 0-3 hold idle 1g instances; a 4g can start only at 0.
  Node(0, NodeBuilder("n0").Gpus(1).Mig(0b1, "H100-80GB", "1g.10gb@0,1g.10gb@1,1g.10gb@5"));
  Submit(1, WorkloadBuilder("w4", 0).Mig(4));
  Plan p = Cycle();
  ASSERT_EQ(p.reconfigs.size(), 1u);
  // The idle 1g at slice 5 stays: it is out of the way.
  EXPECT_EQ(core::FormatLayout(H100(), p.reconfigs[0].layout), "4g.40gb@0,1g.10gb@5");
}

TEST_F(MigTest, TheStartKeepsRoomForTheLiveMix) {
  Node(0, NodeBuilder("n0").Gpus(1).Mig(0b1));
  Node(1, NodeBuilder("n1").Gpus(1).Mig(0b1));
  // A 4g is waiting (it counts in the mix); a 1g arrives first in line (higher priority).
  Submit(1, WorkloadBuilder("small", 0).Mig(1).Priority(5));
  Submit(2, WorkloadBuilder("big", 0).Mig(4));
  Plan p = Cycle();
  ASSERT_EQ(p.reconfigs.size(), 2u);
  // The 1g goes to slice 4 of one GPU (keeping 0-3 for a 4g), not slice 0.
  for (const MigReconfig& r : p.reconfigs) {
    const std::string l = core::FormatLayout(H100(), r.layout);
    if (r.for_workload == WorkloadId(1)) EXPECT_EQ(l, "1g.10gb@4");
    if (r.for_workload == WorkloadId(2)) EXPECT_EQ(l, "4g.40gb@0");
  }
}

TEST_F(MigTest, StaticMigUsesOnlyTheInstancesThatExist) {
  Make(SchedulerConfig{.policy = "bestfit", .mig_reconfigure = false});
  Queue(0, QueueBuilder("q").Guarantee(1000));
  Node(0, NodeBuilder("n0").Gpus(1).Mig(0b1, "H100-80GB", "1g.10gb@0,2g.20gb@2,3g.40gb@4"));
  Submit(1, WorkloadBuilder("w4", 0).Mig(4));
  Submit(2, WorkloadBuilder("w2", 0).Mig(2));
  Plan p = Cycle();
  EXPECT_TRUE(p.reconfigs.empty());
  EXPECT_EQ(BindOf(p, 1), nullptr);
  ASSERT_NE(BindOf(p, 2), nullptr);
  EXPECT_EQ(BindOf(p, 2)->tasks[0].mig_start, 2);
}

TEST_F(MigTest, WholeAndFractionalWorkNeverLandsOnMigGpus) {
  Node(0, NodeBuilder("n0").Gpus(2).Mig(0b01));
  Submit(1, WorkloadBuilder("whole", 0).Gpus(1));
  Submit(2, WorkloadBuilder("frac", 0).Fraction(300, 1024));
  Submit(3, WorkloadBuilder("two", 0).Gpus(2));
  Plan p = Cycle();
  ASSERT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(BindOf(p, 1)->tasks[0].gpus, 0b10);
  EXPECT_EQ(BindOf(p, 2), nullptr);  // GPU 1 is taken whole, GPU 0 is MIG
  EXPECT_EQ(BindOf(p, 3), nullptr);
}

TEST_F(MigTest, WholeGpuWorkNeitherFitsNorReservesMigGpus) {
  // One node, every GPU in MIG mode: a whole-GPU gang could never run, so it is
  // Unschedulable and holds nothing back; the MIG request runs.
  Node(0, NodeBuilder("n0").Gpus(8).Mig(0xFF));
  Submit(1, WorkloadBuilder("gang", 0).Gpus(1).Tasks(2));
  Submit(2, WorkloadBuilder("mig", 0).Mig(1));
  Plan p = Cycle();
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kUnschedulable);
  EXPECT_EQ(s_->cluster().node(NodeId(0)).reserved_gpus, 0);
  ASSERT_EQ(p.reconfigs.size(), 1u);
  Apply(p);
  p = Cycle(1);
  ASSERT_NE(BindOf(p, 2), nullptr);
}

TEST_F(MigTest, AnInstanceHasExactlyTheRequestsComputeSoQuotasCountWhatItHolds) {
  // 2 slices with 30 GiB: no H100 profile has exactly that (2g.20gb is too small, 3g.40gb
  // has 3 slices), so it never takes a 3g and counts 2 slices; H200's 2g.35gb has it.
  Node(0, NodeBuilder("h100").Gpus(1).Mig(0b1));
  Submit(1, WorkloadBuilder("w", 0).Mig(2, 30 * 1024));
  Plan p = Cycle();
  EXPECT_TRUE(p.reconfigs.empty());
  EXPECT_EQ(ReasonOf(p, 1), PendingReason::kUnschedulable);
  Node(1, NodeBuilder("h200").Gpus(1, 1, 144384).Mig(0b1, "H200-141GB"));
  p = Cycle(1);
  ASSERT_EQ(p.reconfigs.size(), 1u);
  EXPECT_EQ(p.reconfigs[0].node, NodeId(1));
  EXPECT_EQ(core::FormatLayout(*core::FindMigModel("H200-141GB"), p.reconfigs[0].layout),
            "2g.35gb@0");
}

TEST_F(MigTest, AnyTakesAnInstanceOrElseAFraction) {
  Node(0, NodeBuilder("n0").Gpus(2).Mig(0b01, "H100-80GB", "1g.10gb@0"));
  Submit(1, WorkloadBuilder("a", 0).Mig(1, 0, core::Sharing::kAny));
  Submit(2, WorkloadBuilder("b", 0).Mig(1, 0, core::Sharing::kAny));
  Plan p = Cycle();
  ASSERT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(BindOf(p, 1)->tasks[0].mig_start, 0);
  // The second would need a layout change on GPU 0 (started), so it waits for it.
  EXPECT_EQ(ReasonOf(p, 2), PendingReason::kMigReconfiguring);
  // With MIG GPUs busy reconfiguring, a third takes a time-sliced fraction of GPU 1.
  Submit(3, WorkloadBuilder("c", 0).Mig(1, 0, core::Sharing::kAny));
  p = Cycle(1);
  ASSERT_NE(BindOf(p, 3), nullptr);
  EXPECT_EQ(BindOf(p, 3)->tasks[0].gpus, 0b10);
  EXPECT_EQ(BindOf(p, 3)->tasks[0].mig_start, -1);
}

TEST_F(MigTest, FinishedTasksFreeTheirInstanceAndAdoptionRestoresIt) {
  Node(0, NodeBuilder("n0").Gpus(1).Mig(0b1, "H100-80GB", "3g.40gb@0,3g.40gb@4"));
  Submit(1, WorkloadBuilder("w", 0).Mig(3));
  Plan p = Cycle();
  ASSERT_NE(BindOf(p, 1), nullptr);
  EXPECT_EQ(s_->cluster().mig(NodeId(0)).busy[0], 0b1);
  ASSERT_TRUE(s_->TaskFinished(WorkloadId(1), 0).ok());
  EXPECT_EQ(s_->cluster().mig(NodeId(0)).busy[0], 0);
  EXPECT_EQ(Usage(0), 0);
  // A restarted control plane adopts a MIG task on its instance.
  TaskBinding t{0, NodeId(0), 0b1, 428, 4};
  ASSERT_TRUE(s_->Adopt(WorkloadId(2), WorkloadBuilder("a", 0).Mig(3), {t}, 0).ok());
  EXPECT_EQ(s_->cluster().mig(NodeId(0)).busy[0], 0b1'0000);
  EXPECT_EQ(s_->Placement(WorkloadId(2))[0].mig_start, 4);
  // Not on an instance that does not exist or is taken.
  TaskBinding gone{0, NodeId(0), 0b1, 428, 2};
  EXPECT_FALSE(s_->Adopt(WorkloadId(3), WorkloadBuilder("b", 0).Mig(3), {gone}, 0).ok());
  EXPECT_FALSE(s_->Adopt(WorkloadId(4), WorkloadBuilder("c", 0).Mig(3), {t}, 0).ok());
  // `any` on an instance is adopted there too.
  ASSERT_TRUE(s_->TaskFinished(WorkloadId(2), 0).ok());
  ASSERT_TRUE(
      s_->Adopt(WorkloadId(5), WorkloadBuilder("d", 0).Mig(3, 0, core::Sharing::kAny), {t}, 0)
          .ok());
  EXPECT_EQ(s_->cluster().mig(NodeId(0)).busy[0], 0b1'0000);
  // A node update may not drop an instance a task holds.
  core::NodeSpec spec = NodeBuilder("n0").Gpus(1).Mig(0b1, "H100-80GB", "3g.40gb@0");
  EXPECT_FALSE(s_->UpdateNode(NodeId(0), spec).ok());
}

TEST_F(MigTest, InvalidMigRequestsAreRefusedByField) {
  Node(0, NodeBuilder("n0").Gpus(1).Mig(0b1));
  core::WorkloadSpec w = WorkloadBuilder("w", 0).Mig(3);
  w.task.mig_compute = 8;
  EXPECT_NE(s_->Submit(WorkloadId(1), w).message().find("mig_compute"), std::string::npos);
  w = WorkloadBuilder("w", 0).Mig(3).Tasks(2);
  EXPECT_NE(s_->Submit(WorkloadId(1), w).message().find("max_tasks"), std::string::npos);
  w = WorkloadBuilder("w", 0).Mig(3);
  w.task.gpu_milli = 500;
  EXPECT_NE(s_->Submit(WorkloadId(1), w).message().find("gpu_milli"), std::string::npos);
  core::NodeSpec bad = NodeBuilder("x").Gpus(1).Mig(0b10);
  EXPECT_NE(s_->AddNode(NodeId(5), bad).message().find("mig_gpus"), std::string::npos);
}

// Property: a random stream of MIG requests, finishes and late layout applications keeps
// every layout valid, binds only on applied instances that exist, never two tasks on one
// instance, never drops a busy instance, and keeps usage within the queue's limit.
TEST_F(MigTest, PropertiesHoldUnderRandomChurn) {
  Make(SchedulerConfig{.policy = "bestfit"});
  Queue(0, QueueBuilder("q").Guarantee(4, 6));
  for (uint32_t n = 0; n < 3; ++n) {
    Node(n, NodeBuilder("n" + std::to_string(n)).Gpus(4).Mig(0b0111));
  }
  std::mt19937 rng(11);
  std::vector<MigReconfig> in_flight;
  std::map<uint32_t, TaskBinding> running;
  uint32_t next = 1;
  size_t binds = 0, changes = 0;
  for (int step = 0; step < 400; ++step) {
    const int compute[] = {1, 1, 1, 2, 3, 4, 7};
    for (int k = rng() % 3; k > 0; --k) {
      Submit(next++, WorkloadBuilder("w", 0).Mig(compute[rng() % 7], (rng() % 2) * 15000));
    }
    // Apply some of the layout changes in flight, late.
    std::vector<MigReconfig> keep;
    for (const MigReconfig& r : in_flight) {
      if (rng() % 2) {
        ASSERT_TRUE(s_->MigLayoutApplied(r.node, r.gpu, r.layout).ok());
      } else {
        keep.push_back(r);
      }
    }
    in_flight = keep;
    Plan p = Cycle(step);
    changes += p.reconfigs.size();
    binds += p.binds.size();
    for (const MigReconfig& r : p.reconfigs) {
      ASSERT_TRUE(core::ValidateLayout(H100(), r.layout).ok());
      for (const MigReconfig& o : in_flight) {
        EXPECT_FALSE(o.node == r.node && o.gpu == r.gpu) << "two changes on one GPU at once";
      }
      in_flight.push_back(r);
    }
    for (const Bind& b : p.binds) {
      const TaskBinding& t = b.tasks[0];
      const int gpu = std::countr_zero(t.gpus);
      const MigNodeState& m = s_->cluster().mig(t.node);
      // A GPU may be changing now only if this very cycle started it after the bind (the
      // change keeps the bound instance); `layout` is the applied one either way.
      if ((s_->cluster().node(t.node).mig_reconfiguring >> gpu) & 1u) {
        EXPECT_TRUE(std::any_of(p.reconfigs.begin(), p.reconfigs.end(), [&](const MigReconfig& r) {
          return r.node == t.node && r.gpu == gpu;
        }));
      }
      const auto l = m.layout[gpu].view();
      EXPECT_TRUE(std::any_of(l.begin(), l.end(), [&](const core::MigInstance& i) {
        return i.start == t.mig_start;
      })) << "bound on an instance the layout lacks";
      running[b.workload.value()] = t;
    }
    // No instance holds two tasks; every busy bit is a running task and the reverse.
    std::map<std::tuple<uint32_t, int, int>, int> holders;
    for (const auto& [w, t] : running) {
      ++holders[{t.node.value(), std::countr_zero(t.gpus), t.mig_start}];
    }
    for (const auto& [key, count] : holders) EXPECT_EQ(count, 1);
    size_t busy_bits = 0;
    for (uint32_t n = 0; n < 3; ++n) {
      for (int j = 0; j < 4; ++j) {
        const uint8_t busy = s_->cluster().mig(NodeId(n)).busy[j];
        busy_bits += static_cast<size_t>(std::popcount(busy));
        for (int s = 0; s < core::kMigMemorySlices; ++s) {
          if ((busy >> s) & 1u)
            EXPECT_EQ(holders.count({n, j, s}), 1u) << n << "/" << j << "@" << s;
        }
      }
    }
    EXPECT_EQ(busy_bits, holders.size());
    for (uint32_t n = 0; n < 3; ++n) {
      for (int j = 0; j < 3; ++j) {
        ASSERT_TRUE(core::ValidateLayout(H100(), s_->cluster().mig(NodeId(n)).layout[j]).ok());
      }
    }
    EXPECT_LE(Usage(0), 6000);
    // Finish some.
    for (auto it = running.begin(); it != running.end();) {
      if (rng() % 4 == 0) {
        ASSERT_TRUE(s_->TaskFinished(WorkloadId(it->first), 0).ok());
        it = running.erase(it);
      } else {
        ++it;
      }
    }
  }
  // The properties were exercised, not vacuous: many binds and layout changes, late ones.
  EXPECT_GT(next, 300u);
  EXPECT_GT(binds, 150u);
  EXPECT_GT(changes, 30u);
}

}  // namespace
}  // namespace gpuorch::sched::testing
