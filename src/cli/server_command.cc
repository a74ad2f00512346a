// `gpuorch server`: the control plane. Runs until SIGINT/SIGTERM.
#include <csignal>
#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "log/logging.h"
#include "server/server.h"

namespace gpuorch::cli {
namespace {

server::Server* g_server = nullptr;

void OnSignal(int) {
  if (g_server != nullptr) g_server->Stop();
}

}  // namespace

void AddLogFlags(CLI::App* cmd, LogFlags& flags) {
  cmd->add_option("--log-level", flags.level, "trace, debug, info, warn, error or off")
      ->capture_default_str();
  cmd->add_option("--log-format", flags.format,
                  "text, or json: one JSON object a line (docs/operations.md, Logs)")
      ->capture_default_str();
}

bool SetupLogging(const LogFlags& flags, const char* component) {
  log::Level level;
  log::Format format;
  std::string error;
  if (!log::ParseLevel(flags.level, level, error) ||
      !log::ParseFormat(flags.format, format, error)) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return false;
  }
  log::Setup(level, format, component);
  return true;
}

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
  log::Info("stopped", {});
  log::Flush();
  return 0;
}

void RegisterServerCommand(CLI::App& app, int& exit_code) {
  auto* cmd =
      app.add_subcommand("server", "Run the gpuorch control plane (REST API, store, scheduler)");
  static std::string config_path, listen, data;
  static server::ServerConfig::Tls tls;
  static bool insecure = false;
  static LogFlags log_flags;
  cmd->add_option("--config", config_path, "YAML configuration file")->check(CLI::ExistingFile);
  cmd->add_option("--listen", listen, "Address to listen on, HOST:PORT (default 127.0.0.1:7480)");
  cmd->add_option("--data", data,
                  "Directory of the SQLite store, the audit log and, on first start, "
                  "admin.token (default ./gpuorch-data)");
  cmd->add_flag("--insecure-no-auth", insecure,
                "No authentication: every request acts as an administrator. Refused unless "
                "the server listens on loopback; for local experiments only");
  cmd->add_option("--tls-cert", tls.cert,
                  "Serve HTTPS with this certificate chain (PEM; e.g. server.pem of gpuorch "
                  "certs init); overrides tls.cert");
  cmd->add_option("--tls-key", tls.key, "The key of --tls-cert (PEM); overrides tls.key");
  cmd->add_option("--tls-client-ca", tls.client_ca,
                  "Mutual TLS for agents: they must present a certificate from this CA naming "
                  "their node (CN node:NAME); overrides tls.client_ca");
  AddLogFlags(cmd, log_flags);
  cmd->callback([&exit_code] {
    if (!SetupLogging(log_flags, "server")) {
      exit_code = 2;
      return;
    }
    auto parsed = ServerConfigFrom(config_path, listen, data);
    if (!parsed.ok()) {
      std::fprintf(stderr, "gpuorch server: %s\n", parsed.status().message().c_str());
      exit_code = 2;
      return;
    }
    server::ServerConfig config = *parsed;
    config.insecure_no_auth = insecure;
    if (!tls.cert.empty()) config.tls.cert = tls.cert;
    if (!tls.key.empty()) config.tls.key = tls.key;
    if (!tls.client_ca.empty()) config.tls.client_ca = tls.client_ca;
    if (core::Status st = server::CheckTls(config.tls); !st.ok()) {
      std::fprintf(stderr, "gpuorch server: %s\n", st.message().c_str());
      exit_code = 2;
      return;
    }
    exit_code = RunServer(config, [&](int port) {
      std::string host = config.listen.substr(0, config.listen.rfind(':'));
      std::printf("gpuorch server listening on %s://%s:%d (data %s%s)\n",
                  config.tls.on() ? "https" : "http", host.c_str(), port, config.data.c_str(),
                  config.tls.client_ca.empty() ? "" : ", mutual TLS for agents");
      std::fflush(stdout);
    });
  });
}

}  // namespace gpuorch::cli
