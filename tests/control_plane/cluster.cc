#include "cluster.h"

#include <dirent.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace gpuorch::cptest {

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds deadline,
             std::chrono::milliseconds poll) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(poll);
  }
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

bool ProcessAlive(pid_t pid) {
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return false;
  size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'Z';
}

// ---- Process

Process::Process(const std::vector<std::string>& argv,
                 const std::map<std::string, std::string>& env, const std::string& log) {
  // Everything the child needs is built before fork: only async-signal-safe calls after it.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    std::string key = kv.substr(0, kv.find('='));
    if (!env.count(key)) env_strings.push_back(kv);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> argv_c, env_c;
  for (const std::string& a : argv) argv_c.push_back(const_cast<char*>(a.c_str()));
  argv_c.push_back(nullptr);
  for (const std::string& e : env_strings) env_c.push_back(const_cast<char*>(e.c_str()));
  env_c.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    // If the test process dies without its destructors (a crash, a timeout kill), so do we.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int in = open("/dev/null", O_RDONLY);
    int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in >= 0) dup2(in, 0);
    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    execve(argv_c[0], argv_c.data(), env_c.data());
    _exit(127);
  }
  if (pid_ > 0) setpgid(pid_, pid_);  // also here, so Signal() cannot race the child
}

Process::~Process() {
  if (pid_ <= 0 || reaped_) return;
  Signal(SIGKILL);
  Wait();
}

void Process::Signal(int sig) {
  if (pid_ > 0 && !reaped_) kill(-pid_, sig);
}

int Process::Wait() {
  if (pid_ <= 0) return -1;
  if (!reaped_) {
    while (waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }
  return status_;
}

bool Process::Exited() {
  if (pid_ <= 0 || reaped_) return true;
  if (waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
  return reaped_;
}

// ---- Api

namespace {

HttpResult ToResult(const httplib::Result& r) {
  HttpResult out;
  if (!r) return out;
  out.status = r->status;
  out.body = r->body;
  out.json = Json::parse(out.body, nullptr, false);
  return out;
}

std::unique_ptr<httplib::Client> Client(const std::string& url, const std::string& token) {
  auto c = std::make_unique<httplib::Client>(url);
  c->set_connection_timeout(5, 0);
  c->set_read_timeout(30, 0);
  c->set_write_timeout(30, 0);
  if (!token.empty()) c->set_bearer_token_auth(token);
  return c;
}

}  // namespace

HttpResult Api::Get(const std::string& path) const {
  return ToResult(Client(url_, token_)->Get(path));
}

HttpResult Api::Post(const std::string& path, const std::string& body) const {
  return ToResult(Client(url_, token_)->Post(path, body, "application/json"));
}

HttpResult Api::Delete(const std::string& path) const {
  return ToResult(Client(url_, token_)->Delete(path));
}

// ---- CLI

CliResult RunCli(const std::string& bin, const std::vector<std::string>& args) {
  static std::atomic<int> counter{0};
  std::string base = std::filesystem::temp_directory_path().string() + "/gpuorch-cli-" +
                     std::to_string(getpid()) + "-" + std::to_string(counter++);
  std::vector<std::string> argv = {bin};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> argv_c;
  for (const std::string& a : argv) argv_c.push_back(const_cast<char*>(a.c_str()));
  argv_c.push_back(nullptr);
  std::string out_path = base + ".out", err_path = base + ".err";
  CliResult result;
  pid_t pid = fork();
  if (pid == 0) {
    int in = open("/dev/null", O_RDONLY);
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    alarm(60);
    execv(argv_c[0], argv_c.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = ReadFile(out_path);
  result.err = ReadFile(err_path);
  std::filesystem::remove(out_path);
  std::filesystem::remove(err_path);
  return result;
}

// ---- Cluster

Cluster::Cluster(ClusterOptions options) : options_(std::move(options)) {
  std::string tmpl = std::filesystem::temp_directory_path().string() + "/gpuorch-cp-XXXXXX";
  if (mkdtemp(tmpl.data()) != nullptr) dir_ = tmpl;
  static std::atomic<int> counter{0};
  token_ = std::to_string(getpid()) + "-" + std::to_string(counter++) + "-" +
           std::filesystem::path(dir_).filename().string();
  port_ = FreePort();
  url_ = "http://127.0.0.1:" + std::to_string(port_);
  api_ = Api(url_);
  WriteFile(dir_ + "/config.yaml", options_.config_yaml);
}

Cluster::~Cluster() {
  for (auto& [name, agent] : agents_) agent->Signal(SIGKILL);
  if (server_) server_->Signal(SIGKILL);
  agents_.clear();
  server_.reset();
  KillTokenProcesses();
  if (!dir_.empty() && std::getenv("GPUORCH_CP_KEEP") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

void Cluster::KillTokenProcesses() {
  const std::string needle = "GPUORCH_CP_TOKEN=" + token_;
  // Tasks can fork while we look, so look until a pass finds none (bounded).
  for (int pass = 0; pass < 100; ++pass) {
    int found = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      std::string name = entry.path().filename().string();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      pid_t pid = static_cast<pid_t>(std::stol(name));
      if (pid == getpid() || !ProcessAlive(pid)) continue;
      std::ifstream in(entry.path() / "environ", std::ios::binary);
      std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      for (size_t pos = 0; pos < env.size();) {
        size_t end = env.find('\0', pos);
        if (end == std::string::npos) end = env.size();
        if (env.compare(pos, end - pos, needle) == 0) {
          kill(pid, SIGKILL);
          ++found;
          break;
        }
        pos = end + 1;
      }
    }
    if (found == 0) return;
    std::this_thread::sleep_for(10ms);
  }
}

bool Cluster::StartServer() {
  server_ = std::make_unique<Process>(
      std::vector<std::string>{options_.bin, "server", "--config", dir_ + "/config.yaml",
                               "--listen", "127.0.0.1:" + std::to_string(port_), "--data",
                               dir_ + "/server"},
      std::map<std::string, std::string>{{"GPUORCH_CP_TOKEN", token_}}, dir_ + "/server.log");
  if (!WaitFor([&] { return !server_->Exited() && api_.Get("/healthz").status == 200; })) {
    return false;
  }
  admin_token_file_ = dir_ + "/server/admin.token";
  std::string token = ReadFile(admin_token_file_);
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  api_ = Api(url_, token);
  return !token.empty();
}

std::string Cluster::CreateToken(const Json& request) const {
  HttpResult r = api_.Post("/v1/tokens", request);
  if (r.status != 201 || !r.json.is_object()) return "";
  return r.json.value("token", "");
}

std::string Cluster::AgentTokenFile(const std::string& name, const std::string& node_pattern) {
  const std::string path = dir_ + "/agent-" + name + ".token";
  if (!std::filesystem::exists(path)) {
    WriteFile(path, CreateToken(Json{
                        {"name", "agent-" + name}, {"role", "agent"}, {"node", node_pattern}}) +
                        "\n");
  }
  return path;
}

void Cluster::StopServer(int sig) {
  if (!server_) return;
  server_->Signal(sig);
  server_->Wait();
}

bool Cluster::StartAgent(const std::string& name, const std::string& gpus,
                         const std::vector<std::string>& extra) {
  std::string data = dir_ + "/agent-" + name;
  std::filesystem::create_directories(data);
  // Tasks keep the token (KillTokenProcesses finds leftovers by it). No task cgroups: test
  // clusters run side by side and reuse node names, so they would share cgroup names
  // (agent_test covers cgroups).
  std::vector<std::string> args = {options_.bin,
                                   "agent",
                                   "--server",
                                   url_,
                                   "--name",
                                   name,
                                   "--token-file",
                                   AgentTokenFile(name, name),
                                   "--emulate-gpus",
                                   gpus,
                                   "--data",
                                   data,
                                   "--cpu-milli",
                                   "64000",
                                   "--memory-mib",
                                   "262144",
                                   "--heartbeat-ms",
                                   std::to_string(options_.agent_heartbeat_ms),
                                   "--env-allow",
                                   "PATH,LANG,LC_ALL,TZ,GPUORCH_CP_TOKEN",
                                   "--cgroup-parent",
                                   "off",
                                   "--metrics-listen",
                                   "127.0.0.1:0",
                                   "--telemetry-interval-s",
                                   "0.5"};
  if (options_.tasks_as_test_user) {
    args.insert(args.end(), {"--task-user", std::to_string(::geteuid())});
    if (::geteuid() == 0) args.push_back("--allow-root-tasks");
  }
  args.insert(args.end(), extra.begin(), extra.end());
  agents_[name] = std::make_unique<Process>(
      std::move(args), std::map<std::string, std::string>{{"GPUORCH_CP_TOKEN", token_}},
      dir_ + "/agent-" + name + ".log");
  return WaitFor([&] { return NodeStatus(name) == "Ready"; });
}

bool Cluster::StartHollowNodes(const std::string& prefix, int count, const std::string& gpus,
                               std::chrono::milliseconds deadline) {
  agents_[prefix] = std::make_unique<Process>(
      std::vector<std::string>{options_.bin, "agent", "--server", url_, "--emulate-nodes",
                               std::to_string(count), "--name-prefix", prefix, "--token-file",
                               AgentTokenFile(prefix, prefix + "-*"), "--emulate-gpus", gpus,
                               "--heartbeat-ms", std::to_string(options_.agent_heartbeat_ms),
                               "--register-rate", "200"},
      std::map<std::string, std::string>{{"GPUORCH_CP_TOKEN", token_}},
      dir_ + "/agent-" + prefix + ".log");
  return WaitFor([&] { return ReadyNodes(prefix) == count; }, deadline, 200ms);
}

int Cluster::ReadyNodes(const std::string& prefix) const {
  HttpResult r = api_.Get("/v1/nodes");
  if (r.status != 200 || !r.json.is_object()) return -1;
  int ready = 0;
  for (const Json& n : r.json.value("nodes", Json::array())) {
    const std::string name = n.value("name", "");
    ready += name.rfind(prefix + "-", 0) == 0 && n.value("status", "") == "Ready";
  }
  return ready;
}

void Cluster::KillAgent(const std::string& name, int sig) {
  auto it = agents_.find(name);
  if (it == agents_.end()) return;
  it->second->Signal(sig);
  it->second->Wait();
}

CliResult Cluster::Cli(std::vector<std::string> args) const {
  args.insert(args.begin() + (args.empty() ? 0 : 1),
              {"--server", url_, "--token-file", admin_token_file_});
  return RunCli(options_.bin, args);
}

int64_t Cluster::Submit(const Json& spec, HttpResult* answer) const {
  HttpResult r = api_.Post("/v1/workloads", spec);
  if (answer != nullptr) *answer = r;
  if (r.status != 201 || r.json.is_discarded() || !r.json.contains("id")) return -1;
  return r.json["id"].get<int64_t>();
}

Json Cluster::Workload(int64_t id) const {
  HttpResult r = api_.Get("/v1/workloads/" + std::to_string(id));
  if (r.status != 200 || r.json.is_discarded()) return nullptr;
  return r.json;
}

std::string Cluster::State(int64_t id) const {
  Json w = Workload(id);
  return w.is_object() ? w.value("state", "") : "";
}

bool Cluster::WaitState(int64_t id, const std::string& state,
                        std::chrono::milliseconds deadline) const {
  return WaitFor([&] { return State(id) == state; }, deadline, 25ms);
}

std::string Cluster::NodeStatus(const std::string& name) const {
  HttpResult r = api_.Get("/v1/nodes");
  if (r.status != 200 || r.json.is_discarded()) return "";
  for (const Json& n : r.json.value("nodes", Json::array())) {
    if (n.value("name", "") == name) return n.value("status", "");
  }
  return "";
}

Json Cluster::ShellJob(const std::string& name, const std::string& queue, int gpus,
                       const std::string& script) {
  return Json{{"name", name},
              {"queue", queue},
              {"gpus", gpus},
              {"grace_period_s", 1},
              {"command", {"/bin/sh", "-c", script}}};
}

bool Cluster::HasEvent(int64_t id, const std::string& type, const std::string& text) const {
  const Json w = Workload(id);
  if (!w.is_object() || !w.contains("events")) return false;
  for (const Json& e : w["events"]) {
    if (e.value("type", "") == type && e.value("message", "").find(text) != std::string::npos) {
      return true;
    }
  }
  return false;
}

bool ServingPath::HaproxyInstalled() { return ::access(kHaproxy, X_OK) == 0; }

bool ServingPath::Start(const Cluster& cluster, int slots, int gateway_interval_ms,
                        std::string& error) {
  const std::string dir = cluster.dir() + "/haproxy";
  std::filesystem::create_directories(dir);
  front_ = "127.0.0.1:" + std::to_string(FreePort());
  stats_ = "127.0.0.1:" + std::to_string(FreePort());
  const CliResult wrote =
      RunCli(cluster.bin(), {"gateway", "--write-config", dir, "--bind", front_, "--stats-bind",
                             stats_, "--slots", std::to_string(slots), "--hold-timeout-s", "60"});
  if (wrote.exit_code != 0) {
    error = "gpuorch gateway --write-config: " + wrote.out + wrote.err;
    return false;
  }
  haproxy_ = std::make_unique<Process>(
      std::vector<std::string>{kHaproxy, "-f", dir + "/haproxy.cfg", "-db"},
      std::map<std::string, std::string>{}, dir + "/haproxy.log");
  if (!WaitFor([&] { return Api("http://" + stats_).Get("/metrics").status == 200; })) {
    error = "haproxy did not start; see " + dir + "/haproxy.log";
    return false;
  }
  gateway_metrics_ = "127.0.0.1:" + std::to_string(FreePort());
  gateway_ = std::make_unique<Process>(
      std::vector<std::string>{cluster.bin(), "gateway", "--server", cluster.url(), "--token-file",
                               cluster.admin_token_file(), "--haproxy-socket",
                               dir + "/haproxy.sock", "--haproxy-metrics",
                               "http://" + stats_ + "/metrics", "--haproxy-waiting",
                               "http://" + stats_ + "/gpuorch/waiting", "--interval-ms",
                               std::to_string(gateway_interval_ms), "--listen", gateway_metrics_},
      std::map<std::string, std::string>{}, cluster.dir() + "/gateway.log");
  if (!WaitFor([&] { return Api("http://" + gateway_metrics_).Get("/healthz").status == 200; })) {
    error = "the gateway did not start; see " + cluster.dir() + "/gateway.log";
    return false;
  }
  return true;
}

bool ServingPath::Routes(const std::string& name) const {
  return Api("http://" + gateway_metrics_).Get("/metrics").body.find("service=\"" + name + "\"") !=
         std::string::npos;
}

}  // namespace gpuorch::cptest
