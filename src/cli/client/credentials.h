#pragma once

#include <string>

#include "cli/client/outcome.h"

namespace gpuorch::cli {

// The API token a command sends (docs/security.md), first found wins:
//   1. `token_file` (--token-file), when not empty;
//   2. the GPUORCH_TOKEN environment variable;
//   3. when `use_config_file`: $XDG_CONFIG_HOME/gpuorch/token, else ~/.config/gpuorch/token.
// Whitespace around a token (a file's trailing newline) is dropped. "" when none is set:
// the server then answers 401 unless it runs with --insecure-no-auth. A named file that
// cannot be read, or that is empty, is a usage error naming it.
Outcome<std::string> LoadToken(const std::string& token_file, bool use_config_file);

// Where LoadToken looks for the per-user file ("" when neither variable is set).
std::string UserTokenPath();

// A hint for a 401: where tokens come from.
std::string TokenHint();

}  // namespace gpuorch::cli
