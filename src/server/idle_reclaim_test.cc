// Idle reclaim (issue 10 §4; docs/inference.md, "Idle reclaim"): a queue's policy stops
// preemptible work of the listed kinds whose GPUs stayed idle for after_s, and reports any
// other idle work of the queue (the AllocatedIdle condition and event), from the agents'
// per-task telemetry on an injected clock.
#include <gtest/gtest.h>

#include <string>

#include "server/controller.h"
#include "server/controller_test_util.h"

namespace gpuorch::server {
namespace {

constexpr int64_t kMinute = 60'000;

class IdleReclaimTest : public test_util::ControllerFixture {
 protected:
  void SetUp() override {
    Open("idle-reclaim",
         "gpu_idle_util_pct: 5\n"
         "gpu_idle_after: 10m\n"
         "priority_classes: [{name: normal, value: 100}, {name: pinned, value: 100, preemptible: "
         "false}]\n"
         "queues:\n"
         "  - {name: notebooks, allowed_priorities: [normal, pinned], quota: [{guaranteed: 4}],\n"
         "     idle_reclaim: {after_s: 1800, kinds: [experiment], action: evict}}\n"
         "  - {name: research, idle_reclaim: {after_s: 1800, action: report}}\n"
         "  - {name: plain}\n"
         "  - {name: org, idle_reclaim: {after_s: 1800, kinds: [experiment, inference], "
         "action: evict}}\n"
         "  - {name: team, parent: org}\n");
    Register("n1", 8);
  }
  int64_t Submit(const std::string& queue, const std::string& kind,
                 const std::string& priority = "normal") {
    Json out;
    ApiError e;
    EXPECT_TRUE(controller_->Submit({{"name", "w"},
                                     {"queue", queue},
                                     {"kind", kind},
                                     {"priority", priority},
                                     {"gpus", 1},
                                     {"command", {"true"}}},
                                    out, e))
        << e.message;
    return out.value("id", int64_t{-1});
  }
  // One heartbeat: every workload's task 0 running, at `util` percent (per workload id).
  void Sample(const std::vector<std::pair<int64_t, double>>& use) {
    Json tasks = Json::array(), usage = Json::array();
    for (const auto& [id, util] : use) {
      tasks.push_back(
          {{"workload", id}, {"task", 0}, {"attempt", 0}, {"state", "running"}, {"pid", 10}});
      usage.push_back(
          {{"workload", id}, {"task", 0}, {"attempt", 0}, {"util", util}, {"mem_used_mib", 1}});
    }
    Json out;
    ApiError e;
    ASSERT_TRUE(controller_->Heartbeat(
        "n1", {{"tasks", tasks}, {"telemetry", {{"gpus", Json::array()}, {"tasks", usage}}}}, out,
        e))
        << e.message;
  }
};

TEST_F(IdleReclaimTest, IdlePreemptibleListedWorkIsStoppedOtherIdleWorkIsReported) {
  const int64_t notebook = Submit("notebooks", "experiment");
  const int64_t busy = Submit("notebooks", "experiment");
  const int64_t trainer = Submit("notebooks", "training");             // kind not listed
  const int64_t pinned = Submit("notebooks", "experiment", "pinned");  // not preemptible
  const int64_t reported = Submit("research", "experiment");           // action report
  const int64_t free = Submit("plain", "experiment");                  // no policy
  controller_->Step();
  for (int64_t id : {notebook, busy, trainer, pinned, reported, free}) {
    ASSERT_EQ(Get(id)["state"], "Running") << id;
  }
  auto sample = [&] {
    Sample({{notebook, 1}, {busy, 60}, {trainer, 1}, {pinned, 0}, {reported, 2}, {free, 0}});
  };
  // 25 minutes idle: under after_s (30 min), nothing happens.
  for (int i = 0; i <= 5; ++i) {
    sample();
    Advance(5 * kMinute);
  }
  EXPECT_EQ(Get(notebook)["state"], "Running");
  EXPECT_FALSE(Get(trainer).contains("conditions"));
  // Past 30 minutes.
  for (int i = 0; i < 2; ++i) {
    Advance(5 * kMinute);
    sample();
  }
  EXPECT_TRUE(HasEvent(notebook, "IdleReclaimed"));
  EXPECT_EQ(Get(notebook)["tasks"][0]["state"], "stopping");
  EXPECT_FALSE(HasEvent(busy, "IdleReclaimed"));
  EXPECT_FALSE(Get(busy).contains("conditions"));
  for (int64_t id : {trainer, pinned, reported}) {
    EXPECT_EQ(Get(id)["state"], "Running") << id;
    EXPECT_EQ(Get(id)["conditions"], Json::array({"AllocatedIdle"})) << id;
    EXPECT_TRUE(HasEvent(id, "AllocatedIdle")) << id;
  }
  EXPECT_FALSE(Get(free).contains("conditions"));
  EXPECT_FALSE(HasEvent(free, "AllocatedIdle"));
  const std::string metrics = controller_->Metrics();
  EXPECT_NE(
      metrics.find("gpuorch_preemptions_total{queue=\"notebooks\",reason=\"IdleReclaimed\"} 1"),
      std::string::npos);
  EXPECT_NE(metrics.find("gpuorch_workloads_allocated_idle{queue=\"notebooks\"} 2"),
            std::string::npos);
  EXPECT_NE(metrics.find("gpuorch_workloads_allocated_idle{queue=\"research\"} 1"),
            std::string::npos);
  // Busy again: the condition clears.
  Sample({{trainer, 80}});
  EXPECT_FALSE(Get(trainer).contains("conditions"));
}

TEST_F(IdleReclaimTest, ALeafWithoutAPolicyHasItsNearestAncestorsAndReplicasAreOnlyReported) {
  const int64_t idle = Submit("team", "experiment");
  Json out;
  ApiError e;
  ASSERT_TRUE(controller_->Submit({{"name", "svc"},
                                   {"queue", "team"},
                                   {"kind", "inference"},
                                   {"gpus", 1},
                                   {"replicas", 1},
                                   {"command", {"serve"}}},
                                  out, e))
      << e.message;
  const int64_t svc = out["id"];
  controller_->Step();
  const int64_t replica = Get(svc)["service"]["replicas"][0]["workload"];
  ASSERT_EQ(Get(replica)["state"], "Running");
  for (int i = 0; i < 8; ++i) {
    Sample({{idle, 0}, {replica, 0}});
    Advance(5 * kMinute);
  }
  Sample({{idle, 0}, {replica, 0}});
  EXPECT_TRUE(HasEvent(idle, "IdleReclaimed"));  // org's policy
  EXPECT_FALSE(HasEvent(replica, "IdleReclaimed"));
  EXPECT_TRUE(HasEvent(replica, "AllocatedIdle"));
  EXPECT_EQ(Get(replica)["tasks"][0]["state"], "running");
}

TEST_F(IdleReclaimTest, BadPoliciesNameTheField) {
  for (const auto& [yaml, field] : std::vector<std::pair<std::string, std::string>>{
           {"queues: [{name: a, idle_reclaim: {kinds: [experiment]}}]", "idle_reclaim.after_s"},
           {"queues: [{name: a, idle_reclaim: {after_s: 0}}]", "idle_reclaim.after_s"},
           {"queues: [{name: a, idle_reclaim: {after_s: 600, kinds: [notebook]}}]",
            "idle_reclaim.kinds"},
           {"queues: [{name: a, idle_reclaim: {after_s: 600, action: kill}}]",
            "idle_reclaim.action"},
           {"queues: [{name: a, idle_reclaim: {after_s: 600, bogus: 1}}]", "idle_reclaim.bogus"}}) {
    auto c = ParseConfig(yaml);
    ASSERT_FALSE(c.ok()) << yaml;
    EXPECT_NE(c.status().message().find(field), std::string::npos) << c.status().message();
  }
}

}  // namespace
}  // namespace gpuorch::server
