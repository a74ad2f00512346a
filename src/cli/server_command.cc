// `gpuorch server`: the control plane. Runs until SIGINT/SIGTERM.
#include <csignal>
#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "server/server.h"

namespace gpuorch::cli {
namespace {

server::Server* g_server = nullptr;

void OnSignal(int) {
  if (g_server != nullptr) g_server->Stop();
}

}  // namespace

// Loads the config file (if any) and applies command-line overrides.
core::Result<server::ServerConfig> ServerConfigFrom(const std::string& path,
                                                    const std::string& listen,
                                                    const std::string& data) {
  server::ServerConfig config;
  if (!path.empty()) {
    auto c = server::LoadConfig(path);
    if (!c.ok()) return c.status();
    config = *c;
  }
  if (!listen.empty()) config.listen = listen;
  if (!data.empty()) config.data = data;
  return config;
}

int RunServer(const server::ServerConfig& config, const std::function<void(int)>& on_ready) {
  auto s = server::Server::Create(config);
  if (!s.ok()) {
    std::fprintf(stderr, "gpuorch server: %s\n", s.status().message().c_str());
    return 1;
  }
  auto port = (*s)->Bind();
  if (!port.ok()) {
    std::fprintf(stderr, "gpuorch server: %s\n", port.status().message().c_str());
    return 1;
  }
  g_server = s->get();
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);
  if (on_ready) on_ready(*port);
  (*s)->Serve();
  g_server = nullptr;
  return 0;
}

void RegisterServerCommand(CLI::App& app, int& exit_code) {
  auto* cmd =
      app.add_subcommand("server", "Run the gpuorch control plane (REST API, store, scheduler)");
  static std::string config_path, listen, data;
  static bool insecure = false;
  cmd->add_option("--config", config_path, "YAML configuration file")->check(CLI::ExistingFile);
  cmd->add_option("--listen", listen, "Address to listen on, HOST:PORT (default 127.0.0.1:7480)");
  cmd->add_option("--data", data,
                  "Directory of the SQLite store, the audit log and, on first start, "
                  "admin.token (default ./gpuorch-data)");
  cmd->add_flag("--insecure-no-auth", insecure,
                "No authentication: every request acts as an administrator. Refused unless "
                "the server listens on loopback; for local experiments only");
  cmd->callback([&exit_code] {
    auto parsed = ServerConfigFrom(config_path, listen, data);
    if (!parsed.ok()) {
      std::fprintf(stderr, "gpuorch server: %s\n", parsed.status().message().c_str());
      exit_code = 2;
      return;
    }
    server::ServerConfig config = *parsed;
    config.insecure_no_auth = insecure;
    exit_code = RunServer(config, [&](int port) {
      std::string host = config.listen.substr(0, config.listen.rfind(':'));
      std::printf("gpuorch server listening on http://%s:%d (data %s)\n", host.c_str(), port,
                  config.data.c_str());
      std::fflush(stdout);
    });
  });
}

}  // namespace gpuorch::cli
