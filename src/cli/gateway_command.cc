// `gpuorch gateway`: keeps HAProxy in step with the inference services of a gpuorch server,
// pushes their load and republishes their latency (docs/inference.md, "Serving path
// (HAProxy)"). `--write-config DIR` writes the haproxy.cfg, routes map and Lua script that
// it expects, and exits.
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cli/client/api_client.h"
#include "cli/commands.h"
#include "gateway/gateway.h"
#include "gateway/haproxy_config.h"
#include "log/logging.h"

namespace gpuorch::cli {
namespace {

std::atomic<bool> g_stop{false};
void OnStop(int) { g_stop = true; }

// The control plane over the REST API.
class ApiControlPlane : public gateway::ControlPlane {
 public:
  explicit ApiControlPlane(std::unique_ptr<ApiClient> api) : api_(std::move(api)) {}
  core::Result<std::vector<gateway::Service>> ListServices() override {
    auto body = api_->GetJson("/v1/services");
    if (!body.ok()) return core::Status::Precondition(body.failure().message);
    return gateway::ParseServices(body.value());
  }
  core::Status PushLoad(int64_t service_id, const nlohmann::json& body) override {
    auto answer = api_->PostJson("/v1/workloads/" + std::to_string(service_id) + "/load", body);
    if (!answer.ok()) return core::Status::Precondition(answer.failure().message);
    return core::Status::Ok();
  }

 private:
  std::unique_ptr<ApiClient> api_;
};

bool WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  return static_cast<bool>(out);
}

int WriteConfig(gateway::HaproxyConfigOptions o) {
  std::error_code ec;
  std::filesystem::create_directories(o.dir, ec);
  o.dir = std::filesystem::absolute(o.dir).lexically_normal().string();
  while (o.dir.size() > 1 && o.dir.back() == '/') o.dir.pop_back();
  const std::string map = o.dir + "/" + gateway::kRoutesMapName;
  // An existing map keeps its routes: HAProxy reloads them at its next start.
  if (!std::filesystem::exists(map) && !WriteText(map, "")) {
    std::fprintf(stderr, "gpuorch gateway: cannot write %s\n", map.c_str());
    return 1;
  }
  for (const auto& [name, text] :
       {std::pair<std::string, std::string>{gateway::kConfigFile, gateway::HaproxyConfig(o)},
        {gateway::kLuaFile, gateway::HoldLuaScript()}}) {
    if (!WriteText(o.dir + "/" + name, text)) {
      std::fprintf(stderr, "gpuorch gateway: cannot write %s/%s\n", o.dir.c_str(), name.c_str());
      return 1;
    }
  }
  std::printf("wrote %s/%s, %s and %s; start HAProxy with: haproxy -f %s/%s\n", o.dir.c_str(),
              gateway::kConfigFile, gateway::kRoutesMapName, gateway::kLuaFile, o.dir.c_str(),
              gateway::kConfigFile);
  return 0;
}

struct GatewayFlags {
  std::string server, token, token_file, ca_file;
  std::string socket, metrics_url, waiting_url;
  std::string listen = "127.0.0.1:7490";
  int interval_ms = 500;
  std::string write_config;
  gateway::HaproxyConfigOptions config;
  LogFlags log;
};

int RunGateway(const GatewayFlags& f) {
  if (f.server.empty() || f.socket.empty() || f.metrics_url.empty()) {
    std::fprintf(stderr,
                 "gpuorch gateway: --server, --haproxy-socket and --haproxy-metrics are required "
                 "(or --write-config DIR)\n");
    return 2;
  }
  auto api = ConnectWithToken(f.server, f.token, f.token_file, f.ca_file);
  if (!api.ok()) {
    std::fprintf(stderr, "gpuorch gateway: %s\n", api.failure().message.c_str());
    return api.failure().exit_code;
  }
  ApiControlPlane control_plane(std::move(api).value());
  gateway::RuntimeApi haproxy(f.socket);
  gateway::Gateway gw(control_plane, haproxy, {f.metrics_url, f.waiting_url});

  httplib::Server metrics;
  metrics.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(gw.RenderMetrics(), "text/plain; version=0.0.4");
  });
  metrics.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  const size_t colon = f.listen.rfind(':');
  const int port = colon == std::string::npos ? -1 : std::atoi(f.listen.c_str() + colon + 1);
  if (port <= 0 || !metrics.bind_to_port(f.listen.substr(0, colon), port)) {
    std::fprintf(stderr, "gpuorch gateway: cannot listen on %s\n", f.listen.c_str());
    return 1;
  }
  std::thread serve([&] { metrics.listen_after_bind(); });
  std::signal(SIGINT, OnStop);
  std::signal(SIGTERM, OnStop);
  log::Info("gateway_started", {{"server", f.server},
                                {"haproxy_socket", f.socket},
                                {"haproxy_metrics", f.metrics_url},
                                {"listen", f.listen}});
  std::string last_problem;
  while (!g_stop) {
    const auto next = std::chrono::steady_clock::now() + std::chrono::milliseconds(f.interval_ms);
    // A malformed answer is a problem of this tick, never the end of the gateway.
    core::Status st = core::Status::Ok();
    try {
      st = gw.Tick();
    } catch (const std::exception& e) {
      st = core::Status::Invalid(std::string("tick: ") + e.what());
    }
    // One line per change of problem, not one per tick.
    const std::string problem = st.ok() ? "" : st.message();
    if (problem != last_problem) {
      if (problem.empty()) {
        log::Info("gateway_in_step", {});
      } else {
        log::Warn("gateway_problem", {{"error", problem}});
      }
      last_problem = problem;
    }
    while (!g_stop && std::chrono::steady_clock::now() < next)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  metrics.stop();
  serve.join();
  log::Info("stopped", {});
  log::Flush();
  return 0;
}

}  // namespace

void RegisterGatewayCommand(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "gateway",
      "Keep HAProxy's backends in step with the inference services and push their load "
      "(docs/inference.md)");
  static GatewayFlags f;
  cmd->add_option("--server", f.server, "The gpuorch server's URL");
  cmd->add_option("--token", f.token, "API token (else --token-file, GPUORCH_TOKEN, ...)");
  cmd->add_option("--token-file", f.token_file, "File holding the API token");
  cmd->add_option("--ca", f.ca_file,
                  "CA certificate (PEM) of an https:// server, as the client commands' --ca")
      ->envname("GPUORCH_CA");
  cmd->add_option("--haproxy-socket", f.socket, "HAProxy's runtime API (stats socket) path");
  cmd->add_option("--haproxy-metrics", f.metrics_url,
                  "HAProxy's Prometheus exporter, e.g. http://127.0.0.1:8405/metrics");
  cmd->add_option("--haproxy-waiting", f.waiting_url,
                  "The Lua hold counter (default: the exporter's host, /gpuorch/waiting)");
  cmd->add_option("--interval-ms", f.interval_ms, "Period of the sync loop")
      ->capture_default_str()
      ->check(CLI::Range(50, 60000));
  cmd->add_option("--listen", f.listen, "Address of the gateway's own /metrics")
      ->capture_default_str();
  cmd->add_option("--write-config", f.write_config,
                  "Write haproxy.cfg, the routes map and the Lua hold script into this "
                  "directory, then exit");
  cmd->add_option("--bind", f.config.bind, "With --write-config: the services' frontend address")
      ->capture_default_str();
  cmd->add_option("--stats-bind", f.config.stats_bind,
                  "With --write-config: the exporter's address (/metrics, /gpuorch/waiting)")
      ->capture_default_str();
  cmd->add_option("--slots", f.config.slots,
                  "With --write-config: backends svc_0..svc_{N-1}, the most services routed")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  cmd->add_option("--hold-timeout-s", f.config.hold_timeout_s,
                  "With --write-config: how long a request waits for a service's first ready "
                  "replica (scale from zero)")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600));
  AddLogFlags(cmd, f.log);
  cmd->callback([&exit_code] {
    if (!SetupLogging(f.log, "gateway")) {
      exit_code = 2;
      return;
    }
    if (!f.write_config.empty()) {
      f.config.dir = f.write_config;
      f.config.socket = f.socket;
      if (!f.config.socket.empty())
        f.config.socket = std::filesystem::absolute(f.config.socket).string();
      exit_code = WriteConfig(f.config);
      return;
    }
    exit_code = RunGateway(f);
  });
}

}  // namespace gpuorch::cli
