#include "agent/mig.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "agent/agent_test_fixture.h"
#include "agent/emulated_executor.h"
#include "agent/protocol.h"
#include "agent/test_util.h"

namespace gpuorch::agent {
namespace {

using nlohmann::json;
using testing::AgentTest;
using testing::Desired;
using testing::WaitFor;

std::vector<GpuInfo> H100s(int n, bool mig = true) {
  EmulatedGpuBackend b(*ParseEmulatedSpec(std::to_string(n) + "xH100-80GB"), "n1", mig);
  return *b.Discover();
}

std::unique_ptr<MigManager> Manager(const std::vector<GpuInfo>& gpus,
                                    std::vector<std::string>* log = nullptr) {
  auto m = MigManager::Open(std::make_unique<EmulatedMigDriver>("n1", gpus), gpus,
                            [log](const std::string& l) {
                              if (log != nullptr) log->push_back(l);
                            });
  EXPECT_TRUE(m.ok()) << m.status().message();
  return m.ok() ? std::move(m).value() : nullptr;
}

// --- Protocol ---------------------------------------------------------------------------

TEST(MigProtocolTest, RegistrationCarriesLayoutAndDevicesOfMigGpusOnly) {
  Registration r;
  r.gpus = H100s(2);
  r.gpus[1].mig = false;
  r.gpus[0].mig_layout = "1g.10gb@0,3g.40gb@4";
  r.gpus[0].mig_devices = {{0, "1g.10gb", "MIG-a", 1}, {4, "3g.40gb", "MIG-b", 2}};
  const json j = json::parse(RegisterRequestJson(r));
  const json& g0 = j.at("gpus")[0];
  EXPECT_EQ(g0.at("mig"), true);
  EXPECT_EQ(g0.at("mig_layout"), "1g.10gb@0,3g.40gb@4");
  EXPECT_EQ(g0.at("mig_devices"), json::parse(R"([{"start":0,"profile":"1g.10gb","uuid":"MIG-a"},
                            {"start":4,"profile":"3g.40gb","uuid":"MIG-b"}])"));
  EXPECT_FALSE(j.at("gpus")[1].contains("mig_layout"));
  EXPECT_FALSE(j.at("gpus")[1].contains("mig_devices"));
}

TEST(MigProtocolTest, HeartbeatCarriesMigOnlyWhenGiven) {
  EXPECT_FALSE(json::parse(HeartbeatRequestJson({})).contains("mig"));
  std::vector<MigReport> mig = {{0, "7g.80gb@0", 3, {{0, "7g.80gb", "MIG-x", 1}}, ""},
                                {1, "", 4, {}, "cannot create 1g.10gb@7: no room there"}};
  const json j = json::parse(HeartbeatRequestJson({}, nullptr, &mig));
  EXPECT_EQ(j.at("mig"), json::parse(R"([
      {"gpu":0,"layout":"7g.80gb@0","generation":3,
       "devices":[{"start":0,"profile":"7g.80gb","uuid":"MIG-x"}]},
      {"gpu":1,"layout":"","generation":4,"devices":[],
       "error":"cannot create 1g.10gb@7: no room there"}])"));
}

TEST(MigProtocolTest, DesiredListCarriesMigLayouts) {
  core::Result<DesiredList> d = ParseHeartbeatResponse(R"({"epoch":1,"version":2,"desired":[],
      "mig_layouts":[{"gpu":1,"layout":"3g.40gb@0,3g.40gb@4","generation":7,"future":1}]})");
  ASSERT_TRUE(d.ok()) << d.status().message();
  ASSERT_EQ(d->mig_layouts.size(), 1u);
  EXPECT_EQ(d->mig_layouts[0], (MigDesired{1, "3g.40gb@0,3g.40gb@4", 7}));
  EXPECT_TRUE(ParseHeartbeatResponse(R"({"desired":[]})")->mig_layouts.empty());
}

TEST(MigProtocolTest, MalformedMigFieldsAreNamed) {
  struct Case {
    const char* body;
    const char* names;
  };
  const Case cases[] = {
      {R"({"desired":[],"mig_layouts":{}})", "mig_layouts"},
      {R"({"desired":[],"mig_layouts":[{"gpu":"0","layout":""}]})", "mig_layouts[].gpu"},
      {R"({"desired":[],"mig_layouts":[{"gpu":0,"layout":5}]})", "mig_layouts[].layout"},
      {R"({"desired":[],"mig_layouts":[{"gpu":0}]})", "mig_layouts[].layout: missing"},
      {R"({"desired":[],"mig_layouts":[3]})", "mig_layouts[]"},
      {R"({"desired":[],"mig_layouts":[{"gpu":0,"layout":"","generation":1.5}]})",
       "mig_layouts[].generation"},
      {R"({"desired":[{"workload":1,"task":0,"attempt":0,"command":["x"],"mig":[]}]})", "mig"},
      {R"({"desired":[{"workload":1,"task":0,"attempt":0,"command":["x"],
                       "mig":{"gpu":0,"start":4}}]})",
       "mig.profile"},
      {R"({"desired":[{"workload":1,"task":0,"attempt":0,"command":["x"],
                       "mig":{"gpu":0,"start":9,"profile":"1g.10gb"}}]})",
       "start"},
      {R"({"desired":[{"workload":1,"task":0,"attempt":0,"command":["x"],"sharing":1}]})",
       "sharing"},
  };
  for (const Case& c : cases) {
    core::Result<DesiredList> d = ParseHeartbeatResponse(c.body);
    ASSERT_FALSE(d.ok()) << c.body;
    EXPECT_NE(d.status().message().find(c.names), std::string::npos)
        << c.body << " -> " << d.status().message();
  }
}

TEST(MigProtocolTest, TaskSpecMigAndSharingRoundTrip) {
  TaskSpec s;
  s.key = {5, 1, 0};
  s.command = {"x"};
  s.gpus = {1};
  s.mig = MigPlacement{1, 4, "3g.40gb"};
  s.sharing = "mps";
  core::Result<TaskSpec> back = ParseTaskSpec(TaskSpecJson(s));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->mig, s.mig);
  EXPECT_EQ(back->sharing, "mps");
  TaskSpec plain;
  plain.command = {"x"};
  const json j = json::parse(TaskSpecJson(plain));
  EXPECT_FALSE(j.contains("mig"));
  EXPECT_FALSE(j.contains("sharing"));
  EXPECT_FALSE(ParseTaskSpec(j.dump())->mig.has_value());
}

// --- Emulated apply rules ---------------------------------------------------------------

TEST(EmulatedMigTest, StartsEmptyAndAppliesAValidLayoutWithStableUuids) {
  const std::vector<GpuInfo> gpus = H100s(2);
  std::unique_ptr<MigManager> m = Manager(gpus);
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(m->Reports().size(), 2u);
  EXPECT_EQ(m->Reports()[0].layout, "");
  m->SetDesired({{0, "1g.10gb@0,2g.20gb@2,3g.40gb@4", 3}});
  EXPECT_TRUE(m->Reconcile({}));
  const MigReport r = m->Reports()[0];
  EXPECT_EQ(r.layout, "1g.10gb@0,2g.20gb@2,3g.40gb@4");
  EXPECT_EQ(r.generation, 3);
  EXPECT_EQ(r.error, "");
  ASSERT_EQ(r.devices.size(), 3u);
  EXPECT_EQ(r.devices[2].uuid, "MIG-emulated-n1-0-4-3g.40gb");
  EXPECT_EQ(m->Uuid(0, 2, "2g.20gb"), "MIG-emulated-n1-0-2-2g.20gb");
  EXPECT_EQ(m->Uuid(0, 2, "1g.10gb"), std::nullopt) << "profile and start must both match";
  EXPECT_EQ(m->Reports()[1].layout, "") << "GPU 1 untouched";
  const uint64_t changes = m->changes();
  m->SetDesired({{0, "1g.10gb@0,2g.20gb@2,3g.40gb@4", 3}});
  EXPECT_FALSE(m->Reconcile({})) << "the same desired layout again changes nothing";
  EXPECT_EQ(m->changes(), changes);
  std::vector<GpuInfo> filled = gpus;
  m->Fill(filled);
  EXPECT_EQ(filled[0].mig_layout, "1g.10gb@0,2g.20gb@2,3g.40gb@4");
  EXPECT_EQ(filled[0].mig_devices.size(), 3u);
}

TEST(EmulatedMigTest, InvalidLayoutsChangeNothingAndSayWhy) {
  const char* invalid[] = {"3g.40gb@0,3g.40gb@2", "4g.40gb@4", "9g.99gb@0", "1g.10gb@7", "junk"};
  for (const char* layout : invalid) {
    std::unique_ptr<MigManager> m = Manager(H100s(1));
    m->SetDesired({{0, "7g.80gb@0", 1}});
    ASSERT_TRUE(m->Reconcile({}));
    m->SetDesired({{0, layout, 2}});
    EXPECT_TRUE(m->Reconcile({})) << layout;
    const MigReport r = m->Reports()[0];
    EXPECT_EQ(r.layout, "7g.80gb@0") << layout << ": nothing destroyed";
    EXPECT_EQ(r.generation, 2);
    EXPECT_NE(r.error.find("not applied"), std::string::npos) << layout << ": " << r.error;
  }
}

TEST(EmulatedMigTest, NeverDestroysAnInstanceARunningTaskUsesAndRetriesOnceItIsFree) {
  std::vector<std::string> log;
  std::unique_ptr<MigManager> m = Manager(H100s(1), &log);
  m->SetDesired({{0, "3g.40gb@0,3g.40gb@4", 1}});
  ASSERT_TRUE(m->Reconcile({}));
  const std::string busy_uuid = *m->Uuid(0, 4, "3g.40gb");
  // The server wants 4 and 0 turned into one 7g; a task still runs on the one at 4.
  const std::vector<MigPlacement> busy = {{0, 4, "3g.40gb"}};
  m->SetDesired({{0, "1g.10gb@0,1g.10gb@1,2g.20gb@2", 2}});
  EXPECT_TRUE(m->Reconcile(busy));
  MigReport r = m->Reports()[0];
  EXPECT_EQ(r.layout, "1g.10gb@0,1g.10gb@1,2g.20gb@2,3g.40gb@4") << "idle one replaced";
  EXPECT_EQ(m->Uuid(0, 4, "3g.40gb"), busy_uuid);
  EXPECT_NE(r.error.find("3g.40gb@4 kept: a running task uses it"), std::string::npos) << r.error;
  EXPECT_FALSE(m->Reconcile(busy)) << "not tried again while the same instances are busy";
  EXPECT_TRUE(m->Reconcile({})) << "the task ended";
  r = m->Reports()[0];
  EXPECT_EQ(r.layout, "1g.10gb@0,1g.10gb@1,2g.20gb@2");
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.generation, 2);
  // A kept instance that overlaps a wanted one: the wanted one is not created.
  m->SetDesired({{0, "7g.80gb@0", 3}});
  EXPECT_TRUE(m->Reconcile({{0, 2, "2g.20gb"}}));
  r = m->Reports()[0];
  EXPECT_EQ(r.layout, "2g.20gb@2");
  EXPECT_NE(r.error.find("cannot create 7g.80gb@0"), std::string::npos) << r.error;
}

TEST(EmulatedMigTest, LayoutsForGpusNotInMigModeAreIgnored) {
  std::vector<GpuInfo> gpus = H100s(2);
  gpus[1].mig = false;
  std::vector<std::string> log;
  std::unique_ptr<MigManager> m = Manager(gpus, &log);
  m->SetDesired({{1, "7g.80gb@0", 1}, {5, "7g.80gb@0", 1}});
  EXPECT_FALSE(m->Reconcile({}));
  EXPECT_EQ(m->Reports().size(), 1u);
  EXPECT_EQ(log.size(), 2u);
}

TEST(EmulatedMigTest, EmulatingMigNeedsAModelWithProfiles) {
  EmulatedGpuBackend t4(*ParseEmulatedSpec("2xT4"), "n1", true);
  core::Result<std::vector<GpuInfo>> found = t4.Discover();
  ASSERT_FALSE(found.ok());
  EXPECT_NE(found.status().message().find("--emulate-mig: T4 has no MIG profiles"),
            std::string::npos)
      << found.status().message();
  EmulatedGpuBackend plain(*ParseEmulatedSpec("2xH100-80GB"), "n1");
  EXPECT_FALSE(plain.OpenMig(*plain.Discover()).ok());
  EXPECT_FALSE((*plain.Discover())[0].mig);
}

TEST(NvmlMigTest, ALibraryWithoutMigEntryPointsMeansNoMig) {
  std::vector<GpuInfo> gpus = H100s(1);
  core::Result<std::unique_ptr<MigDriver>> d = OpenNvmlMig("/nonexistent/libnvidia-ml.so.1", gpus);
  EXPECT_FALSE(d.ok());
  d = OpenNvmlMig(GPUORCH_FAKE_NVML, gpus);  // the stand-in has no MIG entry points
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("no MIG support"), std::string::npos) << d.status().message();
  EXPECT_FALSE(OpenNvmlMig(GPUORCH_FAKE_NVML, H100s(1, false)).ok()) << "no GPU in MIG mode";
}

// --- The agent: a desired layout is applied and reported ---------------------------------

class MigAgentTest : public AgentTest {
 protected:
  MigAgentTest() {
    gpu_spec_ = "2xH100-80GB";
    emulate_mig_ = true;
  }
  // The `mig` entry of GPU `gpu` in the first heartbeat where `pred` holds for it.
  json WaitMig(int gpu, const std::function<bool(const json&)>& pred) {
    json found = nullptr;
    WaitFor([&] {
      for (const json& h : server_.heartbeats()) {
        if (!h.contains("mig")) continue;
        for (const json& e : h.at("mig")) {
          if (e.at("gpu") == gpu && pred(e)) found = e;
        }
      }
      return !found.is_null();
    });
    return found;
  }
};

TEST_F(MigAgentTest, AppliesTheDesiredLayoutReportsItAndRunsTasksOnItsInstances) {
  StartAgent();
  ASSERT_TRUE(WaitFor([&] { return !server_.registrations().empty(); }));
  const json reg = server_.registrations()[0];
  EXPECT_EQ(reg.at("gpus")[0].at("mig"), true);
  EXPECT_EQ(reg.at("gpus")[0].at("mig_layout"), "");
  EXPECT_EQ(reg.at("gpus")[0].at("mig_devices"), json::array());
  // The first heartbeat reports every MIG GPU's layout (generation 0: none applied yet).
  EXPECT_FALSE(WaitMig(1, [](const json& e) { return e.at("generation") == 0; }).is_null());

  server_.SetExtra(
      {{"mig_layouts", {{{"gpu", 1}, {"layout", "3g.40gb@0,3g.40gb@4"}, {"generation", 5}}}}});
  const json applied = WaitMig(1, [](const json& e) { return e.at("generation") == 5; });
  ASSERT_FALSE(applied.is_null());
  EXPECT_EQ(applied.at("layout"), "3g.40gb@0,3g.40gb@4");
  EXPECT_FALSE(applied.contains("error"));
  EXPECT_EQ(applied.at("devices")[1].at("uuid"), "MIG-emulated-n1-1-4-3g.40gb");

  // A task on the instance at 4 sees only it; one on an instance that does not exist fails.
  json on_mig = Desired(1, "echo $CUDA_VISIBLE_DEVICES $NVIDIA_VISIBLE_DEVICES", {1});
  on_mig["mig"] = {{"gpu", 1}, {"start", 4}, {"profile", "3g.40gb"}};
  json missing = Desired(2, "true", {1});
  missing["mig"] = {{"gpu", 1}, {"start", 0}, {"profile", "7g.80gb"}};
  server_.SetDesired(json::array({on_mig, missing}));
  ASSERT_TRUE(server_.WaitTask(1, testing::ExitedWith(0)));
  ASSERT_TRUE(server_.WaitTask(2, testing::ExitedWith(kLostExitCode)));
  EXPECT_EQ(testing::TaskLog(dir_.path(), {1, 0, 0}, "stdout"),
            "MIG-emulated-n1-1-4-3g.40gb MIG-emulated-n1-1-4-3g.40gb\n");
  EXPECT_NE(testing::TaskLog(dir_.path(), {2, 0, 0}, "stderr")
                .find("MIG instance 7g.80gb@0 on GPU 1 does not exist"),
            std::string::npos);

  // After a server restart (new epoch) the layouts are reported again.
  const size_t before = server_.heartbeats().size();
  server_.Restart(200);
  ASSERT_TRUE(WaitFor([&] {
    const std::vector<json> hs = server_.heartbeats();
    for (size_t i = before; i < hs.size(); ++i) {
      if (hs[i].contains("mig")) return true;
    }
    return false;
  }));
}

}  // namespace
}  // namespace gpuorch::agent

namespace gpuorch::agent {
namespace {

// --- The protocol loop: when layouts are reported, busy instances across a stop ----------

class MigSessionTest : public ::testing::Test {
 protected:
  MigSessionTest() : session_(Reg(), executor_, 500, nullptr) {
    mig_ = Manager(Reg().gpus);
    session_.SetMig(mig_.get());
  }
  static Registration Reg() {
    Registration r;
    r.name = "n1";
    r.gpus = H100s(1);
    return r;
  }
  static HttpAnswer Answer(int64_t version, json desired, json mig = nullptr, int64_t epoch = 7) {
    json a = {{"desired", std::move(desired)}, {"epoch", epoch}, {"version", version}};
    if (!mig.is_null()) a["mig_layouts"] = std::move(mig);
    return HttpAnswer{200, a.dump(), ""};
  }
  static json Task(int64_t workload, int start, const char* profile) {
    return {{"workload", workload}, {"task", 0},
            {"attempt", 0},         {"command", {"x"}},
            {"gpus", {0}},          {"mig", {{"gpu", 0}, {"start", start}, {"profile", profile}}}};
  }
  // The `mig` member of the next heartbeat (null when it has none).
  json NextMig() {
    const json h = json::parse(session_.HeartbeatBody());
    return h.contains("mig") ? h.at("mig") : json(nullptr);
  }

  int64_t now_ = 0;
  EmulatedExecutor executor_{[this] { return now_; }};
  std::unique_ptr<MigManager> mig_;
  NodeSession session_;
};

TEST_F(MigSessionTest, ReportsLayoutsUntilAcknowledgedAndAgainAfterRegistrationOrANewEpoch) {
  EXPECT_EQ(json::parse(session_.RegisterBody()).at("gpus")[0].at("mig_layout"), "");
  ASSERT_TRUE(session_.OnRegisterAnswer(HttpAnswer{200, R"({"node":"n1"})", ""}));
  EXPECT_FALSE(NextMig().is_null()) << "the first heartbeat reports the layouts";
  EXPECT_FALSE(NextMig().is_null()) << "unanswered: still reported";
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Answer(1, json::array())));
  EXPECT_TRUE(NextMig().is_null()) << "acknowledged and unchanged";
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Answer(1, json::array())));

  // A desired layout in an answer: applied before its tasks start, reported at once.
  ASSERT_TRUE(session_.OnHeartbeatAnswer(
      Answer(2, {Task(1, 4, "3g.40gb")},
             {{{"gpu", 0}, {"layout", "3g.40gb@0,3g.40gb@4"}, {"generation", 9}}})));
  EXPECT_EQ(executor_.running(), 1) << "its instance existed when it started";
  session_.ContactDone(true, now_);
  EXPECT_TRUE(session_.ContactDue(now_, false)) << "the report is sent at once";
  json m = NextMig();
  ASSERT_FALSE(m.is_null());
  EXPECT_EQ(m[0].at("layout"), "3g.40gb@0,3g.40gb@4");
  EXPECT_EQ(m[0].at("generation"), 9);
  EXPECT_EQ(json::parse(session_.RegisterBody()).at("gpus")[0].at("mig_layout"),
            "3g.40gb@0,3g.40gb@4");
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Answer(2, {Task(1, 4, "3g.40gb")})));
  EXPECT_TRUE(NextMig().is_null());

  // The running task's instance is kept when the server wants a 7g, until the task is gone.
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Answer(
      3, {Task(1, 4, "3g.40gb")}, {{{"gpu", 0}, {"layout", "7g.80gb@0"}, {"generation", 10}}})));
  m = NextMig();
  ASSERT_FALSE(m.is_null());
  EXPECT_EQ(m[0].at("layout"), "3g.40gb@4");
  EXPECT_EQ(m[0].at("generation"), 10);
  EXPECT_NE(m[0].at("error").get<std::string>().find("3g.40gb@4 kept"), std::string::npos);
  // That error report ends the change on the server: its next answer no longer lists it,
  // so the agent drops it and does not apply it later, when the task stops (the engine
  // plans again, with a new generation, if it still wants a 7g).
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Answer(3, {Task(1, 4, "3g.40gb")})));
  EXPECT_TRUE(NextMig().is_null()) << "not tried again while the task runs";
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Answer(4, json::array())));
  ASSERT_EQ(executor_.running(), 0);
  EXPECT_TRUE(NextMig().is_null()) << "a change the server ended is not applied later";
  ASSERT_TRUE(session_.OnHeartbeatAnswer(
      Answer(5, json::array(), {{{"gpu", 0}, {"layout", "7g.80gb@0"}, {"generation", 11}}})));
  m = NextMig();
  ASSERT_FALSE(m.is_null());
  EXPECT_EQ(m[0].at("layout"), "7g.80gb@0");
  EXPECT_EQ(m[0].at("generation"), 11);
  EXPECT_FALSE(m[0].contains("error"));
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Answer(5, json::array())));
  EXPECT_TRUE(NextMig().is_null());

  // A restarted server (another epoch) hears the layouts again, at once.
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Answer(1, json::array(), nullptr, 8)));
  session_.ContactDone(true, now_);
  EXPECT_TRUE(session_.ContactDue(now_, false));
  EXPECT_FALSE(NextMig().is_null());
  ASSERT_TRUE(session_.OnHeartbeatAnswer(Answer(1, json::array(), nullptr, 8)));
  EXPECT_TRUE(NextMig().is_null());
  // And so does the server after a new registration.
  ASSERT_TRUE(session_.OnRegisterAnswer(HttpAnswer{200, R"({"node":"n1"})", ""}));
  EXPECT_FALSE(NextMig().is_null());
}

}  // namespace
}  // namespace gpuorch::agent
