// Inference services in the controller (issue 10 §1, §2; docs/inference.md): replicas
// created, placed and stopped to follow the autoscaler, readiness and ports from the agents'
// reports, drain before stop, restart with backoff, scale from zero, pinning, restart of
// the server, and input errors, on an injected clock through a real SQLite store.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/controller.h"
#include "server/controller_test_util.h"

namespace gpuorch::server {
namespace {

class ServicesTest : public test_util::ControllerFixture {
 protected:
  void SetUp() override { Open("services", "queues: [{name: serving}, {name: batch}]\n"); }

  // A service of 1-GPU replicas; `extra` overrides fields of the submission.
  int64_t SubmitService(const Json& extra = Json::object()) {
    Json spec = {
        {"name", "chat"},
        {"queue", "serving"},
        {"kind", "inference"},
        {"gpus", 1},
        {"command", {"serve"}},
        {"replicas", {{"min", 1}, {"max", 4}}},
        {"autoscale",
         {{"target", 1}, {"target_utilization", 1}, {"stable_window_s", 6}, {"panic_window_s", 1}}},
        {"readiness", {{"http_path", "/health"}}}};
    spec.update(extra);
    Json out;
    ApiError e;
    EXPECT_TRUE(controller_->Submit(spec, out, e)) << e.message;
    return out.value("id", int64_t{-1});
  }
  Json Service(int64_t id) { return Get(id)["service"]; }
  // The replicas' workload ids, in replica order.
  std::vector<int64_t> Replicas(int64_t id, bool with_draining = true) {
    std::vector<int64_t> out;
    const Json service = Service(id);  // kept: a range over a temporary's member dangles
    for (const Json& r : service["replicas"]) {
      if (r["state"] == "Stopping" || (!with_draining && r["draining"] == true)) continue;
      out.push_back(r["workload"].get<int64_t>());
    }
    return out;
  }
  // A heartbeat from `node` reporting replica `w` running with its serving state.
  // A heartbeat from `node` with one report of replica `w`'s task 0: `report` adds to
  // its workload, task and attempt (state, pid, service, exit_code).
  void Beat(const std::string& node, int64_t w, const Json& report) {
    Json entry = {{"workload", w}, {"task", 0}, {"attempt", Get(w)["attempt"]}};
    entry.update(report);
    Json out;
    ApiError e;
    ASSERT_TRUE(controller_->Heartbeat(node, {{"tasks", Json::array({entry})}}, out, e))
        << e.message;
  }
  // Replica `w` running with its serving state.
  void Report(const std::string& node, int64_t w, int port, bool ready,
              const Json& gauges = Json()) {
    Json sv = {{"port", port}, {"ready", ready}};
    if (!gauges.is_null()) sv["gauges"] = gauges;
    Beat(node, w, {{"state", "running"}, {"pid", 100}, {"service", sv}});
  }
  void Exit(const std::string& node, int64_t w, int code) {
    Beat(node, w, {{"state", "exited"}, {"exit_code", code}});
  }
  // A load report as the gateway sends it: `replicas` their sessions, `drained` those
  // HAProxy sends no new request.
  void Load(int64_t id, double in_flight, const Json& replicas = Json(),
            const Json& drained = Json()) {
    Json body = {{"in_flight", in_flight}, {"source", "load_balancer"}};
    if (!replicas.is_null()) body["replicas"] = replicas;
    if (!drained.is_null()) body["drained"] = drained;
    Json out;
    ApiError e;
    ASSERT_TRUE(controller_->PushLoad(id, body, out, e)) << e.message;
  }
  // Steps once per simulated second for `seconds`, pushing `in_flight` before each.
  void Run(int64_t id, int seconds, double in_flight, const Json& replicas = Json(),
           const Json& drained = Json()) {
    for (int i = 0; i < seconds; ++i) {
      Advance(1000);
      Load(id, in_flight, replicas, drained);
      controller_->Step();
    }
  }
  // Reports every live replica running and Ready on n1 (ports 20000 + replica).
  void AllReady(int64_t id) {
    const Json service = Service(id);
    for (const Json& r : service["replicas"]) {
      if (r["state"] == "Running") {
        Report("n1", r["workload"], 20000 + r["replica"].get<int>(), true);
      }
    }
  }
  // A service of 1-GPU replicas on a 4-GPU node, grown by load to `replicas` Ready ones
  // (target 1 in flight each).
  int64_t ReadyService(int replicas) {
    Register("n1", 4);
    const int64_t id = SubmitService();
    controller_->Step();
    AllReady(id);
    Run(id, 2, replicas);
    AllReady(id);
    EXPECT_EQ(Service(id)["ready"], replicas);
    return id;
  }
  Json DesiredOf(const std::string& node) {
    Json out;
    ApiError e;
    EXPECT_TRUE(controller_->Heartbeat(node, {{"tasks", Json::array()}}, out, e)) << e.message;
    return out["desired"];
  }
};

TEST_F(ServicesTest, MinReplicasStartAtOnceAndTurnReadyFromTheAgentsReport) {
  Register("n1", 4, "10.0.0.7:7070");
  const int64_t id = SubmitService();
  EXPECT_EQ(Get(id)["state"], "Running");
  controller_->Step();  // decides 1 (min), creates the replica and places it in one Step
  const std::vector<int64_t> replicas = Replicas(id);
  ASSERT_EQ(replicas.size(), 1u) << Get(id).dump();
  const Json r = Get(replicas[0]);
  EXPECT_EQ(r["state"], "Running");
  EXPECT_EQ(r["kind"], "inference");
  EXPECT_EQ(r["service_of"], id);
  EXPECT_EQ(r["ready"], false);
  EXPECT_EQ(Service(id)["desired"], 1);
  EXPECT_EQ(Service(id)["ready"], 0);

  // The agent is told to probe it and which gauges to scrape.
  const Json desired = DesiredOf("n1");
  ASSERT_EQ(desired.size(), 1u);
  EXPECT_EQ(desired[0]["service"]["readiness"]["http_path"], "/health");
  EXPECT_EQ(desired[0]["service"]["gauges"],
            Json({"vllm:num_requests_running", "vllm:num_requests_waiting",
                  "vllm:gpu_cache_usage_perc"}));

  Report("n1", replicas[0], 20001, false);
  EXPECT_EQ(Service(id)["ready"], 0);
  Report("n1", replicas[0], 20001, true);
  const Json s = Service(id);
  EXPECT_EQ(s["ready"], 1);
  EXPECT_EQ(s["replicas"][0]["address"], "10.0.0.7:20001");
  EXPECT_EQ(s["replicas"][0]["ready"], true);
  EXPECT_TRUE(HasEvent(replicas[0], "Ready"));
  // The service gauges.
  const std::string metrics = controller_->Metrics();
  EXPECT_NE(metrics.find("gpuorch_service_replicas{id=\"1\",queue=\"serving\",service=\"chat\","
                         "state=\"ready\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("gpuorch_service_replicas{id=\"1\",queue=\"serving\",service=\"chat\","
                         "state=\"desired\"} 1"),
            std::string::npos);
  // The gateway's view lists it too.
  const Json all = controller_->ListServices();
  ASSERT_EQ(all["services"].size(), 1u);
  EXPECT_EQ(all["services"][0]["id"], id);
}

TEST_F(ServicesTest, LoadScalesUpThenDrainedReplicasStopOnlyOnceIdleAtTheGateway) {
  Register("n1", 4);
  const int64_t id = SubmitService();
  controller_->Step();
  AllReady(id);
  // 3 in flight for a target of 1: three replicas (the panic window sees it at once).
  Run(id, 2, 3);
  ASSERT_EQ(Replicas(id).size(), 3u);
  EXPECT_EQ(Service(id)["desired"], 3);
  AllReady(id);
  EXPECT_EQ(Service(id)["ready"], 3);

  // Load falls to 1: after panic ends (a stable window with no decision over 2x) the
  // service steps down, draining the newest Ready replicas rather than stopping them.
  std::vector<int64_t> before = Replicas(id);
  Json sessions = {{std::to_string(before[1]), 2}, {std::to_string(before[2]), 2}};
  Run(id, 20, 1, sessions);
  const Json s = Service(id);
  EXPECT_EQ(s["desired"], 1);
  EXPECT_EQ(s["ready"], 1);
  int draining = 0;
  for (const Json& r : s["replicas"]) draining += r["draining"] == true;
  EXPECT_EQ(draining, 2) << s.dump();
  EXPECT_EQ(Get(before[2])["draining"], true);
  EXPECT_EQ(Get(before[2])["state"], "Running");  // still serving its 2 sessions

  // Sessions counted before HAProxy drained them do not count: replica 2 at 0 sessions but
  // still routed is not stopped.
  Run(id, 1, 1, {{std::to_string(before[1]), 2}, {std::to_string(before[2]), 0}});
  EXPECT_EQ(Get(before[2])["tasks"][0]["state"], "running");
  // The gateway reports both drained, replica 2 idle, replica 1 still busy: only replica 2
  // stops.
  Run(id, 2, 1, {{std::to_string(before[1]), 1}, {std::to_string(before[2]), 0}},
      {before[1], before[2]});
  EXPECT_TRUE(Get(before[2])["events"].back()["message"].get<std::string>().find("drained") !=
              std::string::npos)
      << Get(before[2]).dump();
  EXPECT_EQ(Get(before[2])["tasks"][0]["state"], "stopping");
  EXPECT_EQ(Get(before[1])["tasks"][0]["state"], "running");
  // Then replica 1 has no session either (or no server: the gateway counts it 0, drained).
  Run(id, 2, 1, {{std::to_string(before[1]), 0}}, {before[1]});
  EXPECT_EQ(Get(before[1])["tasks"][0]["state"], "stopping");
  EXPECT_EQ(Get(before[0])["tasks"][0]["state"], "running");
}

TEST_F(ServicesTest, ScaleUpTakesADrainingReplicaBackBeforeStartingANewOne) {
  const int64_t id = ReadyService(2);
  const std::vector<int64_t> two = Replicas(id);
  ASSERT_EQ(two.size(), 2u);
  // Down to 1 while the gateway still sees a session on the second.
  Run(id, 20, 0.5, {{std::to_string(two[1]), 1}});
  ASSERT_EQ(Get(two[1])["draining"], true);
  Run(id, 2, 2, {{std::to_string(two[1]), 1}});
  EXPECT_EQ(Get(two[1])["draining"], false);
  EXPECT_EQ(Replicas(id), two);  // no third replica
  EXPECT_TRUE(HasEvent(two[1], "Undrained"));
}

TEST_F(ServicesTest, ScaleFromZeroCreatesAReplicaInTheStepAfterTheFirstLoad) {
  Register("n1", 2);
  const int64_t id = SubmitService({{"replicas", "0:2"}});
  controller_->Step();
  EXPECT_EQ(Service(id)["desired"], 0);
  EXPECT_TRUE(Replicas(id).empty());
  Advance(100);
  Load(id, 1);  // a request waits at the gateway
  controller_->Step();
  const std::vector<int64_t> r = Replicas(id);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(Get(r[0])["state"], "Running");
}

TEST_F(ServicesTest, IdleServiceGoesToZeroOnlyAfterScaleToZeroAfter) {
  Register("n1", 2);
  const int64_t id = SubmitService({{"replicas", "0:2"},
                                    {"autoscale",
                                     {{"target", 1},
                                      {"target_utilization", 1},
                                      {"stable_window_s", 6},
                                      {"panic_window_s", 1},
                                      {"scale_to_zero_after_s", 30}}}});
  Advance(100);
  Load(id, 1);
  controller_->Step();
  AllReady(id);
  ASSERT_EQ(Replicas(id).size(), 1u);
  Run(id, 25, 0);
  EXPECT_EQ(Replicas(id, false).size(), 1u);  // traffic 25 s ago: the last replica stays
  Run(id, 10, 0);
  EXPECT_EQ(Service(id)["desired"], 0);
  EXPECT_TRUE(Replicas(id, false).empty());
}

TEST_F(ServicesTest, AReplicaThatEndsIsReplacedAfterABackoffThatDoubles) {
  Register("n1", 2);
  const int64_t id = SubmitService({{"replicas", "1:1"}});
  controller_->Step();
  std::vector<int64_t> r = Replicas(id);
  ASSERT_EQ(r.size(), 1u);
  Exit("n1", r[0], 3);
  EXPECT_EQ(Get(r[0])["state"], "Failed");
  controller_->Step();
  EXPECT_TRUE(HasEvent(id, "ReplicaEnded", "next starts in 1s"));
  EXPECT_TRUE(Replicas(id).empty());  // not before the backoff
  Advance(1000);
  controller_->Step();
  r = Replicas(id);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(Get(r[0])["replica"], 1);
  // It fails too: the next wait is 2 s.
  Exit("n1", r[0], 1);
  controller_->Step();
  EXPECT_TRUE(HasEvent(id, "ReplicaEnded", "next starts in 2s"));
  Advance(1000);
  controller_->Step();
  EXPECT_TRUE(Replicas(id).empty());
  Advance(1000);
  controller_->Step();
  ASSERT_EQ(Replicas(id).size(), 1u);
}

TEST_F(ServicesTest, PinnedSizeHoldsWhateverTheLoadUntilAuto) {
  Register("n1", 4);
  const int64_t id = SubmitService();
  controller_->Step();
  Json out;
  ApiError e;
  ASSERT_TRUE(controller_->Scale(id, {{"replicas", 3}}, out, e)) << e.message;
  Run(id, 3, 0);
  EXPECT_EQ(Service(id)["desired"], 3);
  EXPECT_EQ(Service(id)["pinned"], 3);
  EXPECT_EQ(Service(id)["mode"], "pinned");
  EXPECT_EQ(Replicas(id).size(), 3u);
  EXPECT_FALSE(controller_->Scale(id, {{"replicas", 5}}, out, e));
  EXPECT_EQ(e.field, "replicas");
  EXPECT_NE(e.message.find("1..4"), std::string::npos) << e.message;
  ASSERT_TRUE(controller_->Scale(id, {{"auto", true}}, out, e)) << e.message;
  AllReady(id);
  Run(id, 30, 0.5);
  EXPECT_EQ(Service(id)["pinned"], nullptr);
  EXPECT_EQ(Service(id)["desired"], 1);
}

TEST_F(ServicesTest, ARestartedServerKeepsServicesReplicasAndThePin) {
  Register("n1", 4);
  const int64_t id = SubmitService();
  controller_->Step();
  Json out;
  ApiError e;
  ASSERT_TRUE(controller_->Scale(id, {{"replicas", 2}}, out, e)) << e.message;
  controller_->Step();
  const std::vector<int64_t> before = Replicas(id);
  ASSERT_EQ(before.size(), 2u);
  controller_->Flush();
  Reopen();
  EXPECT_EQ(Service(id)["pinned"], 2);
  EXPECT_EQ(Replicas(id), before);
  for (int64_t r : before) EXPECT_EQ(Get(r)["state"], "Running");
  Advance(1000);
  controller_->Step();
  EXPECT_EQ(Replicas(id), before);  // adopted, none started twice
}

TEST_F(ServicesTest, ARestartNeverScalesAServiceDownBeforeItsReplicasReport) {
  const int64_t id = ReadyService(3);
  const std::vector<int64_t> before = Replicas(id);
  ASSERT_EQ(before.size(), 3u);
  controller_->Flush();
  Reopen();
  // Readiness is unknown after the restart: nothing is decided, nothing stops.
  for (int i = 0; i < 5; ++i) {
    Advance(1000);
    controller_->Step();
  }
  EXPECT_EQ(Replicas(id, false), before);
  EXPECT_EQ(Service(id)["desired"], 3);
  for (int64_t r : before) EXPECT_EQ(Get(r)["tasks"][0]["state"], "running") << r;
  // Once all have reported (no load since the restart), it steps down by draining, never
  // by stopping Ready replicas at once.
  AllReady(id);
  Advance(1000);
  controller_->Step();
  EXPECT_EQ(Service(id)["desired"], 1);
  EXPECT_EQ(Replicas(id, false).size(), 1u);
  for (int64_t r : before) EXPECT_NE(Get(r)["tasks"][0]["state"], "stopping") << r;
}

TEST_F(ServicesTest, ReplicaNumbersGoOnAfterARestart) {
  Register("n1", 2);
  const int64_t id = SubmitService({{"replicas", 1}});
  controller_->Step();
  std::vector<int64_t> r = Replicas(id);
  ASSERT_EQ(r.size(), 1u);
  Exit("n1", r[0], 1);
  controller_->Step();
  Advance(1000);
  controller_->Step();
  r = Replicas(id);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(Get(r[0])["replica"], 1);
  Exit("n1", r[0], 1);
  controller_->Flush();
  Reopen();
  Advance(60'000);
  controller_->Step();
  controller_->Step();
  r = Replicas(id);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(Get(r[0])["replica"], 2);
}

TEST_F(ServicesTest, CancellingAServiceStopsEveryReplica) {
  Register("n1", 4);
  const int64_t id = SubmitService({{"replicas", "2:2"}});
  controller_->Step();
  const std::vector<int64_t> r = Replicas(id);
  ASSERT_EQ(r.size(), 2u);
  Json out;
  ApiError e;
  ASSERT_TRUE(controller_->Cancel(id, out, e)) << e.message;
  EXPECT_EQ(Get(id)["state"], "Cancelled");
  for (int64_t w : r) EXPECT_EQ(Get(w)["tasks"][0]["state"], "stopping");
  EXPECT_TRUE(controller_->ListServices()["services"].empty());
  EXPECT_FALSE(controller_->PushLoad(id, {{"in_flight", 1}}, out, e));
  EXPECT_EQ(e.code, 409);
}

TEST_F(ServicesTest, TwoLiveServicesNeverShareAName) {
  Register("n1", 2);
  const int64_t id = SubmitService();
  Json out;
  ApiError e;
  Json again = Get(id)["spec"];
  EXPECT_FALSE(controller_->Submit(again, out, e));
  EXPECT_EQ(e.code, 409);
  EXPECT_EQ(e.field, "name");
  ASSERT_TRUE(controller_->Cancel(id, out, e)) << e.message;
  EXPECT_GT(SubmitService(), id);  // the name is free again
}

TEST_F(ServicesTest, BadServiceInputNamesTheField) {
  struct Case {
    Json extra;
    std::string field;
  };
  const std::vector<Case> cases = {
      {{{"replicas", "3:2"}}, "replicas.min"},
      {{{"replicas", "x"}}, "replicas"},
      {{{"replicas", 0}}, "replicas"},
      {{{"replicas", {{"min", 0}}}}, "replicas.max"},
      {{{"autoscale", {{"target", 0}}}}, "autoscale.target"},
      {{{"autoscale", {{"stable_window_s", 6}, {"panic_window_s", 7}}}},
       "autoscale.panic_window_s"},
      {{{"autoscale", {{"bogus", 1}}}}, "autoscale.bogus"},
      {{{"autoscale", {{"metric", 3}}}}, "autoscale.metric"},
      {{{"readiness", {{"http_path", "health"}}}}, "readiness.http_path"},
      {{{"readiness", {{"period_s", 0}}}}, "readiness.period_s"},
      {{{"drain_timeout_s", -1}}, "drain_timeout_s"},
      {{{"kind", "training"}}, "replicas"},
  };
  for (const Case& c : cases) {
    Json spec = {{"name", "chat"}, {"queue", "serving"},   {"kind", "inference"},
                 {"gpus", 1},      {"command", {"serve"}}, {"replicas", "0:2"}};
    spec.update(c.extra);
    Json out;
    ApiError e;
    EXPECT_FALSE(controller_->Submit(spec, out, e)) << c.extra.dump();
    EXPECT_EQ(e.field, c.field) << c.extra.dump() << ": " << e.message;
    EXPECT_EQ(e.message.rfind(c.field + ":", 0), 0u) << e.message;
  }
  // A submission may not pose as a replica.
  Json out;
  ApiError e;
  EXPECT_FALSE(controller_->Submit(
      {{"name", "x"}, {"queue", "serving"}, {"gpus", 1}, {"command", {"x"}}, {"service", 1}}, out,
      e));
  EXPECT_EQ(e.field, "service");

  Register("n1", 1);
  const int64_t id = SubmitService();
  for (const Json& bad : std::vector<Json>{Json::object(),
                                           {{"in_flight", -1}},
                                           {{"in_flight", "3"}},
                                           {{"in_flight", 1}, {"source", "x"}},
                                           {{"in_flight", 1}, {"replicas", {{"abc", 1}}}},
                                           {{"in_flight", 1}, {"replicas", {{"5", -1}}}},
                                           {{"in_flight", 1}, {"extra", 1}}}) {
    EXPECT_FALSE(controller_->PushLoad(id, bad, out, e)) << bad.dump();
    EXPECT_EQ(e.code, 400) << bad.dump();
    EXPECT_FALSE(e.field.empty()) << bad.dump();
  }
  // Not a service: 400; unknown: 404.
  Json plain;
  ASSERT_TRUE(controller_->Submit(
      {{"name", "job"}, {"queue", "batch"}, {"gpus", 1}, {"command", {"x"}}}, plain, e));
  EXPECT_FALSE(controller_->PushLoad(plain["id"], {{"in_flight", 1}}, out, e));
  EXPECT_EQ(e.code, 400);
  EXPECT_FALSE(controller_->Scale(999, {{"replicas", 1}}, out, e));
  EXPECT_EQ(e.code, 404);
}

}  // namespace
}  // namespace gpuorch::server
