// Accounting (issue 12): the usage API's input, and allocated GPU-hours computed by the
// controller from bind to release on an injected clock, through a real SQLite store that
// survives restarts and the finished workloads' retention.
#include "server/usage.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>

#include "server/audit_log.h"
#include "server/controller.h"
#include "server/controller_test_util.h"

namespace gpuorch::server {
namespace {

constexpr int64_t kHour = 3'600'000;

int64_t T(const std::string& text) {
  int64_t ms = 0;
  EXPECT_TRUE(ParseUsageTime(text, ms)) << text;
  return ms;
}

TEST(UsageTime, DatesAndRfc3339TimesOnly) {
  EXPECT_EQ(T("1970-01-01"), 0);
  EXPECT_EQ(T("1970-01-02"), 24 * kHour);
  EXPECT_EQ(T("2026-03-01T00:00:00Z"), T("2026-03-01"));
  EXPECT_EQ(T("2026-03-01T01:30:00+01:30"), T("2026-03-01"));
  EXPECT_EQ(T("2026-02-28T23:00:00-01:00"), T("2026-03-01"));
  EXPECT_EQ(T("2026-03-01 00:00:00.250z"), T("2026-03-01") + 250);
  EXPECT_EQ(T("2024-02-29"), T("2024-03-01") - 24 * kHour) << "a leap day";
  int64_t ms = 0;
  for (const char* bad : {"", "yesterday", "2026-3-1", "2026-02-30", "2026-13-01",
                          "2026-03-01T00:00:00", "2026-03-01T25:00:00Z", "2026-03-01T00:00Z",
                          "2026-03-01T00:00:00.Z", "2026-03-01T00:00:00+0100", "2026-03-01Z",
                          "1969-12-31", "2026-03-01T00:00:00Zjunk", "20260301", "2023-02-29"}) {
    EXPECT_FALSE(ParseUsageTime(bad, ms)) << bad;
  }
  EXPECT_EQ(StartOfMonthUtc(T("2026-03-10T12:34:56Z")), T("2026-03-01"));
  EXPECT_EQ(StartOfMonthUtc(T("2026-03-01")), T("2026-03-01"));
}

TEST(UsageRequest, BadInputNamesTheField) {
  struct Case {
    std::vector<std::pair<std::string, std::string>> params;
    const char* message;  // its start
  };
  const Case cases[] = {
      {{{"from", "yesterday"}}, "from: expected a date (2026-03-01) or an RFC 3339 time"},
      {{{"to", "2026-02-30"}}, "to: expected a date"},
      {{{"by", "account"}}, "by: must be queue or user"},
      {{{"limit", "3"}}, "limit: unknown parameter"},
      {{{"from", "2026-03-02"}, {"to", "2026-03-01"}},
       "from: must be before to (from 2026-03-02T00:00:00.000Z, to 2026-03-01T00:00:00.000Z)"},
      {{{"from", "2026-03-01"}, {"to", "2026-03-01"}}, "from: must be before to"},
  };
  for (const Case& c : cases) {
    UsageRequest r;
    ApiError e;
    EXPECT_FALSE(ParseUsageRequest(c.params, r, e)) << c.message;
    EXPECT_EQ(e.code, 400);
    EXPECT_EQ(e.message.rfind(c.message, 0), 0u) << e.message;
    EXPECT_EQ(e.message.rfind(e.field + ": ", 0), 0u) << e.message;
  }
  UsageRequest r;
  ApiError e;
  ASSERT_TRUE(ParseUsageRequest({{"from", "2026-03-01"}, {"by", "user"}, {"queue", "a"}}, r, e));
  EXPECT_EQ(r.from_ms, T("2026-03-01"));
  EXPECT_FALSE(r.to_ms.has_value());
  EXPECT_EQ(r.by, "user");
  EXPECT_EQ(r.queue, "a");
}

class UsageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_util::FreshTestDir("usage");
    now_->store(T("2026-03-10T00:00:00Z"));
    Open();
  }
  void TearDown() override {
    controller_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  // A controller over the same SQLite file: the first one, or a restart.
  void Open() {
    controller_.reset();
    store_.reset();
    auto s = store::OpenSqliteStore((dir_ / "db").string());
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(s).value();
    auto config = ParseConfig("finished_retention: 1h\nqueues: [{name: prod}, {name: batch}]\n");
    ASSERT_TRUE(config.ok());
    auto c = Controller::Create(*config, store_.get(), [now = now_] { return now->load(); });
    ASSERT_TRUE(c.ok()) << c.status().message();
    controller_ = std::move(c).value();
  }
  void Advance(int64_t ms) { now_->fetch_add(ms); }
  void Register(const std::string& name, int gpus) {
    Json gs = Json::array();
    for (int i = 0; i < gpus; ++i) gs.push_back({{"index", i}, {"model", "H100"}});
    Json out;
    ApiError e;
    ASSERT_TRUE(controller_->Register(
        {{"name", name}, {"cpu_milli", 64000}, {"memory_mib", 262144}, {"gpus", gs}}, out, e))
        << e.message;
  }
  int64_t Submit(const std::string& queue, const std::string& user, int gpus,
                 int gpu_milli = 1000) {
    Json spec = {
        {"name", "w"}, {"queue", queue}, {"gpus", gpus}, {"cpu_milli", 100}, {"command", {"true"}}};
    if (gpu_milli != 1000) spec["gpu_milli"] = gpu_milli;
    Json out;
    ApiError e;
    EXPECT_TRUE(controller_->Submit(spec, out, e, user)) << e.message;
    return out.value("id", int64_t{-1});
  }
  void Exit(const std::string& node, int64_t id, int attempt = 0) {
    Json out;
    ApiError e;
    ASSERT_TRUE(controller_->Heartbeat(node,
                                       {{"tasks",
                                         {{{"workload", id},
                                           {"task", 0},
                                           {"attempt", attempt},
                                           {"state", "exited"},
                                           {"exit_code", 0}}}}},
                                       out, e))
        << e.message;
  }
  Json Get(int64_t id) { return test_util::GetWorkloadOrFail(*controller_, id); }
  bool Exists(int64_t id) { return test_util::WorkloadExists(*controller_, id); }
  // The rows of GET /v1/usage over [from, to) (RFC 3339 or dates; "" for the default).
  Json Rows(const std::string& from, const std::string& to, const std::string& by = "queue",
            const Access& access = {}, const std::string& queue = "") {
    UsageRequest r;
    if (!from.empty()) r.from_ms = T(from);
    if (!to.empty()) r.to_ms = T(to);
    r.by = by;
    r.queue = queue;
    Json out;
    ApiError e;
    EXPECT_TRUE(controller_->Usage(r, out, e, access)) << e.message;
    return out["rows"];
  }
  // GPU-seconds of the row of `name` (queue or user), or -1 without one.
  static int64_t Seconds(const Json& rows, const std::string& key, const std::string& name) {
    for (const Json& r : rows) {
      if (r.value(key, "") == name) return r["allocated_gpu_seconds"].get<int64_t>();
    }
    return -1;
  }

  std::shared_ptr<std::atomic<int64_t>> now_ = std::make_shared<std::atomic<int64_t>>(0);
  std::filesystem::path dir_;
  std::unique_ptr<store::StateStore> store_;
  std::unique_ptr<Controller> controller_;
};

// A task holds its GPUs from its bind to its release; a running one counts up to now, and
// every range sees the part of the interval inside it.
TEST_F(UsageTest, AllocatedFromBindToReleaseClippedToTheRange) {
  Register("n1", 4);
  const int64_t id = Submit("batch", "alice", 2);
  EXPECT_EQ(Get(id)["user"], "alice");
  controller_->Step();  // bound at 2026-03-10T00:00
  ASSERT_EQ(Get(id)["state"], "Running");
  Advance(kHour);
  Json rows = Rows("2026-03-01", "2026-04-01");
  ASSERT_EQ(rows.size(), 1u) << rows.dump();
  EXPECT_EQ(rows[0]["queue"], "batch");
  EXPECT_EQ(rows[0]["model"], "H100");
  EXPECT_EQ(rows[0]["allocated_gpu_seconds"], 2 * 3600) << "running: counted up to now";
  EXPECT_DOUBLE_EQ(rows[0]["allocated_gpu_hours"].get<double>(), 2.0);
  EXPECT_TRUE(rows[0]["used_gpu_hours"].is_null()) << "no telemetry yet";
  EXPECT_EQ(rows[0]["tasks"], 1);
  Advance(2 * kHour);
  Exit("n1", id);  // released at 03:00
  ASSERT_EQ(Get(id)["state"], "Succeeded");
  Advance(5 * kHour);  // nothing after the release counts
  EXPECT_EQ(Seconds(Rows("2026-03-01", "2026-04-01"), "queue", "batch"), 2 * 3 * 3600);
  EXPECT_EQ(Seconds(Rows("2026-03-10T01:00:00Z", "2026-03-10T02:00:00Z"), "queue", "batch"),
            2 * 3600);
  EXPECT_EQ(Seconds(Rows("2026-03-10T02:30:00Z", "2026-03-11"), "queue", "batch"), 2 * 1800);
  EXPECT_TRUE(Rows("2026-03-01", "2026-03-10").empty()) << "before the bind";
  EXPECT_TRUE(Rows("2026-03-10T03:00:00Z", "2026-03-11").empty()) << "after the release";
  Json users = Rows("2026-03-01", "2026-04-01", "user");
  ASSERT_EQ(users.size(), 1u);
  EXPECT_EQ(users[0]["user"], "alice");
  EXPECT_EQ(users[0]["allocated_gpu_seconds"], 2 * 3 * 3600);
}

// Fractions count by their milli-GPUs; a workload with no user (submitted by a caller that
// names none) is reported under "(unknown)".
TEST_F(UsageTest, FractionsCountByTheirShare) {
  Register("n1", 1);
  const int64_t half = Submit("prod", "bob", 1, 500);
  const int64_t anonymous = Submit("prod", "", 1, 250);
  controller_->Step();
  ASSERT_EQ(Get(half)["state"], "Running");
  ASSERT_EQ(Get(anonymous)["state"], "Running");
  Advance(2 * kHour);
  Exit("n1", half);
  Json users = Rows("2026-03-01", "2026-04-01", "user");
  EXPECT_EQ(Seconds(users, "user", "bob"), 3600);
  EXPECT_EQ(Seconds(users, "user", "(unknown)"), 1800);
  EXPECT_EQ(Seconds(Rows("2026-03-01", "2026-04-01"), "queue", "prod"), 5400);
}

// Usage is durable: it survives a restart, a task running across the restart counts from
// its bind, and the usage of a workload outlives the workload's retention.
TEST_F(UsageTest, SurvivesRestartsAndTheRetentionOfFinishedWorkloads) {
  Register("n1", 2);
  const int64_t done = Submit("batch", "alice", 1);
  const int64_t running = Submit("prod", "bob", 1);
  controller_->Step();
  Advance(kHour);
  Exit("n1", done);
  ASSERT_EQ(Get(done)["state"], "Succeeded");
  Open();  // restart
  EXPECT_EQ(Seconds(Rows("2026-03-01", "2026-04-01"), "queue", "batch"), 3600);
  EXPECT_EQ(Seconds(Rows("2026-03-01", "2026-04-01"), "queue", "prod"), 3600);
  Advance(kHour);
  Exit("n1", running);
  ASSERT_EQ(Get(running)["state"], "Succeeded");
  EXPECT_EQ(Seconds(Rows("2026-03-01", "2026-04-01"), "queue", "prod"), 2 * 3600);
  // Past the retention (1h) the finished workloads are collected; their usage stays.
  Submit("batch", "carol", 0);  // the newest id is never collected
  Advance(3 * kHour);
  controller_->Step();
  EXPECT_FALSE(Exists(done));
  EXPECT_FALSE(Exists(running));
  Open();
  EXPECT_FALSE(Exists(done));
  Json rows = Rows("2026-03-01", "2026-04-01");
  EXPECT_EQ(Seconds(rows, "queue", "batch"), 3600);
  EXPECT_EQ(Seconds(rows, "queue", "prod"), 2 * 3600);
}

// A caller sees the usage of the queues it reads and nothing of the others: no row, no
// user who worked only there.
TEST_F(UsageTest, ACallerSeesOnlyTheQueuesItReads) {
  Register("n1", 2);
  Submit("prod", "alice", 1);
  Submit("batch", "bob", 1);
  controller_->Step();
  Advance(kHour);
  Access prod_only;
  prod_only.reads = [](const std::string& q) { return q == "prod"; };
  Json rows = Rows("2026-03-01", "2026-04-01", "queue", prod_only);
  ASSERT_EQ(rows.size(), 1u) << rows.dump();
  EXPECT_EQ(rows[0]["queue"], "prod");
  Json users = Rows("2026-03-01", "2026-04-01", "user", prod_only);
  ASSERT_EQ(users.size(), 1u) << users.dump();
  EXPECT_EQ(users[0]["user"], "alice");
  EXPECT_TRUE(Rows("2026-03-01", "2026-04-01", "queue", prod_only, "batch").empty());
  EXPECT_EQ(Rows("2026-03-01", "2026-04-01", "queue", {}, "batch").size(), 1u);
  EXPECT_EQ(Rows("2026-03-01", "2026-04-01").size(), 2u);
}

// Without a range: the month of `to` so far (to: now). A range that ends before it starts
// is refused naming `from`.
TEST_F(UsageTest, TheDefaultRangeIsTheMonthSoFar) {
  UsageRequest r;
  Json out;
  ApiError e;
  ASSERT_TRUE(controller_->Usage(r, out, e)) << e.message;
  EXPECT_EQ(out["from"], "2026-03-01T00:00:00.000Z");
  EXPECT_EQ(out["to"], "2026-03-10T00:00:00.000Z");
  EXPECT_EQ(out["by"], "queue");
  r.to_ms = T("2026-02-01");
  ASSERT_TRUE(controller_->Usage(r, out, e)) << e.message;
  EXPECT_EQ(out["from"], "2026-01-01T00:00:00.000Z");
  r = UsageRequest{};
  r.from_ms = T("2026-03-11");
  EXPECT_FALSE(controller_->Usage(r, out, e));
  EXPECT_EQ(e.code, 400);
  EXPECT_EQ(e.field, "from");
  EXPECT_EQ(e.message.rfind("from: must be before to", 0), 0u) << e.message;
}

// The counter integrates the queues' allocation between the gauge computations (at most
// once a second, on the steady clock): after more than a second of two GPUs, at least two
// GPU-seconds.
TEST_F(UsageTest, TheAllocatedCounterAdvancesWhileTasksRun) {
  Register("n1", 2);
  Submit("batch", "alice", 2);
  controller_->Step();
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  controller_->Step();
  const std::string text = controller_->Metrics();
  const std::string series = "gpuorch_queue_allocated_gpu_seconds_total{model=\"H100\",queue=\"";
  const size_t at = text.find(series + "batch\"} ");
  ASSERT_NE(at, std::string::npos) << text;
  EXPECT_GE(std::stod(text.substr(at + series.size() + 8)), 2.0);
  EXPECT_NE(text.find(series + "prod\"} 0"), std::string::npos) << "every leaf queue has one";
}

}  // namespace
}  // namespace gpuorch::server
