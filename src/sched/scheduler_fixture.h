#pragma once

// The scheduler test fixture shared by the engine's scenario tests: a fresh Scheduler per
// test, builders for queues/nodes/workloads, and lookups into a Plan.

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <set>
#include <string>

#include "sched/scheduler.h"
#include "sched/testing.h"

namespace gpuorch::sched::testing {

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override { Make(SchedulerConfig{.policy = "bestfit"}); }

  void Make(SchedulerConfig config) {
    auto s = Scheduler::Create(config);
    ASSERT_TRUE(s.ok()) << s.status().message();
    s_ = std::move(s).value();
  }
  void Queue(uint32_t id, const QueueSpec& q) { ASSERT_TRUE(s_->AddQueue(QueueId(id), q).ok()); }
  void Node(uint32_t id, const core::NodeSpec& n) {
    Status st = s_->AddNode(NodeId(id), n);
    ASSERT_TRUE(st.ok()) << st.message();
  }
  // n nodes of `gpus` GPUs each, in racks of `per_rack`, ids from `first`.
  void Nodes(uint32_t first, int n, int gpus, int per_rack = 1000, uint32_t model = 0) {
    for (int i = 0; i < n; ++i) {
      Node(first + static_cast<uint32_t>(i),
           NodeBuilder("n" + std::to_string(first + static_cast<uint32_t>(i)))
               .Gpus(gpus, model)
               .Rack("r" + std::to_string(i / per_rack)));
    }
  }
  void Submit(uint32_t id, const WorkloadSpec& w) {
    Status st = s_->Submit(WorkloadId(id), w);
    ASSERT_TRUE(st.ok()) << st.message();
  }
  Plan Cycle(Time t = 0) { return s_->Cycle(t); }

  static const Bind* BindOf(const Plan& p, uint32_t id) {
    for (const Bind& b : p.binds) {
      if (b.workload == WorkloadId(id)) return &b;
    }
    return nullptr;
  }
  static const Eviction* EvictionOf(const Plan& p, uint32_t id) {
    for (const Eviction& e : p.evictions) {
      if (e.workload == WorkloadId(id)) return &e;
    }
    return nullptr;
  }
  static std::optional<PendingReason> ReasonOf(const Plan& p, uint32_t id) {
    for (const PendingExplanation& e : p.pending) {
      if (e.workload == WorkloadId(id)) return e.reason;
    }
    return std::nullopt;
  }
  static std::set<uint32_t> NodesOf(const Bind& b) {
    std::set<uint32_t> s;
    for (const TaskBinding& t : b.tasks) s.insert(t.node.value());
    return s;
  }
  int64_t Usage(uint32_t q) const { return s_->QueueUsage(QueueId(q), GpuModelId(0)); }

  std::unique_ptr<Scheduler> s_;
};

}  // namespace gpuorch::sched::testing
