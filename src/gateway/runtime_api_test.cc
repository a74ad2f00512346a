#include "gateway/runtime_api.h"

#include <gtest/gtest.h>

namespace gpuorch::gateway {
namespace {

// What HAProxy 2.6.12 answered to `show servers state` with one dynamic server in svc_0 and
// one configured server in maintenance in svc_1.
constexpr const char* kState =
    "1\n"
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result "
    "srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id "
    "srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr "
    "srv_agent_port\n"
    "4 svc_0 1 w9_127.0.0.1_20001 127.0.0.1 2 0 1 1 3 1 0 0 0 0 0 0 - 20001 - 0 0 - - 0\n"
    "5 svc_1 1 keep 127.0.0.1 0 5 1 1 4 1 0 0 8 0 0 0 - 1 - 0 0 - - 0\n"
    "5 svc_1 2 d 127.0.0.1 2 8 1 1 4 1 0 0 8 0 0 0 - 2 - 0 0 - - 0\n\n";

TEST(ParseServersStateTest, ReadsFieldsByTheHeader) {
  auto r = ParseServersState(kState);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 3u);
  const ServerState& a = (*r)[0];
  EXPECT_EQ(a.backend, "svc_0");
  EXPECT_EQ(a.name, "w9_127.0.0.1_20001");
  EXPECT_EQ(a.address, "127.0.0.1");
  EXPECT_EQ(a.port, 20001);
  EXPECT_TRUE(a.ready());
  EXPECT_TRUE((*r)[1].maint());
  EXPECT_FALSE((*r)[1].drain());
  EXPECT_TRUE((*r)[2].drain());
  EXPECT_FALSE((*r)[2].ready());
}

TEST(ParseServersStateTest, Errors) {
  struct Case {
    std::string answer, want;
  } cases[] = {
      {"", "show servers state: expected format version 1"},
      {"Unknown command.\n", "show servers state: expected format version 1, got 'Unknown"},
      {"1\n# be_name srv_name\nsvc_0 a\n", "show servers state: line 3: no field srv_addr"},
      {"1\n# be_name srv_name srv_addr srv_op_state srv_admin_state srv_port\nsvc_0 a b x 0 1\n",
       "show servers state: line 3: srv_op_state, srv_admin_state or srv_port is not a number"},
  };
  for (const Case& c : cases) {
    auto r = ParseServersState(c.answer);
    ASSERT_FALSE(r.ok()) << c.answer;
    EXPECT_EQ(r.status().message().rfind(c.want, 0), 0u) << r.status().message();
  }
}

TEST(ParseMapTest, EntriesAndFiles) {
  auto e = ParseMapEntries("0x55 /svc/chat/ svc_0\n0x56 /svc/b/ svc_3\n\n");
  ASSERT_TRUE(e.ok());
  ASSERT_EQ(e->size(), 2u);
  EXPECT_EQ((*e)[1].key, "/svc/b/");
  EXPECT_EQ((*e)[1].value, "svc_3");
  EXPECT_FALSE(ParseMapEntries("Unknown map identifier.\n").ok());
  EXPECT_EQ(ParseMapFiles("# id (file) description\n3 (/tmp/x/gpuorch-routes.map) pattern "
                          "loaded from file\n"),
            std::vector<std::string>{"/tmp/x/gpuorch-routes.map"});
  EXPECT_EQ(ParseBackends("# name\nsvc_0\nsvc_1\n"), (std::vector<std::string>{"svc_0", "svc_1"}));
}

TEST(CheckAnswerTest, SuccessLinesAndErrors) {
  struct Case {
    std::string answer;
    bool ok;
  } cases[] = {
      {"\n", true},
      {"New server registered.\n", true},
      {"Server deleted.\n", true},
      {"No such server.\n", false},
      {"Only servers in maintenance mode can be deleted.\n", false},
      {"Server still has connections attached to it, cannot remove it.\n", false},
      {"Key not found.\n", false},
  };
  for (const Case& c : cases) {
    const core::Status s = CheckAnswer("del server svc_0/a", c.answer);
    EXPECT_EQ(s.ok(), c.ok) << c.answer;
    if (!c.ok) {
      EXPECT_EQ(s.message().rfind("haproxy 'del server svc_0/a': ", 0), 0u) << s.message();
    }
  }
}

TEST(RuntimeApiTest, AnUnreachableSocketIsAnErrorNamingIt) {
  RuntimeApi api("/nonexistent/haproxy.sock");
  auto r = api.Run("show info");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/nonexistent/haproxy.sock: connect"), std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace gpuorch::gateway
