// The authorization contract (issue 12, docs/security.md): every endpoint against every kind
// of caller, each with the status it must get, on a real server on loopback. The table
// below is the contract; docs/security.md prints it, and this test fails when the two
// differ (GPUORCH_UPDATE_DOCS=1 rewrites the doc's matrix from the table).
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "server/server.h"
#include "server/token.h"
#include "server/ui_assets.h"

namespace gpuorch::server {
namespace {

// The callers of the matrix, in its column order.
enum Who { kAdmin, kOperator, kTenantA, kTenantB, kReaderA, kAgentN1, kNone, kRevoked, kBad };
constexpr int kWhoCount = 9;
const char* const kWhoNames[kWhoCount] = {"admin",       "operator",    "tenant of a",
                                          "tenant of b", "reader of a", "agent of n1",
                                          "no token",    "revoked",     "malformed"};

struct Answer {
  int status = -1;
  Json json;
  std::string body;
  std::string request_id;
};

// A fresh target for a request that changes what it touches (cancel, revoke).
struct Request {
  std::string method;
  std::string path;
  Json body;  // null: no body
};

struct Row {
  std::string endpoint;  // what the doc shows
  std::function<Request(Who)> request;
  int expected[kWhoCount];
};

class AuthMatrixTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::filesystem::temp_directory_path() / ("gpuorch-authz-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    // A log endpoint standing in for n1's agent, so that an allowed log request is a 200.
    logs_ = std::make_unique<httplib::Server>();
    // It checks the log secret the node registered, as an agent does.
    logs_->Get(R"(/v1/tasks/.*)", [](const httplib::Request& req, httplib::Response& res) {
      if (req.get_header_value("Authorization") != "Bearer " + kLogSecret) {
        res.status = 401;
        return;
      }
      res.set_content("hello from a\n", "text/plain");
    });
    logs_port_ = logs_->bind_to_any_port("127.0.0.1");
    logs_thread_ = std::thread([] { logs_->listen_after_bind(); });
    auto config = ParseConfig("listen: 127.0.0.1:0\ndata: " + dir_.string() + R"(
default_queue: b
queues:
  - {name: a, allowed_priorities: [production, normal, opportunistic]}
  - {name: b}
)");
    ASSERT_TRUE(config.ok()) << config.status().message();
    ::testing::internal::CaptureStderr();
    auto s = Server::Create(*config);
    bootstrap_log_ = ::testing::internal::GetCapturedStderr();
    ASSERT_TRUE(s.ok()) << s.status().message();
    server_ = std::move(s).value().release();
    auto port = server_->Bind();
    ASSERT_TRUE(port.ok());
    port_ = *port;
    serving_ = std::thread([] { server_->Serve(); });

    std::ifstream in(dir_ / "admin.token");
    std::getline(in, tokens_[kAdmin]);
    auto make = [](const Json& request) {
      Answer a = Call(kAdmin, "POST", "/v1/tokens", request);
      EXPECT_EQ(a.status, 201) << a.body;
      return a.json.value("token", "");
    };
    tokens_[kOperator] = make({{"name", "op"}, {"role", "operator"}});
    tokens_[kTenantA] = make({{"name", "alice"}, {"role", "tenant"}, {"queues", {"a"}}});
    tokens_[kTenantB] = make({{"name", "bob"}, {"role", "tenant"}, {"queues", {"b"}}});
    tokens_[kReaderA] = make({{"name", "auditor"}, {"role", "reader"}, {"queues", {"a"}}});
    tokens_[kAgentN1] = make({{"name", "n1"}, {"role", "agent"}, {"node", "n1"}});
    tokens_[kRevoked] = make({{"name", "gone"}, {"role", "tenant"}, {"queues", {"a"}}});
    tokens_[kBad] = "gpo_not-a-token";
    Answer revoked = Call(kAdmin, "POST", "/v1/tokens/" + Accessor(kRevoked) + "/revoke", {});
    EXPECT_EQ(revoked.status, 200) << revoked.body;

    // n1 with one GPU, registered by its own token; a workload of each tenant running on it.
    Answer reg = Call(kAgentN1, "POST", "/v1/agents/register", NodeBody("n1"));
    ASSERT_EQ(reg.status, 200) << reg.body;
    wa_ = Submit(kTenantA, "a", 1, {{"SECRET", "a-secret"}});
    wb_ = Submit(kTenantB, "b", 0, {{"SECRET", "b-secret"}});
    ASSERT_GT(wa_, 0);
    ASSERT_GT(wb_, 0);
    // A service of queue a, at zero replicas (it takes nothing from n1).
    Answer sa = Call(kTenantA, "POST", "/v1/workloads",
                     Json{{"name", "svc"},
                          {"queue", "a"},
                          {"kind", "inference"},
                          {"cpu_milli", 100},
                          {"replicas", "0:1"},
                          {"command", {"sleep", "600"}}});
    ASSERT_EQ(sa.status, 201) << sa.body;
    sa_ = sa.json.value("id", int64_t{-1});
    for (int i = 0; i < 3000 && Call(kAdmin, "GET", Workload(wa_)).json["state"] != "Running";
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(Call(kAdmin, "GET", Workload(wa_)).json["state"], "Running");
  }

  static void TearDownTestSuite() {
    if (server_ != nullptr) server_->Stop();
    if (serving_.joinable()) serving_.join();
    delete server_;
    server_ = nullptr;
    if (logs_) logs_->stop();
    if (logs_thread_.joinable()) logs_thread_.join();
    logs_.reset();
    std::filesystem::remove_all(dir_);
  }

  static Json NodeBody(const std::string& name) {
    return Json{{"name", name},
                {"address", "127.0.0.1:" + std::to_string(logs_port_)},
                {"log_secret", kLogSecret},
                {"cpu_milli", 64000},
                {"memory_mib", 262144},
                {"gpus", {{{"index", 0}, {"model", "H100"}, {"memory_mib", 81920}}}}};
  }

  static std::string Accessor(Who who) {
    return tokens_[who].substr(kTokenPrefix.size(), kAccessorLength);
  }
  static std::string Workload(int64_t id) { return "/v1/workloads/" + std::to_string(id); }

  static Answer Call(Who who, const std::string& method, const std::string& path,
                     const Json& body = nullptr) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(30, 0);
    httplib::Headers headers;
    if (who != kNone) headers.emplace("Authorization", "Bearer " + tokens_[who]);
    const std::string text = body.is_null() ? "" : body.dump();
    httplib::Result r = method == "GET"    ? c.Get(path, headers)
                        : method == "POST" ? c.Post(path, headers, text, "application/json")
                                           : c.Delete(path, headers, text, "application/json");
    Answer a;
    if (!r) return a;
    a.status = r->status;
    a.body = r->body;
    a.json = Json::parse(r->body, nullptr, false);
    a.request_id = r->get_header_value("X-Request-Id");
    return a;
  }

  static int64_t Submit(Who who, const std::string& queue, int gpus,
                        const std::map<std::string, std::string>& env = {}) {
    Json spec = {{"name", "w"},
                 {"gpus", gpus},
                 {"cpu_milli", 100},
                 {"command", {"sleep", "600"}},
                 {"env", env}};
    if (!queue.empty()) spec["queue"] = queue;
    Answer a = Call(who, "POST", "/v1/workloads", spec);
    EXPECT_EQ(a.status, 201) << a.body;
    return a.status == 201 ? a.json.value("id", int64_t{-1}) : -1;
  }

  // The contract. Statuses per caller, in kWhoNames order: 401 no (valid) token, 403 the
  // token may not do this, 404 the resource is another tenant's (it does not exist for
  // them). Requests that change what they touch get a fresh target in every cell.
  static std::vector<Row> Matrix();

  static inline std::filesystem::path dir_;
  static inline Server* server_ = nullptr;
  static inline std::thread serving_, logs_thread_;
  static inline std::unique_ptr<httplib::Server> logs_;
  static inline int port_ = 0, logs_port_ = 0;
  static inline const std::string kLogSecret = std::string(64, 'c');
  static inline std::string tokens_[kWhoCount];
  static inline std::string bootstrap_log_;
  static inline int64_t wa_ = 0, wb_ = 0, sa_ = 0;
};

std::vector<Row> AuthMatrixTest::Matrix() {
  auto fixed = [](std::string method, std::string path, Json body = nullptr) {
    return [=](Who) { return Request{method, path, body}; };
  };
  auto job = [](const std::string& queue, const std::string& priority) {
    Json j = {{"name", "m"}, {"gpus", 0}, {"cpu_milli", 100}, {"command", {"true"}}};
    if (!queue.empty()) j["queue"] = queue;
    if (!priority.empty()) j["priority"] = priority;
    return j;
  };
  const std::string wa = Workload(wa_);
  auto fresh_workload = [](const std::string& method, const std::string& suffix) {
    return [=](Who) { return Request{method, Workload(Submit(kAdmin, "a", 0)) + suffix, nullptr}; };
  };
  auto fresh_token = [](const std::string& method, const std::string& suffix) {
    return [=](Who) {
      Answer a = Call(kAdmin, "POST", "/v1/tokens",
                      Json{{"name", "victim"}, {"role", "reader"}, {"queues", {"a"}}});
      return Request{method, "/v1/tokens/" + a.json.value("accessor", "x") + suffix, nullptr};
    };
  };
  // A node name each caller may try to register: the agent its own, others their own.
  auto register_node = [](Who who) {
    return Request{"POST", "/v1/agents/register",
                   NodeBody(who == kAgentN1 ? "n1" : "n-" + std::to_string(who))};
  };
  constexpr int A = 401;  // no valid token
  // clang-format off
  return {
    // endpoint                                  request                                        admin op  tA   tB   rA   ag   none rev  bad
    {"GET /healthz",                             fixed("GET", "/healthz"),                      {200, 200, 200, 200, 200, 200, 200, 200, 200}},
    {"GET /metrics (metrics_public: true)",      fixed("GET", "/metrics"),                      {200, 200, 200, 200, 200, 200, 200, 200, 200}},
    {"POST /v1/workloads (queue a)",             fixed("POST", "/v1/workloads", job("a", "")),  {201, 403, 201, 403, 403, 403, A, A, A}},
    {"POST /v1/workloads (no queue)",            fixed("POST", "/v1/workloads", job("", "")),   {201, 403, 201, 201, 403, 403, A, A, A}},
    {"POST /v1/workloads (a, production)",       fixed("POST", "/v1/workloads", job("a", "production")), {201, 403, 201, 403, 403, 403, A, A, A}},
    {"POST /v1/workloads (b, production)",       fixed("POST", "/v1/workloads", job("b", "production")), {403, 403, 403, 403, 403, 403, A, A, A}},
    {"GET /v1/workloads",                        fixed("GET", "/v1/workloads"),                 {200, 200, 200, 200, 200, 403, A, A, A}},
    {"GET /v1/workloads/{a-workload}",              fixed("GET", wa),                              {200, 200, 200, 404, 200, 403, A, A, A}},
    {"GET /v1/workloads/{a-workload}/logs",         fixed("GET", wa + "/logs"),                    {200, 200, 200, 404, 200, 403, A, A, A}},
    {"POST /v1/workloads/{a-workload}/cancel",      fresh_workload("POST", "/cancel"),             {200, 403, 200, 404, 403, 403, A, A, A}},
    {"DELETE /v1/workloads/{a-workload}",           fresh_workload("DELETE", ""),                  {200, 403, 200, 404, 403, 403, A, A, A}},
    {"POST /v1/workloads/{a-service}/load",         fixed("POST", Workload(sa_) + "/load", Json{{"in_flight", 0}}), {200, 403, 200, 404, 403, 403, A, A, A}},
    {"POST /v1/workloads/{a-service}/scale",        fixed("POST", Workload(sa_) + "/scale", Json{{"auto", true}}), {200, 403, 200, 404, 403, 403, A, A, A}},
    {"GET /v1/services",                         fixed("GET", "/v1/services"),                  {200, 200, 200, 200, 200, 403, A, A, A}},
    {"GET /v1/queues",                           fixed("GET", "/v1/queues"),                    {200, 200, 200, 200, 200, 403, A, A, A}},
    {"GET /v1/queues/a",                         fixed("GET", "/v1/queues/a"),                  {200, 200, 200, 404, 200, 403, A, A, A}},
    {"GET /v1/usage",                            fixed("GET", "/v1/usage"),                     {200, 200, 200, 200, 200, 403, A, A, A}},
    {"GET /v1/nodes",                            fixed("GET", "/v1/nodes"),                     {200, 200, 200, 200, 200, 403, A, A, A}},
    {"POST /v1/nodes/n1/drain",                  fixed("POST", "/v1/nodes/n1/drain"),           {200, 200, 403, 403, 403, 403, A, A, A}},
    {"POST /v1/nodes/n1/undrain",                fixed("POST", "/v1/nodes/n1/undrain"),         {200, 200, 403, 403, 403, 403, A, A, A}},
    {"POST /v1/agents/register (own name)",      register_node,                                 {200, 403, 403, 403, 403, 200, A, A, A}},
    {"GET /v1/agents/n1/desired",                fixed("GET", "/v1/agents/n1/desired?wait_ms=0"), {200, 403, 403, 403, 403, 200, A, A, A}},
    {"POST /v1/agents/n1/heartbeat",             fixed("POST", "/v1/agents/n1/heartbeat", Json::object()), {200, 403, 403, 403, 403, 200, A, A, A}},
    {"GET /v1/tokens/self",                      fixed("GET", "/v1/tokens/self"),               {200, 200, 200, 200, 200, 200, A, A, A}},
    {"GET /v1/tokens",                           fixed("GET", "/v1/tokens"),                    {200, 403, 403, 403, 403, 403, A, A, A}},
    {"POST /v1/tokens",                          fixed("POST", "/v1/tokens", Json{{"name", "x"}, {"role", "reader"}, {"queues", {"a"}}}), {201, 403, 403, 403, 403, 403, A, A, A}},
    {"POST /v1/tokens/{accessor}/revoke",        fresh_token("POST", "/revoke"),                {200, 403, 403, 403, 403, 403, A, A, A}},
    {"DELETE /v1/tokens/{accessor}",             fresh_token("DELETE", ""),                     {200, 403, 403, 403, 403, 403, A, A, A}},
    {"GET /v1/audit",                            fixed("GET", "/v1/audit"),                     {200, 403, 403, 403, 403, 403, A, A, A}},
    {"GET /ui",                                  fixed("GET", "/ui"),                           {301, 301, 301, 301, 301, 301, 301, 301, 301}},
    {"GET /ui/",                                 fixed("GET", "/ui/"),                          {200, 200, 200, 200, 200, 200, 200, 200, 200}},
    {"GET /ui/app.js",                           fixed("GET", "/ui/app.js"),                    {200, 200, 200, 200, 200, 200, 200, 200, 200}},
    {"GET /ui/no-such-file",                     fixed("GET", "/ui/no-such-file"),              {404, 404, 404, 404, 404, 404, 404, 404, 404}},
  };
  // clang-format on
}

std::vector<std::string> Segments(const std::string& path) {
  std::vector<std::string> out;
  std::stringstream ss(path);
  std::string seg;
  while (std::getline(ss, seg, '/')) out.push_back(seg);
  return out;
}

// Whether a row ("POST /v1/workloads/{a-workload}/cancel") exercises the route.
bool Covers(const std::string& endpoint, const std::string& method, const std::string& pattern) {
  std::stringstream ss(endpoint);
  std::string m, path;
  ss >> m >> path;
  if (m != method) return false;
  // "/ui/**": every path under "/ui/".
  if (pattern.size() >= 3 && pattern.substr(pattern.size() - 3) == "/**") {
    return path.rfind(pattern.substr(0, pattern.size() - 2), 0) == 0;
  }
  const std::vector<std::string> have = Segments(path), want = Segments(pattern);
  if (have.size() != want.size()) return false;
  for (size_t i = 0; i < have.size(); ++i) {
    if (want[i] != "*" && want[i] != have[i]) return false;
  }
  return true;
}

// The matrix as docs/security.md prints it.
std::string RenderMatrix(const std::vector<Row>& rows) {
  std::ostringstream out;
  out << "| endpoint |";
  for (const char* who : kWhoNames) out << " " << who << " |";
  out << "\n|---|";
  for (int i = 0; i < kWhoCount; ++i) out << "---|";
  out << "\n";
  for (const Row& r : rows) {
    out << "| `" << r.endpoint << "` |";
    for (int status : r.expected) out << " " << status << " |";
    out << "\n";
  }
  return out.str();
}

TEST_F(AuthMatrixTest, EveryEndpointForEveryCaller) {
  const std::vector<Row> rows = Matrix();
  // Every route the server has is in the matrix (a new route needs a row).
  for (const RoutePolicy& p : RoutePolicies()) {
    bool found = false;
    for (const Row& r : rows) found = found || Covers(r.endpoint, p.method, p.pattern);
    EXPECT_TRUE(found) << p.method << " " << p.pattern << " has no row in the matrix";
  }
  for (const Row& r : rows) {
    for (int w = 0; w < kWhoCount; ++w) {
      const Request q = r.request(static_cast<Who>(w));
      const Answer a = Call(static_cast<Who>(w), q.method, q.path, q.body);
      EXPECT_EQ(a.status, r.expected[w]) << r.endpoint << " as " << kWhoNames[w] << " (" << q.method
                                         << " " << q.path << "): " << a.body;
    }
  }
}

TEST_F(AuthMatrixTest, TheDocPrintsTheMatrix) {
  const std::string path = std::string(GPUORCH_SOURCE_DIR) + "/docs/security.md";
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string doc = ss.str();
  const std::string begin = "<!-- matrix:begin (generated by auth_matrix_test) -->\n";
  const std::string end = "<!-- matrix:end -->";
  const size_t b = doc.find(begin), e = doc.find(end);
  ASSERT_NE(b, std::string::npos) << path << " lacks " << begin;
  ASSERT_NE(e, std::string::npos) << path << " lacks " << end;
  const std::string want = RenderMatrix(Matrix());
  const std::string have = doc.substr(b + begin.size(), e - b - begin.size());
  if (have != want && std::getenv("GPUORCH_UPDATE_DOCS") != nullptr) {
    doc.replace(b + begin.size(), e - b - begin.size(), want);
    std::ofstream(path) << doc;
    return;
  }
  EXPECT_EQ(have, want) << "docs/security.md's matrix differs from the test's table; rerun "
                           "with GPUORCH_UPDATE_DOCS=1 to rewrite it";
}

// No cross-tenant leak: a tenant of a never sees b's ids, commands, environment or logs.
TEST_F(AuthMatrixTest, ATenantSeesNothingOfAnotherQueue) {
  Answer list = Call(kTenantA, "GET", "/v1/workloads");
  ASSERT_EQ(list.status, 200);
  for (const Json& w : list.json["workloads"]) EXPECT_EQ(w["queue"], "a") << w.dump();
  EXPECT_EQ(list.body.find("b-secret"), std::string::npos);
  Answer bs = Call(kTenantA, "GET", "/v1/workloads?queue=b");
  ASSERT_EQ(bs.status, 200);
  EXPECT_TRUE(bs.json["workloads"].empty()) << bs.body;
  for (const char* suffix : {"", "/logs"}) {
    Answer other = Call(kTenantA, "GET", Workload(wb_) + suffix);
    EXPECT_EQ(other.status, 404);
    EXPECT_EQ(other.body.find("sleep"), std::string::npos) << other.body;
    EXPECT_EQ(other.body.find("b-secret"), std::string::npos) << other.body;
  }
  // The same answer as for a workload that does not exist.
  EXPECT_EQ(Call(kTenantA, "GET", Workload(wb_)).json["error"]["message"],
            "id: no workload " + std::to_string(wb_));
  Answer queues = Call(kTenantA, "GET", "/v1/queues");
  ASSERT_EQ(queues.json["queues"].size(), 1u) << queues.body;
  EXPECT_EQ(queues.json["queues"][0]["name"], "a");
  // Submitting to b is refused whether b exists or not, in the same words.
  Answer b = Call(kTenantA, "POST", "/v1/workloads", Json{{"name", "x"}, {"queue", "b"}});
  Answer nope = Call(kTenantA, "POST", "/v1/workloads", Json{{"name", "x"}, {"queue", "zz"}});
  EXPECT_EQ(b.status, 403);
  EXPECT_EQ(nope.status, 403);
}

// Accounting (GET /v1/usage): a tenant or reader of a sees a's usage and its users, nothing
// of b, not even that b or its users exist; administrators and operators see everything.
TEST_F(AuthMatrixTest, UsageShowsOnlyTheQueuesTheCallerReads) {
  // bob's GPU work in b, on a node of its own.
  ASSERT_EQ(Call(kAdmin, "POST", "/v1/agents/register", NodeBody("nb")).status, 200);
  const int64_t gpu_b = Submit(kTenantB, "b", 1);
  for (int i = 0; i < 3000 && Call(kAdmin, "GET", Workload(gpu_b)).json["state"] != "Running";
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(Call(kAdmin, "GET", Workload(gpu_b)).json["state"], "Running");
  auto names = [](const Answer& a, const char* key) {
    std::set<std::string> out;
    for (const Json& r : a.json["rows"]) out.insert(r.value(key, ""));
    return out;
  };
  for (Who w : {kTenantA, kReaderA}) {
    const Answer queues = Call(w, "GET", "/v1/usage");
    ASSERT_EQ(queues.status, 200) << queues.body;
    EXPECT_EQ(names(queues, "queue"), std::set<std::string>{"a"}) << kWhoNames[w];
    const Answer users = Call(w, "GET", "/v1/usage?by=user");
    ASSERT_EQ(users.status, 200) << users.body;
    EXPECT_EQ(names(users, "user"), std::set<std::string>{"alice"}) << kWhoNames[w];
    EXPECT_EQ(users.body.find("bob"), std::string::npos) << users.body;
    const Answer other = Call(w, "GET", "/v1/usage?queue=b");
    ASSERT_EQ(other.status, 200);
    EXPECT_TRUE(other.json["rows"].empty()) << other.body;
  }
  for (Who w : {kAdmin, kOperator}) {
    EXPECT_EQ(names(Call(w, "GET", "/v1/usage"), "queue"), (std::set<std::string>{"a", "b"}));
    EXPECT_EQ(names(Call(w, "GET", "/v1/usage?by=user"), "user"),
              (std::set<std::string>{"alice", "bob"}));
  }
  const Answer bad = Call(kTenantA, "GET", "/v1/usage?from=last-week");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.json["error"]["field"], "from");
  const Answer backwards = Call(kTenantA, "GET", "/v1/usage?from=2026-03-02&to=2026-03-01");
  EXPECT_EQ(backwards.status, 400);
  EXPECT_EQ(backwards.json["error"]["field"], "from");
  EXPECT_EQ(Call(kAdmin, "POST", Workload(gpu_b) + "/cancel").status, 200);
}

// Environment values may hold secrets: the queue's tenants (and admins) see them, readers
// and operators see the names only, and only the node running the task gets them.
TEST_F(AuthMatrixTest, EnvironmentValuesOnlyForTheQueueAndTheRunningNode) {
  EXPECT_EQ(Call(kTenantA, "GET", Workload(wa_)).json["spec"]["env"]["SECRET"], "a-secret");
  EXPECT_EQ(Call(kAdmin, "GET", Workload(wa_)).json["spec"]["env"]["SECRET"], "a-secret");
  for (Who w : {kReaderA, kOperator}) {
    Answer a = Call(w, "GET", Workload(wa_));
    EXPECT_EQ(a.json["spec"]["env"]["SECRET"], "(hidden)") << kWhoNames[w];
    EXPECT_EQ(a.body.find("a-secret"), std::string::npos) << kWhoNames[w];
    Answer l = Call(w, "GET", "/v1/workloads");
    EXPECT_EQ(l.body.find("a-secret"), std::string::npos) << kWhoNames[w];
  }
  Answer desired = Call(kAgentN1, "GET", "/v1/agents/n1/desired?wait_ms=0");
  ASSERT_EQ(desired.status, 200);
  EXPECT_NE(desired.body.find("a-secret"), std::string::npos) << "n1 runs it: " << desired.body;
  // Another node's agent reads neither n1's list nor, through its own, anything of a.
  const std::string n2 =
      Call(kAdmin, "POST", "/v1/tokens", Json{{"name", "n2"}, {"role", "agent"}, {"node", "n2"}})
          .json.value("token", "");
  tokens_[kBad] = n2;  // borrowed for the call below; restored after
  EXPECT_EQ(Call(kBad, "GET", "/v1/agents/n1/desired?wait_ms=0").status, 403);
  EXPECT_EQ(Call(kBad, "POST", "/v1/agents/n1/heartbeat", Json::object()).status, 403);
  tokens_[kBad] = "gpo_not-a-token";
}

// A node name belongs to the token that registered it while that token is valid.
TEST_F(AuthMatrixTest, ANodeNameRegisteredByAnotherTokenIsRefused) {
  Answer join =
      Call(kAdmin, "POST", "/v1/tokens", Json{{"name", "join"}, {"role", "agent"}, {"node", "n*"}});
  ASSERT_EQ(join.status, 201);
  const std::string saved = tokens_[kBad];
  tokens_[kBad] = join.json["token"].get<std::string>();
  EXPECT_EQ(Call(kBad, "POST", "/v1/agents/register", NodeBody("n1")).status, 409);
  EXPECT_EQ(Call(kBad, "POST", "/v1/agents/n1/heartbeat", Json::object()).status, 403);
  EXPECT_EQ(Call(kBad, "POST", "/v1/agents/register", NodeBody("m1")).status, 403)
      << "outside the join token's pattern";
  Answer fresh = Call(kBad, "POST", "/v1/agents/register", NodeBody("n77"));
  EXPECT_EQ(fresh.status, 200) << fresh.body;
  EXPECT_EQ(Call(kBad, "POST", "/v1/agents/n77/heartbeat", Json::object()).status, 200);
  EXPECT_EQ(Call(kAgentN1, "POST", "/v1/agents/register", NodeBody("n77")).status, 403);
  // Once n77's token is revoked, another valid token may take the name over.
  EXPECT_EQ(
      Call(kAdmin, "POST", "/v1/tokens/" + join.json["accessor"].get<std::string>() + "/revoke")
          .status,
      200);
  Answer other =
      Call(kAdmin, "POST", "/v1/tokens", Json{{"name", "n77"}, {"role", "agent"}, {"node", "n77"}});
  tokens_[kBad] = other.json["token"].get<std::string>();
  EXPECT_EQ(Call(kBad, "POST", "/v1/agents/register", NodeBody("n77")).status, 200);
  tokens_[kBad] = saved;
}

TEST_F(AuthMatrixTest, MutatingRequestsAreAuditedBeforeTheAnswer) {
  const Answer ok = Call(kTenantA, "POST", "/v1/workloads",
                         Json{{"name", "audited"}, {"cpu_milli", 100}, {"command", {"true"}}});
  ASSERT_EQ(ok.status, 201);
  const Answer denied = Call(kReaderA, "POST", "/v1/workloads",
                             Json{{"name", "nope"}, {"queue", "a"}, {"command", {"true"}}});
  ASSERT_EQ(denied.status, 403);
  const Answer anonymous = Call(kNone, "POST", Workload(wa_) + "/cancel");
  ASSERT_EQ(anonymous.status, 401);
  // Already on disk: read the file itself, not through the server.
  std::ifstream in(dir_ / "audit.log");
  std::map<std::string, Json> by_id;
  for (std::string line; std::getline(in, line);) {
    Json j = Json::parse(line);
    by_id[j["request_id"].get<std::string>()] = j;
  }
  ASSERT_TRUE(by_id.count(ok.request_id)) << ok.request_id;
  const Json& e = by_id[ok.request_id];
  EXPECT_EQ(e["accessor"], Accessor(kTenantA));
  EXPECT_EQ(e["role"], "tenant");
  EXPECT_EQ(e["verb"], "submit");
  EXPECT_EQ(e["resource"], "/v1/workloads");
  EXPECT_EQ(e["queue"], "a") << "the token's default queue";
  EXPECT_EQ(e["decision"], "allow");
  EXPECT_EQ(e["status"], 201);
  EXPECT_EQ(e["source"].get<std::string>(), "127.0.0.1") << e.dump();
  EXPECT_TRUE(IsIsoTimeMs(e["time"].get<std::string>())) << e.dump();
  ASSERT_TRUE(by_id.count(denied.request_id));
  EXPECT_EQ(by_id[denied.request_id]["decision"], "deny");
  EXPECT_EQ(by_id[denied.request_id]["accessor"], Accessor(kReaderA));
  ASSERT_TRUE(by_id.count(anonymous.request_id));
  EXPECT_EQ(by_id[anonymous.request_id]["decision"], "deny");
  EXPECT_EQ(by_id[anonymous.request_id]["accessor"], "");
  // Reads are not audited; the API returns the log to an administrator.
  const Answer read = Call(kAdmin, "GET", "/v1/workloads");
  EXPECT_EQ(by_id.count(read.request_id), 0u);
  Answer log = Call(kAdmin, "GET", "/v1/audit?since=" + e["time"].get<std::string>());
  ASSERT_EQ(log.status, 200) << log.body;
  bool seen = false;
  for (const Json& x : log.json["entries"]) seen = seen || x["request_id"] == ok.request_id;
  EXPECT_TRUE(seen);
  EXPECT_EQ(Call(kAdmin, "GET", "/v1/audit?since=yesterday").status, 400);
}

TEST_F(AuthMatrixTest, BootstrapWritesTheAdminTokenPrivatelyAndLogsOnlyItsPath) {
  const auto perms = std::filesystem::status(dir_ / "admin.token").permissions();
  EXPECT_EQ(perms & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_NE(bootstrap_log_.find((dir_ / "admin.token").string()), std::string::npos)
      << bootstrap_log_;
  EXPECT_EQ(bootstrap_log_.find(tokens_[kAdmin]), std::string::npos) << "never the token";
  EXPECT_EQ(bootstrap_log_.find(tokens_[kAdmin].substr(kTokenPrefix.size() + kAccessorLength + 1)),
            std::string::npos);
  Answer self = Call(kAdmin, "GET", "/v1/tokens/self");
  EXPECT_EQ(self.json["role"], "admin");
  Answer list = Call(kAdmin, "GET", "/v1/tokens");
  EXPECT_EQ(list.body.find(tokens_[kTenantA].substr(kTokenPrefix.size() + kAccessorLength + 1)),
            std::string::npos)
      << "lists show accessors, never secrets";
}

// The dashboard's files: served to anyone (they hold no data; the page asks the API with the
// user's token), with their content types and a policy that confines the page to this
// server; GET only; unknown paths are 404s whatever the caller.
TEST_F(AuthMatrixTest, TheDashboardIsPublicStaticAndConfined) {
  httplib::Client c("127.0.0.1", port_);
  const std::pair<const char*, const char*> files[] = {
      {"/ui/", "text/html; charset=utf-8"},
      {"/ui/index.html", "text/html; charset=utf-8"},
      {"/ui/app.js", "text/javascript; charset=utf-8"},
      {"/ui/style.css", "text/css; charset=utf-8"},
      {"/ui/favicon.svg", "image/svg+xml"},
  };
  for (const auto& [path, type] : files) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 200) << path;
    EXPECT_EQ(r->get_header_value("Content-Type"), type) << path;
    EXPECT_EQ(r->get_header_value("Content-Security-Policy"), kUiContentSecurityPolicy) << path;
    EXPECT_EQ(r->get_header_value("X-Content-Type-Options"), "nosniff") << path;
    const std::string name = std::string(path).substr(4);
    ASSERT_NE(FindUiFile(name), nullptr) << path;
    EXPECT_EQ(r->body, FindUiFile(name)->bytes()) << path;
  }
  // Every file has a type; the page has no inline script or style (the policy forbids them).
  for (const EmbeddedFile& f : EmbeddedUiFiles()) {
    EXPECT_NE(UiContentType(f.name), "application/octet-stream") << f.name;
  }
  const std::string page(FindUiFile("")->bytes());
  EXPECT_EQ(page.find("<script>"), std::string::npos);
  EXPECT_EQ(page.find("style="), std::string::npos);
  auto redirect = c.Get("/ui");
  ASSERT_TRUE(redirect);
  EXPECT_EQ(redirect->status, 301);
  EXPECT_EQ(redirect->get_header_value("Location"), "/ui/");
  for (const char* path : {"/ui/nope.js", "/ui/a/b", "/ui/..%2fv1%2fnodes", "/ui/app.js/"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 404) << path;
    EXPECT_EQ(r->body.find("gpuorch"), std::string::npos) << path;
  }
  // GET only: another method is an API request like any other.
  EXPECT_EQ(Call(kNone, "POST", "/ui/", Json::object()).status, 401);
  EXPECT_EQ(Call(kAdmin, "POST", "/ui/", Json::object()).status, 404);
}

// Tokens and node owners survive a restart; the admin token is not written again.
TEST(AuthRestart, TokensAndRevocationsSurviveARestart) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("gpuorch-authz-restart-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  auto config = ParseConfig("listen: 127.0.0.1:0\ndata: " + dir.string() + "\n");
  ASSERT_TRUE(config.ok());
  std::string tenant, revoked, admin;
  {
    ::testing::internal::CaptureStderr();
    auto s = Server::Create(*config);
    (void)::testing::internal::GetCapturedStderr();
    ASSERT_TRUE(s.ok()) << s.status().message();
    Principal p;
    p.name = "t";
    p.role = Role::kTenant;
    p.queues = {"default"};
    tenant = *(*s)->tokens().CreateToken(p, 1);
    revoked = *(*s)->tokens().CreateToken(p, 1);
    Json out;
    ApiError e;
    ASSERT_TRUE((*s)->tokens().Revoke(revoked.substr(4, kAccessorLength), 2, out, e));
    std::ifstream in(dir / "admin.token");
    std::getline(in, admin);
  }
  ::testing::internal::CaptureStderr();
  auto created = Server::Create(*config);
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(created.ok());
  std::unique_ptr<Server> s = std::move(created).value();
  EXPECT_EQ(log.find("admin.token"), std::string::npos) << "no second bootstrap: " << log;
  EXPECT_TRUE(s->tokens().Authenticate("Bearer " + admin).ok());
  auto t = s->tokens().Authenticate("Bearer " + tenant);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->role, Role::kTenant);
  EXPECT_EQ(t->default_queue, "");
  auto r = s->tokens().Authenticate("Bearer " + revoked);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("revoked"), std::string::npos);
  s.reset();
  std::filesystem::remove_all(dir);
}

TEST(AuthInsecure, RefusedUnlessOnLoopbackAndThenLoud) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("gpuorch-authz-insecure-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  auto parsed = ParseConfig("listen: 0.0.0.0:0\ndata: " + dir.string() + "\n");
  ASSERT_TRUE(parsed.ok());
  ServerConfig config = *parsed;
  config.insecure_no_auth = true;
  auto refused = Server::Create(config);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--insecure-no-auth"), std::string::npos);
  config.listen = "127.0.0.1:0";
  ::testing::internal::CaptureStderr();
  auto created = Server::Create(config);
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(created.ok()) << created.status().message();
  std::unique_ptr<Server> s = std::move(created).value();
  EXPECT_NE(log.find("NO AUTHENTICATION"), std::string::npos) << log;
  EXPECT_FALSE(std::filesystem::exists(dir / "admin.token"));
  auto port = s->Bind();
  ASSERT_TRUE(port.ok());
  std::thread serving([&] { s->Serve(); });
  httplib::Client c("127.0.0.1", *port);
  auto r = c.Get("/v1/workloads");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << "no token needed";
  s->Stop();
  serving.join();
  s.reset();
  std::filesystem::remove_all(dir);
}

// A server of its own on a loopback port, with its own config (after `listen` and `data`),
// for the tests that need another config than the matrix's; stopped and removed at the end.
class OwnServer {
 public:
  void Start(const std::string& name, const std::string& yaml) {
    dir_ = std::filesystem::temp_directory_path() / (name + "-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    auto parsed = ParseConfig("listen: 127.0.0.1:0\ndata: " + dir_.string() + "\n" + yaml);
    ASSERT_TRUE(parsed.ok()) << parsed.status().message();
    ::testing::internal::CaptureStderr();
    auto created = Server::Create(*parsed);
    (void)::testing::internal::GetCapturedStderr();
    ASSERT_TRUE(created.ok()) << created.status().message();
    server_ = std::move(created).value();
    auto port = server_->Bind();
    ASSERT_TRUE(port.ok());
    port_ = *port;
    serving_ = std::thread([this] { server_->Serve(); });
  }
  ~OwnServer() {
    if (server_ != nullptr) server_->Stop();
    if (serving_.joinable()) serving_.join();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::string Token(Role role, std::vector<std::string> queues = {}) {
    Principal p;
    p.role = role;
    p.queues = std::move(queues);
    return *server_->tokens().CreateToken(p, 1);
  }
  int port() const { return port_; }

 private:
  std::filesystem::path dir_;
  std::unique_ptr<Server> server_;
  int port_ = 0;
  std::thread serving_;
};

// metrics_public: false puts /metrics behind an admin's or operator's token; a wrong secret
// and an unknown accessor get the same answer.
TEST(AuthMetrics, PrivateMetricsNeedAnOperatorAndGuessesLearnNothing) {
  OwnServer s;
  ASSERT_NO_FATAL_FAILURE(
      s.Start("gpuorch-authz-metrics", "metrics_public: false\nqueues: [{name: a}]\n"));
  const std::string op_token = s.Token(Role::kOperator);
  const std::string tenant_token = s.Token(Role::kTenant, {"a"});
  auto get = [&](const std::string& path, const std::string& token) {
    httplib::Client c("127.0.0.1", s.port());
    httplib::Headers h;
    if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
    auto r = c.Get(path, h);
    return r ? std::make_pair(r->status, r->body) : std::make_pair(-1, std::string());
  };
  EXPECT_EQ(get("/metrics", "").first, 401);
  EXPECT_EQ(get("/metrics", tenant_token).first, 403);
  EXPECT_EQ(get("/metrics", op_token).first, 200);
  EXPECT_EQ(get("/healthz", "").first, 200);
  // The operator's accessor with another secret, and an accessor nobody has.
  std::string wrong_secret = op_token;
  wrong_secret.back() = wrong_secret.back() == '0' ? '1' : '0';
  const std::string unknown = "gpo_ffffffffffffffff." + op_token.substr(op_token.size() - 64);
  const auto a = get("/v1/queues", wrong_secret), b = get("/v1/queues", unknown);
  EXPECT_EQ(a.first, 401);
  EXPECT_EQ(a, b) << "the same answer: a guess learns nothing";
}

// Per-token rate limits: a tenant's burst, then 429 with Retry-After; another token has its
// own bucket; administrators (exempt by default) are never limited. One request per 100 s
// refills, so a slow machine cannot refill a bucket during the test.
TEST(AuthRateLimit, ATokenBeyondItsBurstWaitsOthersDoNot) {
  OwnServer s;
  ASSERT_NO_FATAL_FAILURE(s.Start(
      "gpuorch-authz-rate", "queues: [{name: a}]\nrate_limit_per_s: 0.01\nrate_limit_burst: 3\n"));
  const std::string admin_token = s.Token(Role::kAdmin);
  const std::string t1 = s.Token(Role::kTenant, {"a"});
  const std::string t2 = s.Token(Role::kTenant, {"a"});
  httplib::Client c("127.0.0.1", s.port());
  auto get = [&](const std::string& token) {
    return c.Get("/v1/workloads", {{"Authorization", "Bearer " + token}});
  };
  for (int i = 0; i < 3; ++i) {
    auto r = get(t1);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << i;
  }
  auto refused = get(t1);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 429);
  const int retry = std::stoi("0" + refused->get_header_value("Retry-After"));
  EXPECT_GE(retry, 90);
  EXPECT_LE(retry, 100);
  EXPECT_NE(refused->body.find("rate limit: this token may send 0.01 requests per second"),
            std::string::npos)
      << refused->body;
  auto other = get(t2);
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 200) << "another token has its own bucket";
  for (int i = 0; i < 10; ++i) {
    auto r = get(admin_token);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << "administrators are exempt by default";
  }
}

TEST(RateLimiter, BucketsRefillAtTheRateUpToTheBurst) {
  RateLimiter off(0, 1);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(off.Take("a", 0).allowed);
  EXPECT_EQ(off.keys(), 0u);

  RateLimiter r(10, 2);  // one request per 100 ms, two at once
  EXPECT_TRUE(r.Take("a", 1000).allowed);
  EXPECT_TRUE(r.Take("a", 1000).allowed);
  RateDecision d = r.Take("a", 1000);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_ms, 100);
  d = r.Take("a", 1060);  // 0.6 of a request refilled
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_ms, 40);
  EXPECT_TRUE(r.Take("a", 1100).allowed);
  EXPECT_TRUE(r.Take("b", 1100).allowed) << "keys are independent";
  // Never more than the burst, however long it was idle.
  EXPECT_TRUE(r.Take("a", 100'000).allowed);
  EXPECT_TRUE(r.Take("a", 100'000).allowed);
  EXPECT_FALSE(r.Take("a", 100'000).allowed);
  // A stream of distinct keys does not grow the map for good: full buckets are forgotten.
  for (int i = 0; i < 5000; ++i) (void)r.Take("k" + std::to_string(i), 200'000 + i * 1000);
  EXPECT_LT(r.keys(), 2100u);
}

}  // namespace
}  // namespace gpuorch::server
