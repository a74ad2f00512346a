#pragma once

#include <string>

#include "core/status.h"

// The part of NVML's C ABI (nvml.h) that both of the agent's NVML users need: discovery and
// telemetry (agent/nvml.cc) and the MIG driver (agent/nvml_mig.cc). Our own declarations,
// since the agent dlopens the library rather than building against CUDA's headers; NVML
// passes enums as int and handles as opaque pointers. Each user declares the rest of what
// it calls itself.
namespace gpuorch::agent::nvml_abi {

using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;
using ErrorStringFn = const char* (*)(nvmlReturn_t);  // nvmlErrorString

constexpr nvmlReturn_t kSuccess = 0;          // NVML_SUCCESS
constexpr unsigned int kUuidBufferSize = 96;  // NVML_DEVICE_UUID_V2_BUFFER_SIZE
constexpr unsigned int kMigEnabled = 1;       // NVML_DEVICE_MIG_ENABLE

// "NVML: <call> failed: <nvmlErrorString's text, or the code when the library has none>".
inline core::Status CallFailed(ErrorStringFn error_string, const char* call, nvmlReturn_t r) {
  const char* text = error_string != nullptr ? error_string(r) : nullptr;
  return core::Status::Precondition(std::string("NVML: ") + call + " failed: " +
                                    (text != nullptr ? text : "error " + std::to_string(r)));
}

}  // namespace gpuorch::agent::nvml_abi
