#pragma once

// A real control plane on loopback for integration tests and the API benchmark: the
// `gpuorch` binary started as `server` and `agent` processes, each in its own process group,
// with a JSON-over-HTTP client and helpers to wait for conditions. No GoogleTest here, so
// bench/api_bench.cc compiles this file too.
//
// Every process a Cluster starts, and every task its agents start, carries the environment
// variable GPUORCH_CP_TOKEN with a value unique to the Cluster; the destructor SIGKILLs every
// process that carries it (tasks run in sessions of their own, so killing the agents'
// process groups would not reach them). So no test leaks a process, whatever it killed.
//
// Thread-safety: Api and RunCli may be used from any thread; a Cluster from one thread.
#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace gpuorch::cptest {

using Json = nlohmann::json;
using namespace std::chrono_literals;

// Polls `cond` every `poll` until it holds (true) or `deadline` passes (false).
bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds deadline = 30s,
             std::chrono::milliseconds poll = 20ms);

// A port that was free a moment ago (bound to port 0 on loopback, then closed).
int FreePort();

std::string ReadFile(const std::string& path);
std::vector<std::string> ReadLines(const std::string& path);
void WriteFile(const std::string& path, const std::string& text);

// True while `pid` exists and is not a zombie.
bool ProcessAlive(pid_t pid);

// A child process in a new process group, stdin from /dev/null, stdout and stderr appended
// to `log`. The destructor SIGKILLs the group and reaps the child.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
          const std::string& log);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Sends `sig` to the whole process group.
  void Signal(int sig);
  // Waits for the process to end; returns the wait status (-1 if already reaped).
  int Wait();
  // True once the process has ended (reaping it).
  bool Exited();

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

struct HttpResult {
  int status = -1;  // -1: no answer (refused, timeout, broken connection)
  std::string body;
  Json json;  // the parsed body, or discarded when it is not JSON
};

// A small JSON client. One connection per call, so it is safe from any thread. Sends
// `token` as a bearer token when it is not empty.
class Api {
 public:
  explicit Api(std::string url, std::string token = "")
      : url_(std::move(url)), token_(std::move(token)) {}
  // The same server with another token ("" for none).
  Api As(const std::string& token) const { return Api(url_, token); }
  HttpResult Get(const std::string& path) const;
  HttpResult Post(const std::string& path, const std::string& body) const;
  HttpResult Post(const std::string& path, const Json& body) const {
    return Post(path, body.dump());
  }
  HttpResult Delete(const std::string& path) const;
  const std::string& url() const { return url_; }
  const std::string& token() const { return token_; }

 private:
  std::string url_;
  std::string token_;
};

struct CliResult {
  int exit_code = -1;
  std::string out, err;
};

// Runs `bin args...` to completion with a 60 s limit, capturing stdout and stderr.
CliResult RunCli(const std::string& bin, const std::vector<std::string>& args);

struct ClusterOptions {
  std::string bin;  // the gpuorch binary
  std::string config_yaml;
  int agent_heartbeat_ms = 100;
  // Agents run tasks as the test's own user (root included, said explicitly with
  // --allow-root-tasks), since the flows' tasks write into the test's directory. False:
  // the agent's defaults (nobody under a root agent; docs/agent.md, "Task isolation").
  bool tasks_as_test_user = true;
};

// A temporary directory with a server (and its config) and any number of emulated agents.
class Cluster {
 public:
  explicit Cluster(ClusterOptions options);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Starts the server on this cluster's port and data directory; true once /healthz answers
  // and its administrator's token (DATA/admin.token, written at the first start) is read.
  bool StartServer();
  // Signals the server's process group and waits for it to end.
  void StopServer(int sig);
  Process* server() { return server_.get(); }

  // Starts an agent with emulated GPUs (`gpus`, e.g. "8xH100-80GB"); true once its node is
  // Ready in /v1/nodes.
  // `extra` goes at the end of the agent's command line (e.g. {"--emulate-mig"}).
  bool StartAgent(const std::string& name, const std::string& gpus = "8xH100-80GB",
                  const std::vector<std::string>& extra = {});
  // Starts `gpuorch agent --emulate-nodes count --name-prefix prefix` (hollow nodes, one
  // process, registered as "agent" `prefix`); true once all `count` nodes are Ready.
  bool StartHollowNodes(const std::string& prefix, int count,
                        const std::string& gpus = "8xH100-80GB",
                        std::chrono::milliseconds deadline = std::chrono::seconds(180));
  // How many nodes named `prefix`-... are Ready (-1 when /v1/nodes cannot be read).
  int ReadyNodes(const std::string& prefix) const;
  Process* agent(const std::string& name) {
    auto it = agents_.find(name);
    return it == agents_.end() ? nullptr : it->second.get();
  }
  // Signals the agent's process group (its tasks are in other sessions and survive).
  void KillAgent(const std::string& name, int sig = SIGKILL);

  const std::string& url() const { return url_; }
  const std::string& dir() const { return dir_; }
  // The API as the administrator.
  const Api& api() const { return api_; }
  const std::string& admin_token() const { return api_.token(); }
  const std::string& admin_token_file() const { return admin_token_file_; }
  // Creates a token as the administrator (POST /v1/tokens with `request`); "" on failure.
  std::string CreateToken(const Json& request) const;
  const std::string& bin() const { return options_.bin; }
  // Runs the CLI against this cluster's server as the administrator (adds --server and
  // --token-file after the first argument).
  CliResult Cli(std::vector<std::string> args) const;

  // POST /v1/workloads; the id, or -1 (with the answer in `answer` when given).
  int64_t Submit(const Json& spec, HttpResult* answer = nullptr) const;
  Json Workload(int64_t id) const;  // null when it cannot be read
  std::string State(int64_t id) const;
  // Whether workload `id` has an event of `type` whose message holds `text`.
  bool HasEvent(int64_t id, const std::string& type, const std::string& text = "") const;
  bool WaitState(int64_t id, const std::string& state,
                 std::chrono::milliseconds deadline = 30s) const;
  std::string NodeStatus(const std::string& name) const;

  // A /bin/sh -c command spec in queue `queue`.
  static Json ShellJob(const std::string& name, const std::string& queue, int gpus,
                       const std::string& script);

 private:
  void KillTokenProcesses();

  ClusterOptions options_;
  // A token file for `name` ("agent-<name>.token"), created once per name.
  std::string AgentTokenFile(const std::string& name, const std::string& node_pattern);

  std::string dir_, token_, url_, admin_token_file_;
  int port_ = 0;
  Api api_{""};
  std::unique_ptr<Process> server_;
  std::map<std::string, std::unique_ptr<Process>> agents_;
};

// The serving path of inference services (docs/inference.md) beside a Cluster: Debian's
// haproxy started with the config `gpuorch gateway --write-config` writes (into
// DIR/haproxy), and `gpuorch gateway` keeping it in step with the cluster's services as the
// administrator. The destructor stops both (they carry the Cluster's token, so the
// Cluster's own cleanup reaches them too).
class ServingPath {
 public:
  static constexpr const char* kHaproxy = "/usr/sbin/haproxy";
  static bool HaproxyInstalled();
  // True once HAProxy's exporter and the gateway's /healthz answer; `error` says what failed.
  bool Start(const Cluster& cluster, int slots, int gateway_interval_ms, std::string& error);
  // Where clients send requests: http://HOST:PORT (a service is at /svc/NAME/...).
  std::string front_url() const { return "http://" + front_; }
  // The gateway's own /metrics and /healthz.
  std::string gateway_url() const { return "http://" + gateway_metrics_; }
  // Whether the gateway's metrics name service `name` (it has routed it).
  bool Routes(const std::string& name) const;

 private:
  std::string front_, stats_, gateway_metrics_;
  std::unique_ptr<Process> haproxy_, gateway_;
};

}  // namespace gpuorch::cptest
