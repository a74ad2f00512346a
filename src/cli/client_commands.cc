// The client commands talk to a running `gpuorch server` over its REST API (docs/api.md);
// their implementation lives in the gpuorch_client library so that tests can drive them.
#include <chrono>
#include <iostream>

#include "cli/client/app.h"
#include "cli/commands.h"

namespace gpuorch::cli {

void RegisterClientCommands(CLI::App& app, int& exit_code) {
  // Static: the callbacks run inside app.parse(), after this function has returned.
  static const Io io{std::cout, std::cerr, [] { return std::chrono::system_clock::now(); }};
  AddClientCommands(app, io, exit_code);
}

}  // namespace gpuorch::cli
