// platform.yaml (`gpuorch sim platform --config`): any text is accepted with a valid config
// or refused with an error naming where; never a crash. An accepted config validates.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "sim/platform/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // `cluster:` names a file to read: the fuzzer stays off the filesystem (it could name
  // /dev/zero); the config tests cover that key.
  if (text.find("cluster") != std::string::npos) return 0;
  auto c = gpuorch::sim::platform::ParsePlatformConfig(text, "platform.yaml", "");
  if (!c.ok()) {
    if (c.status().message().find("platform.yaml") == std::string::npos) std::abort();
    return 0;
  }
  if (!c->Validate().ok()) std::abort();
  return 0;
}
