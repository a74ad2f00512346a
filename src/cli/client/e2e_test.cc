// The commands end to end: CLI flags are parsed by the real CLI11 app, requests go over
// loopback HTTP to an in-test httplib server that answers like docs/api.md, and each test
// checks the method, path and body the server saw plus stdout, stderr and the exit code.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <thread>

#include "cli/client/app.h"
#include "cli/client/test_support.h"

namespace gpuorch::cli {
namespace {

using nlohmann::json;

struct Seen {
  std::string method;
  std::string path;  // with the query string, as sent
  std::string body;
};

json ApiError(int code, const std::string& field, const std::string& message) {
  return {{"error", {{"code", code}, {"field", field}, {"message", message}}}};
}

// Serves canned answers on 127.0.0.1 (kernel-chosen port) and records every request.
// bind_to_any_port() listens before returning, so a client may connect at once: the
// connection waits in the backlog until the accept loop runs. No sleeps needed.
class FakeServer {
 public:
  FakeServer() {
    Route();
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FakeServer() {
    // stop() is a no-op until the accept loop has started; wait for it on its own flag.
    while (!server_.is_running()) std::this_thread::yield();
    server_.stop();
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<Seen> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }

 private:
  static void Json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(), "application/json");
  }

  void Record(const httplib::Request& req) {
    std::string path = req.path;
    // Rebuild the query in a fixed order (httplib parses it into a multimap).
    std::string query;
    for (const char* key :
         {"queue", "state", "kind", "task", "stream", "limit", "continue", "from", "to", "by"}) {
      if (req.has_param(key)) {
        query += (query.empty() ? "?" : "&") + std::string(key) + "=" + req.get_param_value(key);
      }
    }
    std::lock_guard lock(mu_);
    seen_.push_back({req.method, path + query, req.body});
  }

  void Route() {
    server_.Post("/v1/workloads", [this](const httplib::Request& req, httplib::Response& res) {
      Record(req);
      auto body = json::parse(req.body, nullptr, false);
      if (req.get_header_value("Content-Type") != "application/json" || !body.is_object()) {
        return Json(res, 400, ApiError(400, "", "body must be a JSON object"));
      }
      if (body.value("gpus", 0) > 16) {
        return Json(res, 400, ApiError(400, "gpus", "gpus: must be in 0..16, got 17"));
      }
      Json(res, 201, {{"id", 17}, {"name", body.value("name", "")}, {"state", "Pending"}});
    });
    // Pages of one workload when asked for pages, as the server's chunking does.
    server_.Get("/v1/workloads", [this](const httplib::Request& req, httplib::Response& res) {
      Record(req);
      if (!req.has_param("limit")) {
        return Json(res, 200,
                    {{"workloads", {testing::CannedWorkload(), testing::CannedPendingFraction()}}});
      }
      if (!req.has_param("continue")) {
        return Json(res, 200, {{"workloads", {testing::CannedWorkload()}}, {"continue", "17"}});
      }
      Json(res, 200, {{"workloads", {testing::CannedPendingFraction()}}});
    });
    server_.Get(R"(/v1/workloads/(\d+))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  Record(req);
                  if (req.matches[1] == "17") return Json(res, 200, testing::CannedWorkload());
                  Json(res, 404, ApiError(404, "id", "no workload " + req.matches[1].str()));
                });
    server_.Post(R"(/v1/workloads/(\d+)/cancel)", [this](const httplib::Request& req,
                                                         httplib::Response& res) {
      Record(req);
      if (req.matches[1] == "17") return Json(res, 200, {{"id", 17}, {"state", "Cancelled"}});
      Json(res, 409, ApiError(409, "", "workload " + req.matches[1].str() + " already finished"));
    });
    server_.Get(R"(/v1/workloads/(\d+)/logs)",
                [this](const httplib::Request& req, httplib::Response& res) {
                  Record(req);
                  res.set_content("epoch 1 loss 2.3\n" + req.get_param_value("stream") +
                                      " of task " + req.get_param_value("task") + "\n",
                                  "text/plain");
                });
    server_.Get("/v1/queues", [this](const httplib::Request& req, httplib::Response& res) {
      Record(req);
      Json(res, 200, testing::CannedQueues());
    });
    server_.Get(R"(/v1/queues/([^/]+))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  Record(req);
                  Json(res, 200, testing::CannedQueues()["queues"][0]);
                });
    server_.Get("/v1/usage", [this](const httplib::Request& req, httplib::Response& res) {
      Record(req);
      if (req.get_param_value("from") == "yesterday") {
        return Json(res, 400,
                    ApiError(400, "from",
                             "from: expected a date (2026-03-01) or an RFC 3339 time "
                             "(2026-03-01T00:00:00Z), got \"yesterday\""));
      }
      const std::string by = req.has_param("by") ? req.get_param_value("by") : "queue";
      Json(res, 200,
           {{"from", "2026-11-01T00:00:00.000Z"},
            {"to", "2026-11-24T14:05:00.000Z"},
            {"by", by},
            {"rows",
             {{{by, by == "user" ? "alice" : "research"},
               {"model", "H100-80GB"},
               {"allocated_gpu_seconds", 45000},
               {"allocated_gpu_hours", 12.5},
               {"used_gpu_hours", nullptr},
               {"tasks", 3}},
              {{by, by == "user" ? "bob, jr" : "dev"},
               {"model", "T4"},
               {"allocated_gpu_seconds", 1},
               {"allocated_gpu_hours", 1.0 / 3600},
               {"used_gpu_hours", nullptr},
               {"tasks", 1}}}}});
    });
    server_.Get("/v1/nodes", [this](const httplib::Request& req, httplib::Response& res) {
      Record(req);
      Json(res, 200, testing::CannedNodes());
    });
    server_.Post(R"(/v1/nodes/([^/]+)/(drain|undrain))", [this](const httplib::Request& req,
                                                                httplib::Response& res) {
      Record(req);
      if (req.matches[1] != "gpu-3") {
        return Json(res, 404, ApiError(404, "name", "no node " + req.matches[1].str()));
      }
      Json(res, 200, json::object());
    });
  }

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<Seen> seen_;
};

struct CliResult {
  int code;
  std::string out;
  std::string err;
};

// Parses and runs one command line the way main.cc does (ParseError -> 2).
CliResult RunCli(std::vector<std::string> args) {
  std::ostringstream out, err;
  const Io io{out, err, testing::FixedNow};
  CLI::App app{"gpuorch"};
  app.require_subcommand(1);
  int exit_code = 0;
  AddClientCommands(app, io, exit_code);
  args.insert(args.begin(), "gpuorch");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e, out, err);
    return {rc == 0 ? 0 : 2, out.str(), err.str()};
  }
  return {exit_code, out.str(), err.str()};
}

class ClientE2E : public ::testing::Test {
 protected:
  // The command line with "--server URL" right after the subcommand (before any "--").
  std::vector<std::string> Args(std::vector<std::string> args) {
    args.insert(args.begin() + 1, {"--server", server_.url()});
    return args;
  }
  FakeServer server_;
};

// Flags and spec files -> the JSON body the server receives.
TEST_F(ClientE2E, SubmitSendsTheBodyAndPrintsOnlyTheId) {
  const std::string spec = testing::WriteTempFile("spec.yaml",
                                                  "name: from-file\nqueue: research\n"
                                                  "gpus: 8\nenv: {A: '1'}\n"
                                                  "command: [python, old.py]\n");
  struct Case {
    const char* name;
    std::vector<std::string> args;  // after "submit", before "--server"
    const char* body;
  };
  const Case cases[] = {
      {"flags only",
       {"--queue",
        "research",
        "--gpus",
        "8",
        "--tasks",
        "4",
        "--kind",
        "training",
        "--model",
        "H100-80GB",
        "--model",
        "A100-80GB",
        "--topology",
        "rack",
        "--require-topology",
        "--env",
        "K=V",
        "--env",
        "X=a=b",
        "--workdir",
        "/w",
        "--estimate-s",
        "3600",
        "--grace-s",
        "10",
        "--priority",
        "high",
        "--non-preemptible",
        "--name",
        "llm",
        "--cpu-milli",
        "8000",
        "--memory-mib",
        "65536",
        "--gpu-memory-mib",
        "0",
        "--",
        "python",
        "train.py",
        "--epochs",
        "3"},
       R"({"name": "llm", "queue": "research", "kind": "training", "priority": "high",
           "preemptible": false, "min_tasks": 4, "max_tasks": 4, "gpus": 8, "cpu_milli": 8000,
           "memory_mib": 65536, "gpu_memory_mib": 0, "gpu_models": ["H100-80GB", "A100-80GB"],
           "topology": {"level": "rack", "required": true}, "env": {"K": "V", "X": "a=b"},
           "workdir": "/w", "runtime_estimate_s": 3600, "grace_period_s": 10,
           "command": ["python", "train.py", "--epochs", "3"]})"},
      {"fraction, default name",
       {"-q", "dev", "--gpus", "1", "--gpu-milli", "250", "--", "nb"},
       R"({"name": "nb", "queue": "dev", "gpus": 1, "gpu_milli": 250, "command": ["nb"]})"},
      {"MIG instance and MPS fraction",
       {"-q", "dev", "--mig", "1g.10gb", "--sharing", "mig", "--", "nb"},
       R"({"name": "nb", "queue": "dev", "mig": "1g.10gb", "sharing": "mig", "command": ["nb"]})"},
      {"file only",
       {"-f", spec},
       R"({"name": "from-file", "queue": "research", "gpus": 8, "env": {"A": "1"},
           "command": ["python", "old.py"]})"},
      {"file with overrides",
       {"-f", spec, "--gpus", "2", "--max-tasks", "3", "--env", "B=2", "--", "python", "new.py"},
       R"({"name": "from-file", "queue": "research", "gpus": 2, "max_tasks": 3,
           "env": {"A": "1", "B": "2"}, "command": ["python", "new.py"]})"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"submit"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const size_t before = server_.seen().size();
    const CliResult r = RunCli(Args(args));
    EXPECT_EQ(r.code, 0) << c.name << ": " << r.err;
    EXPECT_EQ(r.out, "17\n") << c.name;
    EXPECT_EQ(r.err, "") << c.name;
    const auto seen = server_.seen();
    ASSERT_EQ(seen.size(), before + 1) << c.name;
    EXPECT_EQ(seen.back().method, "POST");
    EXPECT_EQ(seen.back().path, "/v1/workloads");
    EXPECT_EQ(json::parse(seen.back().body), json::parse(c.body)) << c.name;
  }
}

TEST_F(ClientE2E, SubmitRefusedPrintsTheServersFieldAndMessage) {
  const CliResult r = RunCli(Args({"submit", "-q", "q", "--gpus", "17", "--", "x"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "error: gpus: must be in 0..16, got 17\n");
}

TEST_F(ClientE2E, UsageErrorsExitTwoWithoutTouchingTheServer) {
  const std::string bad = testing::WriteTempFile("bad.yaml", "gpus: [1\n");
  struct Case {
    std::vector<std::string> args;
    const char* err_part;
  };
  const Case cases[] = {
      {{"submit", "-f", bad, "--server", server_.url()}, bad.c_str()},
      {{"submit", "-f", "/no/such.yaml", "--server", server_.url()}, "/no/such.yaml: cannot read"},
      {{"submit", "--gpus", "many", "--server", server_.url(), "--", "x"}, "--gpus"},
      {{"submit", "--env", "NOEQ", "--server", server_.url(), "--", "x"}, "--env"},
      {{"submit", "--topology", "galaxy", "--server", server_.url(), "--", "x"}, "galaxy"},
      {{"submit", "--queue", "q", "--server", server_.url()}, "no command"},
      {{"get", "-o", "xml", "--server", server_.url()}, "xml"},
      {{"get", "abc", "--server", server_.url()}, "abc"},
      {{"cancel", "--server", server_.url()}, "ids"},
      {{"logs", "17", "--stream", "both", "--server", server_.url()}, "both"},
      {{"get", "--server", "localhost:7480"}, "--server: 'localhost:7480' is not a URL"},
  };
  for (const auto& c : cases) {
    const CliResult r = RunCli(c.args);
    EXPECT_EQ(r.code, 2) << c.args[0] << " " << c.err_part << ": " << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_NE(r.err.find(c.err_part), std::string::npos) << r.err;
  }
  EXPECT_TRUE(server_.seen().empty());
}

TEST_F(ClientE2E, GetListsWithFiltersAndShowsOne) {
  CliResult r = RunCli(Args({"get", "--queue", "research", "--state", "Running"}));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(
      r.out.substr(0, r.out.find('\n')),
      "ID   NAME           QUEUE      KIND         STATE     REASON            ESTIMATED START   "
      "TASKS   GPUS   AGE");
  // Two pages, the second from the first's "continue"; both workloads shown.
  const auto seen = server_.seen();
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen[seen.size() - 2].path, "/v1/workloads?queue=research&state=Running&limit=1000");
  EXPECT_EQ(seen.back().path, "/v1/workloads?queue=research&state=Running&limit=1000&continue=17");
  EXPECT_EQ(seen.back().method, "GET");
  EXPECT_NE(r.out.find("\n17 "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\n18 "), std::string::npos) << r.out;

  r = RunCli(Args({"get", "17", "-o", "json"}));
  EXPECT_EQ(r.code, 0) << r.err;
  const json w = json::parse(r.out);
  EXPECT_EQ(w, testing::CannedWorkload());
  EXPECT_EQ(w["state"], "Running");
  EXPECT_TRUE(w.contains("reason"));
  EXPECT_EQ(server_.seen().back().path, "/v1/workloads/17");

  r = RunCli(Args({"get", "17", "-o", "yaml"}));
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("state: Running\n"), std::string::npos);

  r = RunCli(Args({"get", "17"}));
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(
      r.out.find(
          "\n17   llm-pretrain   research   training   Running   -        -                 2/2"),
      std::string::npos)
      << r.out;
}

TEST_F(ClientE2E, UnknownWorkloadIsRefused) {
  const CliResult r = RunCli(Args({"describe", "99"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "error: id: no workload 99\n");
}

TEST_F(ClientE2E, DescribeCancelLogs) {
  CliResult r = RunCli(Args({"describe", "17"}));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Name:         llm-pretrain\n", 0), 0u) << r.out;

  r = RunCli(Args({"cancel", "17", "18", "17"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "workload 17 cancelled\nworkload 17 cancelled\n");
  EXPECT_EQ(r.err, "error: workload 18: workload 18 already finished\n");
  const auto seen = server_.seen();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[1].method, "POST");
  EXPECT_EQ(seen[1].path, "/v1/workloads/17/cancel");
  EXPECT_EQ(seen[2].path, "/v1/workloads/18/cancel");
  EXPECT_EQ(json::parse(seen[1].body), json::object());

  r = RunCli(Args({"logs", "17", "--task", "1", "--stream", "stderr"}));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "epoch 1 loss 2.3\nstderr of task 1\n");
  EXPECT_EQ(server_.seen().back().path, "/v1/workloads/17/logs?task=1&stream=stderr");
  r = RunCli(Args({"logs", "17"}));
  EXPECT_EQ(server_.seen().back().path, "/v1/workloads/17/logs?task=0&stream=stdout");
}

TEST_F(ClientE2E, QueuesNodesDrain) {
  CliResult r = RunCli(Args({"queues"}));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("research   org      1        H100-80GB   8.00   16.00        32.00"),
            std::string::npos)
      << r.out;
  r = RunCli(Args({"queues", "research", "-o", "json"}));
  EXPECT_EQ(json::parse(r.out), testing::CannedQueues()["queues"][0]);
  EXPECT_EQ(server_.seen().back().path, "/v1/queues/research");

  r = RunCli(Args({"nodes"}));
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("gpu-3   Ready      z1     r2     H100-80GB (emulated)   1.50/2   2s"),
            std::string::npos)
      << r.out;
  r = RunCli(Args({"nodes", "--gpus"}));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(
      r.out.find("gpu-3   1     H100-80GB (emulated)   -      -           XID 79   other queue"),
      std::string::npos)
      << r.out;

  r = RunCli(Args({"drain", "gpu-3"}));
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "node gpu-3 drained\n");
  EXPECT_EQ(server_.seen().back().method, "POST");
  EXPECT_EQ(server_.seen().back().path, "/v1/nodes/gpu-3/drain");
  r = RunCli(Args({"undrain", "gpu-3"}));
  EXPECT_EQ(r.out, "node gpu-3 undrained\n");
  EXPECT_EQ(server_.seen().back().path, "/v1/nodes/gpu-3/undrain");
  r = RunCli(Args({"drain", "gpu-9"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "error: name: no node gpu-9\n");
}

TEST_F(ClientE2E, ServerUrlComesFromTheEnvironment) {
  ASSERT_EQ(setenv("GPUORCH_SERVER", server_.url().c_str(), 1), 0);
  const CliResult r = RunCli({"nodes", "-o", "json"});
  unsetenv("GPUORCH_SERVER");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), testing::CannedNodes());
}

// A port that is bound but not listening refuses connections, deterministically.
class ClosedPort {
 public:
  ClosedPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~ClosedPort() { close(fd_); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// `gpuorch usage` asks for the range and grouping it was given and prints sreport-style
// tables or CSV; the server's refusal of a bad range is shown with its field.
TEST_F(ClientE2E, UsageAsTableAndCsv) {
  CliResult r = RunCli(Args({"usage", "--from", "2026-11-01", "--to", "2026-11-24"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "Allocated GPU-hours by queue, 2026-11-01T00:00:00.000Z to 2026-11-24T14:05:00.000Z\n"
            "QUEUE      MODEL       ALLOCATED-GPU-HOURS   USED-GPU-HOURS   TASKS\n"
            "research   H100-80GB   12.50                 -                3\n"
            "dev        T4          0.00                  -                1\n"
            "TOTAL                  12.50\n");
  r = RunCli(Args({"usage", "--by", "user", "--csv"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "user,model,allocated_gpu_seconds,allocated_gpu_hours,used_gpu_hours,tasks\n"
            "alice,H100-80GB,45000,12.5000,,3\n"
            "\"bob, jr\",T4,1,0.0003,,1\n");
  r = RunCli(Args({"usage", "--from", "yesterday"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("error: from: expected a date"), std::string::npos) << r.err;
  const std::vector<Seen> seen = server_.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].path, "/v1/usage?from=2026-11-01&to=2026-11-24&by=queue");
  EXPECT_EQ(seen[1].path, "/v1/usage?by=user");
  // --by is checked here: nothing reaches the server.
  r = RunCli(Args({"usage", "--by", "account"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(server_.seen().size(), 3u);
}

TEST(ClientUnreachable, ExitThreeNamingTheUrl) {
  ClosedPort closed;
  for (std::vector<std::string> args : {std::vector<std::string>{"get"},
                                        {"submit", "-q", "q"},
                                        {"cancel", "1", "2"},
                                        {"drain", "n"}}) {
    args.insert(args.begin() + 1, {"--server", closed.url()});
    if (args[0] == "submit") args.insert(args.end(), {"--", "x"});
    const CliResult r = RunCli(args);
    EXPECT_EQ(r.code, 3) << args[0];
    EXPECT_EQ(r.out, "");
    EXPECT_NE(r.err.find("cannot reach the gpuorch server at " + closed.url()), std::string::npos)
        << r.err;
    // cancel stops at the first unreachable error instead of repeating it per id.
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace gpuorch::cli
