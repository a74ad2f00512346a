#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace gpuorch::cli {

// Each family of subcommands registers itself on the root app. A registered callback sets
// the process exit code through `exit_code`.
void RegisterDemoCommand(CLI::App& app, int& exit_code);
void RegisterSimCommands(CLI::App& app, int& exit_code);
// `sim replay` and `sim report`, added under the `sim` subcommand.
void AddReplayCommand(CLI::App* sim, int& exit_code);
// `sim platform`, the mixed LLM platform experiment (docs/platform.md).
void AddPlatformCommand(CLI::App* sim, int& exit_code);
// `sim mig`, the GPU partitioning experiment (docs/partitioning.md, "The experiment").
void AddMigCommand(CLI::App* sim, int& exit_code);
// submit, get, describe, cancel, logs, queues, nodes, drain, undrain (docs/cli.md).
void RegisterClientCommands(CLI::App& app, int& exit_code);
// server (the control plane) and dev (server + emulated agents in one process tree).
void RegisterServerCommand(CLI::App& app, int& exit_code);
void RegisterDevCommand(CLI::App& app, int& exit_code);
// agent (the node agent, docs/agent.md) and task-shim (internal: the agent's task wrapper).
void RegisterAgentCommands(CLI::App& app, int& exit_code);
// certs init, certs add-nodes (a cluster CA and TLS certificates, docs/operations.md).
void RegisterCertsCommand(CLI::App& app, int& exit_code);
// gateway (HAProxy in the serving path of inference services, docs/inference.md).
void RegisterGatewayCommand(CLI::App& app, int& exit_code);

// --log-level and --log-format of the server, the agent and dev (docs/operations.md).
struct LogFlags {
  std::string level = "info";
  std::string format = "text";
};
void AddLogFlags(CLI::App* cmd, LogFlags& flags);
// Installs the logger for `component`; false (the error printed) on a bad flag value.
bool SetupLogging(const LogFlags& flags, const char* component);

}  // namespace gpuorch::cli
