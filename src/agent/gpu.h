#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace gpuorch::agent {

class TelemetrySource;
class MigDriver;

// One MIG device (a GPU instance with its full compute instance) of a GPU in MIG mode.
struct MigDevice {
  int32_t start = 0;    // the memory slice it starts at (its placement)
  std::string profile;  // "3g.40gb"
  std::string uuid;     // "MIG-...": what CUDA_VISIBLE_DEVICES selects it by
  int32_t gi_id = -1;   // the driver's GPU instance id (dcgm-exporter's GPU_I_ID); -1: none

  friend bool operator==(const MigDevice&, const MigDevice&) = default;
};

// One GPU as the agent reports it at registration (docs/api.md, agent protocol).
struct GpuInfo {
  int32_t index = 0;
  std::string uuid;
  std::string model;       // gpuorch's model name, e.g. "H100-80GB"
  std::string raw_name;    // what the driver calls it, e.g. "NVIDIA H100 80GB HBM3"
  int64_t memory_mib = 0;  // total memory
  bool mig = false;        // MIG mode currently enabled
  std::string pci_bus_id;  // "00000000:07:00.0" (made up for emulated GPUs)
  // MIG mode only: the instances it has now (core::FormatLayout text, "" for none) and
  // their devices, filled in by the MIG layer (agent/mig.h) before each registration.
  std::string mig_layout;
  std::vector<MigDevice> mig_devices;
};

// Where a node's GPUs come from. Discover() is called once at agent start; implementations
// are not required to be thread-safe.
class GpuBackend {
 public:
  virtual ~GpuBackend() = default;
  // "nvml" or "emulated": the `backend` field of the registration.
  virtual std::string_view Name() const = 0;
  virtual core::Result<std::vector<GpuInfo>> Discover() = 0;
  // The value that selects GPU `gpu` in CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES:
  // its UUID on real GPUs (stable across reboots and immune to index reordering), its index
  // on emulated ones (there is nothing else a process could be pointed at).
  virtual std::string VisibleDeviceId(const GpuInfo& gpu) const = 0;
  // Where the GPUs' telemetry comes from (agent/telemetry.h), for the GPUs Discover found;
  // called once, after Discover.
  virtual core::Result<std::unique_ptr<TelemetrySource>> OpenTelemetry(
      const std::vector<GpuInfo>& gpus) = 0;
  // What lists, creates and destroys MIG instances on the GPUs Discover found in MIG mode
  // (agent/mig.h); called once, after Discover. An error means no MIG support (no GPU in
  // MIG mode, or a driver without the MIG entry points): the agent says so and goes on.
  virtual core::Result<std::unique_ptr<MigDriver>> OpenMig(const std::vector<GpuInfo>& gpus);
};

// A parsed `--emulate-gpus` spec such as "8xH100-80GB".
struct EmulatedSpec {
  int32_t count = 0;
  std::string model;
  int64_t memory_mib = 0;
};

// Parses "<count>x<model>", where the model carries its memory as a "-<N>GB" suffix
// ("4xA100-40GB") or is one of a small table of well-known models ("2xT4"). Errors name the
// spec and what is wrong with it.
core::Result<EmulatedSpec> ParseEmulatedSpec(std::string_view spec);

// GPUs that do not exist, for running the agent (and the whole control plane) on a machine
// without NVIDIA hardware. Tasks still run as real processes; they just see CUDA indices
// that no driver backs.
//
// With `mig` (--emulate-mig) every GPU is in MIG mode with no instances, and OpenMig gives
// an EmulatedMigDriver: instances are made and destroyed by the same rules as on real GPUs,
// with fake UUIDs. The model must have a MIG profile table (core::FindMigModel).
class EmulatedGpuBackend final : public GpuBackend {
 public:
  EmulatedGpuBackend(EmulatedSpec spec, std::string node_name, bool mig = false)
      : spec_(std::move(spec)), node_(std::move(node_name)), mig_(mig) {}
  std::string_view Name() const override { return "emulated"; }
  core::Result<std::vector<GpuInfo>> Discover() override;
  std::string VisibleDeviceId(const GpuInfo& gpu) const override {
    return std::to_string(gpu.index);
  }
  core::Result<std::unique_ptr<TelemetrySource>> OpenTelemetry(
      const std::vector<GpuInfo>& gpus) override;
  core::Result<std::unique_ptr<MigDriver>> OpenMig(const std::vector<GpuInfo>& gpus) override;

 private:
  EmulatedSpec spec_;
  std::string node_;
  bool mig_ = false;
};

// Maps a driver's product name and memory to gpuorch's model name: the family token
// ("H100", "A100", "T4") plus the memory size when the product name carries one
// ("NVIDIA A100-SXM4-40GB" -> "A100-40GB", "NVIDIA H100 80GB HBM3" -> "H100-80GB",
// "Tesla T4" -> "T4"). Falls back to the raw name without spaces when nothing matches.
std::string ModelNameFromProduct(std::string_view product);

}  // namespace gpuorch::agent
