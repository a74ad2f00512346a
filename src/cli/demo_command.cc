#include "cli/commands.h"

namespace gpuorch::cli {
void RegisterDemoCommand(CLI::App& app, int& exit_code) {
  (void)app;
  (void)exit_code;
}
}  // namespace gpuorch::cli
