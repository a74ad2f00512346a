// Unit tests of the control plane below HTTP: configuration and submission validation
// (every bad input names its field), and the controller's state machine driven directly
// (submit, heartbeat, cycle, exits, eviction, restart from a real SQLite store).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include "server/api_types.h"
#include "server/config.h"
#include "server/controller.h"
#include "server/controller_test_util.h"

namespace gpuorch::server {
namespace {

TEST(Config, DefaultsWork) {
  auto c = ParseConfig("");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->listen, "127.0.0.1:7480");
  EXPECT_NE(c->FindQueue("default"), nullptr);
}

TEST(Config, BadInputNamesTheField) {
  struct Case {
    const char* yaml;
    const char* starts_with;
  };
  const Case cases[] = {
      {"listen: [1, 2]", "listen: wrong type"},
      {"bogus: 1", "bogus: unknown field"},
      {"node_timeout_s: 0", "node_timeout_s"},
      {"heartbeat_interval_ms: 6000", "heartbeat_interval_ms"},
      {"http_threads: 128", "http_threads: no longer used"},
      {"io_threads: 0", "io_threads: must be in 1..64"},
      {"worker_threads: 1000", "worker_threads: must be in 1..256"},
      {"max_connections: 0", "max_connections: must be in"},
      {"idle_timeout_s: 0", "idle_timeout_s: must be in"},
      {"max_heartbeats_per_second: 0", "max_heartbeats_per_second: must be in"},
      {"queues: []", "queues: must be a non-empty list"},
      {"queues: [{weight: 2}]", "queues[0].name: required"},
      {"queues: [{name: a, weight: 0}]", "queues[0].weight"},
      {"queues: [{name: a, quota: [{guaranteed: -1}]}]", "queues[0].quota[0].guaranteed"},
      {"queues: [{name: a, quota: [{guaranteed: 4, limit: 2}]}]", "queues[0].quota[0].limit"},
      {"queues: [{name: a, quota: [{gpus: 4}]}]", "queues[0].quota[0].gpus: unknown field"},
      {"queues: [{name: a, parent: b}]", "queues[0].parent: unknown queue b"},
      {"queues: [{name: a}, {name: a}]", "queues[1].name: duplicate a"},
      {"queues: [{name: a, cpu_quota: {guaranteed_milli: -1}}]",
       "queues[0].cpu_quota.guaranteed_milli: must be in 0..2^48"},
      {"queues: [{name: a, memory_quota: {guaranteed_mib: 4, limit_mib: 2}}]",
       "queues[0].memory_quota.limit_mib: must be >= guaranteed_mib"},
      {"queues: [{name: a, cpu_quota: {cpus: 1}}]", "queues[0].cpu_quota.cpus: unknown field"},
      {"default_priority: gold", "default_priority"},
      {"priority_classes: [{name: x, value: 1}, {name: x}]", "priority_classes[1].name"},
      {"{{{", "config: not valid YAML"},
      {"queues: [{name: a, run_as: 'bad name'}]", "queues[0].run_as: must be a user name"},
      {"queues: [{name: a, run_as: -x}]", "queues[0].run_as"},
      {"max_log_bytes: 10", "max_log_bytes: must be in 1024..2^30"},
      {"agent_hosts: ['http://x']", "agent_hosts[0]: must be a host name or *.domain"},
      {"agent_hosts: ['a*.b']", "agent_hosts[0]"},
  };
  for (const Case& c : cases) {
    auto r = ParseConfig(c.yaml);
    ASSERT_FALSE(r.ok()) << c.yaml;
    EXPECT_EQ(r.status().message().rfind(c.starts_with, 0), 0u)
        << c.yaml << " -> " << r.status().message();
  }
}

TEST(ParseWorkload, BadInputNamesTheField) {
  ServerConfig config = *ParseConfig("queues: [{name: org}, {name: team, parent: org}]");
  std::map<std::string, core::QueueId> leaves = {{"team", core::QueueId(1)}};
  Json ok = Json::parse(R"({"name": "w", "queue": "team", "gpus": 1, "command": ["true"]})");
  struct Case {
    const char* patch;  // merged into `ok`
    const char* field;
  };
  const Case cases[] = {
      {R"({"gpus": 17})", "gpus"},
      {R"({"gpus": -1})", "gpus"},
      {R"({"gpus": "2"})", "gpus"},
      {R"({"queue": "nope"})", "queue"},
      {R"({"queue": "org"})", "queue"},
      {R"({"name": "a b"})", "name"},
      {R"({"name": ""})", "name"},
      {R"({"command": []})", "command"},
      {R"({"command": [1]})", "command[0]"},
      {R"({"priority": "gold"})", "priority"},
      {R"({"kind": "batch"})", "kind"},
      {R"({"min_tasks": 3, "max_tasks": 2})", "max_tasks"},
      {R"({"tasks": 0})", "tasks"},
      {R"({"gpu_milli": 500, "gpus": 2})", "gpu_milli"},
      {R"({"gpu_milli": 0})", "gpu_milli"},
      {R"({"cpu_milli": 1e12})", "cpu_milli"},
      {R"({"topology": {"level": "galaxy"}})", "topology.level"},
      {R"({"topology": {"level": "rack", "strict": true}})", "topology.strict"},
      {R"({"gpu_models": "H100"})", "gpu_models"},
      {R"({"env": {"A": 1}})", "env.A"},
      {R"({"grace_period_s": -5})", "grace_period_s"},
      {R"({"surprise": true})", "surprise"},
  };
  for (const Case& c : cases) {
    Json body = ok;
    body.merge_patch(Json::parse(c.patch));
    core::GpuModelRegistry models;
    ParsedWorkload out;
    ApiError e;
    EXPECT_FALSE(ParseWorkload(body, config, leaves, models, out, e)) << c.patch;
    EXPECT_EQ(e.code, 400) << c.patch;
    EXPECT_EQ(e.field, c.field) << c.patch << " -> " << e.message;
    EXPECT_EQ(e.message.rfind(c.field, 0), 0u) << e.message;
  }
  core::GpuModelRegistry models;
  ParsedWorkload out;
  ApiError e;
  Json frac = ok;
  frac.merge_patch(Json::parse(R"({"gpus": 0, "gpu_milli": 250, "gpu_memory_mib": 4096})"));
  ASSERT_TRUE(ParseWorkload(frac, config, leaves, models, out, e)) << e.message;
  EXPECT_TRUE(out.spec.task.fractional());
  EXPECT_EQ(out.CanonicalSpec()["gpus"], 1);
  EXPECT_EQ(out.spec.preemptible, true);  // the "normal" class
  EXPECT_EQ(out.spec.grace_period, 30 * core::kSecond);
}

TEST(Config, QueueUsersAreInheritedAndAgentHostsMatchNamesOrDomains) {
  auto c = ParseConfig(R"(
agent_hosts: [gpu-1.lab, "*.cluster.local"]
queues:
  - {name: org, run_as: alice}
  - {name: team, parent: org}
  - {name: own, parent: org, run_as: "1001"}
  - {name: solo}
)");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->RunAsOf("team"), "alice");
  EXPECT_EQ(c->RunAsOf("own"), "1001");
  EXPECT_EQ(c->RunAsOf("solo"), "");
  EXPECT_EQ(c->max_log_bytes, 4 << 20);
  EXPECT_TRUE(c->AgentHostAllowed("gpu-1.lab"));
  EXPECT_TRUE(c->AgentHostAllowed("n7.cluster.local"));
  EXPECT_FALSE(c->AgentHostAllowed("cluster.local"));
  EXPECT_FALSE(c->AgentHostAllowed("evil-cluster.local"));
  EXPECT_FALSE(c->AgentHostAllowed("gpu-1.lab.evil"));
}

class ControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_util::FreshTestDir("ctl");
    config_ = *ParseConfig(R"(
queues:
  - {name: prod, quota: [{model: "*", guaranteed: 4}]}
  - {name: batch}
)");
    Open();
  }
  void TearDown() override {
    controller_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Open() {
    controller_.reset();
    store_.reset();
    auto s = store::OpenSqliteStore((dir_ / "db").string());
    ASSERT_TRUE(s.ok());
    store_ = std::move(s).value();
    auto c = Controller::Create(config_, store_.get());
    ASSERT_TRUE(c.ok()) << c.status().message();
    controller_ = std::move(c).value();
  }
  void Register(const std::string& name, int gpus) {
    Json gs = Json::array();
    for (int i = 0; i < gpus; ++i) {
      gs.push_back({{"index", i},
                    {"uuid", name + std::to_string(i)},
                    {"model", "H100"},
                    {"memory_mib", 81920}});
    }
    Json out;
    ApiError e;
    ASSERT_TRUE(controller_->Register({{"name", name},
                                       {"address", "127.0.0.1:1"},
                                       {"cpu_milli", 64000},
                                       {"memory_mib", 262144},
                                       {"gpus", gs}},
                                      out, e))
        << e.message;
  }
  int64_t Submit(const std::string& queue, int gpus, int tasks = 1) {
    Json out;
    ApiError e;
    EXPECT_TRUE(controller_->Submit(
        {{"name", "w"}, {"queue", queue}, {"gpus", gpus}, {"tasks", tasks}, {"command", {"true"}}},
        out, e))
        << e.message;
    return out.value("id", int64_t{-1});
  }
  Json Heartbeat(const std::string& node, Json tasks) {
    Json out;
    ApiError e;
    EXPECT_TRUE(controller_->Heartbeat(node, {{"tasks", tasks}}, out, e)) << e.message;
    return out["desired"];
  }
  Json Get(int64_t id) { return test_util::GetWorkloadOrFail(*controller_, id); }

  std::filesystem::path dir_;
  ServerConfig config_;
  std::unique_ptr<store::StateStore> store_;
  std::unique_ptr<Controller> controller_;
};

TEST_F(ControllerTest, SubmitRunSucceed) {
  Register("n1", 4);
  int64_t id = Submit("batch", 2, 2);
  EXPECT_EQ(Get(id)["state"], "Pending");
  EXPECT_TRUE(Heartbeat("n1", Json::array()).empty()) << "nothing bound before a cycle";
  controller_->Step();
  Json desired = Heartbeat("n1", Json::array());
  ASSERT_EQ(desired.size(), 2u);
  EXPECT_EQ(desired[0]["env"]["WORLD_SIZE"], "2");
  EXPECT_EQ(desired[1]["env"]["RANK"], "1");
  EXPECT_EQ(Get(id)["state"], "Running");
  Json report = Json::array();
  for (const Json& d : desired) {
    report.push_back({{"workload", id},
                      {"task", d["task"]},
                      {"attempt", 0},
                      {"state", "exited"},
                      {"exit_code", 0}});
  }
  EXPECT_TRUE(Heartbeat("n1", report).empty());
  EXPECT_EQ(Get(id)["state"], "Succeeded");
}

// A watch as the HTTP layer holds one: the answer lands in `answer` whenever the controller
// gives it (at once, or later from whichever thread changes the node's list).
struct HeldWatch {
  std::shared_ptr<Json> answer = std::make_shared<Json>();
  std::shared_ptr<int> answers = std::make_shared<int>(0);
  WatchTicket ticket;
  bool answered() const { return *answers > 0; }
};

TEST_F(ControllerTest, WatchAnswersWhenTheNodesListChanges) {
  Register("n1", 4);
  Register("n2", 4);
  ApiError e;
  auto watch = [&](const std::string& node, int64_t epoch, int64_t after, int64_t wait_ms) {
    HeldWatch w;
    EXPECT_TRUE(controller_->WatchDesired(
        node, epoch, after, wait_ms,
        [answer = w.answer, answers = w.answers](Json out) {
          *answer = std::move(out);
          ++*answers;
        },
        w.ticket, e))
        << e.message;
    return w;
  };
  // Another epoch (0: the agent never heard from this server) answers at once.
  HeldWatch first = watch("n1", 0, 0, 60000);
  ASSERT_TRUE(first.answered());
  EXPECT_EQ(first.ticket.id, 0u);
  const int64_t epoch = (*first.answer)["epoch"], v0 = (*first.answer)["version"];
  EXPECT_GT(epoch, 0);
  EXPECT_TRUE((*first.answer)["desired"].empty());
  EXPECT_EQ((*first.answer)["heartbeat_interval_ms"], 500);

  // Nothing changed since v0: the watch is held, no thread waits, and the node counts as
  // alive. Its deadline (the caller's timer) answers it with the same list, once.
  HeldWatch idle = watch("n1", epoch, v0, 60000);
  EXPECT_FALSE(idle.answered());
  EXPECT_NE(idle.ticket.id, 0u);
  EXPECT_EQ(idle.ticket.wait_ms, config_.node_timeout_ms / 2) << "capped at half the timeout";
  EXPECT_EQ(controller_->HeldWatches(), 1);
  controller_->ExpireWatch(idle.ticket);
  ASSERT_TRUE(idle.answered());
  EXPECT_EQ((*idle.answer)["version"], v0) << "timed out with the same list";
  controller_->ExpireWatch(idle.ticket);
  EXPECT_EQ(*idle.answers, 1) << "answered exactly once";
  EXPECT_EQ(controller_->HeldWatches(), 0);

  // A bind changes n1's version once it is committed and published; a watch held on n1
  // is answered by it, one held on n2 is not.
  HeldWatch on_n1 = watch("n1", epoch, v0, 60000);
  HeldWatch on_n2 = watch("n2", epoch, v0, 60000);
  int64_t id = Submit("batch", 4, 1);
  controller_->Step();
  ASSERT_TRUE(on_n1.answered()) << "the bind's publication answers the held watch";
  ASSERT_EQ((*on_n1.answer)["desired"].size(), 1u);
  EXPECT_EQ((*on_n1.answer)["desired"][0]["workload"], id);
  const int64_t v1 = (*on_n1.answer)["version"];
  EXPECT_GT(v1, v0);
  EXPECT_FALSE(on_n2.answered());
  // A watch asked with an out-of-date version answers at once.
  HeldWatch late = watch("n1", epoch, v0, 60000);
  ASSERT_TRUE(late.answered());
  EXPECT_EQ((*late.answer)["version"], v1);

  // A watch held while a cancellation stops the task hears it.
  HeldWatch stop = watch("n1", epoch, v1, 60000);
  EXPECT_FALSE(stop.answered());
  Json cancelled;
  ASSERT_TRUE(controller_->Cancel(id, cancelled, e)) << e.message;
  ASSERT_TRUE(stop.answered());
  EXPECT_GT((*stop.answer)["version"].get<int64_t>(), v1);
  EXPECT_TRUE((*stop.answer)["desired"].empty());

  // The heartbeat answer carries the same epoch and version.
  Json hb;
  ASSERT_TRUE(controller_->Heartbeat("n1", {{"tasks", Json::array()}}, hb, e));
  EXPECT_EQ(hb["epoch"], epoch);
  EXPECT_EQ(hb["version"], (*stop.answer)["version"]);
  HeldWatch unknown;
  EXPECT_FALSE(controller_->WatchDesired(
      "nope", epoch, 0, 10, [](Json) { ADD_FAILURE() << "answered an unknown node"; },
      unknown.ticket, e));
  EXPECT_EQ(e.code, 404);

  // Shutdown answers every held watch (n2's still waits) and any later one at once.
  controller_->Shutdown();
  EXPECT_TRUE(on_n2.answered());
  EXPECT_TRUE(watch("n2", epoch, v0, 60000).answered());
  EXPECT_EQ(controller_->HeldWatches(), 0);
}

// Heartbeats scale with the cluster (docs/operations.md, "Sizing"): the interval keeps the
// periodic heartbeats at max_heartbeats_per_second, and the node timeout follows it.
TEST_F(ControllerTest, HeartbeatIntervalGrowsWithTheCluster) {
  config_.max_heartbeats_per_second = 4;
  config_.heartbeat_interval_ms = 500;
  config_.node_timeout_ms = 2000;
  Open();
  struct Case {
    int nodes;
    int64_t interval_ms, timeout_ms;
  };
  // 2 nodes at 4/s: 500 ms suffices; 3 nodes: 750 ms; 8 nodes: 2 s, timeout 2 s + 3 * 1.5 s.
  const Case steps[] = {{1, 500, 2000}, {2, 500, 2000}, {3, 750, 2750}, {8, 2000, 6500}};
  int registered = 0;
  for (const Case& st : steps) {
    while (registered < st.nodes) Register("n" + std::to_string(++registered), 1);
    EXPECT_EQ(controller_->HeartbeatIntervalMs(), st.interval_ms) << st.nodes << " nodes";
    EXPECT_EQ(controller_->NodeTimeoutMs(), st.timeout_ms) << st.nodes << " nodes";
  }
  // Agents hear the interval in the registration answer and in every heartbeat answer.
  Json out, hb;
  ApiError e;
  const Json gpus = {{{"index", 0}, {"uuid", "n10"}, {"model", "H100"}, {"memory_mib", 81920}}};
  ASSERT_TRUE(controller_->Register({{"name", "n1"}, {"gpus", gpus}}, out, e)) << e.message;
  EXPECT_EQ(out["heartbeat_interval_ms"], 2000);
  ASSERT_TRUE(controller_->Heartbeat("n1", {{"tasks", Json::array()}}, hb, e));
  EXPECT_EQ(hb["heartbeat_interval_ms"], 2000);
}

TEST_F(ControllerTest, ExitsAndSubmissionsWakeTheCycleAndUsageIsKept) {
  Register("n1", 4);
  controller_->WaitForWork(0);  // takes the registration's wake-up
  const auto t0 = std::chrono::steady_clock::now();
  int64_t id = Submit("batch", 1, 1);
  controller_->WaitForWork(60000);  // returns at once: the submission asked for a cycle
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  controller_->Step();
  ASSERT_EQ(Heartbeat("n1", Json::array()).size(), 1u);
  Heartbeat("n1", {{{"workload", id},
                    {"task", 0},
                    {"attempt", 0},
                    {"state", "exited"},
                    {"exit_code", 0},
                    {"cpu_user_ms", 12},
                    {"cpu_system_ms", 3},
                    {"max_rss_kib", 4096}}});
  controller_->WaitForWork(60000);  // the exit asked for one too
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  const Json task = Get(id)["tasks"][0];
  EXPECT_EQ(task["cpu_user_ms"], 12);
  EXPECT_EQ(task["cpu_system_ms"], 3);
  EXPECT_EQ(task["max_rss_kib"], 4096);
}

TEST_F(ControllerTest, QueueTreeIsCheckedAndShowsCpuAndMemoryQuotas) {
  // A child may not be guaranteed more than its parent: the engine refuses the config.
  config_ = *ParseConfig(R"(
queues:
  - {name: org, quota: [{model: "*", guaranteed: 2}]}
  - {name: team, parent: org, quota: [{model: "*", guaranteed: 3}]}
)");
  auto bad = Controller::Create(config_, store_.get());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "config: queues.team: queue.quota.guaranteed: children of \"org\" guarantee 3 GPUs "
            "of model 0, more than its 2 GPUs");
  // The tree of docs/operations.md is accepted.
  config_ = *ParseConfig(R"(
queues:
  - name: org
    quota: [{model: "*", guaranteed: 16, limit: 64}]
    cpu_quota: {limit_milli: 512000}
  - name: research
    parent: org
    weight: 2
    quota: [{model: H100-80GB, guaranteed: 16, limit: 32}]
    memory_quota: {guaranteed_mib: 1048576, limit_mib: 2097152}
)");
  Open();
  config_ = *ParseConfig(R"(
queues:
  - {name: org, cpu_quota: {limit_milli: 8000}}
  - {name: team, parent: org, memory_quota: {guaranteed_mib: 2048, limit_mib: 4096}}
)");
  Open();
  Register("n1", 4);
  Json out;
  ApiError e;
  EXPECT_TRUE(controller_->Submit({{"name", "w"},
                                   {"queue", "team"},
                                   {"gpus", 1},
                                   {"cpu_milli", 3000},
                                   {"memory_mib", 1024},
                                   {"command", {"true"}}},
                                  out, e))
      << e.message;
  controller_->Step();
  Json team, org;
  ASSERT_TRUE(controller_->GetQueue("team", team, e));
  ASSERT_TRUE(controller_->GetQueue("org", org, e));
  EXPECT_EQ(team["memory_quota"],
            Json({{"guaranteed_mib", 2048}, {"limit_mib", 4096}, {"used_mib", 1024}}));
  EXPECT_EQ(team["cpu_quota"],
            Json({{"guaranteed_milli", nullptr}, {"limit_milli", nullptr}, {"used_milli", 3000}}));
  EXPECT_EQ(org["cpu_quota"],
            Json({{"guaranteed_milli", nullptr}, {"limit_milli", 8000}, {"used_milli", 3000}}));
}

TEST_F(ControllerTest, FailedTaskFailsTheWorkloadAndStopsTheRest) {
  Register("n1", 4);
  int64_t id = Submit("batch", 1, 2);
  controller_->Step();
  Json desired = Heartbeat("n1", Json::array());
  ASSERT_EQ(desired.size(), 2u);
  desired = Heartbeat(
      "n1", {{{"workload", id}, {"task", 0}, {"attempt", 0}, {"state", "exited"}, {"exit_code", 3}},
             {{"workload", id}, {"task", 1}, {"attempt", 0}, {"state", "running"}}});
  EXPECT_TRUE(desired.empty()) << "the surviving task is no longer desired";
  Heartbeat(
      "n1",
      {{{"workload", id}, {"task", 1}, {"attempt", 0}, {"state", "exited"}, {"exit_code", 143}}});
  EXPECT_EQ(Get(id)["state"], "Failed");
}

TEST_F(ControllerTest, ReclaimEvictsTheBorrowerWhichIsRequeued) {
  Register("n1", 4);
  int64_t borrower = Submit("batch", 4);
  controller_->Step();
  ASSERT_EQ(Heartbeat("n1", Json::array()).size(), 1u);
  int64_t owner = Submit("prod", 4);
  controller_->Step();
  EXPECT_EQ(Get(borrower)["state"], "Preempted");
  EXPECT_EQ(Get(owner)["reason"], "Preempting");
  EXPECT_TRUE(Heartbeat("n1", Json::array()).empty()) << "the borrower is told to stop";
  Heartbeat("n1", {{{"workload", borrower},
                    {"task", 0},
                    {"attempt", 0},
                    {"state", "exited"},
                    {"exit_code", 143}}});
  EXPECT_EQ(Get(borrower)["state"], "Pending");
  EXPECT_EQ(Get(borrower)["attempt"], 1);
  controller_->Step();
  Json desired = Heartbeat("n1", Json::array());
  ASSERT_EQ(desired.size(), 1u);
  EXPECT_EQ(desired[0]["workload"], owner);
}

// A tenant never sees another queue's workload ids (docs/security.md): the eviction event
// names its preemptor only to callers who read the preemptor's queue.
TEST_F(ControllerTest, AnEvictionNamesItsPreemptorOnlyToWhoMaySeeIt) {
  Register("n1", 4);
  int64_t borrower = Submit("batch", 4);
  controller_->Step();
  ASSERT_EQ(Heartbeat("n1", Json::array()).size(), 1u);
  int64_t owner = Submit("prod", 4);
  controller_->Step();
  ASSERT_EQ(Get(borrower)["state"], "Preempted");
  const std::string id = "preempted by " + std::to_string(owner) + ":";
  auto evicted = [](const Json& w) {
    for (const Json& e : w["events"]) {
      if (e["type"] == "Evicted") return e["message"].get<std::string>();
    }
    return std::string();
  };
  EXPECT_NE(evicted(Get(borrower)).find(id), std::string::npos) << "all-seeing callers";
  Access batch_only;
  batch_only.reads = [](const std::string& q) { return q == "batch"; };
  Json w;
  ApiError e;
  ASSERT_TRUE(controller_->GetWorkload(borrower, w, e, batch_only));
  EXPECT_EQ(evicted(w).find(id), std::string::npos) << evicted(w);
  EXPECT_NE(evicted(w).find("a workload of another queue"), std::string::npos) << evicted(w);
  EXPECT_FALSE(controller_->GetWorkload(owner, w, e, batch_only));
  EXPECT_EQ(e.code, 404);
  Json list = controller_->ListWorkloads("", "", "", batch_only);
  ASSERT_EQ(list["workloads"].size(), 1u);
  EXPECT_EQ(list["workloads"][0]["id"], borrower);
}

// Milliseconds since the epoch of an API timestamp ("2026-11-24T14:00:00.000Z").
int64_t EpochMs(const Json& iso) {
  std::tm tm{};
  int ms = 0;
  EXPECT_EQ(std::sscanf(iso.get<std::string>().c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year,
                        &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms),
            7)
      << iso;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return int64_t{timegm(&tm)} * 1000 + ms;
}

TEST_F(ControllerTest, PendingWorkShowsWhenItShouldStartAndWhatItWaitsFor) {
  Register("n1", 4);
  auto submit = [&](const std::string& name, int64_t runtime_s) {
    Json out;
    ApiError e;
    EXPECT_TRUE(controller_->Submit({{"name", name},
                                     {"queue", "batch"},
                                     {"gpus", 4},
                                     {"runtime_estimate_s", runtime_s},
                                     {"command", {"true"}}},
                                    out, e))
        << e.message;
    return out.value("id", int64_t{-1});
  };
  const int64_t a = submit("first", 3600);
  controller_->Step();
  const int64_t b = submit("second", 0);
  const int64_t c = submit("third", 0);
  EXPECT_TRUE(Get(b)["estimated_start"].is_null()) << "no estimate before a cycle";
  controller_->Step();
  const Json first = Get(a), second = Get(b), third = Get(c);
  ASSERT_EQ(first["state"], "Running");
  EXPECT_FALSE(first.contains("estimated_start")) << "only pending work has one";
  // The second reserves the node and starts when the first's hour is up.
  EXPECT_EQ(second["reason"], "Reserved");
  ASSERT_TRUE(second["estimated_start"].is_string()) << second.dump();
  EXPECT_EQ(EpochMs(second["estimated_start"]), EpochMs(first["started_at"]) + 3600 * 1000);
  EXPECT_EQ(second["waiting_for"], (Json{{"id", a}, {"name", "first"}}));
  // The third comes after the second, whose runtime is unknown: no estimate.
  EXPECT_TRUE(third["estimated_start"].is_null()) << third.dump();
  EXPECT_TRUE(third["waiting_for"].is_null());
  Json list = controller_->ListWorkloads("", "Pending", "");
  ASSERT_EQ(list["workloads"].size(), 2u);
  EXPECT_EQ(list["workloads"][0]["estimated_start"], second["estimated_start"]);
}

TEST_F(ControllerTest, RestartKeepsSubmissionsAndAdoptsRunningWork) {
  Register("n1", 4);
  int64_t a = Submit("batch", 2);
  int64_t b = Submit("batch", 4);
  controller_->Step();
  ASSERT_EQ(Heartbeat("n1", Json::array()).size(), 1u);
  Open();  // a new controller over the same store
  EXPECT_EQ(Get(a)["state"], "Running");
  EXPECT_EQ(Get(b)["state"], "Pending");
  Json desired = Heartbeat(
      "n1", {{{"workload", a}, {"task", 0}, {"attempt", 0}, {"state", "running"}, {"pid", 42}}});
  ASSERT_EQ(desired.size(), 1u) << "the same attempt: the agent does not start it again";
  EXPECT_EQ(desired[0]["attempt"], 0);
  controller_->Step();
  EXPECT_EQ(Get(b)["state"], "Pending") << "the adopted task still holds its GPUs";
  EXPECT_EQ(Get(b)["reason"], "Reserved");
}

TEST_F(ControllerTest, BadSubmissionsLeaveTheStoreUnchanged) {
  Submit("batch", 1);
  Json out;
  ApiError e;
  EXPECT_FALSE(controller_->Submit(
      {{"name", "x"}, {"queue", "batch"}, {"gpus", 99}, {"command", {"true"}}}, out, e));
  EXPECT_EQ(e.field, "gpus");
  EXPECT_FALSE(controller_->Submit(Json::array(), out, e));
  auto stored = store_->LoadWorkloads();
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->size(), 1u);
  EXPECT_FALSE(controller_->Cancel(99, out, e));
  EXPECT_EQ(e.code, 404);
}

TEST_F(ControllerTest, SilentNodeGoesDownAndItsGangIsRequeued) {
  config_.node_timeout_ms = 500;
  Open();
  Register("n1", 4);
  Register("n2", 4);
  int64_t gang = Submit("batch", 4, 2);
  controller_->Step();
  ASSERT_EQ(Get(gang)["state"], "Running");
  // n2 falls silent for longer than the timeout; n1 keeps its heartbeat.
  usleep(600 * 1000);
  Heartbeat("n1", Json::array());
  controller_->Step();
  Json w = Get(gang);
  EXPECT_EQ(w["state"], "Preempted") << "the surviving task is stopped: gangs go as a whole";
  EXPECT_TRUE(Heartbeat("n1", Json::array()).empty());
  int32_t survivor = -1;
  for (const Json& t : w["tasks"]) {
    if (t["node"] == "n1") survivor = t["task"].get<int32_t>();
  }
  ASSERT_GE(survivor, 0);
  Heartbeat("n1", {{{"workload", gang},
                    {"task", survivor},
                    {"attempt", 0},
                    {"state", "exited"},
                    {"exit_code", 143}}});
  EXPECT_EQ(Get(gang)["state"], "Pending");
  EXPECT_EQ(Get(gang)["attempt"], 1);
  Json nodes = controller_->ListNodes();
  for (const Json& n : nodes["nodes"]) {
    EXPECT_EQ(n["status"], n["name"] == "n2" ? "Down" : "Ready");
  }
}

// Steps scan the nodes for timeouts only once one may be due: the earliest deadline of the
// last scan, and at the latest one timeout after it. Here every node holds its watch
// through the first scan, so none had a deadline then; a node that drops its watch later
// must still time out (without the "at the latest" bound no scan would ever come again),
// while one whose watch stays held is never Down.
TEST_F(ControllerTest, ANodeThatDropsItsWatchLaterStillTimesOut) {
  config_.node_timeout_ms = 1000;
  Open();
  Register("n1", 4);
  Register("n2", 4);
  ApiError e;
  WatchTicket n1_watch, n2_watch;
  for (auto [node, ticket] : {std::pair{"n1", &n1_watch}, std::pair{"n2", &n2_watch}}) {
    ASSERT_TRUE(controller_->WatchDesired(
        node, controller_->epoch(), 1, 60000, [](Json) {}, *ticket, e))
        << e.message;
    ASSERT_GT(ticket->id, 0u) << node << "'s watch is held";
  }
  auto status = [&](const std::string& name) {
    const Json nodes = controller_->ListNodes();
    for (const Json& n : nodes["nodes"]) {
      if (n["name"] == name) return n["status"].get<std::string>();
    }
    return std::string("missing");
  };
  controller_->Step();  // the first scan: both hold watches, no deadline
  for (int i = 0; i < 5; ++i) {
    usleep(150 * 1000);
    controller_->Step();
  }
  EXPECT_EQ(status("n1"), "Ready");
  controller_->CancelWatch(n1_watch);  // its client went away: heard from until now
  for (int i = 0; i < 9; ++i) {
    usleep(150 * 1000);
    controller_->Step();
  }
  EXPECT_EQ(status("n1"), "Down") << "1350 ms silent without a watch, timeout 1000 ms";
  EXPECT_EQ(status("n2"), "Ready") << "its watch is still held";
  controller_->CancelWatch(n2_watch);
}

// GET /v1/nodes?limit=N&after=NAME: pages in name order, with a summary of all nodes.
TEST_F(ControllerTest, NodeListPagesWithASummaryOfAllNodes) {
  for (const char* name : {"n3", "n1", "n5", "n2", "n4"}) Register(name, 2);
  Register("cpu", 0);
  Json out;
  ApiError e;
  ASSERT_TRUE(controller_->SetDrain("n5", true, out, e)) << e.message;
  EXPECT_EQ(controller_->ListNodes()["nodes"].size(), 6u);
  EXPECT_FALSE(controller_->ListNodes().contains("summary")) << "the unpaged answer is as before";

  std::vector<std::string> seen;
  std::string after;
  int pages = 0;
  while (true) {
    Json page = controller_->ListNodes(4, after);
    ++pages;
    for (const Json& n : page["nodes"]) seen.push_back(n["name"]);
    const Json& summary = page["summary"];
    EXPECT_EQ(summary["nodes"], 6);
    EXPECT_EQ(summary["gpus"], 10);
    ASSERT_EQ(summary["groups"].size(), 3u) << summary.dump();
    EXPECT_EQ(summary["groups"][0], (Json{{"status", "Draining"},
                                          {"model", "H100"},
                                          {"nodes", 1},
                                          {"gpus", 2},
                                          {"gpus_used_milli", 0}}));
    EXPECT_EQ(summary["groups"][1]["model"], "");  // the node without GPUs
    EXPECT_EQ(summary["groups"][2]["nodes"], 4);
    if (!page.contains("continue")) break;
    after = page["continue"];
    EXPECT_EQ(after, seen.back());
  }
  EXPECT_EQ(pages, 2);
  EXPECT_EQ(seen, (std::vector<std::string>{"cpu", "n1", "n2", "n3", "n4", "n5"}));
  EXPECT_TRUE(controller_->ListNodes(10, "n5")["nodes"].empty());
}

// The dashboard's figures: pending workloads by reason per queue, and per GPU model the
// idle-while-waiting and fragmentation gauges in the node list's summary.
TEST_F(ControllerTest, QueuesCountPendingByReasonAndTheNodeSummaryHasTheModelGauges) {
  Register("n1", 4);
  EXPECT_EQ(controller_->ListNodes(10)["summary"]["models"], Json::array()) << "no cycle yet";
  const int64_t running = Submit("batch", 2);
  const int64_t waiting = Submit("batch", 4);
  Json q;
  ApiError e;
  ASSERT_TRUE(controller_->GetQueue("batch", q, e));
  EXPECT_EQ(q["pending_by_reason"], (Json{{"Queued", 2}})) << "before the first cycle";
  controller_->Step();
  ASSERT_EQ(Get(running)["state"], "Running");
  const std::string reason = Get(waiting).value("reason", "");
  ASSERT_TRUE(controller_->GetQueue("batch", q, e));
  EXPECT_EQ(q["pending_by_reason"], (Json{{reason, 1}}));
  ASSERT_TRUE(controller_->GetQueue("prod", q, e));
  EXPECT_EQ(q["pending_by_reason"], Json::object());
  const Json models = controller_->ListNodes(10)["summary"]["models"];
  ASSERT_EQ(models.size(), 1u) << models.dump();
  EXPECT_EQ(models[0]["model"], "H100");
  EXPECT_EQ(models[0]["gpus_idle_while_waiting"], 0) << "the 2 free GPUs fit no pending task";
  EXPECT_TRUE(models[0]["fragmented_gpus"].is_number()) << models.dump();
  EXPECT_FALSE(controller_->ListNodes().contains("summary"));
}

// GET /v1/workloads?limit=N&continue=ID: pages in id order, of what the caller reads only,
// and the cursor never names a workload the caller may not see.
TEST_F(ControllerTest, WorkloadListPagesOfWhatTheCallerReads) {
  std::vector<int64_t> prod, all;
  for (int k = 0; k < 7; ++k) {
    all.push_back(Submit(k % 2 == 0 ? "prod" : "batch", 1));
    if (k % 2 == 0) prod.push_back(all.back());
  }
  EXPECT_FALSE(controller_->ListWorkloads("", "", "").contains("continue"));
  EXPECT_EQ(controller_->ListWorkloads("", "", "")["workloads"].size(), 7u);

  Access tenant;
  tenant.reads = [](const std::string& q) { return q == "prod"; };
  auto collect = [&](const Access& access, int64_t limit, int* pages) {
    std::vector<int64_t> seen;
    int64_t after = 0;
    for (*pages = 1;; ++*pages) {
      Json page = controller_->ListWorkloads("", "", "", access, limit, after);
      EXPECT_LE(page["workloads"].size(), static_cast<size_t>(limit));
      for (const Json& w : page["workloads"]) seen.push_back(w["id"]);
      if (!page.contains("continue")) break;
      after = std::stoll(page["continue"].get<std::string>());
      EXPECT_TRUE(std::find(seen.begin(), seen.end(), after) != seen.end())
          << "the cursor is a workload of this page";
    }
    return seen;
  };
  int pages = 0;
  EXPECT_EQ(collect({}, 3, &pages), all);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(collect(tenant, 2, &pages), prod);
  EXPECT_EQ(pages, 2);
  EXPECT_EQ(collect({}, 7, &pages), all);
  EXPECT_EQ(pages, 1);
  EXPECT_TRUE(controller_->ListWorkloads("", "", "", {}, 5, all.back())["workloads"].empty());
}

// Lists read the records 1,024 at a time under the lock: across several chunks, an
// unlimited list still has every match once, in id order, and pages that straddle a chunk
// boundary still fill and name their last workload.
TEST_F(ControllerTest, WorkloadListsSpanningSeveralLockChunks) {
  constexpr int kCount = 2600;  // over two chunks and a half
  std::mutex mu;
  std::condition_variable cv;
  int answered = 0;
  std::vector<int64_t> prod;
  for (int k = 0; k < kCount; ++k) {
    // Submitted without waiting for each commit, so that they share commits.
    controller_->SubmitAsync({{"name", "w"},
                              {"queue", k % 3 == 0 ? "prod" : "batch"},
                              {"gpus", 1},
                              {"command", {"true"}}},
                             [&](bool ok, Json, ApiError e) {
                               EXPECT_TRUE(ok) << e.message;
                               std::lock_guard<std::mutex> lock(mu);
                               ++answered;
                               cv.notify_all();
                             });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return answered == kCount; });
  }
  Json all = controller_->ListWorkloads("", "", "");
  ASSERT_EQ(all["workloads"].size(), static_cast<size_t>(kCount));
  EXPECT_FALSE(all.contains("continue"));
  for (int k = 0; k < kCount; ++k) {
    ASSERT_EQ(all["workloads"][k]["id"], k + 1) << "every workload once, in id order";
    if (all["workloads"][k]["queue"] == "prod") prod.push_back(k + 1);
  }
  Json only_prod = controller_->ListWorkloads("prod", "", "");
  ASSERT_EQ(only_prod["workloads"].size(), prod.size());
  EXPECT_EQ(only_prod["workloads"].back()["id"], prod.back());
  // A page of 600 prod workloads looks at about 1,800 records: two chunks.
  Json page = controller_->ListWorkloads("prod", "", "", {}, 600, 0);
  ASSERT_EQ(page["workloads"].size(), 600u);
  EXPECT_EQ(page["continue"], std::to_string(prod[599])) << "the last workload it listed";
  Json rest = controller_->ListWorkloads("prod", "", "", {}, 1000, prod[599]);
  EXPECT_EQ(rest["workloads"].size(), prod.size() - 600);
  EXPECT_EQ(rest["workloads"][0]["id"], prod[600]);
  EXPECT_FALSE(rest.contains("continue"));
}

// The fragmentation-aware policy works with the live task mix (TaskMix), not its fixed
// default: recent submissions first, then running tasks, and again after a restart.
TEST_F(ControllerTest, PolicyLearnsTheLiveTaskMix) {
  EXPECT_EQ(controller_->TypicalTasks().size(), 7u) << "gpuorch's default mix before any work";
  Register("n1", 8);
  for (int k = 0; k < 3; ++k) Submit("batch", 1);
  Submit("batch", 2);
  controller_->Step();
  auto typical = controller_->TypicalTasks();
  ASSERT_EQ(typical.size(), 2u);
  EXPECT_EQ(typical[0].task.gpu_count, 1);
  EXPECT_EQ(typical[1].task.gpu_count, 2);
  // Three 1-GPU submissions to one 2-GPU, the older ones decayed a little: about 3:1.
  EXPECT_NEAR(typical[0].weight, 0.75, 0.02);

  // Eight 4-GPU submissions move the mix: it now holds them, weighted by the recent half.
  for (int k = 0; k < 8; ++k) Submit("batch", 4);
  controller_->Step();
  typical = controller_->TypicalTasks();
  ASSERT_EQ(typical.size(), 3u);
  double four = 0;
  for (const sched::TypicalTask& t : typical) four += t.task.gpu_count == 4 ? t.weight : 0;
  EXPECT_GT(four, 0.3);

  // After a restart the running tasks alone make the mix (submissions are not replayed):
  // the three 1-GPU tasks and the 2-GPU one that fit the node, 3:1.
  Open();
  controller_->Step();
  typical = controller_->TypicalTasks();
  ASSERT_EQ(typical.size(), 2u);
  EXPECT_EQ(typical[0].task.gpu_count, 1);
  EXPECT_DOUBLE_EQ(typical[0].weight, 0.75);
}

// Holds the first cycle of the next Step on a latch: the test runs API calls while the
// cycle is under way, then lets it finish. Deterministic: no call below may wait for the
// cycle, or it waits for ever (reported after a minute, then released so the test ends).
class CycleLatch {
 public:
  explicit CycleLatch(Controller& c) : c_(c) {
    c_.SetCycleHookForTesting([this] {
      if (used_) return;
      used_ = true;
      entered_.set_value();
      release_.get_future().wait();
    });
    step_ = std::thread([this] { c_.Step(); });
    entered_.get_future().wait();
  }
  // Runs `calls` in another thread while the cycle is held; true if they all returned.
  bool WhileHeld(const std::function<void()>& calls) {
    auto done = std::async(std::launch::async, calls);
    bool returned = done.wait_for(std::chrono::seconds(60)) == std::future_status::ready;
    Release();
    done.wait();
    return returned;
  }
  void Release() {
    if (released_) return;
    released_ = true;
    release_.set_value();
    step_.join();
  }
  ~CycleLatch() {
    Release();
    c_.SetCycleHookForTesting(nullptr);
  }

 private:
  Controller& c_;
  bool used_ = false, released_ = false;
  std::promise<void> entered_, release_;
  std::thread step_;
};

TEST_F(ControllerTest, ApiAnswersWhileACycleRuns) {
  Register("n1", 4);
  int64_t a = Submit("batch", 1);
  int64_t b = -1, c = -1;
  {
    CycleLatch latch(*controller_);
    ASSERT_TRUE(latch.WhileHeld([&] {
      b = Submit("batch", 2);
      c = Submit("batch", 1);
      EXPECT_EQ(Get(a)["state"], "Pending") << "the held cycle's bind is not applied yet";
      EXPECT_EQ(Get(b)["state"], "Pending");
      Json out;
      ApiError e;
      EXPECT_TRUE(controller_->Cancel(c, out, e)) << e.message;
      EXPECT_EQ(out["state"], "Cancelled");
      EXPECT_EQ(controller_->ListWorkloads("", "", "")["workloads"].size(), 3u);
      EXPECT_EQ(controller_->ListQueues()["queues"].size(), 2u);
      EXPECT_EQ(controller_->ListNodes()["nodes"].size(), 1u);
      EXPECT_NE(controller_->Metrics().find("gpuorch_cycle_seconds"), std::string::npos);
      EXPECT_TRUE(Heartbeat("n1", Json::array()).empty());
      Register("n2", 4);
    })) << "an API call waited for the cycle";
  }
  EXPECT_EQ(Get(a)["state"], "Running") << "the held cycle bound what it had";
  EXPECT_EQ(Get(b)["state"], "Pending") << "submitted during it: the next cycle's";
  controller_->Step();
  EXPECT_EQ(Get(b)["state"], "Running");
  EXPECT_EQ(Get(c)["state"], "Cancelled");
  Json q;
  ApiError e;
  ASSERT_TRUE(controller_->GetQueue("batch", q, e));
  EXPECT_EQ(q["quota"][0]["used_milli"], 3000) << "usage from the snapshot of the last cycle";
  EXPECT_EQ(q["running"], 2);
}

// What changed during a cycle wins over the plan made without it: a cancelled workload is
// not bound, a finished one not evicted, and the engine releases what it planned for them.
TEST_F(ControllerTest, ChangesDuringACycleWinOverItsPlan) {
  Register("n1", 4);
  int64_t borrower = Submit("batch", 4);
  controller_->Step();
  ASSERT_EQ(Get(borrower)["state"], "Running");
  ASSERT_EQ(Heartbeat("n1", Json::array()).size(), 1u);
  // The held cycle evicts the borrower for prod's guarantee; meanwhile the borrower ends on
  // its own and the prod workload is cancelled.
  int64_t owner = Submit("prod", 4);
  {
    CycleLatch latch(*controller_);
    ASSERT_TRUE(latch.WhileHeld([&] {
      Heartbeat("n1", {{{"workload", borrower},
                        {"task", 0},
                        {"attempt", 0},
                        {"state", "exited"},
                        {"exit_code", 0}}});
      EXPECT_EQ(Get(borrower)["state"], "Succeeded") << "an exit is answered at once";
      Json out;
      ApiError e;
      EXPECT_TRUE(controller_->Cancel(owner, out, e)) << e.message;
    }));
  }
  EXPECT_EQ(Get(borrower)["state"], "Succeeded") << "the held cycle's eviction is dropped";
  EXPECT_EQ(Get(owner)["state"], "Cancelled");
  EXPECT_TRUE(Get(owner)["tasks"].empty());
  // The engine forgot both: the whole node binds the next 4-GPU workload.
  int64_t next = Submit("batch", 4);
  controller_->Step();
  EXPECT_EQ(Get(next)["state"], "Running");
  Json desired = Heartbeat("n1", Json::array());
  ASSERT_EQ(desired.size(), 1u);
  EXPECT_EQ(desired[0]["workload"], next);
}

// The API validates a submission with the engine's own checks and answers at once; what only
// the engine can refuse (here an id beyond its 32-bit range) fails the workload, durably,
// with the engine's reason.
TEST_F(ControllerTest, WhatOnlyTheEngineRefusesFailsTheWorkload) {
  const int64_t last = int64_t{core::WorkloadId::kInvalid} - 1;
  store::Batch seed;
  seed.workloads.push_back(store::StoredWorkload{
      last, "Succeeded", R"({"name": "old", "queue": "batch", "gpus": 1, "command": ["true"]})",
      R"({"state": "Succeeded"})"});
  ASSERT_TRUE(store_->Commit(seed).ok());
  Open();
  int64_t id = Submit("batch", 1);
  ASSERT_EQ(id, last + 1);
  EXPECT_EQ(Get(id)["state"], "Pending");
  controller_->Step();
  auto check = [&] {
    Json w = Get(id);
    EXPECT_EQ(w["state"], "Failed");
    ASSERT_FALSE(w["events"].empty());
    EXPECT_EQ(w["events"].back()["message"], "refused by the scheduler: workload.id: out of range")
        << w.dump();
  };
  check();
  Open();
  check();
}

TEST_F(ControllerTest, ReRegistrationMayNotShrinkANodeBelowItsAllocation) {
  Register("n1", 4);
  Submit("batch", 4);
  controller_->Step();
  Json out;
  ApiError e;
  EXPECT_FALSE(
      controller_->Register({{"name", "n1"},
                             {"cpu_milli", 64000},
                             {"memory_mib", 262144},
                             {"gpus", {{{"index", 0}, {"model", "H100"}, {"memory_mib", 81920}}}}},
                            out, e));
  EXPECT_EQ(e.code, 409);
  EXPECT_EQ(e.field, "gpus");
  EXPECT_EQ(e.message, "gpus: node n1: GPUs change while GPUs are in use");
}

// The server fetches logs only from the node that registered (SSRF), with its agent's
// secret, which is never shown; tasks carry their queue's user and their requests.
TEST_F(ControllerTest, LogsComeFromTheRegisteredNodeAndTasksCarryTheirQueueUser) {
  config_ = *ParseConfig(R"(
agent_hosts: ["*.cluster.local"]
queues:
  - {name: prod, run_as: alice}
  - {name: batch}
)");
  Open();
  const std::string secret(64, 'a');
  auto reg = [&](const std::string& name, const std::string& address, const std::string& peer,
                 const std::string& log_secret, ApiError& e) {
    Json out;
    return controller_->Register({{"name", name},
                                  {"address", address},
                                  {"log_secret", log_secret},
                                  {"cpu_milli", 64000},
                                  {"memory_mib", 262144},
                                  {"gpus", {{{"index", 0}, {"model", "H100"}}}}},
                                 out, e, "", {}, peer);
  };
  ApiError e;
  // Any host but its own (or an allowed name) is replaced by the address it connected from.
  ASSERT_TRUE(reg("n1", "metadata.internal:80", "10.0.0.7", secret, e)) << e.message;
  ASSERT_TRUE(reg("n2", "gpu-2.cluster.local:7481", "10.0.0.8", secret, e)) << e.message;
  ASSERT_TRUE(reg("n3", "[::1]:99", "::1", secret, e)) << e.message;
  ASSERT_TRUE(reg("n4", "0.0.0.0:7481", "fe80::1", secret, e)) << e.message;
  EXPECT_FALSE(reg("n5", "h:0", "10.0.0.9", secret, e));
  EXPECT_EQ(e.field, "address");
  EXPECT_FALSE(reg("n5", "h:1", "10.0.0.9", "not-hex", e));
  EXPECT_EQ(e.field, "log_secret");
  const std::map<std::string, std::string> want = {{"n1", "10.0.0.7:80"},
                                                   {"n2", "gpu-2.cluster.local:7481"},
                                                   {"n3", "[::1]:99"},
                                                   {"n4", "[fe80::1]:7481"}};
  const Json nodes = controller_->ListNodes(0, "");
  EXPECT_EQ(nodes.dump().find(secret), std::string::npos) << "the log secret is never shown";
  for (const Json& n : nodes["nodes"]) {
    EXPECT_EQ(n["address"], want.at(n["name"].get<std::string>())) << n.dump();
  }
  const int64_t prod = Submit("prod", 1);
  const int64_t batch = Submit("batch", 1);
  controller_->Step();
  std::string address, path, got_secret;
  ASSERT_TRUE(controller_->LogTarget(prod, 0, address, path, got_secret, e)) << e.message;
  EXPECT_EQ(address, want.at(Get(prod)["tasks"][0]["node"].get<std::string>()));
  EXPECT_EQ(path, "/v1/tasks/" + std::to_string(prod) + "/0/0/logs");
  EXPECT_EQ(got_secret, secret);
  // Desired entries carry the queue's user and the task's requests.
  std::map<int64_t, Json> desired;
  for (const char* n : {"n1", "n2", "n3", "n4"}) {
    for (const Json& d : Heartbeat(n, Json::array())) desired[d["workload"].get<int64_t>()] = d;
  }
  ASSERT_EQ(desired.size(), 2u);
  EXPECT_EQ(desired[prod]["run_as"], "alice");
  EXPECT_EQ(desired[batch]["run_as"], "");
  EXPECT_TRUE(desired[prod].contains("cpu_milli"));
  EXPECT_TRUE(desired[prod].contains("memory_mib"));
  // The cgroup's peak memory reported with the exit is kept and shown.
  const std::string node = Get(batch)["tasks"][0]["node"];
  Heartbeat(node, Json::array({{{"workload", batch},
                                {"task", 0},
                                {"attempt", 0},
                                {"state", "exited"},
                                {"exit_code", 0},
                                {"memory_peak_kib", 4096}}}));
  EXPECT_EQ(Get(batch)["tasks"][0]["memory_peak_kib"], 4096);
  // A restart keeps addresses and secrets (the stored registration is trusted as it is).
  controller_->Flush();
  Open();
  ASSERT_TRUE(controller_->LogTarget(prod, 0, address, path, got_secret, e)) << e.message;
  EXPECT_EQ(got_secret, secret);
  EXPECT_EQ(Get(batch)["tasks"][0]["memory_peak_kib"], 4096);
}

// API threads, an agent and the cycle loop race freely; once they stop and the remaining work
// is run to its end, every workload is finished and the engine holds nothing: whatever the
// interleaving, no event is lost between the records and the engine.
TEST_F(ControllerTest, RacingApiAgentAndCyclesLeaveRecordsAndEngineInLine) {
  for (int i = 0; i < 4; ++i) Register("n" + std::to_string(i), 4);
  std::atomic<bool> stop{false};
  std::thread loop([&] {
    while (!stop) {
      controller_->Step();
      controller_->WaitForWork(5);
    }
  });
  // The agent: reports desired tasks running, then exited (some failing), and stops the
  // ones no longer desired (exit 143), as a real agent does.
  using TaskKey = std::tuple<int64_t, int32_t, int32_t>;  // workload, task, attempt
  std::map<std::string, std::set<TaskKey>> started;
  auto agent_pass = [&](int round) {
    for (int i = 0; i < 4; ++i) {
      const std::string node = "n" + std::to_string(i);
      Json report = Json::array();
      std::set<TaskKey> desired, running;
      for (const Json& d : Heartbeat(node, Json::array())) {
        const TaskKey key{d["workload"].get<int64_t>(), d["task"].get<int32_t>(),
                          d["attempt"].get<int32_t>()};
        desired.insert(key);
        const bool exits = (round + std::get<1>(key)) % 3 != 0;
        if (!exits) running.insert(key);
        report.push_back({{"workload", std::get<0>(key)},
                          {"task", std::get<1>(key)},
                          {"attempt", std::get<2>(key)},
                          {"state", exits ? "exited" : "running"},
                          {"exit_code", round % 5 == 0 ? 1 : 0}});
      }
      for (const TaskKey& key : started[node]) {
        if (desired.count(key)) continue;
        report.push_back({{"workload", std::get<0>(key)},
                          {"task", std::get<1>(key)},
                          {"attempt", std::get<2>(key)},
                          {"state", "exited"},
                          {"exit_code", 143}});
      }
      started[node] = running;
      Heartbeat(node, report);
    }
  };
  std::atomic<int> clients_done{0};
  std::vector<std::thread> clients;
  for (int k = 0; k < 3; ++k) {
    clients.emplace_back([&, k] {
      std::vector<int64_t> mine;
      for (int i = 0; i < 60; ++i) {
        mine.push_back(Submit(i % 4 == 0 ? "prod" : "batch", 1 + (i + k) % 3, 1 + i % 2));
        if (i % 3 == 1) {
          Json out;
          ApiError e;
          (void)controller_->Cancel(mine[static_cast<size_t>(i / 2)], out, e);  // may be done
        }
        Get(mine.back());
        controller_->ListQueues();
      }
      ++clients_done;
    });
  }
  for (int round = 0; clients_done < 3; ++round) agent_pass(round);
  for (std::thread& t : clients) t.join();
  stop = true;
  loop.join();
  // Run what is left to its end, the agent reporting clean exits.
  for (int round = 1; round < 2000; ++round) {
    controller_->Step();
    agent_pass(1);
    size_t live = 0;
    for (const char* st : {"Pending", "Running", "Preempted"}) {
      const Json list = controller_->ListWorkloads("", st, "");
      live += list["workloads"].size();
      // Tasks told to stop before this agent saw them start: it reports them stopped too.
      for (const Json& w : list["workloads"]) {
        for (const Json& t : w["tasks"]) {
          if (t["state"] != "stopping") continue;
          Heartbeat(t["node"].get<std::string>(), {{{"workload", w["id"]},
                                                    {"task", t["task"]},
                                                    {"attempt", w["attempt"]},
                                                    {"state", "exited"},
                                                    {"exit_code", 143}}});
        }
      }
    }
    if (live == 0) break;
  }
  controller_->Step();
  const Json all = controller_->ListWorkloads("", "", "");
  ASSERT_EQ(all["workloads"].size(), 180u);
  for (const Json& w : all["workloads"]) {
    EXPECT_TRUE(w["state"] == "Succeeded" || w["state"] == "Failed" || w["state"] == "Cancelled")
        << w.dump();
  }
  const Json queues = controller_->ListQueues();
  ASSERT_EQ(queues["queues"].size(), 2u);
  for (const Json& q : queues["queues"]) {
    for (const Json& e : q["quota"]) EXPECT_EQ(e["used_milli"], 0) << q.dump();
    EXPECT_EQ(q["cpu_quota"]["used_milli"], 0) << q.dump();
  }
  const Json nodes = controller_->ListNodes();
  ASSERT_EQ(nodes["nodes"].size(), 4u);
  for (const Json& n : nodes["nodes"]) {
    EXPECT_EQ(n["cpu_used_milli"], 0) << n.dump();
    for (const Json& g : n["gpus"]) EXPECT_EQ(g["used_milli"], 0) << n.dump();
  }
}

// BEGIN backlog measurement
// ---- Measurement (not run by ctest): the API under a standing backlog (issues 14 and 15).
// 100 emulated 8-GPU nodes, each half filled by a running job of its own CPU/memory shape
// (queue infra, within its guarantee, not preemptible); a backlog of 10,000 pending
// single-GPU jobs of distinct CPU/memory shapes, in quota (queue prod), that fit an empty
// node but none now, so every cycle looks for victims for each and finds none, as issue
// 14's preemptors do; the controller loop running as Server::Serve runs it. Then
// probes, one at a time: an in-quota single-GPU job is submitted, polled until Running
// (its bind applied), and its exit reported by the node's heartbeat; a second client keeps
// submitting backlog-shaped jobs meanwhile. Prints submit latency and time to bind
// (p50/p99/max, ms) as one JSON line. Run it with
//   server_test --gtest_also_run_disabled_tests --gtest_filter='ControllerBacklog.*'
// and GPUORCH_BACKLOG / GPUORCH_PROBES to change the sizes.
TEST(ControllerBacklog, DISABLED_ApiLatencyUnderAPendingBacklog) {
  auto env = [](const char* k, int def) {
    const char* v = std::getenv(k);
    return v != nullptr ? std::atoi(v) : def;
  };
  const int backlog = env("GPUORCH_BACKLOG", 10000), probes = env("GPUORCH_PROBES", 100);
  const int nodes = 100;
  const auto dir =
      std::filesystem::temp_directory_path() / ("gpuorch-backlog-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  ServerConfig config = *ParseConfig(R"(
node_timeout_s: 3600
queues:
  - {name: infra, quota: [{model: "*", guaranteed: 400}], allowed_priorities: [production, normal]}
  - {name: prod, quota: [{model: "*", guaranteed: 400}]}
)");
  auto opened = store::OpenSqliteStore((dir / "db").string());
  ASSERT_TRUE(opened.ok());
  std::unique_ptr<store::StateStore> store = std::move(opened).value();
  auto created = Controller::Create(config, store.get());
  ASSERT_TRUE(created.ok()) << created.status().message();
  std::unique_ptr<Controller> controller = std::move(created).value();
  Controller& c = *controller;
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  auto submit = [&](const std::string& name, const std::string& queue, int64_t gpus,
                    int64_t cpu_milli, int64_t memory_mib, double* latency_ms) {
    Json out;
    ApiError e;
    const auto t0 = Clock::now();
    const bool ok = c.Submit({{"name", name},
                              {"queue", queue},
                              {"gpus", gpus},
                              {"cpu_milli", cpu_milli},
                              {"memory_mib", memory_mib},
                              {"preemptible", queue != "infra"},
                              {"command", {"true"}}},
                             out, e);
    if (latency_ms != nullptr) *latency_ms = ms(Clock::now() - t0);
    EXPECT_TRUE(ok) << e.message;
    return out.value("id", int64_t{-1});
  };
  for (int i = 0; i < nodes; ++i) {
    Json gs = Json::array();
    for (int j = 0; j < 8; ++j) {
      gs.push_back({{"index", j}, {"model", "H100"}, {"memory_mib", 81920}});
    }
    Json out;
    ApiError e;
    ASSERT_TRUE(c.Register({{"name", "node-" + std::to_string(i)},
                            {"address", "127.0.0.1:1"},
                            {"cpu_milli", 64000},
                            {"memory_mib", 524288},
                            {"gpus", gs}},
                           out, e))
        << e.message;
  }
  // Half of each node, in a shape of its own: 4 GPUs, 50-54 cores, 200-400 GiB.
  for (int i = 0; i < nodes; ++i) {
    submit("fill-" + std::to_string(i), "infra", 4, 50000 + 37 * i, 204800 + 1931 * i, nullptr);
  }
  c.Step();
  // The backlog: 1 GPU and 16-60 cores, every one a distinct shape (no node has more than
  // 14 cores free). Four clients, as the API would see them.
  std::vector<std::thread> clients;
  for (int k = 0; k < 4; ++k) {
    clients.emplace_back([&, k] {
      for (int i = k; i < backlog; i += 4) {
        submit("backlog-" + std::to_string(i), "prod", 1, 16000 + (i * 4397) % 44000,
               1024 + (i * 7919) % 200000, nullptr);
      }
    });
  }
  std::atomic<bool> stop{false};
  std::thread loop([&] {
    while (!stop) {
      c.Step();
      c.WaitForWork(50);  // the default cycle_interval_ms
    }
  });
  for (std::thread& t : clients) t.join();
  // A second client keeps submitting while the probes run.
  std::vector<double> submit_ms, bind_ms;
  std::mutex submit_mu;
  std::thread churn([&] {
    for (int i = 0; !stop; ++i) {
      double l = 0;
      submit("churn-" + std::to_string(i), "prod", 1, 16000 + (i * 3331) % 44000,
             1024 + (i * 104729) % 200000, &l);
      {
        std::lock_guard<std::mutex> lock(submit_mu);
        submit_ms.push_back(l);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  for (int p = 0; p < probes; ++p) {
    double l = 0;
    const auto t0 = Clock::now();
    const int64_t id = submit("probe-" + std::to_string(p), "prod", 1, 1000, 1024, &l);
    {
      std::lock_guard<std::mutex> lock(submit_mu);
      submit_ms.push_back(l);
    }
    Json w;
    ApiError e;
    for (;;) {
      ASSERT_TRUE(c.GetWorkload(id, w, e));
      if (w["state"] == "Running") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    bind_ms.push_back(ms(Clock::now() - t0));
    Json out;
    ASSERT_TRUE(c.Heartbeat(w["tasks"][0]["node"].get<std::string>(),
                            {{"tasks",
                              {{{"workload", id},
                                {"task", 0},
                                {"attempt", 0},
                                {"state", "exited"},
                                {"exit_code", 0}}}}},
                            out, e))
        << e.message;
  }
  stop = true;
  churn.join();
  c.Shutdown();
  loop.join();
  const Json pending = c.ListWorkloads("prod", "Pending", "");
  auto pct = [](std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    return v.empty()
               ? 0.0
               : v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
  };
  const std::string metrics = c.Metrics();
  const size_t sum_at = metrics.find("gpuorch_cycle_seconds_sum ");
  const size_t count_at = metrics.find("gpuorch_cycle_seconds_count ");
  double cycle_mean_ms = 0;
  if (sum_at != std::string::npos && count_at != std::string::npos) {
    cycle_mean_ms = 1000 * std::atof(metrics.c_str() + sum_at + 26) /
                    std::max(1.0, std::atof(metrics.c_str() + count_at + 28));  // names' lengths
  }
  Json result{{"backlog_pending", pending["workloads"].size()},
              {"probes", probes},
              {"submits", submit_ms.size()},
              {"submit_p50_ms", pct(submit_ms, 0.50)},
              {"submit_p99_ms", pct(submit_ms, 0.99)},
              {"submit_max_ms", pct(submit_ms, 1.0)},
              {"bind_p50_ms", pct(bind_ms, 0.50)},
              {"bind_p99_ms", pct(bind_ms, 0.99)},
              {"bind_max_ms", pct(bind_ms, 1.0)},
              {"cycle_mean_ms", cycle_mean_ms}};
  std::printf("%s\n", result.dump().c_str());
  EXPECT_GE(pending["workloads"].size(), static_cast<size_t>(backlog));
  controller.reset();
  store.reset();
  std::filesystem::remove_all(dir);
}
// END backlog measurement

}  // namespace
}  // namespace gpuorch::server
