#include "agent/agent.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "agent/test_util.h"

namespace gpuorch::agent {
namespace {

using nlohmann::json;
using testing::TempDir;
using testing::WaitFor;

// Plays the server's side of the agent protocol (docs/api.md) and records what it hears.
class FakeServer {
 public:
  FakeServer() {
    server_.Post(
        "/v1/agents/register", [this](const httplib::Request& req, httplib::Response& res) {
          std::lock_guard lock(mu_);
          registrations_.push_back(json::parse(req.body));
          known_ = true;
          res.set_content(json{{"node", "n1"}, {"heartbeat_interval_ms", interval_ms_}}.dump(),
                          "application/json");
        });
    server_.Post(R"(/v1/agents/([^/]+)/heartbeat)", [this](const httplib::Request& req,
                                                           httplib::Response& res) {
      std::lock_guard lock(mu_);
      if (!known_) {
        res.status = 404;
        res.set_content(R"({"error": {"code": 404, "field": "", "message": "unknown node"}})",
                        "application/json");
        return;
      }
      if (failing_) {
        ++failed_;
        res.status = 500;
        return;
      }
      heartbeats_.push_back(json::parse(req.body));
      res.set_content(Answer(), "application/json");
    });
    // The watch: held until the list changes or wait_ms passes, as the real server does.
    server_.Get(R"(/v1/agents/([^/]+)/desired)", [this](const httplib::Request& req,
                                                        httplib::Response& res) {
      std::unique_lock lock(mu_);
      ++watches_;
      const int64_t after = std::stoll(req.get_param_value("after"));
      const int64_t epoch = std::stoll(req.get_param_value("epoch"));
      changed_.wait_for(lock, std::chrono::milliseconds(std::stoll(req.get_param_value("wait_ms"))),
                        [&] { return version_ != after || epoch != epoch_ || stopping_; });
      if (!known_ || failing_) {
        res.status = !known_ ? 404 : 500;
        return;
      }
      res.set_content(Answer(), "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FakeServer() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      changed_.notify_all();
    }
    server_.stop();
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void SetDesired(json desired) {
    std::lock_guard lock(mu_);
    desired_ = std::move(desired);
    ++version_;
    changed_.notify_all();
  }
  // A restarted server: a new epoch (here an earlier one, as after a clock step back) whose
  // versions start over.
  void Restart(int64_t epoch) {
    std::lock_guard lock(mu_);
    epoch_ = epoch;
    version_ = 1;
    changed_.notify_all();
  }
  void SetInterval(int64_t ms) {
    std::lock_guard lock(mu_);
    interval_ms_ = ms;
  }
  size_t watches() {
    std::lock_guard lock(mu_);
    return watches_;
  }
  void Forget() {
    std::lock_guard lock(mu_);
    known_ = false;
  }
  void SetFailing(bool f) {
    std::lock_guard lock(mu_);
    failing_ = f;
  }
  size_t failed() {
    std::lock_guard lock(mu_);
    return failed_;
  }
  std::vector<json> registrations() {
    std::lock_guard lock(mu_);
    return registrations_;
  }
  size_t heartbeat_count() {
    std::lock_guard lock(mu_);
    return heartbeats_.size();
  }
  // The task entry for `workload` in the latest heartbeat (null when absent), or null when
  // there is no heartbeat after index `after`.
  json LatestTask(int64_t workload, size_t after = 0) {
    std::lock_guard lock(mu_);
    if (heartbeats_.size() <= after) return nullptr;
    for (const json& t : heartbeats_.back().at("tasks")) {
      if (t.at("workload") == workload) return t;
    }
    return nullptr;
  }
  // Waits for a heartbeat (newer than `after`) whose entry for `workload` satisfies `pred`.
  bool WaitTask(int64_t workload, const std::function<bool(const json&)>& pred, size_t after = 0) {
    return WaitFor([&] {
      std::lock_guard lock(mu_);
      for (size_t i = after; i < heartbeats_.size(); ++i) {
        json found = nullptr;
        for (const json& t : heartbeats_[i].at("tasks")) {
          if (t.at("workload") == workload) found = t;
        }
        if (pred(found)) return true;
      }
      return false;
    });
  }

 private:
  std::string Answer() const {
    return json{{"desired", desired_}, {"epoch", epoch_}, {"version", version_}}.dump();
  }

  httplib::Server server_;
  std::thread thread_;
  std::condition_variable changed_;
  int64_t version_ = 1;
  int64_t epoch_ = 100;
  int64_t interval_ms_ = 20;
  size_t watches_ = 0;
  bool stopping_ = false;
  int port_ = 0;
  std::mutex mu_;
  bool known_ = false;
  bool failing_ = false;
  size_t failed_ = 0;
  json desired_ = json::array();
  std::vector<json> registrations_;
  std::vector<json> heartbeats_;
};

json Desired(int64_t workload, const std::string& script, std::vector<int> gpus = {}) {
  return {{"workload", workload},
          {"task", 0},
          {"attempt", 0},
          {"command", {"/bin/sh", "-c", script}},
          {"env", {{"GPUORCH_WORKLOAD", "x"}}},
          {"workdir", "/"},
          {"gpus", gpus},
          {"gpu_milli", 1000},
          {"grace_period_ms", 5000}};
}

class AgentTest : public ::testing::Test {
 protected:
  void StartAgent() {
    AgentOptions o;
    o.server_url = server_.url();
    o.name = "n1";
    o.data_dir = dir_.path();
    o.heartbeat_ms = heartbeat_ms_;
    o.zone = "z1";
    o.shim_command = {GPUORCH_TEST_SHIM};
    auto gpus = std::make_unique<EmulatedGpuBackend>(*ParseEmulatedSpec("2xT4"), "n1");
    core::Result<std::unique_ptr<Agent>> a = Agent::Create(o, std::move(gpus));
    ASSERT_TRUE(a.ok()) << a.status().message();
    agent_ = std::move(a).value();
    loop_ = std::thread([this] { agent_->Run(); });
  }
  void StopAgent() {
    if (!agent_) return;
    agent_->Shutdown();
    loop_.join();
    agent_.reset();
  }
  void TearDown() override {
    StopAgent();
    // Nothing may outlive the test: end what is still running, by process group.
    for (int64_t w = 1; w <= 3; ++w) {
      std::optional<std::string> state =
          fs::ReadFile(dir_.path() + "/tasks/" + std::to_string(w) + "-0-0.state");
      if (state && ParseTaskState(*state).child_pid > 0) {
        ::kill(-ParseTaskState(*state).child_pid, SIGKILL);
      }
    }
  }
  // The log as the server fetches it: with the secret the agent registered.
  std::string FetchLog(int64_t workload, const char* stream, const std::string& range = "") {
    httplib::Client c("http://" + agent_->log_address());
    httplib::Result r =
        c.Get("/v1/tasks/" + std::to_string(workload) + "/0/0/logs?stream=" + stream + range,
              httplib::Headers{{"Authorization", "Bearer " + agent_->registration().log_secret}});
    return r && r->status == 200 ? r->body : "<" + std::to_string(r ? r->status : -1) + ">";
  }

  int64_t heartbeat_ms_ = 20;
  TempDir dir_;
  FakeServer server_;
  std::unique_ptr<Agent> agent_;
  std::thread loop_;
};

const auto kRunning = [](const json& t) { return !t.is_null() && t.at("state") == "running"; };
const auto kAbsent = [](const json& t) { return t.is_null(); };
auto ExitedWith(int code) {
  return [code](const json& t) {
    return !t.is_null() && t.at("state") == "exited" && t.at("exit_code") == code;
  };
}

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
