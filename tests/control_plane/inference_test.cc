// Inference services end to end (issue 10 §5; docs/inference.md): a real server, an agent
// with emulated GPUs running llm-emulator replicas (real processes, real ports, real
// readiness probes and vLLM gauges), Debian's HAProxy in the serving path with the config
// `gpuorch gateway --write-config` writes, and `gpuorch gateway` keeping it in step. The
// load comes from the Azure LLM 2023 conversation trace, replayed time-compressed by
// llm-loadgen, and from steady workers. Skipped when haproxy is not installed
// (scripts/lib.sh installs it); the trace replay is skipped when the traces are absent.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

#include "cluster.h"

namespace gpuorch::cptest {
namespace {

std::string TracesDir() {
  const char* env = std::getenv("GPUORCH_TRACES");
  return env != nullptr ? env : std::string(GPUORCH_SOURCE_DIR) + "/../shared/traces";
}

class InferenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ServingPath::HaproxyInstalled()) {
      GTEST_SKIP() << ServingPath::kHaproxy
                   << " is not installed (scripts/lib.sh installs Debian's haproxy)";
    }
    // Two GPUs; queue serving is guaranteed both, batch borrows them while serving is idle.
    // Queue notebooks stops an experiment whose GPUs stay idle for 3 s.
    cluster_ = std::make_unique<Cluster>(ClusterOptions{
        GPUORCH_BIN,
        "queues:\n"
        "  - {name: serving, quota: [{guaranteed: 2}]}\n"
        "  - {name: batch}\n"
        "  - {name: notebooks, idle_reclaim: {after_s: 3, kinds: [experiment], action: evict}}\n"});
    ASSERT_TRUE(cluster_->StartServer());
    ASSERT_TRUE(cluster_->StartAgent("n1", "2xH100-80GB"));

    std::string error;
    ASSERT_TRUE(serving_.Start(*cluster_, 4, 200, error)) << error;
    front_ = serving_.front_url();
  }

  void TearDown() override {
    stop_ = true;
    for (std::thread& t : workers_) t.join();
  }

  Json Service(int64_t id) const {
    const Json w = cluster_->Workload(id);
    return w.is_object() && w.contains("service") ? w["service"] : Json();
  }
  int Ready(int64_t id) const {
    const Json s = Service(id);
    return s.is_object() ? s.value("ready", 0) : -1;
  }
  bool HasEvent(int64_t id, const std::string& type, const std::string& text = "") const {
    return cluster_->HasEvent(id, type, text);
  }
  // A completion through HAProxy; the status (-1: no answer).
  int Complete(int max_tokens = 8) const {
    return Api(front_)
        .Post("/svc/chat/v1/completions", Json{{"prompt_tokens", 64}, {"max_tokens", max_tokens}})
        .status;
  }
  // `n` workers sending completions back to back until StopWorkers.
  void StartWorkers(int n) {
    stop_ = false;
    for (int i = 0; i < n; ++i) {
      workers_.emplace_back([this] {
        while (!stop_) {
          const int status = Complete(20);
          (status == 200 ? ok_ : failed_)++;
        }
      });
    }
  }
  void StopWorkers() {
    stop_ = true;
    for (std::thread& t : workers_) t.join();
    workers_.clear();
  }

  std::unique_ptr<Cluster> cluster_;
  ServingPath serving_;
  std::string front_;
  std::vector<std::thread> workers_;
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0}, failed_{0};
};

TEST_F(InferenceTest, ServiceScalesFromZeroWithLoadHarvestsExperimentsAndGivesThemBack) {
  // Two preemptible experiments take both GPUs, borrowing serving's idle guarantee.
  const int64_t e1 = cluster_->Submit(Cluster::ShellJob("exp1", "batch", 1, "sleep 600"));
  const int64_t e2 = cluster_->Submit(Cluster::ShellJob("exp2", "batch", 1, "sleep 600"));
  ASSERT_TRUE(cluster_->WaitState(e1, "Running"));
  ASSERT_TRUE(cluster_->WaitState(e2, "Running"));

  const int64_t svc = cluster_->Submit(
      Json{{"name", "chat"},
           {"queue", "serving"},
           {"kind", "inference"},
           {"gpus", 1},
           {"command",
            {LLM_EMULATOR_BIN, "--load-s", "1", "--decode-ms-per-token", "10", "--threads", "64"}},
           {"replicas", "0:2"},
           {"autoscale",
            {{"target", 2},
             {"target_utilization", 1},
             {"stable_window_s", 6},
             {"panic_window_s", 2},
             {"scale_to_zero_after_s", 20}}},
           {"readiness", {{"http_path", "/health"}, {"period_s", 1}}},
           {"grace_period_s", 2},
           {"drain_timeout_s", 30}});
  ASSERT_GT(svc, 0);
  EXPECT_EQ(Service(svc)["desired"], 0);
  // The gateway routes the service (it has a slot) before the first request.
  ASSERT_TRUE(WaitFor([&] { return serving_.Routes("chat"); }, 30s));

  // Scale from zero: the first request is held at HAProxy, counted as load, wakes the
  // service; its replica takes an experiment's GPU (Harvested) and answers it.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Complete(), 200);
  const double first_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(first_s, 60.0);
  EXPECT_EQ(Ready(svc), 1);
  ASSERT_TRUE(WaitFor([&] { return HasEvent(e1, "Evicted") || HasEvent(e2, "Evicted"); }));
  const int64_t harvested = HasEvent(e1, "Evicted") ? e1 : e2;
  EXPECT_TRUE(HasEvent(harvested, "Evicted", "Harvested")) << cluster_->Workload(harvested).dump();

  // Load above one replica's target: the service grows to its max of 2, harvesting the
  // other experiment too, and every request is answered.
  StartWorkers(6);
  EXPECT_TRUE(WaitFor([&] { return Ready(svc) == 2; }, 60s)) << Service(svc).dump();
  const int64_t other = harvested == e1 ? e2 : e1;
  EXPECT_TRUE(WaitFor([&] { return HasEvent(other, "Evicted", "Harvested"); }));
  // Down to one worker: the service steps down to one replica, draining the other while
  // requests keep coming; none fails.
  StopWorkers();
  StartWorkers(1);
  EXPECT_TRUE(WaitFor([&] { return Ready(svc) == 1 && Service(svc)["replicas"].size() == 1; }, 90s))
      << Service(svc).dump();
  StopWorkers();
  EXPECT_EQ(failed_.load(), 0) << ok_.load() << " answered";
  // The gateway's exposition has what the Services dashboard reads of it
  // (deploy/grafana/services.json; Observability checks the server's side).
  const std::string gateway_metrics = Api(serving_.gateway_url()).Get("/metrics").body;
  for (const char* name :
       {"gpuorch_service_request_duration_seconds{service=\"chat\"",
        "gpuorch_service_queue_duration_seconds{service=\"chat\"",
        "gpuorch_service_in_flight{service=\"chat\"",
        "gpuorch_service_waiting_requests{service=\"chat\"",
        "gpuorch_gateway_servers{service=\"chat\"", "gpuorch_gateway_errors_total"}) {
    EXPECT_NE(gateway_metrics.find(name), std::string::npos) << name << "\n" << gateway_metrics;
  }
  EXPECT_GT(ok_.load(), 20);

  // No traffic for scale_to_zero_after_s: to zero, and the experiments run again.
  EXPECT_TRUE(WaitFor([&] { return Service(svc)["replicas"].empty(); }, 90s))
      << Service(svc).dump();
  EXPECT_TRUE(cluster_->WaitState(e1, "Running", 60s));
  EXPECT_TRUE(cluster_->WaitState(e2, "Running", 60s));
}

TEST_F(InferenceTest, AzureConversationTraceReplayIsServedAndScalesTheService) {
  const std::string trace = TracesDir() + "/azure-llm-2023/AzureLLMInferenceTrace_conv.csv";
  if (!std::filesystem::exists(trace)) GTEST_SKIP() << trace << " is absent (GPUORCH_TRACES)";
  const int64_t svc = cluster_->Submit(Json{
      {"name", "chat"},
      {"queue", "serving"},
      {"kind", "inference"},
      {"gpus", 1},
      {"command",
       {LLM_EMULATOR_BIN, "--decode-ms-per-token", "10", "--prefill-tokens-per-s", "20000",
        "--max-num-seqs", "64", "--threads", "128"}},
      {"replicas", "1:2"},
      {"autoscale",
       {{"target", 2}, {"target_utilization", 1}, {"stable_window_s", 6}, {"panic_window_s", 2}}},
      {"readiness", {{"http_path", "/health"}}}});
  ASSERT_GT(svc, 0);
  ASSERT_TRUE(WaitFor([&] { return Ready(svc) == 1; }, 60s)) << Service(svc).dump();
  // 4 trace seconds per second for 15 s (a minute of the trace, ~20 requests/s, ~300 in
  // all), generated tokens capped at 32 so that a request takes about half a second: some
  // 10 in flight, over one replica's target of 2.
  const std::string out = cluster_->dir() + "/replay.json";
  const CliResult replay =
      RunCli(LLM_LOADGEN_BIN,
             {"--trace", trace, "--target", front_ + "/svc/chat", "--speedup", "4", "--duration-s",
              "15", "--max-tokens-cap", "32", "--timeout-s", "30", "--out", out});
  ASSERT_EQ(replay.exit_code, 0) << replay.out << replay.err;
  const Json summary = Json::parse(replay.out, nullptr, false);
  ASSERT_TRUE(summary.is_object()) << replay.out;
  EXPECT_GT(summary.value("count", 0), 150) << replay.out;
  EXPECT_EQ(summary.value("failures", -1), 0) << replay.out;
  // The replay's load asked for both replicas.
  EXPECT_TRUE(HasEvent(svc, "Scaled", "1 -> 2")) << cluster_->Workload(svc).dump();
}

TEST_F(InferenceTest, AnIdleNotebookIsReclaimedABusyOneIsNot) {
  // Emulated GPUs report what their tasks declare: 1% for the forgotten notebook, 80% for
  // the busy one; the agents sample every 0.5 s here.
  Json idle = Cluster::ShellJob("notebook", "notebooks", 1, "exec sleep 600");
  idle["env"] = {{"GPUORCH_EMULATE_GPU_UTIL", "1"}};
  Json busy = Cluster::ShellJob("training-loop", "notebooks", 1, "exec sleep 600");
  busy["env"] = {{"GPUORCH_EMULATE_GPU_UTIL", "80"}};
  const int64_t a = cluster_->Submit(idle);
  const int64_t b = cluster_->Submit(busy);
  ASSERT_TRUE(cluster_->WaitState(a, "Running"));
  ASSERT_TRUE(cluster_->WaitState(b, "Running"));
  EXPECT_TRUE(cluster_->WaitState(a, "Cancelled", 60s)) << cluster_->Workload(a).dump();
  EXPECT_TRUE(HasEvent(a, "IdleReclaimed"));
  EXPECT_EQ(cluster_->State(b), "Running");
  EXPECT_FALSE(HasEvent(b, "IdleReclaimed"));
}

}  // namespace
}  // namespace gpuorch::cptest
