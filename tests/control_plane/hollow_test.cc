// Hollow nodes (`gpuorch agent --emulate-nodes N`) against a real server: they register as
// N distinct emulated agents, run emulated tasks for GPUORCH_EMULATE_RUNTIME_S and exit
// with GPUORCH_EMULATE_EXIT_CODE, stop on cancel, and serve one cluster together with a
// real agent (whose tasks are real processes). Jobs are pinned by GPU model: the hollow
// nodes have H100s, the real agent A100s.
#include <set>

#include "fixture.h"

namespace gpuorch::cptest {
namespace {

constexpr int kHollow = 50;

// Lenient on a loaded 2-core machine: 51 agents heartbeat every 500 ms (below the server's
// max_heartbeats_per_second the interval stays as configured) and the node timeout is the
// default 10 s.
constexpr const char* kConfig = R"(
heartbeat_interval_ms: 500
cycle_interval_ms: 20
queues: [{name: default}]
)";

Json EmulatedJob(const std::string& name, const std::string& runtime_s, const std::string& code) {
  Json spec = Cluster::ShellJob(name, "default", 1, "exit 99");  // never run as a process
  spec["gpu_models"] = {"H100-80GB"};
  if (!runtime_s.empty()) spec["env"]["GPUORCH_EMULATE_RUNTIME_S"] = runtime_s;
  if (!code.empty()) spec["env"]["GPUORCH_EMULATE_EXIT_CODE"] = code;
  return spec;
}

class HollowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterOptions options;
    options.bin = GPUORCH_BIN;
    options.config_yaml = kConfig;
    options.agent_heartbeat_ms = 500;
    c_ = std::make_unique<Cluster>(options);
    ASSERT_TRUE(c_->StartServer()) << "see " << c_->dir();
    ASSERT_TRUE(c_->StartAgent("real-1", "4xA100-40GB")) << "see " << c_->dir();
    ASSERT_TRUE(c_->StartHollowNodes("hollow", kHollow))
        << c_->ReadyNodes("hollow") << " hollow nodes Ready; see " << c_->dir();
  }
  std::unique_ptr<Cluster> c_;
};

TEST_F(HollowTest, NodesRegisterAsDistinctEmulatedAgentsAndTasksFollowTheirEnv) {
  // Every hollow node is its own node, emulated, with its own GPUs.
  HttpResult nodes = c_->api().Get("/v1/nodes");
  ASSERT_EQ(nodes.status, 200);
  std::set<std::string> names, uuids;
  int hollow = 0;
  for (const Json& n : nodes.json["nodes"]) {
    names.insert(n["name"].get<std::string>());
    EXPECT_EQ(n["backend"], "emulated") << n.dump();
    if (n["name"].get<std::string>().rfind("hollow-", 0) != 0) continue;
    ++hollow;
    EXPECT_EQ(n["status"], "Ready");
    ASSERT_EQ(n["gpus"].size(), 8u);
    for (const Json& g : n["gpus"]) uuids.insert(g["uuid"].get<std::string>());
  }
  EXPECT_EQ(hollow, kHollow);
  EXPECT_EQ(names.size(), kHollow + 1u);
  EXPECT_EQ(uuids.size(), 8u * kHollow);
  EXPECT_TRUE(names.count("hollow-00001") && names.count("hollow-00050"));

  // A real job on the real agent, running while the hollow nodes work.
  const std::string go = c_->dir() + "/go";
  Json real = Cluster::ShellJob("real", "default", 1,
                                "while [ ! -f " + go + " ]; do sleep 0.05; done; exit 5");
  real["gpu_models"] = {"A100-40GB"};
  const int64_t real_id = c_->Submit(real);
  ASSERT_GT(real_id, 0);
  ASSERT_TRUE(c_->WaitState(real_id, "Running", 60s)) << c_->Workload(real_id).dump();

  const int64_t ok = c_->Submit(EmulatedJob("ok", "0.2", ""));
  const int64_t fail = c_->Submit(EmulatedJob("fail", "0.1", "3"));
  const int64_t forever = c_->Submit(EmulatedJob("forever", "", ""));
  Json gang = EmulatedJob("gang", "0.5", "0");
  gang["tasks"] = 16;
  gang["gpus"] = 8;  // 16 whole hollow nodes
  const int64_t gang_id = c_->Submit(gang);
  ASSERT_GT(ok, 0);
  ASSERT_GT(fail, 0);
  ASSERT_GT(forever, 0);
  ASSERT_GT(gang_id, 0);

  ASSERT_TRUE(c_->WaitState(ok, "Succeeded", 60s)) << c_->Workload(ok).dump();
  EXPECT_EQ(Tasks(*c_, ok)[0]["exit_code"], 0);
  EXPECT_EQ(Tasks(*c_, ok)[0]["node"].get<std::string>().rfind("hollow-", 0), 0u);
  ASSERT_TRUE(c_->WaitState(fail, "Failed", 60s)) << c_->Workload(fail).dump();
  EXPECT_EQ(Tasks(*c_, fail)[0]["exit_code"], 3);
  ASSERT_TRUE(c_->WaitState(gang_id, "Succeeded", 60s)) << c_->Workload(gang_id).dump();
  std::set<std::string> gang_nodes;
  for (const Json& t : Tasks(*c_, gang_id)) gang_nodes.insert(t["node"].get<std::string>());
  EXPECT_EQ(gang_nodes.size(), 16u);

  // Without a runtime the task runs until stopped: cancel stops it.
  ASSERT_TRUE(c_->WaitState(forever, "Running", 60s)) << c_->Workload(forever).dump();
  ASSERT_EQ(c_->api()
                .Post("/v1/workloads/" + std::to_string(forever) + "/cancel", std::string("{}"))
                .status,
            200);
  ASSERT_TRUE(c_->WaitState(forever, "Cancelled", 60s)) << c_->Workload(forever).dump();

  // The real agent's task was a real process all along.
  EXPECT_EQ(c_->State(real_id), "Running");
  WriteFile(go, "");
  ASSERT_TRUE(c_->WaitState(real_id, "Failed", 60s)) << c_->Workload(real_id).dump();
  EXPECT_EQ(Tasks(*c_, real_id)[0]["exit_code"], 5);
  EXPECT_EQ(Tasks(*c_, real_id)[0]["node"], "real-1");

  // Logs of an emulated task come from the hollow process's shared endpoint.
  CliResult logs = c_->Cli({"logs", std::to_string(ok)});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_NE(logs.out.find("emulated task on a hollow node"), std::string::npos) << logs.out;

  // All hollow nodes are still Ready: none timed out while working.
  EXPECT_EQ(c_->ReadyNodes("hollow"), kHollow);
}

}  // namespace
}  // namespace gpuorch::cptest
