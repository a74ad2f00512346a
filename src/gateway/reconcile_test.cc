#include "gateway/reconcile.h"

#include <gtest/gtest.h>

namespace gpuorch::gateway {
namespace {

constexpr const char* kMap = "/run/gw/gpuorch-routes.map";

// Fixture builders.
Replica Ready(int64_t w, const std::string& addr) { return {w, addr, true, false}; }
Replica Draining(int64_t w, const std::string& addr) { return {w, addr, true, true}; }
Replica NotReady(int64_t w, const std::string& addr) { return {w, addr, false, false}; }
ServerState Server(const std::string& backend, const Replica& r, int admin_state) {
  return {backend, ServerName(r), "h", 1, 2, admin_state};
}
constexpr int kReady = 0, kMaint = 0x01, kDrain = 0x08;

struct Case {
  std::string name;
  std::vector<Service> desired;
  Observed observed;
  std::vector<std::string> want;
};

TEST(ReconcileTest, Table) {
  const Replica a = Ready(9, "10.0.0.1:20001");
  const Replica b = Ready(10, "10.0.0.2:20002");
  const std::string an = "svc_0/" + ServerName(a), bn = "svc_0/" + ServerName(b);
  const std::vector<std::string> slots = {"svc_0", "svc_1"};
  const std::vector<MapEntry> chat_routed = {{"/svc/chat/", "svc_0"}};
  std::vector<Case> cases = {
      {"a new service gets the first free slot and its ready replica",
       {{5, "chat", {a}}},
       {slots, {}, {}, {}},
       {"add map /run/gw/gpuorch-routes.map /svc/chat/ svc_0",
        "add server " + an + " 10.0.0.1:20001", "set server " + an + " state ready"}},
      {"in step: nothing to do",
       {{5, "chat", {a}}},
       {slots, chat_routed, {Server("svc_0", a, kReady)}, {}},
       {}},
      {"a server in maintenance whose replica is ready again is made ready",
       {{5, "chat", {a}}},
       {slots, chat_routed, {Server("svc_0", a, kMaint)}, {}},
       {"set server " + an + " state ready"}},
      {"a draining replica is drained at once",
       {{5, "chat", {Draining(9, "10.0.0.1:20001"), b}}},
       {slots, chat_routed, {Server("svc_0", a, kReady)}, {{{"svc_0", ServerName(a)}, 3}}},
       {"set server " + an + " state drain", "add server " + bn + " 10.0.0.2:20002",
        "set server " + bn + " state ready"}},
      {"a draining replica is never added",
       {{5, "chat", {Draining(9, "10.0.0.1:20001")}}},
       {slots, chat_routed, {}, {}},
       {}},
      {"a replica that is not ready is put in maintenance, never added",
       {{5, "chat", {NotReady(9, "10.0.0.1:20001"), NotReady(10, "10.0.0.2:20002")}}},
       {slots, chat_routed, {Server("svc_0", a, kReady)}, {}},
       {"set server " + an + " state maint"}},
      {"a server gone from the list with sessions is drained, not deleted",
       {{5, "chat", {}}},
       {slots, chat_routed, {Server("svc_0", a, kReady)}, {{{"svc_0", ServerName(a)}, 2}}},
       {"set server " + an + " state drain"}},
      {"a gone server already draining with sessions waits",
       {{5, "chat", {}}},
       {slots, chat_routed, {Server("svc_0", a, kDrain)}, {{{"svc_0", ServerName(a)}, 1}}},
       {}},
      {"a gone server with unknown sessions is drained, never deleted",
       {{5, "chat", {}}},
       {slots, chat_routed, {Server("svc_0", a, kDrain)}, {}},
       {}},
      {"a gone server with no session goes to maintenance and is deleted",
       {{5, "chat", {}}},
       {slots, chat_routed, {Server("svc_0", a, kDrain)}, {{{"svc_0", ServerName(a)}, 0}}},
       {"set server " + an + " state maint", "del server " + an}},
      {"a gone server already in maintenance is deleted",
       {{5, "chat", {}}},
       {slots, chat_routed, {Server("svc_0", a, kMaint)}, {{{"svc_0", ServerName(a)}, 0}}},
       {"del server " + an}},
      {"a replica that moved is a new server; the old one drains",
       {{5, "chat", {Ready(9, "10.0.0.1:20005")}}},
       {slots, chat_routed, {Server("svc_0", a, kReady)}, {{{"svc_0", ServerName(a)}, 1}}},
       {"add server svc_0/w9_10.0.0.1_20005 10.0.0.1:20005",
        "set server svc_0/w9_10.0.0.1_20005 state ready", "set server " + an + " state drain"}},
      {"a service gone: its route is removed and its servers drain",
       {},
       {slots, chat_routed, {Server("svc_0", a, kReady)}, {{{"svc_0", ServerName(a)}, 1}}},
       {"del map /run/gw/gpuorch-routes.map /svc/chat/", "set server " + an + " state drain"}},
      {"a slot still holding servers of a gone service is not reused",
       {{6, "new", {}}},
       {slots, {}, {Server("svc_0", a, kDrain)}, {{{"svc_0", ServerName(a)}, 1}}},
       {"add map /run/gw/gpuorch-routes.map /svc/new/ svc_1"}},
      {"services get slots in id order",
       {{8, "b", {}}, {7, "a", {}}},
       {slots, {}, {}, {}},
       {"add map /run/gw/gpuorch-routes.map /svc/a/ svc_0",
        "add map /run/gw/gpuorch-routes.map /svc/b/ svc_1"}},
  };
  for (const Case& c : cases) {
    const Plan plan = Reconcile(c.desired, c.observed, kMap);
    EXPECT_EQ(plan.commands, c.want) << c.name;
    EXPECT_TRUE(plan.problems.empty()) << c.name << ": " << plan.problems.front();
  }
}

TEST(ReconcileTest, ProblemsNameTheService) {
  Observed one_slot{{"svc_0"}, {{"/svc/x/", "svc_0"}}, {}, {}};
  Plan plan = Reconcile({{1, "x", {}}, {2, "y", {}}, {3, "bad name", {}}}, one_slot, kMap);
  ASSERT_EQ(plan.problems.size(), 2u);
  EXPECT_EQ(plan.problems[0], "service 3 'bad name': name is not routable ([A-Za-z0-9._-]+)");
  EXPECT_EQ(plan.problems[1].rfind("service 2 'y': no free backend slot (all 1 in use", 0), 0u);
  EXPECT_EQ(plan.backend_of.at(1), "svc_0");
  EXPECT_EQ(plan.backend_of.count(2), 0u);
}

TEST(ServerNameTest, RoundTripsTheWorkload) {
  EXPECT_EQ(ServerName(Ready(9, "127.0.0.1:20001")), "w9_127.0.0.1_20001");
  EXPECT_EQ(ServerName(Ready(3, "[::1]:80")), "w3_---1-_80");
  EXPECT_EQ(WorkloadOfServer("w9_127.0.0.1_20001"), 9);
  EXPECT_EQ(WorkloadOfServer("keep"), -1);
  EXPECT_EQ(WorkloadOfServer("w_1"), -1);
  EXPECT_EQ(WorkloadOfServer("w12"), -1);
}

}  // namespace
}  // namespace gpuorch::gateway
