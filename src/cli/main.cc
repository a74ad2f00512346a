// gpuorch: one binary with subcommands (kubectl/Slurm habits: --help everywhere, clear
// errors, meaningful exit codes: 0 ok, 1 failure, 2 usage error).
#include <CLI/CLI.hpp>
#include <csignal>

#include "cli/commands.h"

int main(int argc, char** argv) {
  // A peer that closes a TLS connection would otherwise kill the process: OpenSSL writes to
  // its sockets without MSG_NOSIGNAL (the CLI, the agent). Broken connections are errors
  // that each caller handles; the task shim restores the default for tasks.
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"gpuorch: a GPU orchestrator for AI platforms"};
  app.require_subcommand(1);
  int exit_code = 0;
  gpuorch::cli::RegisterDemoCommand(app, exit_code);
  gpuorch::cli::RegisterSimCommands(app, exit_code);
  gpuorch::cli::RegisterClientCommands(app, exit_code);
  gpuorch::cli::RegisterServerCommand(app, exit_code);
  gpuorch::cli::RegisterDevCommand(app, exit_code);
  gpuorch::cli::RegisterAgentCommands(app, exit_code);
  gpuorch::cli::RegisterCertsCommand(app, exit_code);
  gpuorch::cli::RegisterGatewayCommand(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
