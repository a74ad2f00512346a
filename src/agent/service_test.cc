// Service tasks end to end (docs/agent.md, "Services"): a real HTTP server as the task's
// command, the agent's port, readiness checks and gauge scrapes, as the heartbeats report
// them to a fake control plane.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "agent/agent_test_fixture.h"
#include "agent/test_util.h"

namespace gpuorch::agent {
namespace {

using nlohmann::json;
using testing::AgentTest;
using testing::WaitFor;

// Prints $PORT, waits for the file argv[1] to exist (so the test sees it not ready first),
// then serves /health (200) and /metrics (vLLM's gauges over two label sets, and a NaN).
constexpr const char* kServer = R"(
import http.server, os, sys, time
METRICS = b'''# HELP vllm:num_requests_running Requests running.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="a"} 2.0
vllm:num_requests_running{model_name="b"} 1.0
vllm:num_requests_waiting{model_name="a"} 4.0
vllm:gpu_cache_usage_perc{model_name="a"} NaN
'''
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body, code = {'/health': (b'ok', 200), '/metrics': (METRICS, 200)}.get(
            self.path, (b'no', 404))
        self.send_response(code)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print(os.environ['PORT'], flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), Handler).serve_forever()
)";

// A python3 the task's user can run (a root agent runs tasks as nobody, who may not reach
// a python under /root).
std::string Python() {
  for (const char* p : {"/usr/bin/python3", "/usr/local/bin/python3"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

class ServiceTaskTest : public AgentTest {
 protected:
  json ServiceEntry(int64_t workload, const std::string& gate) {
    json d = testing::Desired(workload, "");
    d["command"] = {Python(), "-c", kServer, gate};
    d["service"] = {
        {"readiness", {{"http_path", "/health"}, {"initial_delay_s", 0}, {"period_s", 0.2}}},
        {"gauges",
         {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc",
          "vllm:absent"}}};
    return d;
  }
};

bool HasService(const json& t) { return !t.is_null() && t.contains("service"); }

TEST_F(ServiceTaskTest, GivesAPortProbesReadinessScrapesGaugesAndKeepsThePortAcrossRestarts) {
  if (Python().empty()) GTEST_SKIP() << "no python3 in /usr/bin or /usr/local/bin";
  scrape_interval_ms_ = 200;
  StartAgent();
  const std::string gate = dir_.path() + "/serve-now";
  server_.SetDesired(json::array({ServiceEntry(3, gate)}));

  // Reported at once with its port, not ready: nothing answers yet.
  int port = 0;
  ASSERT_TRUE(server_.WaitTask(3, [&](const json& t) {
    if (!HasService(t) || t.at("state") != "running") return false;
    port = t.at("service").at("port");
    return true;
  }));
  EXPECT_GE(port, 20000);
  EXPECT_LE(port, 29999);
  ASSERT_TRUE(WaitFor([&] { return FetchLog(3, "stdout") == std::to_string(port) + "\n"; }))
      << "PORT in the command's environment: " << FetchLog(3, "stdout") << FetchLog(3, "stderr");
  // Several failed checks later (0.2 s apart), still not ready and no gauges.
  const size_t seen = server_.heartbeat_count();
  ASSERT_TRUE(WaitFor([&] { return server_.heartbeat_count() >= seen + 50; }));  // 20 ms apart
  EXPECT_FALSE(server_.WaitTask(
      3, [](const json& t) { return HasService(t) && t.at("service").at("ready") == true; }, 0,
      std::chrono::milliseconds(0)));

  // Serving: ready, and the gauges summed over label sets (NaN and absent names left out).
  { std::ofstream(gate) << "go"; }
  ASSERT_TRUE(server_.WaitTask(3, [&](const json& t) {
    return HasService(t) && t.at("service").at("ready") == true &&
           t.at("service").at("port") == port;
  }));
  ASSERT_TRUE(server_.WaitTask(3, [&](const json& t) {
    return HasService(t) && t.at("service").contains("gauges") &&
           t.at("service").at("gauges") ==
               json{{"vllm:num_requests_running", 3.0}, {"vllm:num_requests_waiting", 4.0}};
  }));
  // Fresh gauges are reported after each scrape, with the same values: the entry comes
  // again although nothing else changed.
  size_t after = server_.heartbeat_count();
  ASSERT_TRUE(server_.WaitTask(3, HasService, after));
  after = server_.heartbeat_count();
  ASSERT_TRUE(server_.WaitTask(3, HasService, after));

  // A restarted agent adopts the task with its port (recorded in the task's state file).
  StopAgent();
  after = server_.heartbeat_count();
  StartAgent();
  ASSERT_TRUE(server_.WaitTask(
      3,
      [&](const json& t) {
        return HasService(t) && t.at("service").at("port") == port &&
               t.at("service").at("ready") == true;
      },
      after));

  // Stopped: reported exited, without a service member (an exited task is not ready).
  server_.SetDesired(json::array());
  ASSERT_TRUE(server_.WaitTask(3, [](const json& t) {
    return !t.is_null() && t.at("state") == "exited" && !t.contains("service");
  }));
}

TEST_F(ServiceTaskTest, WithoutReadinessAPortThatAcceptsConnectionsIsReady) {
  if (Python().empty()) GTEST_SKIP() << "no python3 in /usr/bin or /usr/local/bin";
  StartAgent();
  const std::string gate = dir_.path() + "/serve-now";
  json d = ServiceEntry(2, gate);
  d["service"] = {{"gauges", json::array()}};
  { std::ofstream(gate) << "go"; }
  server_.SetDesired(json::array({d}));
  ASSERT_TRUE(server_.WaitTask(2, [](const json& t) {
    return HasService(t) && t.at("service").at("ready") == true &&
           !t.at("service").contains("gauges");
  }));
}

}  // namespace
}  // namespace gpuorch::agent
