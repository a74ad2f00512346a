// The agent protocol's service additions (docs/api.md, "Agent protocol"): the desired
// entry's `service` member, the state file's port, the heartbeat's `service` report.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "agent/protocol.h"

namespace gpuorch::agent {
namespace {

using nlohmann::json;

// The `service` member of a desired entry (docs/api.md, "Agent protocol"): what is bad is
// left out with a warning, never fatal to the entry or the answer.
TEST(Protocol, ServiceMemberIsParsedAndBadPartsAreLeftOut) {
  auto parse = [](const std::string& service) {
    const std::string body =
        R"({"desired": [{"workload": 1, "task": 0, "attempt": 0, "command": ["x"],)"
        R"( "service": )" +
        service + "}]}";
    core::Result<DesiredList> d = ParseHeartbeatResponse(body);
    EXPECT_TRUE(d.ok()) << service;
    return d.ok() ? *d : DesiredList{};
  };
  DesiredList d =
      parse(R"({"readiness": {"http_path": "/health", "initial_delay_s": 1.5, "period_s": 2},)"
            R"( "gauges": ["vllm:num_requests_running", "vllm:num_requests_running", "b"],)"
            R"( "port": 31337})");
  ASSERT_EQ(d.tasks.size(), 1u);
  ASSERT_TRUE(d.tasks[0].service.has_value());
  const ServiceSpec& s = *d.tasks[0].service;
  ASSERT_TRUE(s.readiness.has_value());
  EXPECT_EQ(s.readiness->http_path, "/health");
  EXPECT_EQ(s.readiness->initial_delay_ms, 1500);
  EXPECT_EQ(s.readiness->period_ms, 2000);
  EXPECT_EQ(s.gauges, (std::vector<std::string>{"vllm:num_requests_running", "b"}));
  EXPECT_EQ(s.port, 0) << "the port is the agent's to pick, never the server's";
  EXPECT_TRUE(d.warnings.empty());

  struct Bad {
    const char* service;
    bool is_service;     // still a service task
    bool has_readiness;  // its readiness kept
    size_t gauges;
  };
  for (const Bad& b : std::vector<Bad>{
           {R"(5)", false, false, 0},
           {R"("yes")", false, false, 0},
           {R"({"readiness": "http"})", true, false, 0},
           {R"({"readiness": {"initial_delay_s": 0}})", true, false, 0},
           {R"({"readiness": {"http_path": "health"}})", true, false, 0},
           {R"({"readiness": {"http_path": "/a b"}})", true, false, 0},
           {R"({"readiness": {"http_path": "/h", "period_s": 0}})", true, false, 0},
           {R"({"readiness": {"http_path": "/h", "period_s": 1e300}})", true, false, 0},
           {R"({"readiness": {"http_path": "/h", "initial_delay_s": -1}})", true, false, 0},
           {R"({"readiness": {"http_path": "/h", "initial_delay_s": "1"}})", true, false, 0},
           {R"({"readiness": {"http_path": "/h"}, "gauges": "a"})", true, true, 0},
           {R"({"readiness": {"http_path": "/h"}, "gauges": ["a", 3, "9x", "", "b{}"]})", true,
            true, 1},
       }) {
    DesiredList bad = parse(b.service);
    ASSERT_EQ(bad.tasks.size(), 1u);
    EXPECT_EQ(bad.tasks[0].service.has_value(), b.is_service) << b.service;
    EXPECT_FALSE(bad.warnings.empty()) << b.service << ": said in the log";
    if (!bad.tasks[0].service) continue;
    EXPECT_EQ(bad.tasks[0].service->readiness.has_value(), b.has_readiness) << b.service;
    EXPECT_EQ(bad.tasks[0].service->gauges.size(), b.gauges) << b.service;
  }
  // Readiness defaults: no initial delay, a check every second.
  d = parse(R"({"readiness": {"http_path": "/h"}})");
  EXPECT_EQ(d.tasks[0].service->readiness->initial_delay_ms, 0);
  EXPECT_EQ(d.tasks[0].service->readiness->period_ms, 1000);
  EXPECT_EQ(parse(R"(null)").tasks[0].service, std::nullopt);
}

TEST(Protocol, TheStateFileKeepsTheServicePort) {
  TaskSpec s;
  s.key = {4, 0, 1};
  s.command = {"serve"};
  s.service = ServiceSpec{ReadinessSpec{"/health", 250, 1500}, {"a", "b"}, 20007};
  core::Result<TaskSpec> again = ParseTaskSpec(TaskSpecJson(s));
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(again->service.has_value());
  EXPECT_EQ(again->service->port, 20007);
  EXPECT_EQ(again->service->gauges, s.service->gauges);
  EXPECT_EQ(again->service->readiness->initial_delay_ms, 250);
  EXPECT_EQ(again->service->readiness->period_ms, 1500);
  EXPECT_EQ(TaskSpecJson(*again), TaskSpecJson(s));
}

TEST(Protocol, ARunningServiceTaskReportsItsPortReadinessAndGauges) {
  TaskStatus t{{17, 0, 1}, TaskState::kRunning, 4242, {}, ServiceReport{20001, true, {}, 0}};
  EXPECT_EQ(json::parse(HeartbeatRequestJson({t}))["tasks"][0]["service"],
            json({{"port", 20001}, {"ready", true}}))
      << "no gauges before the first scrape";
  t.service->gauges = {{"vllm:num_requests_running", 3}};
  t.service->scrape = 1;
  EXPECT_EQ(
      json::parse(HeartbeatRequestJson({t}))["tasks"][0]["service"],
      json({{"port", 20001}, {"ready", true}, {"gauges", {{"vllm:num_requests_running", 3.0}}}}));
}

// A running service task is news again when its port or readiness changes or its gauges
// are scraped again, and not otherwise.
TEST(Protocol, ServiceChangesAreReportedAgain) {
  TaskStatus t{{1, 0, 0}, TaskState::kRunning, 77, {}, ServiceReport{20001, false, {}, 0}};
  ReportTracker r;
  ASSERT_EQ(r.ToReport({t}).size(), 1u);
  ASSERT_TRUE(r.Acknowledge(100, {t}));
  EXPECT_TRUE(r.ToReport({t}).empty());
  t.service->ready = true;
  ASSERT_EQ(r.ToReport({t}).size(), 1u) << "ready";
  ASSERT_TRUE(r.Acknowledge(100, {t}));
  t.service->gauges = {{"a", 1}};
  t.service->scrape = 4;
  ASSERT_EQ(r.ToReport({t}).size(), 1u) << "a scrape";
  ASSERT_TRUE(r.Acknowledge(100, {t}));
  EXPECT_TRUE(r.ToReport({t}).empty());
  t.service->scrape = 5;  // same values, fresh scrape
  EXPECT_EQ(r.ToReport({t}).size(), 1u);
}

}  // namespace
}  // namespace gpuorch::agent
