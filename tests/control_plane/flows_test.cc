// The basic flows end to end, through the CLI where a user would use it: a gang runs on
// emulated agents with its GPU and gang environment, logs come back, failures, cancellation,
// draining, preemption by a queue reclaiming its guarantee, pending reasons, metrics, and
// the CLI's exit codes.
#include <algorithm>
#include <fstream>
#include <regex>

#include "fixture.h"

namespace gpuorch::cptest {
namespace {

constexpr const char* kOneQueue = "queues: [{name: default}]\n";

int64_t IdFrom(const CliResult& r) {
  return std::regex_match(r.out, std::regex("[0-9]+\n")) ? std::stoll(r.out) : -1;
}

TEST(Flows, SubmittedGangRunsWithGpuAndGangEnvironmentAndLogsComeBack) {
  auto c = StartCluster(kOneQueue, {"a", "b"});
  CliResult r = c->Cli({"submit", "-q", "default", "--gpus", "2", "--tasks", "2", "--name", "env",
                        "--", "/bin/sh", "-c",
                        "echo \"rank=$RANK local=$LOCAL_RANK world=$WORLD_SIZE "
                        "cvd=$CUDA_VISIBLE_DEVICES nvd=$NVIDIA_VISIBLE_DEVICES "
                        "w=$GPUORCH_WORKLOAD t=$GPUORCH_TASK a=$GPUORCH_ATTEMPT "
                        "master=$MASTER_ADDR:$MASTER_PORT\""});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  int64_t id = IdFrom(r);
  ASSERT_GT(id, 0) << "stdout must be the id alone: '" << r.out << "'";
  ASSERT_TRUE(c->WaitState(id, "Succeeded")) << c->Workload(id).dump();
  Json tasks = Tasks(*c, id);
  ASSERT_EQ(tasks.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const Json& t = tasks[i];
    EXPECT_EQ(t["task"], i);
    EXPECT_EQ(t["exit_code"], 0);
    ASSERT_EQ(t["gpus"].size(), 2u);
    std::string gpus = JoinInts(t["gpus"]);
    CliResult logs = c->Cli({"logs", std::to_string(id), "--task", std::to_string(i)});
    ASSERT_EQ(logs.exit_code, 0) << logs.err;
    int local = 0;  // tasks before this one on the same node
    for (int j = 0; j < i; ++j) local += tasks[j]["node"] == t["node"] ? 1 : 0;
    std::string want = "rank=" + std::to_string(i) + " local=" + std::to_string(local) +
                       " world=2 cvd=" + gpus + " nvd=" + gpus + " w=" + std::to_string(id) +
                       " t=" + std::to_string(i) + " a=0 master=127.0.0.1:";
    EXPECT_EQ(logs.out.rfind(want, 0), 0u) << "log of task " << i << ": " << logs.out;
  }
}

// A gang of 2 whose rank 0 exits at once while rank 1 still works: each rank runs once and
// the workload succeeds when both have exited 0. No new task may replace a finished rank.
TEST(Flows, GangRanksThatExitAtDifferentTimesRunOnce) {
  auto c = StartCluster(kOneQueue, {"a"});
  std::string markers = c->dir() + "/markers", go = c->dir() + "/go";
  Json spec = Cluster::ShellJob("gang", "default", 1,
                                "echo $GPUORCH_WORKLOAD-$GPUORCH_ATTEMPT-$RANK >> " + markers +
                                    "; if [ $RANK = 1 ]; then while [ ! -f " + go +
                                    " ]; do sleep 0.05; done; fi");
  spec["tasks"] = 2;
  int64_t id = c->Submit(spec);
  ASSERT_GT(id, 0);
  // Rank 0 has exited and been reported; rank 1 waits for `go`.
  ASSERT_TRUE(WaitFor([&] {
    Json t = Tasks(*c, id);
    return !t.empty() && t[0].value("state", "") == "exited";
  })) << c->Workload(id).dump(1);
  // A second of heartbeats and cycles while rank 1 still runs, in which a wrongly added
  // task would show up as a third marker line (not a synchronisation: either outcome goes on).
  (void)WaitFor([&] { return ReadLines(markers).size() > 2; }, 1s);
  WriteFile(go, "");
  ASSERT_TRUE(c->WaitState(id, "Succeeded")) << c->Workload(id).dump(1);
  Json w = c->Workload(id);
  std::vector<std::string> lines = ReadLines(markers);
  std::sort(lines.begin(), lines.end());  // the ranks start in either order
  EXPECT_EQ(lines,
            (std::vector<std::string>{std::to_string(id) + "-0-0", std::to_string(id) + "-0-1"}))
      << w["events"].dump(1);
  EXPECT_EQ(w["tasks"].size(), 2u);
}

TEST(Flows, FailingTaskFailsTheWorkload) {
  auto c = StartCluster(kOneQueue, {"a"});
  CliResult r = c->Cli(
      {"submit", "-q", "default", "--gpus", "1", "--", "/bin/sh", "-c", "echo oops >&2; exit 3"});
  int64_t id = IdFrom(r);
  ASSERT_GT(id, 0) << r.err;
  ASSERT_TRUE(c->WaitState(id, "Failed")) << c->Workload(id).dump();
  EXPECT_EQ(Tasks(*c, id)[0]["exit_code"], 3);
  CliResult logs = c->Cli({"logs", std::to_string(id), "--stream", "stderr"});
  EXPECT_EQ(logs.exit_code, 0);
  EXPECT_EQ(logs.out, "oops\n");
}

TEST(Flows, CancelStopsTheProcess) {
  auto c = StartCluster(kOneQueue, {"a"});
  std::string pid_file = c->dir() + "/pid";
  CliResult r = c->Cli(
      {"submit", "-q", "default", "--gpus", "1", "--", "/bin/sh", "-c",
       "echo $$ > " + pid_file + ".tmp; mv " + pid_file + ".tmp " + pid_file + "; exec sleep 600"});
  int64_t id = IdFrom(r);
  ASSERT_GT(id, 0) << r.err;
  ASSERT_TRUE(WaitFor([&] { return !ReadFile(pid_file).empty(); }));
  pid_t pid = std::stoi(ReadFile(pid_file));
  ASSERT_TRUE(ProcessAlive(pid));
  ASSERT_TRUE(c->WaitState(id, "Running"));
  CliResult cancel = c->Cli({"cancel", std::to_string(id)});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.err;
  EXPECT_EQ(cancel.out, "workload " + std::to_string(id) + " cancelled\n");
  EXPECT_TRUE(c->WaitState(id, "Cancelled")) << c->Workload(id).dump();
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pid); })) << "task process " << pid << " survived";
  CliResult again = c->Cli({"cancel", std::to_string(id)});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_EQ(again.err.rfind("error: workload " + std::to_string(id) + ": ", 0), 0u) << again.err;
}

TEST(Flows, DrainedNodeGetsNoNewWork) {
  auto c = StartCluster(kOneQueue, {"a", "b"});
  CliResult drain = c->Cli({"drain", "a"});
  ASSERT_EQ(drain.exit_code, 0) << drain.err;
  EXPECT_EQ(drain.out, "node a drained\n");
  EXPECT_EQ(c->NodeStatus("a"), "Draining");
  // Three 2-GPU jobs fit on b; a 4-GPU one then fits only on the drained node.
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(c->Submit(Cluster::ShellJob("small", "default", 2, "exec sleep 600")));
  }
  for (int64_t id : ids) {
    ASSERT_TRUE(c->WaitState(id, "Running")) << c->Workload(id).dump();
    EXPECT_EQ(Tasks(*c, id)[0]["node"], "b");
  }
  int64_t big = c->Submit(Cluster::ShellJob("big", "default", 4, "exec sleep 600"));
  ASSERT_TRUE(WaitFor([&] { return !c->Workload(big).value("reason", "").empty(); }));
  EXPECT_EQ(c->State(big), "Pending");
  ASSERT_EQ(c->Cli({"undrain", "a"}).exit_code, 0);
  ASSERT_TRUE(c->WaitState(big, "Running")) << c->Workload(big).dump();
  EXPECT_EQ(Tasks(*c, big)[0]["node"], "a");
}

TEST(Flows, PendingWorkloadShowsStateAndReasonAsJson) {
  auto c = StartCluster(kOneQueue, {"a"});
  struct Case {
    std::vector<std::string> flags;
    std::string reason;  // empty: any documented reason
  };
  const Case cases[] = {
      {{"--gpus", "16"}, "Unschedulable"},  // 8-GPU nodes: never fits
      {{"--gpus", "1", "--model", "A100-80GB"}, "ModelUnavailable"},
  };
  for (const Case& k : cases) {
    std::vector<std::string> args = {"submit", "-q", "default"};
    args.insert(args.end(), k.flags.begin(), k.flags.end());
    args.insert(args.end(), {"--", "/bin/true"});
    int64_t id = IdFrom(c->Cli(args));
    ASSERT_GT(id, 0);
    Json got;
    ASSERT_TRUE(WaitFor([&] {
      CliResult r = c->Cli({"get", std::to_string(id), "-o", "json"});
      got = Json::parse(r.out, nullptr, false);
      return r.exit_code == 0 && got.is_object() && got.value("reason", "") == k.reason;
    })) << got.dump();
    EXPECT_EQ(got["state"], "Pending");
    EXPECT_EQ(got["reason"], k.reason) << k.flags[1];
    CliResult table = c->Cli({"get"});
    EXPECT_NE(table.out.find(k.reason), std::string::npos) << table.out;
  }
}

TEST(Flows, PreemptionReclaimsAGuaranteeFromABorrower) {
  auto c = StartCluster(R"(queues:
  - name: prod
    quota: [{model: "*", guaranteed: 8}]
  - name: borrow
)",
                        {"a"});
  std::string order = c->dir() + "/order", bpid = c->dir() + "/borrower.pid";
  int64_t borrower = c->Submit(Cluster::ShellJob("borrower", "borrow", 8,
                                                 "trap 'echo borrower-term-$GPUORCH_ATTEMPT >> " +
                                                     order + "; exit 0' TERM; echo $$ > " + bpid +
                                                     "; echo borrower-start-$GPUORCH_ATTEMPT >> " +
                                                     order + "; while :; do sleep 0.05; done"));
  ASSERT_GT(borrower, 0);
  ASSERT_TRUE(WaitFor([&] { return ReadLines(order).size() == 1; }));
  pid_t pid = std::stoi(ReadFile(bpid));
  int64_t prod = c->Submit(Cluster::ShellJob(
      "prod", "prod", 8,
      "if kill -0 " + std::to_string(pid) + " 2>/dev/null; then s=alive; else s=gone; fi; " +
          "echo prod-start-borrower-$s >> " + order + "; exec sleep 600"));
  ASSERT_GT(prod, 0);
  ASSERT_TRUE(c->WaitState(prod, "Running")) << c->Workload(prod).dump();
  ASSERT_TRUE(WaitFor([&] { return ReadLines(order).size() >= 3; }));
  EXPECT_EQ(ReadLines(order), (std::vector<std::string>{"borrower-start-0", "borrower-term-0",
                                                        "prod-start-borrower-gone"}));
  Json b = c->Workload(borrower);
  EXPECT_EQ(b["state"], "Pending");
  EXPECT_EQ(b["attempt"], 1);
  bool evicted = false;
  for (const Json& e : b["events"]) {
    evicted |=
        e.value("type", "") == "Evicted" &&
        e.value("message", "") == "preempted by " + std::to_string(prod) + ": ReclaimGuarantee";
  }
  EXPECT_TRUE(evicted) << b["events"].dump();
  const Json preemptor = c->Workload(prod);
  bool preempting = false;
  for (const Json& e : preemptor["events"]) {
    preempting |= e.value("type", "") == "Preempting" &&
                  e.value("message", "") ==
                      "evicting " + std::to_string(borrower) + " (queue borrow): ReclaimGuarantee";
  }
  EXPECT_TRUE(preempting) << preemptor["events"].dump();
  std::string metrics = c->api().Get("/metrics").body;
  EXPECT_NE(
      metrics.find("gpuorch_preemptions_total{queue=\"borrow\",reason=\"ReclaimGuarantee\"} 1"),
      std::string::npos)
      << metrics;
}

TEST(Flows, MetricsExposeTheDocumentedFamilies) {
  auto c = StartCluster(kOneQueue, {"a"});
  int64_t id = c->Submit(Cluster::ShellJob("ok", "default", 1, "true"));
  ASSERT_TRUE(c->WaitState(id, "Succeeded"));
  HttpResult r = c->api().Get("/metrics");
  ASSERT_EQ(r.status, 200);
  const std::pair<const char*, const char*> families[] = {
      {"gpuorch_workloads", "gauge"},
      {"gpuorch_gpus", "gauge"},
      {"gpuorch_gpus_allocated", "gauge"},
      {"gpuorch_queue_gpus_used", "gauge"},
      {"gpuorch_queue_gpus_guaranteed", "gauge"},
      {"gpuorch_queue_wait_seconds", "histogram"},
      {"gpuorch_cycle_seconds", "histogram"},
      {"gpuorch_preemptions_total", "counter"},
      {"gpuorch_nodes", "gauge"},
  };
  for (const auto& [name, type] : families) {
    EXPECT_NE(r.body.find(std::string("# TYPE ") + name + " " + type + "\n"), std::string::npos)
        << name;
  }
  EXPECT_NE(r.body.find("gpuorch_workloads{queue=\"default\",state=\"Succeeded\"} 1"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("gpuorch_nodes{status=\"up\"} 1"), std::string::npos);
  // Engine gauges are recomputed at most once a second: poll for the finished job's GPUs.
  EXPECT_TRUE(WaitFor([&] {
    return c->api()
               .Get("/metrics")
               .body.find("gpuorch_gpus{model=\"H100-80GB\",state=\"free\"} 8") !=
           std::string::npos;
  })) << c->api().Get("/metrics").body;
  EXPECT_NE(
      r.body.find("gpuorch_queue_wait_seconds_count{kind=\"experiment\",queue=\"default\"} 1"),
      std::string::npos)
      << r.body;
}

TEST(Flows, CliExitCodes) {
  auto c = StartCluster(kOneQueue, {});
  struct Case {
    std::vector<std::string> args;  // --server is added after the first word
    int code;
    std::string err_prefix;
  };
  const Case cases[] = {
      {{"submit", "--help"}, 0, ""},
      {{"get"}, 0, ""},
      {{"nodes"}, 0, ""},
      {{"queues", "-o", "yaml"}, 0, ""},
      {{"submit", "-q", "default", "--gpus", "17", "--", "/bin/true"},
       1,
       "error: gpus: must be in 0..16, got 17\n"},
      {{"submit", "-q", "nope", "--", "/bin/true"}, 1, "error: queue: "},
      {{"get", "999999"}, 1, "error: "},
      {{"drain", "no-such-node"}, 1, "error: "},
      {{"submit", "-q", "default", "--gpus", "many", "--", "/bin/true"}, 2, ""},
      {{"submit", "-q", "default", "--env", "NOEQUALS", "--", "/bin/true"}, 2, ""},
      {{"submit", "-q", "default"}, 2, ""},
      {{"submit", "-q", "default", "--kind", "x", "--", "/bin/true"}, 2, ""},
      {{"get", "-o", "xml"}, 2, ""},
      {{"get", "--bogus"}, 2, ""},
  };
  for (const Case& k : cases) {
    CliResult r = c->Cli(k.args);
    std::string what = k.args[0] + " " + (k.args.size() > 1 ? k.args[1] : "");
    EXPECT_EQ(r.exit_code, k.code) << what << ": " << r.err;
    EXPECT_EQ(r.err.empty(), k.code == 0) << what << ": " << r.err;
    EXPECT_EQ(r.err.rfind(k.err_prefix, 0), 0u) << what << ": " << r.err;
  }
  // Nothing reached the server from the refused command lines.
  EXPECT_EQ(c->api().Get("/v1/workloads").json["workloads"].size(), 0u);
  CliResult help = RunCli(c->bin(), {"--help"});
  EXPECT_EQ(help.exit_code, 0);
  CliResult down =
      RunCli(c->bin(), {"get", "--server", "http://127.0.0.1:" + std::to_string(FreePort())});
  EXPECT_EQ(down.exit_code, 3);
  EXPECT_EQ(down.err.rfind("error: cannot reach the gpuorch server at", 0), 0u) << down.err;
}

}  // namespace
}  // namespace gpuorch::cptest
