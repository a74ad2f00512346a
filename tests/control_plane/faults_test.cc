// Faults with real processes: an agent killed under a running gang, the server SIGKILLed
// during a burst of submissions and restarted, and a table of malformed requests. Tasks
// append "<workload>-<attempt>-<rank>" to marker files, so "ran exactly once" is a count of
// lines.
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "fixture.h"

namespace gpuorch::cptest {
namespace {

constexpr const char* kOneQueue = "queues: [{name: default}]\n";

// A task that appends its marker (and pid) to `file`, then runs `rest`.
std::string Marker(const std::string& file, const std::string& rest) {
  return "echo \"$GPUORCH_WORKLOAD-$GPUORCH_ATTEMPT-$RANK $$\" >> " + file + "; " + rest;
}

// Lines of `file` by their "<workload>-<attempt>-<rank>" word.
std::map<std::string, int> CountMarkers(const std::string& file) {
  std::map<std::string, int> out;
  for (const std::string& line : ReadLines(file)) ++out[line.substr(0, line.find(' '))];
  return out;
}

std::string Key(int64_t id, int attempt, int rank) {
  return std::to_string(id) + "-" + std::to_string(attempt) + "-" + std::to_string(rank);
}

TEST(Faults, KilledAgentsGangIsRequeuedWholeAndRunsElsewhere) {
  auto c = StartCluster(kOneQueue, {"a", "b", "c"});
  std::string markers = c->dir() + "/markers";
  // Attempt 0 runs until stopped; the retry exits at once.
  Json spec = Cluster::ShellJob(
      "gang", "default", 8,
      Marker(markers, "if [ \"$GPUORCH_ATTEMPT\" = 0 ]; then exec sleep 600; fi"));
  spec["tasks"] = 2;
  int64_t id = c->Submit(spec);
  ASSERT_GT(id, 0);
  ASSERT_TRUE(WaitFor([&] { return ReadLines(markers).size() == 2; }));
  ASSERT_TRUE(c->WaitState(id, "Running"));
  Json tasks = Tasks(*c, id);
  ASSERT_EQ(tasks.size(), 2u);
  std::string dead = tasks[0]["node"], survivor = tasks[1]["node"];
  ASSERT_NE(dead, survivor);
  pid_t survivor_pid = 0;
  for (const std::string& line : ReadLines(markers)) {
    if (line.rfind(Key(id, 0, 1) + " ", 0) == 0)
      survivor_pid = std::stoi(line.substr(line.find(' ')));
  }
  ASSERT_GT(survivor_pid, 0);

  c->KillAgent(dead);
  EXPECT_TRUE(WaitFor([&] { return c->NodeStatus(dead) == "Down"; }, 10s));
  ASSERT_TRUE(c->WaitState(id, "Succeeded")) << c->Workload(id).dump(1);
  Json w = c->Workload(id);
  EXPECT_EQ(w["attempt"], 1);
  for (const Json& t : w["tasks"]) EXPECT_NE(t["node"], dead) << w.dump(1);
  // The rank on the surviving node was stopped: the gang is requeued as a whole.
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(survivor_pid); }))
      << "attempt 0 rank 1 still runs on " << survivor;
  std::map<std::string, int> want = {
      {Key(id, 0, 0), 1}, {Key(id, 0, 1), 1}, {Key(id, 1, 0), 1}, {Key(id, 1, 1), 1}};
  EXPECT_EQ(CountMarkers(markers), want) << w.dump(1);
  bool lost = false;
  for (const Json& e : w["events"]) lost |= e.value("type", "") == "NodeLost";
  EXPECT_TRUE(lost) << w["events"].dump();
}

// Submits held work and a burst, SIGKILLs the server mid-burst, restarts it on the same port
// and data directory, and checks durability, adoption and exactly-once execution.
void SigkillDuringBurst(const std::string& timings) {
  auto c = StartCluster(kOneQueue, {"a", "b"}, timings);
  std::string held = c->dir() + "/held", release = c->dir() + "/release",
              burst = c->dir() + "/burst", done = c->dir() + "/held-done";
  // Work that runs across the crash and ends when told to.
  std::vector<int64_t> held_ids;
  for (int i = 0; i < 4; ++i) {
    held_ids.push_back(c->Submit(Cluster::ShellJob(
        "held-" + std::to_string(i), "default", 1,
        Marker(held,
               "while [ ! -f " + release + " ]; do sleep 0.05; done; " + Marker(done, "true")))));
    ASSERT_GT(held_ids.back(), 0);
  }
  ASSERT_TRUE(WaitFor([&] { return ReadLines(held).size() == 4; }));
  for (int64_t id : held_ids) ASSERT_TRUE(c->WaitState(id, "Running"));
  const std::map<std::string, int> held_before = CountMarkers(held);
  const std::string held_text = ReadFile(held);

  // The burst: several clients submit until the server stops answering.
  std::mutex mu;
  std::map<int64_t, std::string> acked;  // id -> name
  std::atomic<int> acked_count{0};
  std::vector<std::jthread> clients;  // joined on every way out of the test
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        std::string name = "burst-" + std::to_string(t) + "-" + std::to_string(i);
        HttpResult r;
        Json spec = Cluster::ShellJob(name, "default", 0, Marker(burst, "true"));
        spec["cpu_milli"] = 10;
        int64_t id = c->Submit(spec, &r);
        if (r.status == -1) return;  // the server is gone
        if (id > 0) {
          std::lock_guard<std::mutex> lock(mu);
          acked[id] = name;
          ++acked_count;
        }
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return acked_count >= 150; }, 30s, 1ms));
  c->StopServer(SIGKILL);
  for (std::jthread& t : clients) t.join();
  ASSERT_GE(acked.size(), 150u);

  ASSERT_TRUE(c->StartServer()) << "restart on the same data directory failed";
  for (const auto& [id, name] : acked) {
    Json w = c->Workload(id);
    ASSERT_TRUE(w.is_object()) << "acknowledged workload " << id << " (" << name << ") lost";
    EXPECT_EQ(w["name"], name);
    EXPECT_EQ(w["spec"]["command"][2], Marker(burst, "true"));
  }
  // Held work is adopted, not restarted: still Running, started once, same pid.
  ASSERT_TRUE(
      WaitFor([&] { return c->NodeStatus("a") == "Ready" && c->NodeStatus("b") == "Ready"; }));
  for (int64_t id : held_ids) EXPECT_EQ(c->State(id), "Running") << c->Workload(id).dump(1);
  WriteFile(release, "");
  for (int64_t id : held_ids) {
    ASSERT_TRUE(c->WaitState(id, "Succeeded")) << c->Workload(id).dump(1);
    EXPECT_EQ(c->Workload(id)["attempt"], 0) << c->Workload(id)["events"].dump(1);
  }
  EXPECT_EQ(ReadFile(held), held_text) << "a held task was started again";
  EXPECT_EQ(CountMarkers(done).size(), 4u);
  for (const auto& [key, n] : CountMarkers(done)) {
    EXPECT_EQ(n, 1) << key;
    EXPECT_EQ(held_before.count(key), 1u) << key;
  }
  // Every acknowledged burst job runs, exactly once, as attempt 0.
  for (const auto& [id, name] : acked) {
    EXPECT_TRUE(c->WaitState(id, "Succeeded")) << c->Workload(id).dump(1);
  }
  std::map<std::string, int> ran = CountMarkers(burst);
  for (const auto& [key, n] : ran) EXPECT_EQ(n, 1) << key << " ran " << n << " times";
  for (const auto& [id, name] : acked) EXPECT_EQ(ran.count(Key(id, 0, 0)), 1u) << name;
}

// node_timeout_s 5: above the agents' 4 s cap on their retry backoff while the server is
// down, so a restarted server hears from every agent before it would declare a node Down.
TEST(Faults, ServerSigkilledDuringSubmitBurstLosesNothingAndRunsNothingTwice) {
  SigkillDuringBurst("node_timeout_s: 5\nheartbeat_interval_ms: 100\ncycle_interval_ms: 20\n");
}

// The same with a 1 s node timeout: nodes loaded from the store get a restart grace covering
// the agents' retry backoff, and an agent busy launching a burst of tasks still keeps its
// node alive through its watch thread, so adopted work is never requeued and run again.
TEST(Faults, ServerSigkilledDuringSubmitBurstWithOneSecondNodeTimeout) {
  SigkillDuringBurst(kFastTimings);
}

TEST(Faults, MalformedRequestsGetTheirErrorAndChangeNothing) {
  auto c = StartCluster(kOneQueue, {"a"});
  int64_t done = c->Submit(Cluster::ShellJob("done", "default", 1, "true"));
  ASSERT_TRUE(c->WaitState(done, "Succeeded"));
  const std::string before = c->api().Get("/v1/workloads").body;

  Json ok = Cluster::ShellJob("w", "default", 1, "true");
  auto with = [&](const Json& patch) {
    Json j = ok;
    j.merge_patch(patch);
    return j.dump();
  };
  struct Case {
    std::string method, path, body;
    int code;
    std::string field;
  };
  const std::string w = "/v1/workloads";
  const Case cases[] = {
      {"POST", w, "not json", 400, ""},
      {"POST", w, "[1, 2]", 400, ""},
      {"POST", w, with({{"name", nullptr}}), 400, "name"},
      {"POST", w, with({{"name", "a b"}}), 400, "name"},
      {"POST", w, with({{"name", std::string(64, 'x')}}), 400, "name"},
      // (No queue at all is no error: the server's default queue; docs/security.md.)
      {"POST", w, with({{"queue", 5}}), 400, "queue"},
      {"POST", w, with({{"queue", "nope"}}), 400, "queue"},
      {"POST", w, with({{"gpus", 17}}), 400, "gpus"},
      {"POST", w, with({{"gpus", -1}}), 400, "gpus"},
      {"POST", w, with({{"gpus", "2"}}), 400, "gpus"},
      {"POST", w, with({{"gpus", 2}, {"gpu_milli", 500}}), 400, "gpu_milli"},
      {"POST", w, with({{"gpu_milli", 0}}), 400, "gpu_milli"},
      {"POST", w, with({{"min_tasks", 0}}), 400, "min_tasks"},
      {"POST", w, with({{"min_tasks", 3}, {"max_tasks", 2}}), 400, "max_tasks"},
      {"POST", w, with({{"kind", "batch"}}), 400, "kind"},
      {"POST", w, with({{"priority", "ultra"}}), 400, "priority"},
      {"POST", w, with({{"topology", {{"level", "galaxy"}}}}), 400, "topology.level"},
      {"POST", w, with({{"command", Json::array()}}), 400, "command"},
      {"POST", w, with({{"command", "true"}}), 400, "command"},
      {"POST", w, with({{"env", {{"A", 1}}}}), 400, "env.A"},
      {"POST", w, with({{"cpu_milli", -5}}), 400, "cpu_milli"},
      {"POST", w, with({{"runtime_estimate_s", 1000000000}}), 400, "runtime_estimate_s"},
      {"POST", w, with({{"gpu", 1}}), 400, "gpu"},
      {"POST", w, with({{"name", std::string(2 << 20, 'x')}}), 413, "body"},
      {"GET", w + "/abc", "", 400, "id"},
      {"GET", w + "/999999", "", 404, "id"},
      {"GET", w + "?color=red", "", 400, "color"},
      {"POST", w + "/999999/cancel", "", 404, "id"},
      {"DELETE", w + "/999999", "", 404, "id"},
      {"POST", w + "/" + std::to_string(done) + "/cancel", "", 409, "state"},
      {"GET", w + "/" + std::to_string(done) + "/logs?task=x", "", 400, "task"},
      {"GET", w + "/" + std::to_string(done) + "/logs?stream=both", "", 400, "stream"},
      {"GET", "/v1/queues/nope", "", 404, "name"},
      {"POST", "/v1/nodes/nope/drain", "{}", 404, "name"},
      {"POST", "/v1/agents/register", "{}", 400, "name"},
      {"POST", "/v1/agents/nope/heartbeat", "{\"tasks\": []}", 404, "node"},
      {"POST", "/v1/agents/a/heartbeat", "{\"tasks\": 1}", 400, "tasks"},
  };
  for (const Case& k : cases) {
    HttpResult r = k.method == "GET"    ? c->api().Get(k.path)
                   : k.method == "POST" ? c->api().Post(k.path, k.body)
                                        : c->api().Delete(k.path);
    std::string what = k.method + " " + k.path + " " + k.body.substr(0, 80);
    EXPECT_EQ(r.status, k.code) << what << " -> " << r.body.substr(0, 200);
    ASSERT_TRUE(r.json.is_object() && r.json.contains("error")) << what << " -> " << r.body;
    const Json& e = r.json["error"];
    EXPECT_EQ(e.value("code", 0), k.code) << what;
    EXPECT_EQ(e.value("field", "?"), k.field) << what << " -> " << r.body;
    std::string message = e.value("message", "");
    EXPECT_FALSE(message.empty()) << what;
    if (!k.field.empty()) {
      EXPECT_EQ(message.rfind(k.field, 0), 0u) << what << " -> " << message;
    }
  }
  EXPECT_EQ(c->api().Get("/v1/workloads").body, before);
  // Ids are not consumed by refused submissions.
  int64_t next = c->Submit(Cluster::ShellJob("next", "default", 1, "true"));
  EXPECT_EQ(next, done + 1);
  // The store holds what it held: a restart shows the same finished workload.
  const std::string done_json = c->Workload(done).dump();
  c->StopServer(SIGTERM);
  ASSERT_TRUE(c->StartServer());
  EXPECT_EQ(c->Workload(done).dump(), done_json);
  EXPECT_TRUE(c->Workload(next).is_object());
}

// BUG (reported, not fixed here): a state change the API already showed can be lost by a
// clean restart. A heartbeat that reports a task's exit updates the workload in memory
// (GET shows Succeeded) and leaves the write to the next controller loop round; SIGTERM
// stops the loop without that round, so the restarted server loads the workload as Running
// with its task "assigned", while the agent, told the task is no longer desired, has marked
// it done and never reports it again. Fails in most of 10 rounds on a 2-core machine.
TEST(Faults, StateShownByTheApiSurvivesACleanRestart) {
  auto c = StartCluster(kOneQueue, {"a"});
  for (int round = 0; round < 10; ++round) {
    int64_t id = c->Submit(Cluster::ShellJob("r" + std::to_string(round), "default", 1, "true"));
    ASSERT_TRUE(c->WaitState(id, "Succeeded"));
    c->StopServer(SIGTERM);
    ASSERT_TRUE(c->StartServer());
    EXPECT_EQ(c->State(id), "Succeeded") << "round " << round << ": " << c->Workload(id).dump();
  }
}

}  // namespace
}  // namespace gpuorch::cptest
