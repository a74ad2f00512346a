// MIG end to end (docs/partitioning.md): a server and an agent with emulated MIG GPUs
// (--emulate-mig). A MIG request makes the engine plan a layout, the agent applies it and
// reports it, and only then is the task bound, with CUDA_VISIBLE_DEVICES naming its
// instance; a second request changes the layout of the same GPU while the first task keeps
// running on its instance. The nodes view, the CLI's GPU table and the MIG metrics show it,
// and a restarted server adopts both tasks on their instances.
#include <csignal>
#include <fstream>
#include <regex>
#include <sstream>

#include "fixture.h"

namespace gpuorch::cptest {
namespace {

constexpr const char* kOneQueue = "queues: [{name: default}]\n";

int64_t IdFrom(const CliResult& r) {
  return std::regex_match(r.out, std::regex("[0-9]+\n")) ? std::stoll(r.out) : -1;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// A task that writes its CUDA_VISIBLE_DEVICES and a counter that grows while it runs, then
// waits for `go`.
std::vector<std::string> Waiter(const std::string& dir, const std::string& tag) {
  const std::string out = dir + "/" + tag;
  return {"/bin/sh", "-c",
          "echo $CUDA_VISIBLE_DEVICES > " + out + ".cvd; while [ ! -f " + dir +
              "/go ]; do echo x >> " + out + ".ticks; sleep 0.05; done"};
}

TEST(Mig, InstancesAreCreatedBeforeBindingAndALayoutChangeLeavesRunningInstancesAlone) {
  auto c = StartCluster(kOneQueue, {});
  ASSERT_TRUE(c->StartAgent("m", "1xH100-80GB", {"--emulate-mig"}));
  Json nodes = c->api().Get("/v1/nodes").json;
  ASSERT_TRUE(nodes.contains("nodes")) << nodes.dump();
  const Json gpu = nodes["nodes"][0]["gpus"][0];
  EXPECT_EQ(gpu["mode"], "mig") << gpu.dump();
  EXPECT_EQ(gpu["mig_layout"], "") << gpu.dump();

  // The first request: a layout change, then the bind on the new instance.
  std::vector<std::string> args = {"submit", "--name", "big", "--mig", "3g.40gb", "--"};
  for (const std::string& a : Waiter(c->dir(), "big")) args.push_back(a);
  CliResult r = c->Cli(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int64_t big = IdFrom(r);
  ASSERT_TRUE(c->WaitState(big, "Running")) << c->Workload(big).dump();
  EXPECT_TRUE(c->HasEvent(big, "MigReconfiguring", "3g.40gb@"));
  Json task = Tasks(*c, big)[0];
  ASSERT_TRUE(task.contains("mig")) << task.dump();
  EXPECT_EQ(task["mig"]["profile"], "3g.40gb");
  const int big_start = task["mig"]["start"].get<int>();
  const std::string big_uuid = "MIG-emulated-m-0-" + std::to_string(big_start) + "-3g.40gb";
  ASSERT_TRUE(WaitFor([&] { return ReadFile(c->dir() + "/big.cvd") == big_uuid + "\n"; }))
      << ReadFile(c->dir() + "/big.cvd");

  // The second request changes the same GPU's layout while the first task runs there.
  args = {"submit", "--name", "small", "--mig", "1g.10gb", "--"};
  for (const std::string& a : Waiter(c->dir(), "small")) args.push_back(a);
  r = c->Cli(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int64_t small = IdFrom(r);
  ASSERT_TRUE(c->WaitState(small, "Running")) << c->Workload(small).dump();
  EXPECT_TRUE(c->HasEvent(small, "MigReconfiguring", "1g.10gb@"));
  task = Tasks(*c, small)[0];
  ASSERT_TRUE(task.contains("mig")) << task.dump();
  const std::string small_uuid =
      "MIG-emulated-m-0-" + std::to_string(task["mig"]["start"].get<int>()) + "-1g.10gb";
  ASSERT_TRUE(WaitFor([&] { return ReadFile(c->dir() + "/small.cvd") == small_uuid + "\n"; }))
      << ReadFile(c->dir() + "/small.cvd");

  // The first task kept running through the change: same attempt, still ticking.
  Json w = c->Workload(big);
  EXPECT_EQ(w["state"], "Running");
  EXPECT_EQ(w["attempt"], 0);
  const size_t ticks = ReadFile(c->dir() + "/big.ticks").size();
  EXPECT_TRUE(WaitFor([&] { return ReadFile(c->dir() + "/big.ticks").size() > ticks; }));

  // What operators see: the layout with both instances and who holds them.
  nodes = c->api().Get("/v1/nodes").json;
  const Json g = nodes["nodes"][0]["gpus"][0];
  const std::string layout = g["mig_layout"].get<std::string>();
  EXPECT_NE(layout.find("3g.40gb@" + std::to_string(big_start)), std::string::npos) << layout;
  EXPECT_NE(layout.find("1g.10gb@"), std::string::npos) << layout;
  EXPECT_EQ(g["holders"].size(), 2u) << g.dump();
  r = c->Cli({"nodes", "--gpus"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("MIG"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("big-" + std::to_string(big) + "/0:3g.40gb@" + std::to_string(big_start)),
            std::string::npos)
      << r.out;
  EXPECT_TRUE(WaitFor([&] {
    const std::string m = c->api().Get("/metrics").body;
    return m.find(
               "gpuorch_mig_instances{model=\"H100-80GB\",profile=\"3g.40gb\",state=\"used\"} "
               "1") != std::string::npos &&
           m.find(
               "gpuorch_mig_instances{model=\"H100-80GB\",profile=\"1g.10gb\",state=\"used\"} "
               "1") != std::string::npos &&
           m.find("gpuorch_mig_fragmented_slices{model=\"H100-80GB\"}") != std::string::npos;
  })) << c->api().Get("/metrics").body;

  // A server killed and restarted adopts both tasks on their instances: same attempt, the
  // layout as the agent reported it, nothing started twice.
  c->StopServer(SIGKILL);
  ASSERT_TRUE(c->StartServer()) << "restart on the same data directory failed";
  ASSERT_TRUE(WaitFor([&] { return c->NodeStatus("m") == "Ready"; }));
  for (int64_t id : {big, small}) {
    w = c->Workload(id);
    EXPECT_EQ(w["state"], "Running") << w.dump();
    EXPECT_EQ(w["attempt"], 0) << w.dump();
    ASSERT_TRUE(w["tasks"][0].contains("mig")) << w.dump();
  }
  EXPECT_EQ(c->api().Get("/v1/nodes").json["nodes"][0]["gpus"][0]["mig_layout"], layout);

  // Both end well, each started once.
  std::ofstream(c->dir() + "/go") << "go\n";
  EXPECT_TRUE(c->WaitState(big, "Succeeded")) << c->Workload(big).dump();
  EXPECT_TRUE(c->WaitState(small, "Succeeded")) << c->Workload(small).dump();
  EXPECT_EQ(ReadFile(c->dir() + "/big.cvd"), big_uuid + "\n");
  EXPECT_EQ(ReadFile(c->dir() + "/small.cvd"), small_uuid + "\n");
}

TEST(Mig, BadMigRequestsAreRefusedByField) {
  auto c = StartCluster(kOneQueue, {});
  HttpResult r = c->api().Post(
      "/v1/workloads",
      Json{{"name", "x"}, {"queue", "default"}, {"mig", "5g.50gb"}, {"command", {"true"}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("unknown MIG profile 5g.50gb"), std::string::npos) << r.body;
  r = c->api().Post("/v1/workloads", Json{{"name", "x"},
                                          {"queue", "default"},
                                          {"mig", "1g.10gb"},
                                          {"gpu_milli", 300},
                                          {"command", {"true"}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("not both"), std::string::npos) << r.body;
  r = c->api().Post("/v1/workloads", Json{{"name", "x"},
                                          {"queue", "default"},
                                          {"gpus", 2},
                                          {"sharing", "mps"},
                                          {"command", {"true"}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("sharing"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace gpuorch::cptest
