#pragma once

#include <CLI/CLI.hpp>

namespace gpuorch::cli {

// Each family of subcommands registers itself on the root app. A registered callback sets
// the process exit code through `exit_code`.
void RegisterDemoCommand(CLI::App& app, int& exit_code);
void RegisterSimCommands(CLI::App& app, int& exit_code);

}  // namespace gpuorch::cli
