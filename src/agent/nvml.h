#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agent/gpu.h"
#include "agent/telemetry.h"
#include "core/status.h"

namespace gpuorch::agent {

// GPUs as NVIDIA's driver sees them, through NVML loaded at run time with dlopen. The agent
// is built and linked without CUDA or the NVML headers: it carries its own declarations of
// the dozen entry points it calls, so one binary runs on machines with and without a
// driver and fails with a clear message on the latter.
class NvmlBackend final : public GpuBackend {
 public:
  // `library` is the soname to dlopen; tests point it at a path that does not exist.
  explicit NvmlBackend(std::string library = "libnvidia-ml.so.1") : library_(std::move(library)) {}
  std::string_view Name() const override { return "nvml"; }
  // Loads the library, initialises NVML, reads every device, shuts NVML down again (the
  // agent needs inventory once; it keeps no NVML state between calls).
  core::Result<std::vector<GpuInfo>> Discover() override;
  std::string VisibleDeviceId(const GpuInfo& gpu) const override { return gpu.uuid; }
  core::Result<std::unique_ptr<TelemetrySource>> OpenTelemetry(
      const std::vector<GpuInfo>& gpus) override;
  // agent/mig.h's OpenNvmlMig over the same library.
  core::Result<std::unique_ptr<MigDriver>> OpenMig(const std::vector<GpuInfo>& gpus) override;
  // The driver version read by the last successful Discover(), e.g. "550.54.15".
  const std::string& driver_version() const { return driver_version_; }

 private:
  std::string library_;
  std::string driver_version_;
};

// GPU telemetry through NVML (docs/observability.md): NVML stays initialised between samples
// and XID events are registered once, then drained without blocking at each sample. Fields a
// device does not answer are marked missing; the entry points an older driver lacks are
// left out the same way. Per task: the mean utilization of its GPUs, and the memory of the
// compute processes whose process tree leads to the task's command.
class NvmlTelemetry final : public TelemetrySource {
 public:
  static core::Result<std::unique_ptr<NvmlTelemetry>> Open(
      const std::string& library = "libnvidia-ml.so.1",
      std::function<int32_t(int32_t)> parent_of = ParentPidFromProc);
  ~NvmlTelemetry() override;
  bool emulated() const override { return false; }
  core::Result<Telemetry> Sample(const std::vector<TaskOnNode>& tasks, int64_t now_ms) override;

 private:
  NvmlTelemetry();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::function<int32_t(int32_t)> parent_of_;
};

// What NVML finds on this machine as a JSON document (for `gpuorch agent --probe`): the
// driver version and, per device, index, uuid, name, model, memory, MIG mode and current
// utilisation. On failure the document holds {"error": "..."} and ok() is false.
struct ProbeReport {
  bool ok = false;
  std::string json;
};
ProbeReport ProbeNvml(const std::string& library = "libnvidia-ml.so.1");

}  // namespace gpuorch::agent
