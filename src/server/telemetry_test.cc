// GPU telemetry on the server (issue 9 §1, §2): what heartbeats carry shows per GPU and per
// task in the API, an unhealthy GPU takes no new work, and a task whose GPUs stay idle is
// declared so (event, allocated-idle metric) on an injected clock, through a real SQLite
// store.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <regex>

#include "server/controller.h"
#include "server/controller_test_util.h"

namespace gpuorch::server {
namespace {

constexpr int64_t kMinute = 60'000;

class TelemetryTest : public test_util::ControllerFixture {
 protected:
  void SetUp() override {
    Open("telemetry",
         "gpu_idle_util_pct: 5\ngpu_idle_after: 10m\nqueues: [{name: prod}, {name: batch}]\n");
  }
  void Register(const std::string& name, int gpus) {
    ControllerFixture::Register(name, gpus, "",
                                {{"telemetry", "emulated"}, {"metrics_address", "127.0.0.1:9400"}});
  }
  int64_t Submit(const std::string& name, const std::string& queue, int gpus) {
    Json spec = {{"name", name},
                 {"queue", queue},
                 {"gpus", gpus},
                 {"cpu_milli", 100},
                 {"command", {"true"}}};
    Json out;
    ApiError e;
    EXPECT_TRUE(controller_->Submit(spec, out, e)) << e.message;
    return out.value("id", int64_t{-1});
  }
  // A heartbeat with `telemetry` (and the task running), as agents send it.
  void Beat(const std::string& node, const Json& telemetry, const Json& tasks = Json::array()) {
    Json out;
    ApiError e;
    ASSERT_TRUE(controller_->Heartbeat(node, {{"tasks", tasks}, {"telemetry", telemetry}}, out, e))
        << e.message;
  }
  static Json Gpu(int index, double util, int64_t mem, const std::string& health = "") {
    Json g = {{"index", index}, {"util", util}, {"mem_used_mib", mem}, {"healthy", health.empty()}};
    if (!health.empty()) g["health"] = health;
    return g;
  }
  static Json TaskUse(int64_t id, double util, int64_t mem) {
    return {{"workload", id}, {"task", 0}, {"attempt", 0}, {"util", util}, {"mem_used_mib", mem}};
  }
  Json Node(const std::string& name, const Access& access = {}) {
    const Json all = controller_->ListNodes(0, "", access);
    for (const Json& n : all["nodes"]) {
      if (n["name"] == name) return n;
    }
    ADD_FAILURE() << "no node " << name;
    return Json::object();
  }
  // The value of one sample of the exposition ("name{labels}"), or -1.
  double Sample(const std::string& series) {
    const std::string text = controller_->Metrics();
    const size_t at = text.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + series.size() + 2));
  }
};

TEST_F(TelemetryTest, NodesShowPerGpuTelemetryHoldersAndTheExporter) {
  Register("n1", 2);
  Json n = Node("n1");
  EXPECT_EQ(n["metrics_url"], "http://127.0.0.1:9400/metrics");
  EXPECT_EQ(n["telemetry"], "emulated");
  EXPECT_TRUE(n["gpus"][0]["util_pct"].is_null()) << "no sample yet";
  EXPECT_TRUE(n["gpus"][0]["memory_used_mib"].is_null());
  EXPECT_EQ(n["gpus"][0]["healthy"], true);

  const int64_t id = Submit("train", "prod", 1);
  controller_->Step();
  ASSERT_EQ(Get(id)["state"], "Running");
  Beat("n1",
       {{"gpus", {Gpu(0, 87.5, 40960), Gpu(1, 0, 0)}}, {"tasks", {TaskUse(id, 87.5, 40960)}}});
  n = Node("n1");
  EXPECT_DOUBLE_EQ(n["gpus"][0]["util_pct"].get<double>(), 87.5);
  EXPECT_EQ(n["gpus"][0]["memory_used_mib"], 40960);
  ASSERT_EQ(n["gpus"][0]["holders"].size(), 1u) << n.dump();
  EXPECT_EQ(n["gpus"][0]["holders"][0]["workload"], id);
  EXPECT_EQ(n["gpus"][0]["holders"][0]["name"], "train");
  EXPECT_EQ(n["gpus"][0]["holders"][0]["queue"], "prod");
  EXPECT_TRUE(n["gpus"][1]["holders"].empty());
  EXPECT_FALSE(n["last_telemetry"].get<std::string>().empty());

  // A caller who may not read prod sees that the GPU is taken, not by what.
  Access batch_only;
  batch_only.reads = [](const std::string& q) { return q == "batch"; };
  const Json hidden = Node("n1", batch_only)["gpus"][0]["holders"][0];
  EXPECT_EQ(hidden["other_queue"], true);
  EXPECT_FALSE(hidden.contains("workload"));
  EXPECT_FALSE(hidden.contains("name"));

  const Json task = Get(id)["tasks"][0];
  EXPECT_DOUBLE_EQ(task["gpu_util_pct"].get<double>(), 87.5);
  EXPECT_EQ(task["gpu_memory_used_mib"], 40960);
  EXPECT_DOUBLE_EQ(Sample("gpuorch_queue_gpu_utilization{queue=\"prod\"}"), 87.5);
  EXPECT_EQ(Sample("gpuorch_queue_gpu_utilization{queue=\"batch\"}"), -1) << "nothing measured";
}

TEST_F(TelemetryTest, MalformedTelemetryIsIgnoredNotFatal) {
  Register("n1", 2);
  const int64_t id = Submit("w", "prod", 1);
  controller_->Step();
  // Out-of-range indexes, wrong types and an unknown task change nothing and fail nothing.
  Beat("n1", {{"gpus", {{{"index", 7}, {"util", 50}}, {{"index", "0"}}, 3, {{"index", 0.5}}}},
              {"tasks", {{{"workload", "x"}}, TaskUse(id + 100, 50, 1), 17}}});
  Beat("n1", Json("not an object"));
  const Json n = Node("n1");
  EXPECT_TRUE(n["gpus"][0]["util_pct"].is_null());
  EXPECT_EQ(n["gpus"][0]["healthy"], true);
  EXPECT_TRUE(Get(id)["tasks"][0]["gpu_util_pct"].is_null());
  // Values are clamped to what they can be.
  Beat("n1", {{"gpus", {Gpu(0, 250, -5)}}, {"tasks", {TaskUse(id, -3, 10)}}});
  EXPECT_DOUBLE_EQ(Node("n1")["gpus"][0]["util_pct"].get<double>(), 100);
  EXPECT_EQ(Node("n1")["gpus"][0]["memory_used_mib"], 0);
  EXPECT_DOUBLE_EQ(Get(id)["tasks"][0]["gpu_util_pct"].get<double>(), 0);
}

TEST_F(TelemetryTest, IdleAfterTheConfiguredTimeThenBusyAgain) {
  Register("n1", 4);
  const int64_t id = Submit("notebook", "batch", 2);
  controller_->Step();
  ASSERT_EQ(Get(id)["state"], "Running");
  const Json busy = {{"gpus", {Gpu(0, 2, 100), Gpu(1, 3, 100)}},
                     {"tasks", {TaskUse(id, 2.5, 200)}}};
  Beat("n1", busy);  // under 5%: idle from now
  now_->fetch_add(9 * kMinute);
  Beat("n1", busy);
  EXPECT_FALSE(HasEvent(id, "Idle", "")) << "9 minutes is not 10";
  EXPECT_EQ(Sample("gpuorch_gpus_allocated_idle{model=\"H100\",queue=\"batch\"}"), 0);
  now_->fetch_add(kMinute);
  Beat("n1", busy);
  EXPECT_TRUE(HasEvent(id, "Idle", "task 0's GPUs under 5% utilization for 10m (on n1)"))
      << Get(id)["events"].dump();
  EXPECT_EQ(Get(id)["tasks"][0]["gpu_idle"], true);
  EXPECT_EQ(Sample("gpuorch_gpus_allocated_idle{model=\"H100\",queue=\"batch\"}"), 2);
  EXPECT_EQ(Sample("gpuorch_gpus_allocated_idle{model=\"H100\",queue=\"prod\"}"), 0);
  Beat("n1", busy);  // declared once
  int idle_events = 0;
  const Json events = Get(id)["events"];
  for (const Json& e : events) idle_events += e["type"] == "Idle";
  EXPECT_EQ(idle_events, 1);

  Beat("n1", {{"gpus", {Gpu(0, 60, 100), Gpu(1, 70, 100)}}, {"tasks", {TaskUse(id, 65, 200)}}});
  EXPECT_TRUE(HasEvent(id, "Busy", "task 0's GPUs in use again (65%)"));
  EXPECT_EQ(Sample("gpuorch_gpus_allocated_idle{model=\"H100\",queue=\"batch\"}"), 0);
  EXPECT_FALSE(Get(id)["tasks"][0].contains("gpu_idle"));
  // A dip restarts the clock: idle needs the whole period again.
  Beat("n1", busy);
  now_->fetch_add(5 * kMinute);
  Beat("n1", {{"gpus", {Gpu(0, 60, 100), Gpu(1, 70, 100)}}, {"tasks", {TaskUse(id, 65, 200)}}});
  now_->fetch_add(6 * kMinute);
  Beat("n1", busy);
  EXPECT_EQ(Sample("gpuorch_gpus_allocated_idle{model=\"H100\",queue=\"batch\"}"), 0);
}

TEST_F(TelemetryTest, AnUnhealthyGpuIsShownAndItsWorkloadsHearOfIt) {
  Register("n1", 2);
  const int64_t id = Submit("train", "prod", 1);
  controller_->Step();
  ASSERT_EQ(Get(id)["tasks"][0]["gpus"], Json({0}));
  Beat("n1", {{"gpus", {Gpu(0, 90, 100, "XID 79"), Gpu(1, 0, 0)}}});
  Json n = Node("n1");
  EXPECT_EQ(n["gpus"][0]["healthy"], false);
  EXPECT_EQ(n["gpus"][0]["health"], "XID 79");
  EXPECT_EQ(n["gpus"][1]["healthy"], true);
  EXPECT_FALSE(n["gpus"][1].contains("health"));
  EXPECT_TRUE(HasEvent(id, "GpuUnhealthy", "GPU 0 of n1 (task 0) unhealthy: XID 79"))
      << Get(id)["events"].dump();
  EXPECT_EQ(Get(id)["state"], "Running") << "running work is not evicted by the server";
  // The engine places nothing new on it: the next GPU job takes GPU 1, the one after waits,
  // and still waits once GPU 0 is free again.
  controller_->Step();
  const int64_t second = Submit("b", "prod", 1);
  const int64_t third = Submit("c", "prod", 1);
  controller_->Step();
  ASSERT_EQ(Get(second)["state"], "Running");
  EXPECT_EQ(Get(second)["tasks"][0]["gpus"], Json({1}));
  EXPECT_EQ(Get(third)["state"], "Pending");
  Json out;
  ApiError e;
  ASSERT_TRUE(controller_->Heartbeat(
      "n1",
      {{"tasks",
        {{{"workload", id}, {"task", 0}, {"attempt", 0}, {"state", "exited"}, {"exit_code", 0}}}}},
      out, e));
  controller_->Step();
  EXPECT_EQ(Get(third)["state"], "Pending") << "GPU 0 is free but unhealthy";
  // A re-registered (restarted) agent starts healthy.
  Register("n1", 2);
  EXPECT_EQ(Node("n1")["gpus"][0]["healthy"], true);
  controller_->Step();
  EXPECT_EQ(Get(third)["state"], "Running");
  EXPECT_EQ(Get(third)["tasks"][0]["gpus"], Json({0}));
}

}  // namespace
}  // namespace gpuorch::server
