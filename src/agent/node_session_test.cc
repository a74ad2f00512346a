#include "agent/node_session.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "agent/emulated_executor.h"

namespace gpuorch::agent {
namespace {

using nlohmann::json;

json Entry(int64_t workload, const std::string& runtime_s = "") {
  json env = json::object();
  if (!runtime_s.empty()) env[kEmulateRuntimeEnv] = runtime_s;
  return {{"workload", workload}, {"task", 0},   {"attempt", 0},           {"command", {"x"}},
          {"env", env},           {"gpus", {0}}, {"grace_period_ms", 5000}};
}

HttpAnswer Ok(json body) { return HttpAnswer{200, body.dump(), ""}; }

HttpAnswer Desired(int64_t version, std::vector<json> entries, int64_t epoch = 7) {
  return Ok({{"desired", entries}, {"epoch", epoch}, {"version", version}});
}

class NodeSessionTest : public ::testing::Test {
 protected:
  NodeSessionTest() : session_(Reg(), executor_, 500, nullptr) {}
  static Registration Reg() {
    Registration r;
    r.name = "h-00001";
    r.backend = "emulated";
    return r;
  }
  // A register and a first heartbeat that succeed.
  void Connect() {
    ASSERT_TRUE(
        session_.OnRegisterAnswer(Ok({{"node", "h-00001"}, {"heartbeat_interval_ms", 200}})));
    session_.HeartbeatBody();
    ASSERT_TRUE(session_.OnHeartbeatAnswer(Desired(1, {})));
    session_.ContactDone(true, now_);
  }
  json Reported() { return json::parse(session_.HeartbeatBody())["tasks"]; }

  int64_t now_ = 0;
  EmulatedExecutor executor_{[this] { return now_; }};
  NodeSession session_;
};

TEST_F(NodeSessionTest, RegistersWithTheShorterIntervalAndSendsTheRegistration) {
  EXPECT_FALSE(session_.registered());
  EXPECT_EQ(json::parse(session_.RegisterBody())["backend"], "emulated");
  Connect();
  EXPECT_TRUE(session_.registered());
  EXPECT_EQ(session_.interval_ms(), 200);
  EXPECT_EQ(session_.HeartbeatPath(), "/v1/agents/h-00001/heartbeat");
  EXPECT_FALSE(session_.ContactDue(199, false));
  EXPECT_TRUE(session_.ContactDue(200, false));
  EXPECT_TRUE(session_.ContactDue(10, true));  // an exit is reported at once
}

TEST_F(NodeSessionTest, StartsStopsReportsAndForgetsAsTheListsSay) {
  Connect();
  session_.HeartbeatBody();
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Desired(2, {Entry(1, "1"), Entry(2)})));
  EXPECT_EQ(executor_.running(), 2);
  // An older list (a crossing heartbeat answer) changes nothing.
  session_.Apply(*ParseHeartbeatResponse(Desired(1, {}).body));
  EXPECT_EQ(executor_.running(), 2);
  // Workload 2 no longer desired: stopped.
  session_.Apply(*ParseHeartbeatResponse(Desired(3, {Entry(1, "1")}).body));
  EXPECT_EQ(executor_.running(), 1);
  now_ = 1000;
  ASSERT_TRUE(executor_.Poll());
  json tasks = Reported();
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0]["state"], "exited");
  EXPECT_EQ(tasks[0]["exit_code"], 0);
  EXPECT_EQ(tasks[1]["exit_code"], kEmulatedStopExitCode);
  // The server still lists workload 1: it stays reported; workload 2 is forgotten.
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Desired(4, {Entry(1, "1")})));
  EXPECT_EQ(executor_.Tasks().size(), 1u);
  // Listed once more, the exited attempt is not started again.
  EXPECT_EQ(executor_.started_total(), 2);
  Reported();
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Desired(5, {})));
  EXPECT_TRUE(executor_.Tasks().empty());
}

TEST_F(NodeSessionTest, AnotherEpochIsNewerWhateverItsVersion) {
  Connect();
  session_.Apply(*ParseHeartbeatResponse(Desired(9, {Entry(1)}).body));
  EXPECT_EQ(executor_.running(), 1);
  session_.Apply(*ParseHeartbeatResponse(Desired(1, {}, 3).body));
  EXPECT_EQ(executor_.running(), 0);
}

TEST_F(NodeSessionTest, A404ReRegistersAtOnceAndFailuresBackOff) {
  Connect();
  session_.HeartbeatBody();
  EXPECT_FALSE(session_.OnHeartbeatAnswer(HttpAnswer{404, "{}", ""}));
  EXPECT_FALSE(session_.registered());
  session_.ContactDone(false, 1000);
  EXPECT_TRUE(session_.ContactDue(1000, false));
  EXPECT_EQ(session_.failures(), 0);
  // Unreachable: the wait doubles up to the cap.
  int64_t now = 1000;
  std::vector<int64_t> waits;
  for (int i = 0; i < 8; ++i) {
    EXPECT_FALSE(session_.OnRegisterAnswer(HttpAnswer{-1, "", "refused"}));
    session_.ContactDone(false, now);
    waits.push_back(session_.WaitMs(now, 1 << 30));
    EXPECT_FALSE(session_.ContactDue(now, true));  // an exit does not break the backoff
  }
  EXPECT_EQ(waits[0], 200);
  EXPECT_EQ(waits[1], 400);
  EXPECT_EQ(waits.back(), NodeSession::kMaxBackoffMs);
  EXPECT_EQ(session_.failures(), 8);
}

TEST_F(NodeSessionTest, BadAnswersFailTheContact) {
  EXPECT_FALSE(session_.OnRegisterAnswer(HttpAnswer{500, "boom", ""}));
  EXPECT_FALSE(session_.OnRegisterAnswer(Ok({{"heartbeat_interval_ms", "soon"}})));
  Connect();
  session_.HeartbeatBody();
  EXPECT_FALSE(session_.OnHeartbeatAnswer(Ok({{"version", 1}})));  // no "desired"
  EXPECT_TRUE(session_.registered());
}

// Hollow nodes' service tasks (docs/agent.md, "Hollow nodes"): port 0, ready once the
// initial delay has passed, reported at once then; no gauges.
TEST_F(NodeSessionTest, AnEmulatedServiceTaskIsReadyAfterItsInitialDelay) {
  Connect();
  json e = Entry(1);
  e["service"] = {{"readiness", {{"http_path", "/health"}, {"initial_delay_s", 2}}}};
  session_.Apply(*ParseHeartbeatResponse(Desired(2, {e, Entry(2)}).body));
  json tasks = Reported();
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0]["service"], json({{"port", 0}, {"ready", false}}));
  EXPECT_FALSE(tasks[1].contains("service")) << "not a service task";
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Desired(2, {e, Entry(2)})));
  EXPECT_EQ(executor_.NextEventMs(), 2000);
  now_ = 1999;
  EXPECT_FALSE(executor_.Poll());
  EXPECT_TRUE(Reported().empty());
  now_ = 2000;
  EXPECT_TRUE(executor_.Poll()) << "reported at once, like an exit";
  EXPECT_TRUE(session_.ContactDue(now_, true));
  tasks = Reported();
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0]["service"], json({{"port", 0}, {"ready", true}}));
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Desired(2, {e, Entry(2)})));
  EXPECT_TRUE(Reported().empty());
}

// The real agent's probes replace what the executor knows of a running service task.
TEST_F(NodeSessionTest, ProbeResultsAreReportedForRunningServiceTasks) {
  Connect();
  json e = Entry(1);
  e["service"] = {{"gauges", {"a"}}};
  session_.Apply(*ParseHeartbeatResponse(Desired(2, {e}).body));
  session_.SetServices({{TaskKey{1, 0, 0}, ServiceReport{20005, true, {{"a", 2}}, 1}},
                        {TaskKey{9, 0, 0}, ServiceReport{20006, true, {}, 0}}});
  json tasks = Reported();
  ASSERT_EQ(tasks.size(), 1u) << "only tasks the executor runs";
  EXPECT_EQ(tasks[0]["service"],
            json({{"port", 20005}, {"ready", true}, {"gauges", {{"a", 2.0}}}}));
}

TEST(WatchTest, PathAndAnswers) {
  DesiredList known;
  known.epoch = 7;
  known.version = 3;
  EXPECT_EQ(WatchPath("h-00001", known, 500),
            "/v1/agents/h-00001/desired?epoch=7&after=3&wait_ms=500");
  EXPECT_FALSE(ParseWatchAnswer(HttpAnswer{404, "", ""}).ok());
  EXPECT_FALSE(ParseWatchAnswer(HttpAnswer{-1, "", "refused"}).ok());
  core::Result<DesiredList> got = ParseWatchAnswer(Desired(4, {Entry(1)}));
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->NewerThan(known));
  // The ceiling doubles from the interval (at most kWatchRetryBaseMs) to kMaxBackoffMs; a
  // random part of up to half of it comes off.
  EXPECT_EQ(WatchBackoffMs(0, 500, 0), 500);
  EXPECT_EQ(WatchBackoffMs(0, 500, 250), 250);
  EXPECT_EQ(WatchBackoffMs(0, 500, 251), 500);  // the random part wraps
  EXPECT_EQ(WatchBackoffMs(1, 500, 0), 1000);
  EXPECT_EQ(WatchBackoffMs(20, 500, 0), NodeSession::kMaxBackoffMs);
  EXPECT_EQ(WatchBackoffMs(20, 500, 2000), NodeSession::kMaxBackoffMs / 2);
  // A big cluster's interval is minutes long: the first retry still comes within 500 ms.
  EXPECT_EQ(WatchBackoffMs(0, 200'000, 0), NodeSession::kWatchRetryBaseMs);
  EXPECT_EQ(WatchBackoffMs(3, 200'000, 0), NodeSession::kMaxBackoffMs);
  // Waits spread over [ceiling/2, ceiling] (nodes that broke together retry apart).
  std::set<int64_t> waits;
  for (uint64_t r = 0; r < 1000; ++r) {
    const int64_t w = WatchBackoffMs(0, 200'000, r * 7919);
    EXPECT_GE(w, 250);
    EXPECT_LE(w, 500);
    waits.insert(w);
  }
  EXPECT_GT(waits.size(), 200u);
}

// A restarted server's list through the watch makes the node report at once (the new
// server knows its tasks only from its store), not at the next interval.
TEST_F(NodeSessionTest, AWatchedListFromANewEpochMakesAContactDue) {
  Connect();
  EXPECT_FALSE(session_.ContactDue(10, false));
  core::Result<DesiredList> same = ParseWatchAnswer(Desired(2, {Entry(5)}));
  ASSERT_TRUE(same.ok());
  session_.Apply(*same);
  EXPECT_FALSE(session_.ContactDue(10, false)) << "a newer list of the same server";
  core::Result<DesiredList> restarted = ParseWatchAnswer(Desired(1, {Entry(5)}, /*epoch=*/8));
  ASSERT_TRUE(restarted.ok());
  session_.Apply(*restarted);
  EXPECT_TRUE(session_.ContactDue(10, false));
  EXPECT_EQ(executor_.started_total(), 1) << "the task is not started again";
  session_.HeartbeatBody();
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Desired(1, {Entry(5)}, 8)));
  session_.ContactDone(true, 10);
  EXPECT_FALSE(session_.ContactDue(11, false));
}

// Beyond a few seconds' interval the heartbeat connection is not kept between contacts.
TEST_F(NodeSessionTest, KeepsTheContactConnectionOnlyWhileTheIntervalIsShort) {
  Connect();  // 200 ms
  EXPECT_TRUE(session_.KeepContactConnection());
  session_.HeartbeatBody();
  json answer = {{"desired", json::array()},
                 {"epoch", 7},
                 {"version", 1},
                 {"heartbeat_interval_ms", NodeSession::kKeepAliveMaxIntervalMs + 1}};
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Ok(answer)));
  EXPECT_FALSE(session_.KeepContactConnection());
}

}  // namespace
}  // namespace gpuorch::agent
