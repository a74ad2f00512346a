// `gpuorch dev`: a whole cluster in one process tree, like `nomad agent -dev`. A server with
// its embedded store runs in this process; N agents with emulated GPUs run as child
// processes of this binary. Authentication is on, as in production: the agents join with a
// join token, and a tenant token for the user is written next to the data and printed how
// to use. With --demo it submits a mixed workload (training gangs, an
// elastic inference service, preemptible experiments) and prints the pool as it fills,
// preempts and drains.
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "server/server.h"

namespace gpuorch::cli {

core::Result<server::ServerConfig> ServerConfigFrom(const std::string& path,
                                                    const std::string& listen,
                                                    const std::string& data);

namespace {

using Json = nlohmann::json;

// Queues and classes of the dev cluster: a production team with a guarantee (the only one
// allowed the non-preemptible production class), a research team with a smaller one, and
// experiments that only borrow. Submissions that name no queue go to research.
constexpr const char* kDevConfig = R"(
heartbeat_interval_ms: 200
node_timeout_s: 3
cycle_interval_ms: 50
default_queue: research
queues:
  - name: production
    weight: 2
    quota: [{model: "*", guaranteed: 12}]
    allowed_priorities: [production, normal, opportunistic]
  - name: research
    quota: [{model: "*", guaranteed: 6}]
  - name: experiments
    quota: [{model: "*", guaranteed: 0, limit: 24}]
)";

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

// Writes a token to `path` (mode 0600); false when it cannot.
bool WriteToken(const std::string& path, const std::string& token) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  const std::string line = token + "\n";
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  return ok;
}

std::string ReadToken(const std::string& path) {
  std::ifstream in(path);
  std::string token;
  std::getline(in, token);
  return token;
}

pid_t SpawnAgent(const std::string& url, const std::string& name, const std::string& gpus,
                 const std::string& dir, const std::string& token_file, const LogFlags& log) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  // Its own process group: Ctrl-C (or a signal to the group) reaches only `gpuorch dev`,
  // which cancels the work and then stops the agents, so no task outlives the dev cluster.
  ::setpgid(0, 0);
  std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
  std::vector<std::string> args = {
      exe, "agent", "--server", url, "--name", name, "--token-file", token_file, "--emulate-gpus",
      gpus, "--data", dir, "--heartbeat-ms", "200", "--metrics-listen", "127.0.0.1:0",
      "--telemetry-interval-s", "2", "--rack", "rack-" + name.substr(name.size() - 1),
      // An emulated GPU server: the CPU and memory of a real one.
      "--cpu-milli", "96000", "--memory-mib", "1048576", "--log-level", log.level, "--log-format",
      log.format};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  execv(exe.c_str(), argv.data());
  _exit(127);
}

struct DemoJob {
  int at_s;
  Json spec;
};

// An inference service (docs/inference.md): replicas that serve HTTP on their $PORT
// (python3's http.server, Ready once the port answers), 1 to 4 of them sized for 2 requests
// in flight each, following the load DemoLoad pushes.
Json ChatService() {
  return Json{
      {"name", "chat-serve"},
      {"queue", "production"},
      {"kind", "inference"},
      {"gpus", 1},
      {"priority", "production"},
      {"replicas", "1:4"},
      {"autoscale",
       {{"target", 2}, {"target_utilization", 1}, {"stable_window_s", 10}, {"panic_window_s", 2}}},
      {"grace_period_s", 2},
      {"drain_timeout_s", 5},
      {"cpu_milli", 500},
      {"memory_mib", 512},
      {"command", {"/bin/sh", "-c", "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1"}}};
}

// The demo's load generator: requests in flight at chat-serve at second t of the demo, as
// an external gateway reports them (POST /v1/workloads/{id}/load): a quiet start, a burst
// that asks for all 4 replicas (harvesting the experiments' GPUs), then back down.
double DemoLoad(int t) {
  if (t < 12) return 1;
  if (t < 35) return 7;
  if (t < 50) return 2;
  return 0.5;
}

std::vector<DemoJob> DemoJobs() {
  auto job = [](const char* name, const char* queue, const char* kind, int gpus, int tasks,
                int max_tasks, const char* prio, int seconds) {
    return Json{{"name", name},
                {"queue", queue},
                {"kind", kind},
                {"gpus", gpus},
                {"min_tasks", tasks},
                {"max_tasks", max_tasks},
                {"priority", prio},
                {"grace_period_s", 2},
                {"cpu_milli", 1000},
                {"memory_mib", 1024},
                {"command",
                 {"/bin/sh", "-c",
                  "echo rank $RANK of $WORLD_SIZE on GPUs $CUDA_VISIBLE_DEVICES; "
                  "trap 'echo checkpointing; exit 0' TERM; sleep " +
                      std::to_string(seconds) + " & wait"}}};
  };
  return {
      {0, job("sweep-a", "experiments", "experiment", 4, 1, 1, "opportunistic", 30)},
      {0, job("sweep-b", "experiments", "experiment", 4, 1, 1, "opportunistic", 30)},
      {0, job("sweep-c", "experiments", "experiment", 8, 1, 1, "opportunistic", 30)},
      {0, job("sweep-d", "experiments", "experiment", 4, 1, 1, "opportunistic", 30)},
      {0, job("sweep-e", "experiments", "experiment", 2, 1, 1, "opportunistic", 30)},
      {2, ChatService()},
      {5, job("llm-pretrain", "production", "training", 4, 2, 2, "production", 25)},
      {8, job("ablation", "research", "training", 2, 2, 2, "normal", 20)},
      {10, job("notebook", "research", "experiment", 1, 1, 1, "normal", 25)},
  };
}

// The id of the service named `name`, or -1.
int64_t FindService(httplib::Client& c, const std::string& name) {
  auto r = c.Get("/v1/services");
  if (!r || r->status != 200) return -1;
  const Json list = Json::parse(r->body, nullptr, false);
  if (list.is_discarded() || !list.contains("services")) return -1;
  for (const Json& s : list["services"]) {
    if (s.value("name", "") == name) return s.value("id", int64_t{-1});
  }
  return -1;
}

// Prints the pool when it changed since the last print.
void PrintPool(httplib::Client& c, int t, std::string& last) {
  auto r = c.Get("/v1/workloads");
  if (!r || r->status != 200) return;
  Json list = Json::parse(r->body, nullptr, false);
  if (list.is_discarded()) return;
  std::string text;
  char line[512];
  for (const Json& w : list["workloads"]) {
    if (w.contains("service") && w["service"].is_object()) {  // a service: its replicas follow
      const Json& s = w["service"];
      std::snprintf(line, sizeof(line),
                    "  %-3lld %-13s %-12s service: %d/%d replicas ready, %.0f in flight\n",
                    w["id"].get<long long>(), w["name"].get<std::string>().c_str(),
                    w["queue"].get<std::string>().c_str(), s.value("ready", 0),
                    s.value("desired", 0), s.value("in_flight", 0.0));
      text += line;
      continue;
    }
    std::string where;
    for (const Json& task : w["tasks"]) {
      where += " " + task.value("node", "") + ":" + task["gpus"].dump();
    }
    std::snprintf(line, sizeof(line), "  %-3lld %-13s %-12s %-10s %-22s%s\n",
                  w["id"].get<long long>(), w["name"].get<std::string>().c_str(),
                  w["queue"].get<std::string>().c_str(), w["state"].get<std::string>().c_str(),
                  w.value("reason", "").c_str(), where.c_str());
    text += line;
  }
  if (text == last) return;
  last = text;
  std::printf("--- t=%ds\n%s", t, text.c_str());
  std::fflush(stdout);
}

}  // namespace

void RegisterDevCommand(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "dev", "Run a server and emulated agents in one process tree (a cluster on this machine)");
  static int agents = 3, duration = 0;
  static std::string gpus = "8xH100-80GB", listen = "127.0.0.1:7480", data;
  static bool demo = false;
  cmd->add_option("--agents", agents, "Number of emulated agents")->check(CLI::Range(1, 64));
  cmd->add_option("--emulate-gpus", gpus, "GPUs per emulated agent, e.g. 8xH100-80GB");
  cmd->add_option("--listen", listen, "Server address HOST:PORT");
  cmd->add_option("--data", data, "Data directory (default: a new temporary directory)");
  cmd->add_flag("--demo", demo, "Submit a mixed workload and print the pool as it runs");
  cmd->add_option("--duration", duration, "Stop after this many seconds (0: run until Ctrl-C)");
  // Quieter than the server's default: the terminal shows the pool (with --demo).
  static LogFlags log_flags{"warn", "text"};
  AddLogFlags(cmd, log_flags);
  cmd->callback([&exit_code] {
    if (!SetupLogging(log_flags, "server")) {
      exit_code = 2;
      return;
    }
    if (data.empty()) {
      char tmpl[] = "/tmp/gpuorch-dev-XXXXXX";
      if (mkdtemp(tmpl) == nullptr) {
        std::fprintf(stderr, "gpuorch dev: cannot create a temporary directory\n");
        exit_code = 1;
        return;
      }
      data = tmpl;
      // The agents' tasks run as another user when this runs as root (nobody): they must
      // cross this directory to reach their workdirs, but not list it. The server's own
      // directory stays private.
      ::chmod(data.c_str(), 0711);
      ::mkdir((data + "/server").c_str(), 0700);
    }
    auto parsed = server::ParseConfig(kDevConfig);
    if (!parsed.ok()) {
      exit_code = 1;
      return;
    }
    server::ServerConfig config = *parsed;
    config.listen = listen;
    config.data = data + "/server";
    auto s = server::Server::Create(config);
    if (!s.ok()) {
      std::fprintf(stderr, "gpuorch dev: %s\n", s.status().message().c_str());
      exit_code = 1;
      return;
    }
    auto port = (*s)->Bind();
    if (!port.ok()) {
      std::fprintf(stderr, "gpuorch dev: %s\n", port.status().message().c_str());
      exit_code = 1;
      return;
    }
    std::string host = listen.substr(0, listen.rfind(':'));
    std::string url = "http://" + host + ":" + std::to_string(*port);
    // The agents' join token and the user's tenant token, beside the admin token the server
    // wrote at its first start (a reused --data keeps them all).
    const std::string admin_file = config.data + "/admin.token";
    const std::string agent_file = data + "/agent.token", user_file = data + "/user.token";
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    server::Principal join, user;
    join.name = "dev-agents";
    join.role = server::Role::kAgent;
    join.node = "dev-agent-*";
    user.name = "dev-user";
    user.role = server::Role::kTenant;
    user.queues = {"research", "experiments"};
    user.default_queue = "research";
    for (auto [p, file] : {std::pair{&join, &agent_file}, std::pair{&user, &user_file}}) {
      if (std::filesystem::exists(*file)) continue;
      auto token = (*s)->tokens().CreateToken(*p, now_ms);
      if (!token.ok() || !WriteToken(*file, *token)) {
        std::fprintf(stderr, "gpuorch dev: cannot write %s\n", file->c_str());
        exit_code = 1;
        return;
      }
    }
    const std::string admin_token = ReadToken(admin_file);
    std::thread serve([&] { (*s)->Serve(); });
    std::vector<pid_t> children;
    for (int i = 0; i < agents; ++i) {
      std::string name = "dev-agent-" + std::to_string(i);
      children.push_back(SpawnAgent(url, name, gpus, data + "/" + name, agent_file, log_flags));
    }
    std::printf("gpuorch dev: server on %s, %d agents with %s, data in %s\n", url.c_str(), agents,
                gpus.c_str(), data.c_str());
    std::printf("  tokens: %s (tenant of research and experiments), %s (admin)\n",
                user_file.c_str(), admin_file.c_str());
    std::printf("  try: export GPUORCH_SERVER=%s GPUORCH_TOKEN=$(cat %s)\n", url.c_str(),
                user_file.c_str());
    std::printf(
        "       gpuorch submit --gpus 1 -- true; gpuorch get    "
        "(Ctrl-C stops everything)\n");
    // The fragment never reaches the server: the page moves the token to the tab's
    // session storage and takes it out of the address bar.
    std::printf("  dashboard: %s/ui/#token=%s\n", url.c_str(), ReadToken(user_file).c_str());
    std::fflush(stdout);
    signal(SIGINT, OnSignal);
    signal(SIGTERM, OnSignal);
    httplib::Client client(url);
    client.set_bearer_token_auth(admin_token);
    auto jobs = DemoJobs();
    size_t next = 0;
    auto start = std::chrono::steady_clock::now();
    int last_print = -1;
    std::string last_pool;
    int64_t service = -1;
    while (!g_stop) {
      int t = static_cast<int>(
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start)
              .count());
      if (duration > 0 && t >= duration) break;
      while (demo && next < jobs.size() && jobs[next].at_s <= t) {
        auto r = client.Post("/v1/workloads", jobs[next].spec.dump(), "application/json");
        if (!r || r->status != 201) {
          std::fprintf(stderr, "gpuorch dev: demo submit failed: %s\n",
                       r ? r->body.c_str() : "no answer");
        }
        ++next;
      }
      if (demo && t != last_print) {
        if (service < 0) service = FindService(client, "chat-serve");
        if (service > 0) {
          client.Post("/v1/workloads/" + std::to_string(service) + "/load",
                      Json{{"in_flight", DemoLoad(t)}, {"source", "pushed"}}.dump(),
                      "application/json");
        }
        PrintPool(client, t, last_pool);
        last_print = t;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    // Stop the work first, so that no task outlives the dev cluster; then the agents.
    auto list = client.Get("/v1/workloads");
    if (list && list->status == 200) {
      Json l = Json::parse(list->body, nullptr, false);
      if (!l.is_discarded()) {
        for (const Json& w : l["workloads"]) {
          std::string st = w.value("state", "");
          if (st == "Pending" || st == "Running" || st == "Preempted") {
            client.Post("/v1/workloads/" + std::to_string(w["id"].get<long long>()) + "/cancel");
          }
        }
      }
    }
    for (int i = 0; i < 100; ++i) {
      auto r = client.Get("/v1/workloads?state=Running");
      auto p = client.Get("/v1/workloads?state=Preempted");
      if (!r || !p) break;
      if (Json::parse(r->body, nullptr, false)["workloads"].empty() &&
          Json::parse(p->body, nullptr, false)["workloads"].empty()) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    for (pid_t pid : children) kill(pid, SIGTERM);
    for (pid_t pid : children) waitpid(pid, nullptr, 0);
    (*s)->Stop();
    serve.join();
    std::printf("gpuorch dev: stopped\n");
    exit_code = 0;
  });
}

}  // namespace gpuorch::cli
