// The server's YAML configuration (ParseConfig), and what a server makes of an accepted one:
// a controller with its queues.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz/memory_store.h"
#include "server/config.h"
#include "server/controller.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = gpuorch::server::ParseConfig(text);
  if (!config.ok()) {
    if (config.status().message().empty()) std::abort();
    return 0;
  }
  // The engine checks the queue tree once more (quotas against parents): a refusal there
  // is an error message, never a crash.
  gpuorch::fuzz::MemoryStore store;
  auto controller = gpuorch::server::Controller::Create(*config, &store);
  if (!controller.ok() && controller.status().message().empty()) std::abort();
  return 0;
}
