#include "agent/agent.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "agent/agent_test_fixture.h"
#include "agent/test_util.h"

namespace gpuorch::agent {
namespace {

using nlohmann::json;
using testing::AgentTest;
using testing::Desired;
using testing::ExitedWith;
using testing::kAbsent;
using testing::kRunning;
using testing::WaitFor;

TEST_F(AgentTest, RegistersWithItsGpusAndLogAddress) {
  StartAgent();
  ASSERT_TRUE(WaitFor([&] { return !server_.registrations().empty(); }));
  const json r = server_.registrations()[0];
  EXPECT_EQ(r.at("name"), "n1");
  EXPECT_EQ(r.at("backend"), "emulated");
  EXPECT_EQ(r.at("zone"), "z1");
  EXPECT_GT(r.at("cpu_milli").get<int64_t>(), 0);
  ASSERT_EQ(r.at("gpus").size(), 2u);
  EXPECT_EQ(r.at("gpus")[1].at("uuid"), "EMU-n1-1");
  EXPECT_EQ(r.at("gpus")[1].at("model"), "T4");
  EXPECT_EQ(r.at("address"), agent_->log_address());
  const std::string address = r.at("address");
  EXPECT_GT(std::stoi(address.substr(address.rfind(':') + 1)), 0);  // The bound port, not 0.
  ASSERT_TRUE(WaitFor([&] { return server_.heartbeat_count() >= 2; }));
  ASSERT_TRUE(WaitFor([&] { return server_.watches() >= 2; })) << "the desired list is watched";
  EXPECT_EQ(r.at("log_secret").get<std::string>().size(), 64u) << "256 random bits, hex";
}

TEST_F(AgentTest, LogEndpointAnswersOnlyTheServerAndServesByteRanges) {
  StartAgent();
  server_.SetDesired(json::array({Desired(1, "printf 0123456789")}));
  ASSERT_TRUE(server_.WaitTask(1, ExitedWith(0)));
  const std::string path = "/v1/tasks/1/0/0/logs?stream=stdout";
  httplib::Client c("http://" + agent_->log_address());
  const std::string secret = agent_->registration().log_secret;
  for (const httplib::Headers& h :
       {httplib::Headers{}, httplib::Headers{{"Authorization", "Bearer wrong"}},
        httplib::Headers{{"Authorization", "Bearer " + secret + "0"}},
        httplib::Headers{{"Authorization", secret}}}) {
    httplib::Result r = c.Get(path, h);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << "a request without the agent's log secret is refused";
    EXPECT_EQ(r->body.find("0123"), std::string::npos);
  }
  httplib::Result ok = c.Get(path, httplib::Headers{{"Authorization", "Bearer " + secret}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->body, "0123456789");
  EXPECT_EQ(ok->get_header_value("X-Gpuorch-Log-Size"), "10");
  EXPECT_EQ(ok->get_header_value("X-Gpuorch-Log-Offset"), "0");
  EXPECT_EQ(FetchLog(1, "stdout", "&limit=4"), "0123");
  EXPECT_EQ(FetchLog(1, "stdout", "&offset=6"), "6789");
  EXPECT_EQ(FetchLog(1, "stdout", "&offset=6&limit=2"), "67");
  EXPECT_EQ(FetchLog(1, "stdout", "&offset=99"), "");
  EXPECT_EQ(FetchLog(1, "stdout", "&tail=3"), "789");
  EXPECT_EQ(FetchLog(1, "stdout", "&tail=30"), "0123456789");
  EXPECT_EQ(FetchLog(1, "stdout", "&tail=3&offset=1"), "<400>");
  EXPECT_EQ(FetchLog(1, "stdout", "&limit=-1"), "<400>");
}

TEST_F(AgentTest, StartsWhatTheWatchBringsAndReportsTheExitAtOnce) {
  // A long heartbeat interval: the start must come through the watch, and the exit report
  // must not wait for the next periodic heartbeat.
  heartbeat_ms_ = 5000;
  server_.SetInterval(5000);
  StartAgent();
  ASSERT_TRUE(WaitFor([&] { return server_.watches() >= 1 && server_.heartbeat_count() >= 1; }));
  const size_t seen = server_.heartbeat_count();
  const auto t0 = std::chrono::steady_clock::now();
  server_.SetDesired(json::array({Desired(3, "exit 6")}));
  ASSERT_TRUE(server_.WaitTask(3, ExitedWith(6), seen));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(4000))
      << "neither the start nor the report waited for a 5 s heartbeat";
  const json t = server_.LatestTask(3);
  EXPECT_TRUE(t.contains("cpu_user_ms") && t.contains("max_rss_kib")) << t.dump();
}

TEST_F(AgentTest, FollowsARestartedServerWhoseClockWentBack) {
  heartbeat_ms_ = 5000;
  server_.SetInterval(5000);
  StartAgent();
  server_.SetDesired(json::array({Desired(1, "echo ready; while true; do sleep 0.02; done")}));
  ASSERT_TRUE(WaitFor([&] { return FetchLog(1, "stdout") == "ready\n"; }));
  // The new server's epoch is below the old one's; its list no longer has task 1. The
  // watch must take it at once (not wait for the 5 s heartbeat, nor ask again in a loop)
  // and the agent stop the task.
  const auto t0 = std::chrono::steady_clock::now();
  server_.Restart(50);
  server_.SetDesired(json::array());
  ASSERT_TRUE(server_.WaitTask(1, ExitedWith(128 + SIGTERM)));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(4000));
  const size_t watches = server_.watches();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_LT(server_.watches(), watches + 5) << "the watch spins on the new epoch";
}

TEST_F(AgentTest, FollowsDesiredAcrossRestartsOutagesAndForgetfulServers) {
  StartAgent();
  // Desired: start it once, with its GPUs, and serve its log.
  server_.SetDesired(json::array({Desired(1,
                                          "echo $CUDA_VISIBLE_DEVICES; "
                                          "while true; do sleep 0.02; done",
                                          {1})}));
  // A running task is reported until acknowledged (then heartbeats are keep-alives): its
  // pid comes from the heartbeat that carried it.
  int64_t pid = 0;
  ASSERT_TRUE(server_.WaitTask(1, [&pid](const json& t) {
    if (!kRunning(t) || t.at("pid") <= 0) return false;
    pid = t.at("pid");
    return true;
  }));
  ASSERT_TRUE(WaitFor([&] { return FetchLog(1, "stdout") == "1\n"; })) << FetchLog(1, "stdout");
  EXPECT_EQ(FetchLog(1, "stderr"), "");
  EXPECT_EQ(FetchLog(1, "nope"), "<400>");
  EXPECT_EQ(FetchLog(9, "stdout"), "<404>");

  // The server fails for a while: the task keeps running and is not stopped.
  server_.SetFailing(true);
  ASSERT_TRUE(WaitFor([&] { return server_.failed() >= 3; }));
  EXPECT_EQ(::kill(static_cast<pid_t>(pid), 0), 0);
  server_.SetFailing(false);

  // An agent restart: the new agent adopts the task (same pid) and does not start it again.
  StopAgent();
  size_t seen = server_.heartbeat_count();
  StartAgent();
  ASSERT_TRUE(server_.WaitTask(
      1, [&](const json& t) { return kRunning(t) && t.at("pid") == pid; }, seen));
  EXPECT_EQ(FetchLog(1, "stdout"), "1\n");

  // The server forgets the node: heartbeats get 404 and the agent registers again.
  const size_t registrations = server_.registrations().size();
  server_.Forget();
  ASSERT_TRUE(WaitFor([&] { return server_.registrations().size() > registrations; }));
  seen = server_.heartbeat_count();
  ASSERT_TRUE(server_.WaitTask(1, kRunning, seen));

  // No longer desired: stopped (SIGTERM kills the shell: 128+15), reported exited once,
  // then forgotten.
  server_.SetDesired(json::array());
  ASSERT_TRUE(server_.WaitTask(1, ExitedWith(128 + SIGTERM)));
  seen = server_.heartbeat_count();
  ASSERT_TRUE(server_.WaitTask(1, kAbsent, seen));
}

TEST_F(AgentTest, ReportsAnExitedTaskUntilItIsNoLongerDesired) {
  StartAgent();
  server_.SetDesired(json::array({Desired(2, "echo once; exit 2")}));
  ASSERT_TRUE(server_.WaitTask(2, ExitedWith(2)));
  // Still desired: still reported as exited, and never started again.
  size_t seen = server_.heartbeat_count();
  ASSERT_TRUE(WaitFor([&] { return server_.heartbeat_count() >= seen + 5; }));
  EXPECT_TRUE(ExitedWith(2)(server_.LatestTask(2)));
  EXPECT_EQ(FetchLog(2, "stdout"), "once\n");
  server_.SetDesired(json::array());
  seen = server_.heartbeat_count();
  ASSERT_TRUE(server_.WaitTask(2, kAbsent, seen));
  EXPECT_TRUE(ParseTaskState(*fs::ReadFile(dir_.path() + "/tasks/2-0-0.state")).done);
}

}  // namespace
}  // namespace gpuorch::agent
