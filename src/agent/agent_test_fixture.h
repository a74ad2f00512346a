#pragma once

// The agent tests' stand-in for the control plane and their fixture: an Agent over a
// FakeServer, with the production shim and emulated GPUs.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

#include "agent/agent.h"
#include "agent/test_util.h"

namespace gpuorch::agent::testing {

using nlohmann::json;

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
  // Members added to every answer (e.g. `mig_layouts`), bumping the version.
  void SetExtra(json extra) {
    std::lock_guard lock(mu_);
    extra_ = std::move(extra);
    ++version_;
    changed_.notify_all();
  }
  std::vector<json> heartbeats() {
    std::lock_guard lock(mu_);
    return heartbeats_;
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
  bool WaitTask(int64_t workload, const std::function<bool(const json&)>& pred, size_t after = 0,
                std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    return WaitFor(
        [&] {
          std::lock_guard lock(mu_);
          for (size_t i = after; i < heartbeats_.size(); ++i) {
            json found = nullptr;
            for (const json& t : heartbeats_[i].at("tasks")) {
              if (t.at("workload") == workload) found = t;
            }
            if (pred(found)) return true;
          }
          return false;
        },
        timeout);
  }

 private:
  std::string Answer() const {
    json a = {{"desired", desired_}, {"epoch", epoch_}, {"version", version_}};
    for (const auto& [k, v] : extra_.items()) a[k] = v;
    return a.dump();
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
  json extra_ = json::object();
  std::vector<json> registrations_;
  std::vector<json> heartbeats_;
};

inline json Desired(int64_t workload, const std::string& script, std::vector<int> gpus = {}) {
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
    o.service_scrape_interval_ms = scrape_interval_ms_;
    auto gpus =
        std::make_unique<EmulatedGpuBackend>(*ParseEmulatedSpec(gpu_spec_), "n1", emulate_mig_);
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
  int64_t scrape_interval_ms_ = 0;
  std::string gpu_spec_ = "2xT4";
  bool emulate_mig_ = false;
  TempDir dir_;
  FakeServer server_;
  std::unique_ptr<Agent> agent_;
  std::thread loop_;
};

const auto kRunning = [](const json& t) { return !t.is_null() && t.at("state") == "running"; };
const auto kAbsent = [](const json& t) { return t.is_null(); };
inline auto ExitedWith(int code) {
  return [code](const json& t) {
    return !t.is_null() && t.at("state") == "exited" && t.at("exit_code") == code;
  };
}

}  // namespace gpuorch::agent::testing
