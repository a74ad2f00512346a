#pragma once

#include <CLI/CLI.hpp>

#include "cli/client/commands.h"

namespace gpuorch::cli {

// Adds submit, get, describe, cancel, logs, queues, nodes, drain, undrain, token, audit and
// usage to `app`. A
// command's callback runs during app.parse() and stores its exit code in `exit_code`;
// flag errors surface as CLI::ParseError from parse() (the caller maps them to exit 2).
// `io` must outlive the parse.
void AddClientCommands(CLI::App& app, const Io& io, int& exit_code);

}  // namespace gpuorch::cli
