#include "gateway/gateway.h"

#include <gtest/gtest.h>

#include "gateway/haproxy_config.h"

namespace gpuorch::gateway {
namespace {

using Json = nlohmann::json;

TEST(ParseServicesTest, TheContractsShape) {
  const Json body = Json::parse(R"({"services": [
    {"id": 5, "name": "chat", "queue": "serving", "kind": "inference", "state": "Running",
     "service": {"desired": 2, "ready": 1, "pinned": null, "mode": "stable", "bound": "none",
                 "in_flight": 3.0,
                 "replicas": [{"workload": 9, "replica": 0, "state": "Running", "node": "n1",
                               "address": "127.0.0.1:20001", "ready": true, "draining": false},
                              {"workload": 10, "replica": 1, "state": "Pending", "node": null,
                               "address": null, "ready": false, "draining": false},
                              {"workload": 11, "replica": 2, "state": "Running", "node": "h",
                               "address": "127.0.0.1:0", "ready": true, "draining": false}]}},
    {"id": 6, "name": "idle", "service": {"replicas": []}}]})");
  auto r = ParseServices(body);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 2u);
  const Service& s = (*r)[0];
  EXPECT_EQ(s.id, 5);
  EXPECT_EQ(s.name, "chat");
  ASSERT_EQ(s.replicas.size(), 3u);
  EXPECT_EQ(s.replicas[0].address, "127.0.0.1:20001");
  EXPECT_TRUE(s.replicas[0].ready);
  EXPECT_FALSE(s.replicas[1].ready);
  EXPECT_FALSE(s.replicas[2].ready);  // port 0: an emulated replica nothing listens for
  EXPECT_TRUE((*r)[1].replicas.empty());
}

TEST(ParseServicesTest, Errors) {
  for (const char* bad :
       {R"([])", R"({"services": {}})", R"({"services": [{"name": "x"}]})",
        R"({"services": [{"id": 1, "name": "x", "service": {"replicas": [{}]}}]})"}) {
    EXPECT_FALSE(ParseServices(Json::parse(bad)).ok()) << bad;
  }
}

TEST(LoadBodyTest, SessionsPlusHeldAndPerReplica) {
  Service s{
      5, "chat", {{9, "h:1", true, false}, {10, "h:2", true, true}, {11, "h:3", false, false}}};
  BackendStats st;
  st.sessions = 4;
  st.queue = 1;  // already inside `sessions` in HAProxy's counting
  st.waiting = 2;
  st.server_sessions = {{"w9_h_1", 3}, {"w10_h_2", 1}, {"keep", 5}};
  // Server states read before the sessions: 9 ready, 10 in drain, 11 has no server.
  std::vector<ServerState> servers(2);
  servers[0].name = "w9_h_1";
  servers[1].name = "w10_h_2";
  servers[1].admin_state = 0x08;
  EXPECT_EQ(LoadBody(s, st, servers), Json::parse(R"({"in_flight": 6, "source": "load_balancer",
                                                      "replicas": {"9": 3, "10": 1, "11": 0},
                                                      "drained": [10, 11]})"));
}

TEST(HaproxyConfigTest, SlotsRoutesAndHold) {
  HaproxyConfigOptions o;
  o.dir = "/run/gw";
  o.slots = 3;
  o.hold_timeout_s = 45;
  const std::string cfg = HaproxyConfig(o);
  for (const char* want :
       {"stats socket /run/gw/haproxy.sock mode 600 level admin",
        "lua-load /run/gw/gpuorch-hold.lua", "timeout queue 45s",
        "path,map_beg(/run/gw/gpuorch-routes.map)", "http-request lua.gpuorch_hold 45000",
        "backend svc_0\n", "backend svc_2\n", "use-service prometheus-exporter"}) {
    EXPECT_NE(cfg.find(want), std::string::npos) << want << "\n" << cfg;
  }
  EXPECT_EQ(cfg.find("backend svc_3"), std::string::npos);
  EXPECT_NE(HoldLuaScript().find("core.register_action(\"gpuorch_hold\""), std::string::npos);
}

}  // namespace
}  // namespace gpuorch::gateway
