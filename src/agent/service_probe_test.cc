#include "agent/service_probe.h"

#include <gtest/gtest.h>

#include <atomic>

#include "agent/runner.h"
#include "agent/test_util.h"

namespace gpuorch::agent {
namespace {

using Kind = ServiceCheck::Kind;

ServiceTask Task(int64_t workload, int32_t port, std::optional<ReadinessSpec> readiness,
                 std::vector<std::string> gauges = {}) {
  ServiceTask t;
  t.key = TaskKey{workload, 0, 0};
  t.spec.readiness = std::move(readiness);
  t.spec.gauges = std::move(gauges);
  t.spec.port = port;
  return t;
}

ReadinessSpec Health(int64_t initial_delay_ms, int64_t period_ms) {
  return ReadinessSpec{"/health", initial_delay_ms, period_ms};
}

CheckResult Ok(std::string body = "") { return CheckResult{true, std::move(body), ""}; }
CheckResult Failed() { return CheckResult{false, "", "connect: Connection refused"}; }

bool Ready(const ServiceProbes& p, int64_t workload) {
  return p.Reports().at(TaskKey{workload, 0, 0}).ready;
}

// One step of a readiness script: at `at_ms` the check is due (or not), and answers `ok`.
struct Step {
  int64_t at_ms;
  bool due;
  bool ok;
  bool ready_after;
};

TEST(ServiceProbesTest, ReadyAfterOneSuccessNotReadyAfterThreeFailuresInARow) {
  ServiceProbes p;
  p.SetTasks({Task(1, 20001, Health(5000, 1000))}, 0);
  EXPECT_EQ(p.urgent_changes(), 1u) << "a new task's port is news";
  EXPECT_FALSE(Ready(p, 1));
  EXPECT_EQ(p.NextDueMs(), 5000);
  const std::vector<Step> script = {
      {4999, false, false, false},  // the initial delay
      {5000, true, false, false},   // not serving yet
      {5199, false, false, false},  // until the first success, every kStartupCheckMs
      {5200, true, false, false},   // still not serving
      {5400, true, true, true},     // one success: ready
      {6399, false, false, true},   // from now on one period after the previous check
      {6400, true, false, true},    // 1 failure
      {7400, true, false, true},    // 2
      {8400, true, true, true},     // a success resets the count
      {9400, true, false, true},    // 1
      {10400, true, false, true},   // 2
      {11400, true, false, false},  // 3 in a row: not ready (the period stays)
      {12400, true, false, false}, {13400, true, true, true},
  };
  for (const Step& s : script) {
    std::vector<ServiceCheck> due = p.Due(s.at_ms);
    ASSERT_EQ(due.size(), s.due ? 1u : 0u) << "at " << s.at_ms;
    if (!s.due) continue;
    EXPECT_EQ(due[0].kind, Kind::kHttp);
    EXPECT_EQ(due[0].port, 20001);
    EXPECT_EQ(due[0].path, "/health");
    p.Done(due[0], s.ok ? Ok() : Failed(), s.at_ms + 10);
    EXPECT_EQ(Ready(p, 1), s.ready_after) << "at " << s.at_ms;
  }
  EXPECT_EQ(p.urgent_changes(), 4u) << "added, ready, not ready, ready";
}

TEST(ServiceProbesTest, ACheckInFlightIsNotHandedOutTwiceAndASlowOneIsFollowedAtOnce) {
  ServiceProbes p;
  p.SetTasks({Task(1, 20001, Health(0, 1000))}, 0);
  std::vector<ServiceCheck> due = p.Due(0);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_TRUE(p.Due(5000).empty()) << "still in flight";
  EXPECT_EQ(p.NextDueMs(), std::nullopt);
  p.Done(due[0], Ok(), 2500);  // took longer than the period
  EXPECT_EQ(p.NextDueMs(), 2500);
  EXPECT_EQ(p.Due(2500).size(), 1u);
}

TEST(ServiceProbesTest, WithoutReadinessTheCheckIsATcpConnectAtOnce) {
  ServiceProbes p;
  p.SetTasks({Task(1, 20002, std::nullopt)}, 100);
  std::vector<ServiceCheck> due = p.Due(100);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].kind, Kind::kConnect);
  p.Done(due[0], Ok(), 100);
  EXPECT_TRUE(Ready(p, 1));
  EXPECT_EQ(p.NextDueMs(), 100 + kDefaultServicePeriodMs);
}

TEST(ServiceProbesTest, ScrapesSumTheGaugesOnTheirOwnSchedule) {
  ServiceProbes p(/*scrape_interval_ms=*/500);
  p.SetTasks({Task(1, 20001, Health(1000, 2000), {"running", "waiting", "absent"})}, 0);
  EXPECT_EQ(p.ScrapePaceMs(), 500);
  std::vector<ServiceCheck> due = p.Due(1000);
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[1].kind, Kind::kScrape);
  EXPECT_EQ(due[1].path, "/metrics");
  p.Done(due[0], Ok(), 1000);
  p.Done(due[1], Ok("running{m=\"a\"} 2\nrunning{m=\"b\"} 1\nwaiting 4\nother 9\n"), 1000);
  ServiceReport r = p.Reports().at(TaskKey{1, 0, 0});
  EXPECT_EQ(r.gauges, (std::map<std::string, double>{{"running", 3}, {"waiting", 4}}));
  EXPECT_EQ(r.scrape, 1u);
  EXPECT_EQ(p.scrapes(), 1u);
  // The next scrape after the agent's interval, not the readiness period.
  due = p.Due(1500);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].kind, Kind::kScrape);
  // A failed scrape or one that is not an exposition keeps the last gauges, and is no news;
  // only the first bad page is logged.
  p.Done(due[0], Failed(), 1500);
  due = p.Due(2000);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_TRUE(p.Done(due[0], Ok("<html>"), 2000).has_value());
  due = p.Due(2500);
  EXPECT_FALSE(p.Done(due[0], Ok("<html>"), 2500).has_value());
  EXPECT_EQ(p.Reports().at(TaskKey{1, 0, 0}).gauges.at("running"), 3);
  EXPECT_EQ(p.scrapes(), 1u);
}

TEST(ServiceProbesTest, TasksWithoutGaugesAreNotScraped) {
  ServiceProbes p;
  p.SetTasks({Task(1, 20001, Health(0, 1000))}, 0);
  EXPECT_EQ(p.ScrapePaceMs(), 0);
  for (const ServiceCheck& c : p.Due(0)) EXPECT_NE(c.kind, Kind::kScrape);
}

TEST(ServiceProbesTest, ATaskNoLongerListedIsDroppedAndItsLateResultIgnored) {
  ServiceProbes p;
  p.SetTasks({Task(1, 20001, Health(0, 1000)), Task(2, 20002, std::nullopt)}, 0);
  std::vector<ServiceCheck> due = p.Due(0);
  ASSERT_EQ(due.size(), 2u);
  p.SetTasks({Task(2, 20002, std::nullopt)}, 10);  // task 1 exited
  EXPECT_EQ(p.urgent_changes(), 2u) << "only additions are news; an exit is reported anyway";
  EXPECT_FALSE(p.Done(due[0], Ok(), 20).has_value());
  EXPECT_EQ(p.Reports().size(), 1u);
  EXPECT_EQ(p.Reports().count(TaskKey{1, 0, 0}), 0u);
}

// The prober's thread over a scripted fetch: news reaches Take, and `wake` is called.
TEST(ServiceProberTest, RunsDueChecksOnItsThreadAndWakesTheLoop) {
  std::atomic<int> wakes{0};
  std::atomic<bool> serving{false};
  ServiceProber prober(
      /*scrape_interval_ms=*/20, MonotonicMs, [&] { ++wakes; }, nullptr,
      [&](const ServiceCheck& c) {
        if (!serving) return Failed();
        return c.kind == Kind::kScrape ? Ok("running 5\n") : Ok();
      });
  prober.SetTasks({Task(1, 20001, Health(0, 20), {"running"})});
  std::optional<ServiceProber::News> news = prober.Take();
  ASSERT_TRUE(news.has_value());
  EXPECT_TRUE(news->urgent) << "the new task's port";
  EXPECT_EQ(news->reports.at(TaskKey{1, 0, 0}).port, 20001);
  EXPECT_FALSE(news->reports.at(TaskKey{1, 0, 0}).ready);
  EXPECT_EQ(news->scrape_pace_ms, 20);
  serving = true;
  bool ready = false, scraped = false;
  ASSERT_TRUE(testing::WaitFor([&] {
    if (std::optional<ServiceProber::News> n = prober.Take()) {
      const ServiceReport& r = n->reports.at(TaskKey{1, 0, 0});
      ready = ready || r.ready;
      scraped = scraped || (n->scraped && r.gauges.count("running") && r.gauges.at("running") == 5);
    }
    return ready && scraped;
  }));
  EXPECT_GT(wakes.load(), 0);
  prober.SetTasks({});
}

}  // namespace
}  // namespace gpuorch::agent
