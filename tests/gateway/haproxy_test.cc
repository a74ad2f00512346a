// The gateway against a real HAProxy 2.6 and real llm-emulator replicas on loopback: a
// replica added through the runtime API takes traffic, a drained replica takes no new
// request and none fails while it is drained and deleted under load, scale from zero holds a
// request until a replica is ready, and the exporter is read. The control plane is
// in-process data (FakeControlPlane); a ticker runs the gateway's loop every 100 ms, so the
// tests only change the desired services and wait for what must follow. Skipped when
// haproxy is not installed (scripts/lib.sh installs it).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <regex>
#include <thread>

#include "cluster.h"
#include "gateway/gateway.h"
#include "gateway/haproxy_config.h"

namespace gpuorch::gateway {
namespace {

using cptest::Api;
using cptest::FreePort;
using cptest::Process;
using cptest::WaitFor;
using namespace std::chrono_literals;

constexpr const char* kHaproxy = "/usr/sbin/haproxy";

class FakeControlPlane : public ControlPlane {
 public:
  core::Result<std::vector<Service>> ListServices() override {
    std::lock_guard lock(mu_);
    return services_;
  }
  core::Status PushLoad(int64_t id, const nlohmann::json& body) override {
    std::lock_guard lock(mu_);
    pushes_[id] = body;
    return core::Status::Ok();
  }
  void Set(std::vector<Service> services) {
    std::lock_guard lock(mu_);
    services_ = std::move(services);
  }
  nlohmann::json LastPush(int64_t id) {
    std::lock_guard lock(mu_);
    return pushes_.count(id) ? pushes_[id] : nlohmann::json();
  }

 private:
  std::mutex mu_;
  std::vector<Service> services_;
  std::map<int64_t, nlohmann::json> pushes_;
};

// One emulated replica.
struct Emulator {
  int port = 0;
  std::unique_ptr<Process> process;
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
  bool Healthy() const { return Api(address_url()).Get("/health").status == 200; }
  std::string address_url() const { return "http://" + address(); }
  // vllm:request_success_total plus the requests running now: every request it accepted.
  int64_t Accepted() const {
    const std::string m = Api(address_url()).Get("/metrics").body;
    int64_t total = 0;
    static const std::regex kLine(
        "^vllm:(request_success_total|num_requests_running|num_requests_waiting)\\{[^}]*\\} "
        "([0-9]+)$");
    std::istringstream in(m);
    for (std::string line; std::getline(in, line);) {
      std::smatch s;
      if (std::regex_match(line, s, kLine)) total += std::stoll(s[2]);
    }
    return total;
  }
};

class HaproxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kHaproxy, X_OK) != 0)
      GTEST_SKIP() << kHaproxy << " is not installed (scripts/lib.sh installs Debian's haproxy)";
    dir_ = std::filesystem::temp_directory_path() /
           ("gpuorch-gw-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    HaproxyConfigOptions o;
    o.dir = dir_.string();
    o.bind = "127.0.0.1:" + std::to_string(FreePort());
    o.stats_bind = "127.0.0.1:" + std::to_string(FreePort());
    o.slots = 4;
    o.hold_timeout_s = 60;
    front_ = "http://" + o.bind;
    metrics_ = "http://" + o.stats_bind + "/metrics";
    cptest::WriteFile(o.dir + "/" + kConfigFile, HaproxyConfig(o));
    cptest::WriteFile(o.dir + "/" + kRoutesMapName, "");
    cptest::WriteFile(o.dir + "/" + kLuaFile, HoldLuaScript());
    haproxy_ = std::make_unique<Process>(
        std::vector<std::string>{kHaproxy, "-f", o.dir + "/" + kConfigFile, "-db"},
        std::map<std::string, std::string>{}, o.dir + "/haproxy.log");
    api_ = std::make_unique<RuntimeApi>(o.dir + "/haproxy.sock");
    ASSERT_TRUE(WaitFor([&] { return api_->Run("show info").ok(); }, 30s))
        << "haproxy did not start; see " << o.dir << "/haproxy.log";
    gateway_ = std::make_unique<Gateway>(cp_, *api_, GatewayOptions{metrics_, ""});
    ticker_ = std::thread([this] {
      while (!stop_) {
        const core::Status st = gateway_->Tick();
        {
          std::lock_guard lock(mu_);
          last_status_ = st.ok() ? "" : st.message();
        }
        std::this_thread::sleep_for(100ms);
      }
    });
  }

  void TearDown() override {
    stop_ = true;
    if (ticker_.joinable()) ticker_.join();
  }

  Emulator StartEmulator(const std::vector<std::string>& extra = {}) {
    Emulator e;
    e.port = FreePort();
    std::vector<std::string> argv = {LLM_EMULATOR_BIN, "--port", std::to_string(e.port),
                                     "--threads", "64"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    e.process = std::make_unique<Process>(
        argv, std::map<std::string, std::string>{},
        (dir_ / ("emulator-" + std::to_string(e.port) + ".log")).string());
    return e;
  }

  // A completion through HAProxy for service `name`.
  cptest::HttpResult Complete(const std::string& name, int max_tokens = 4) const {
    return Api(front_).Post("/svc/" + name + "/v1/completions",
                            nlohmann::json{{"prompt_tokens", 16}, {"max_tokens", max_tokens}});
  }

  // The servers of `backend` as `show servers state` lists them.
  std::vector<ServerState> Servers(const std::string& backend) const {
    auto r = api_->Run("show servers state " + backend);
    if (!r.ok()) return {};
    auto s = ParseServersState(*r);
    return s.ok() ? *s : std::vector<ServerState>{};
  }

  std::string LastStatus() {
    std::lock_guard lock(mu_);
    return last_status_;
  }

  std::filesystem::path dir_;
  std::string front_, metrics_;
  std::unique_ptr<Process> haproxy_;
  std::unique_ptr<RuntimeApi> api_;
  FakeControlPlane cp_;
  std::unique_ptr<Gateway> gateway_;
  std::thread ticker_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::string last_status_;
};

TEST_F(HaproxyTest, AReplicaAddedThroughTheRuntimeApiTakesTraffic) {
  Emulator a = StartEmulator(), b = StartEmulator();
  ASSERT_TRUE(WaitFor([&] { return a.Healthy() && b.Healthy(); }, 30s));
  cp_.Set({{5, "chat", {{9, a.address(), true, false}}}});
  ASSERT_TRUE(WaitFor([&] { return Complete("chat").status == 200; }, 30s)) << LastStatus();
  EXPECT_EQ(Api(front_).Get("/svc/nothere/v1/completions").status, 404);

  cp_.Set({{5, "chat", {{9, a.address(), true, false}, {10, b.address(), true, false}}}});
  ASSERT_TRUE(WaitFor([&] { return Servers("svc_0").size() == 2; }, 30s)) << LastStatus();
  // leastconn takes turns among equally loaded servers: b gets some of these.
  ASSERT_TRUE(WaitFor(
      [&] {
        EXPECT_EQ(Complete("chat").status, 200);
        return b.Accepted() >= 3;
      },
      60s, 1ms));
  EXPECT_GE(a.Accepted(), 1);

  // The exporter, read for real: both servers and the backend's counters.
  auto text = HttpGet(metrics_ + "?scope=backend&scope=server");
  ASSERT_TRUE(text.ok()) << text.status().message();
  auto samples = ParsePrometheusText(*text);
  ASSERT_TRUE(samples.ok()) << samples.status().message();
  auto stats = BackendStatsOf(*samples);
  ASSERT_TRUE(stats.count("svc_0"));
  EXPECT_EQ(stats["svc_0"].server_sessions.size(), 2u);
  EXPECT_GE(stats["svc_0"].responses_total, 4);
  EXPECT_GT(stats["svc_0"].response_time_avg_s, 0);
  // The gateway republishes them and pushes the load with one entry per replica.
  EXPECT_TRUE(WaitFor([&] {
    return gateway_->RenderMetrics().find(
               "gpuorch_gateway_servers{service=\"chat\",id=\"5\",state=\"ready\"} 2") !=
           std::string::npos;
  }));
  EXPECT_NE(gateway_->RenderMetrics().find("gpuorch_service_request_duration_seconds{service="
                                           "\"chat\",id=\"5\"}"),
            std::string::npos);
  EXPECT_TRUE(
      WaitFor([&] { return cp_.LastPush(5).value("replicas", nlohmann::json()).size() == 2; }));
}

TEST_F(HaproxyTest, DrainThenDeleteUnderSteadyLoadFailsNoRequest) {
  // 200 ms a request, so sessions are in flight when the drain comes.
  Emulator a = StartEmulator({"--decode-ms-per-token", "50"});
  Emulator b = StartEmulator({"--decode-ms-per-token", "50"});
  ASSERT_TRUE(WaitFor([&] { return a.Healthy() && b.Healthy(); }, 30s));
  const Replica ra{9, a.address(), true, false}, rb{10, b.address(), true, false};
  cp_.Set({{5, "chat", {ra, rb}}});
  ASSERT_TRUE(WaitFor([&] { return Servers("svc_0").size() == 2; }, 30s)) << LastStatus();

  std::atomic<bool> stop{false};
  std::atomic<int64_t> ok{0}, failed{0};
  std::vector<std::thread> load;
  for (int i = 0; i < 4; ++i) {
    load.emplace_back([&] {
      while (!stop) {
        const int status = Complete("chat").status;
        (status == 200 ? ok : failed)++;
        if (status != 200) ADD_FAILURE() << "status " << status;
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return a.Accepted() >= 3 && b.Accepted() >= 3; }, 60s));

  cp_.Set({{5, "chat", {{9, a.address(), true, true}, rb}}});
  ASSERT_TRUE(WaitFor(
      [&] {
        auto s = Servers("svc_0");
        return std::any_of(s.begin(), s.end(), [](const ServerState& x) { return x.drain(); });
      },
      30s))
      << LastStatus();
  const int64_t a_at_drain = a.Accepted();
  const int64_t b_at_drain = b.Accepted();
  // Under the steady load b takes 20 more requests; a takes none.
  ASSERT_TRUE(WaitFor([&] { return b.Accepted() >= b_at_drain + 20; }, 120s));
  EXPECT_EQ(a.Accepted(), a_at_drain) << "a drained replica took new requests";

  // The server stops listing it: its server is deleted once its sessions are 0.
  cp_.Set({{5, "chat", {rb}}});
  ASSERT_TRUE(WaitFor([&] { return Servers("svc_0").size() == 1; }, 60s)) << LastStatus();
  const int64_t ok_after_delete = ok;
  ASSERT_TRUE(WaitFor([&] { return ok >= ok_after_delete + 8; }, 60s));
  stop = true;
  for (std::thread& t : load) t.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(Servers("svc_0")[0].name, ServerName(rb));
}

TEST_F(HaproxyTest, ScaleFromZeroHoldsTheRequestUntilAReplicaIsReady) {
  cp_.Set({{5, "chat", {}}});
  ASSERT_TRUE(WaitFor(
      [&] {
        auto m = api_->Run("show map " + dir_.string() + "/" + kRoutesMapName);
        return m.ok() && m->find("/svc/chat/ svc_0") != std::string::npos;
      },
      30s))
      << LastStatus();

  std::atomic<int> status{0};
  std::atomic<double> took_s{0};
  const auto sent = std::chrono::steady_clock::now();
  std::thread request([&] {
    status = Complete("chat").status;
    took_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
  });
  // The held request is load: counted by the Lua action and pushed as in_flight.
  EXPECT_TRUE(WaitFor([&] { return cp_.LastPush(5).value("in_flight", 0) >= 1; }, 30s))
      << cp_.LastPush(5).dump();
  EXPECT_EQ(status, 0) << "the request was answered before any replica existed";

  // The replica takes 2 s to load; the agent's readiness check would see /health turn 200.
  const auto started = std::chrono::steady_clock::now();
  Emulator a = StartEmulator({"--load-s", "2"});
  ASSERT_TRUE(WaitFor([&] { return a.Healthy(); }, 60s, 50ms));
  const double ready_after_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  cp_.Set({{5, "chat", {{9, a.address(), true, false}}}});
  request.join();
  EXPECT_EQ(status, 200);
  std::printf(
      "scale from zero: replica ready %.2f s after start; the held request answered "
      "%.2f s after it was sent\n",
      ready_after_s, took_s.load());
  EXPECT_TRUE(WaitFor([&] { return cp_.LastPush(5).value("in_flight", -1) == 0; }, 30s));
}

}  // namespace
}  // namespace gpuorch::gateway
