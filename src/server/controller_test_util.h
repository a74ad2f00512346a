#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "server/controller.h"

// What the controller tests share (server_test, limits_test, usage_test, telemetry_test).
namespace gpuorch::server::test_util {

// An empty directory of the running test's own under the temp dir
// (`gpuorch-PREFIX-PID-TEST`), for its SQLite store; TearDown removes it.
inline std::filesystem::path FreshTestDir(const std::string& prefix) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      ("gpuorch-" + prefix + "-" + std::to_string(::getpid()) + "-" +
       ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// The workload's JSON as an administrator reads it; a failed test when it does not exist.
inline Json GetWorkloadOrFail(Controller& c, int64_t id) {
  Json out;
  ApiError e;
  EXPECT_TRUE(c.GetWorkload(id, out, e)) << e.message;
  return out;
}

// Whether the workload is still known (not garbage-collected).
inline bool WorkloadExists(Controller& c, int64_t id) {
  Json out;
  ApiError e;
  return c.GetWorkload(id, out, e);
}

// A controller over a real SQLite store in a fresh directory, on an injected wall clock
// (`now_`), with nodes registered as an emulated agent would. Subclasses give the config.
class ControllerFixture : public ::testing::Test {
 protected:
  // Opens the store and the controller with `config_yaml`; call from SetUp (or again after
  // Reopen, which keeps the store's file).
  void Open(const std::string& prefix, const std::string& config_yaml) {
    if (dir_.empty()) dir_ = FreshTestDir(prefix);
    if (now_->load() == 0) now_->store(1'800'000'000'000);
    config_yaml_ = config_yaml;
    auto s = store::OpenSqliteStore((dir_ / "db").string());
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(s).value();
    auto config = ParseConfig(config_yaml);
    ASSERT_TRUE(config.ok()) << config.status().message();
    auto c = Controller::Create(*config, store_.get(), [now = now_] { return now->load(); });
    ASSERT_TRUE(c.ok()) << c.status().message();
    controller_ = std::move(c).value();
  }
  // A restart: the controller and store closed, then opened again on the same file.
  void Reopen() {
    controller_.reset();
    store_.reset();
    Open("", config_yaml_);
  }
  void TearDown() override {
    controller_.reset();
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  // Registers `name` with `gpus` H100s; `extra` adds or replaces registration fields.
  void Register(const std::string& name, int gpus, const std::string& address = "127.0.0.1:9",
                const Json& extra = Json::object()) {
    Json gs = Json::array();
    for (int i = 0; i < gpus; ++i) {
      gs.push_back({{"index", i}, {"model", "H100"}, {"memory_mib", 81920}});
    }
    Json body = {{"name", name},
                 {"cpu_milli", 64000},
                 {"memory_mib", 262144},
                 {"backend", "emulated"},
                 {"gpus", gs}};
    if (!address.empty()) body["address"] = address;
    body.update(extra);
    Json out;
    ApiError e;
    ASSERT_TRUE(controller_->Register(body, out, e)) << e.message;
  }
  void Advance(int64_t ms) { now_->fetch_add(ms); }
  Json Get(int64_t id) { return GetWorkloadOrFail(*controller_, id); }
  // Whether workload `id` has an event of `type` whose message holds `text`.
  bool HasEvent(int64_t id, const std::string& type, const std::string& text = "") {
    const Json w = Get(id);  // kept: a range over a temporary's member dangles
    for (const Json& e : w["events"]) {
      if (e.value("type", "") == type && e.value("message", "").find(text) != std::string::npos) {
        return true;
      }
    }
    return false;
  }

  std::shared_ptr<std::atomic<int64_t>> now_ = std::make_shared<std::atomic<int64_t>>(0);
  std::filesystem::path dir_;
  std::string config_yaml_;
  std::unique_ptr<store::StateStore> store_;
  std::unique_ptr<Controller> controller_;
};

}  // namespace gpuorch::server::test_util
