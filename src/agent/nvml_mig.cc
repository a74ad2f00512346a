// The MIG driver over NVML (agent/mig.h). Kept apart from agent/nvml.cc: it holds its own
// handle on the library (NVML counts initialisations, so it shares the driver's state with
// the telemetry's) and resolves only what MIG needs, every MIG entry point optionally: a
// driver without them is "no MIG support", never a failure of the agent.
#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <type_traits>

#include "agent/mig.h"
#include "agent/nvml.h"
#include "agent/nvml_abi.h"

namespace gpuorch::agent {
namespace {

using core::Result;
using core::Status;

// Our declarations of NVML's MIG ABI (nvml.h, CUDA 11+), beyond the shared ones of
// agent/nvml_abi.h; enums are int, handles opaque.
using nvml_abi::kMigEnabled;
using nvml_abi::kSuccess;
using nvml_abi::kUuidBufferSize;
using nvml_abi::nvmlDevice_t;
using nvml_abi::nvmlReturn_t;
using nvmlGpuInstance_t = struct nvmlGpuInstance_st*;
using nvmlComputeInstance_t = struct nvmlComputeInstance_st*;
struct nvmlGpuInstancePlacement_t {
  unsigned int start;
  unsigned int size;
};
struct nvmlGpuInstanceProfileInfo_t {
  unsigned int id, is_p2p_supported, slice_count, instance_count, multiprocessor_count,
      copy_engine_count, decoder_count, encoder_count, jpeg_count, ofa_count;
  unsigned long long memory_size_mb;
};
struct nvmlGpuInstanceInfo_t {
  nvmlDevice_t device;
  unsigned int id;
  unsigned int profile_id;
  nvmlGpuInstancePlacement_t placement;
};
struct nvmlComputeInstanceProfileInfo_t {
  unsigned int id, slice_count, instance_count, multiprocessor_count, shared_copy_engine_count,
      shared_decoder_count, shared_encoder_count, shared_jpeg_count, shared_ofa_count;
};
constexpr unsigned int kEngineShared = 0;  // NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED
// NVML_COMPUTE_INSTANCE_PROFILE_<N>_SLICE by compute slices (0: none of that size).
constexpr unsigned int kCiProfileBySlices[] = {0, 0x0, 0x1, 0x2, 0x3, 0, 0x6, 0x4, 0x5};
constexpr unsigned int kCiProfiles = 8;  // NVML_COMPUTE_INSTANCE_PROFILE_COUNT (enough)

class NvmlMigDriver final : public MigDriver {
 public:
  ~NvmlMigDriver() override {
    if (initialised_) shutdown_();
    if (handle_ != nullptr) dlclose(handle_);
  }

  Status Load(const std::string& library, const std::vector<GpuInfo>& gpus) {
    handle_ = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) return Status::NotFound("NVML: " + library + " not found");
    std::string missing;
    auto need = [&](auto& fn, const char* symbol) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(handle_, symbol));
      if (fn == nullptr) missing += (missing.empty() ? "" : ", ") + std::string(symbol);
    };
    need(init_, "nvmlInit_v2");
    need(shutdown_, "nvmlShutdown");
    need(by_index_, "nvmlDeviceGetHandleByIndex_v2");
    need(uuid_, "nvmlDeviceGetUUID");
    need(mig_mode_, "nvmlDeviceGetMigMode");
    need(gi_profile_, "nvmlDeviceGetGpuInstanceProfileInfo");
    need(gis_, "nvmlDeviceGetGpuInstances");
    need(gi_info_, "nvmlGpuInstanceGetInfo");
    need(gi_create_, "nvmlDeviceCreateGpuInstanceWithPlacement");
    need(gi_destroy_, "nvmlGpuInstanceDestroy");
    need(ci_profile_, "nvmlGpuInstanceGetComputeInstanceProfileInfo");
    need(ci_create_, "nvmlGpuInstanceCreateComputeInstance");
    need(cis_, "nvmlGpuInstanceGetComputeInstances");
    need(ci_destroy_, "nvmlComputeInstanceDestroy");
    need(max_mig_, "nvmlDeviceGetMaxMigDeviceCount");
    need(mig_handle_, "nvmlDeviceGetMigDeviceHandleByIndex");
    need(gi_id_, "nvmlDeviceGetGpuInstanceId");
    error_string_ = reinterpret_cast<nvml_abi::ErrorStringFn>(dlsym(handle_, "nvmlErrorString"));
    if (!missing.empty()) {
      return Status::Precondition("NVML: the driver has no MIG support (missing " + missing +
                                  "); MIG off");
    }
    if (nvmlReturn_t r = init_(); r != kSuccess) return Error("nvmlInit_v2", r);
    initialised_ = true;
    for (const GpuInfo& g : gpus) {
      if (!g.mig) continue;
      const core::MigModel* m = core::FindMigModel(g.model);
      nvmlDevice_t dev = nullptr;
      if (m == nullptr) continue;  // MigManager::Open says so
      if (nvmlReturn_t r = by_index_(static_cast<unsigned int>(g.index), &dev); r != kSuccess) {
        return Error("nvmlDeviceGetHandleByIndex_v2", r);
      }
      unsigned int current = 0, pending = 0;
      if (mig_mode_(dev, &current, &pending) != kSuccess || current != kMigEnabled) continue;
      gpus_[g.index] = Gpu{dev, m};
    }
    if (gpus_.empty()) return Status::NotFound("no GPU in MIG mode");
    return Status::Ok();
  }

  std::string_view Name() const override { return "nvml"; }

  Result<std::vector<MigDevice>> List(int32_t gpu) override {
    Result<std::vector<Instance>> gis = Instances(gpu);
    if (!gis.ok()) return gis.status();
    const Gpu& g = gpus_.at(gpu);
    std::map<unsigned int, std::string> uuids;  // GPU instance id -> MIG device UUID
    unsigned int max = 0;
    if (max_mig_(g.dev, &max) == kSuccess) {
      for (unsigned int i = 0; i < max; ++i) {
        nvmlDevice_t mig = nullptr;
        unsigned int id = 0;
        char uuid[kUuidBufferSize] = {};
        if (mig_handle_(g.dev, i, &mig) != kSuccess || gi_id_(mig, &id) != kSuccess ||
            uuid_(mig, uuid, kUuidBufferSize) != kSuccess) {
          continue;  // no MIG device at that index (no compute instance yet)
        }
        uuids[id] = uuid;
      }
    }
    std::vector<MigDevice> out;
    for (const Instance& i : *gis) {
      MigDevice d;
      d.start = static_cast<int32_t>(i.info.placement.start);
      d.profile = std::string(g.model->profiles[static_cast<size_t>(i.profile)].name);
      d.gi_id = static_cast<int32_t>(i.info.id);
      auto u = uuids.find(i.info.id);
      if (u != uuids.end()) d.uuid = u->second;
      out.push_back(std::move(d));
    }
    std::sort(out.begin(), out.end(),
              [](const MigDevice& a, const MigDevice& b) { return a.start < b.start; });
    return out;
  }

  Status Create(int32_t gpu, const core::MigProfile& profile, int32_t start) override {
    auto it = gpus_.find(gpu);
    if (it == gpus_.end())
      return Status::NotFound("GPU " + std::to_string(gpu) + " not in MIG mode");
    nvmlGpuInstanceProfileInfo_t info = {};
    if (nvmlReturn_t r = gi_profile_(it->second.dev, profile.nvml_profile, &info); r != kSuccess) {
      return Error("nvmlDeviceGetGpuInstanceProfileInfo", r);
    }
    const nvmlGpuInstancePlacement_t placement{static_cast<unsigned int>(start),
                                               profile.memory_slices};
    nvmlGpuInstance_t gi = nullptr;
    if (nvmlReturn_t r = gi_create_(it->second.dev, info.id, &placement, &gi); r != kSuccess) {
      return Error("nvmlDeviceCreateGpuInstanceWithPlacement", r);
    }
    // One compute instance over the whole GPU instance: the MIG device a task is given.
    nvmlComputeInstanceProfileInfo_t ci = {};
    nvmlComputeInstance_t handle = nullptr;
    const unsigned int ci_profile =
        profile.compute_slices < 9 ? kCiProfileBySlices[profile.compute_slices] : 0;
    nvmlReturn_t r = ci_profile_(gi, ci_profile, kEngineShared, &ci);
    if (r == kSuccess) r = ci_create_(gi, ci.id, &handle);
    if (r != kSuccess) {
      (void)gi_destroy_(gi);  // no half-made instance is left behind
      return Error("nvmlGpuInstanceCreateComputeInstance", r);
    }
    return Status::Ok();
  }

  Status Destroy(int32_t gpu, const MigDevice& device) override {
    Result<std::vector<Instance>> gis = Instances(gpu);
    if (!gis.ok()) return gis.status();
    for (const Instance& i : *gis) {
      if (static_cast<int32_t>(i.info.placement.start) != device.start) continue;
      for (unsigned int p = 0; p < kCiProfiles; ++p) {
        nvmlComputeInstanceProfileInfo_t ci = {};
        if (ci_profile_(i.handle, p, kEngineShared, &ci) != kSuccess) continue;
        nvmlComputeInstance_t cis[core::kMaxMigInstances + 1] = {};
        unsigned int count = core::kMaxMigInstances + 1;
        if (cis_(i.handle, ci.id, cis, &count) != kSuccess) continue;
        for (unsigned int c = 0; c < count; ++c) {
          if (nvmlReturn_t r = ci_destroy_(cis[c]); r != kSuccess) {
            return Error("nvmlComputeInstanceDestroy", r);
          }
        }
      }
      if (nvmlReturn_t r = gi_destroy_(i.handle); r != kSuccess) {
        return Error("nvmlGpuInstanceDestroy", r);
      }
      return Status::Ok();
    }
    return Status::NotFound("no MIG instance at " + device.profile + "@" +
                            std::to_string(device.start) + " on GPU " + std::to_string(gpu));
  }

 private:
  struct Gpu {
    nvmlDevice_t dev = nullptr;
    const core::MigModel* model = nullptr;
  };
  struct Instance {
    nvmlGpuInstance_t handle = nullptr;
    nvmlGpuInstanceInfo_t info = {};
    int profile = 0;  // index in the model's table
  };

  // The GPU instances of every profile of the model's table.
  Result<std::vector<Instance>> Instances(int32_t gpu) const {
    auto it = gpus_.find(gpu);
    if (it == gpus_.end())
      return Status::NotFound("GPU " + std::to_string(gpu) + " not in MIG mode");
    const Gpu& g = it->second;
    std::vector<Instance> out;
    for (size_t p = 0; p < g.model->profiles.size(); ++p) {
      nvmlGpuInstanceProfileInfo_t info = {};
      if (gi_profile_(g.dev, g.model->profiles[p].nvml_profile, &info) != kSuccess) continue;
      nvmlGpuInstance_t gis[core::kMaxMigInstances + 1] = {};
      unsigned int count = 0;
      if (nvmlReturn_t r = gis_(g.dev, info.id, gis, &count); r != kSuccess) {
        return Error("nvmlDeviceGetGpuInstances", r);
      }
      for (unsigned int i = 0; i < count && i <= core::kMaxMigInstances; ++i) {
        Instance in;
        in.handle = gis[i];
        in.profile = static_cast<int>(p);
        if (nvmlReturn_t r = gi_info_(gis[i], &in.info); r != kSuccess) {
          return Error("nvmlGpuInstanceGetInfo", r);
        }
        out.push_back(in);
      }
    }
    return out;
  }

  Status Error(const char* call, nvmlReturn_t r) const {
    return nvml_abi::CallFailed(error_string_, call, r);
  }

  void* handle_ = nullptr;
  bool initialised_ = false;
  std::map<int32_t, Gpu> gpus_;
  nvmlReturn_t (*init_)() = nullptr;
  nvmlReturn_t (*shutdown_)() = nullptr;
  nvmlReturn_t (*by_index_)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*uuid_)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*mig_mode_)(nvmlDevice_t, unsigned int*, unsigned int*) = nullptr;
  nvmlReturn_t (*gi_profile_)(nvmlDevice_t, unsigned int, nvmlGpuInstanceProfileInfo_t*) = nullptr;
  nvmlReturn_t (*gis_)(nvmlDevice_t, unsigned int, nvmlGpuInstance_t*, unsigned int*) = nullptr;
  nvmlReturn_t (*gi_info_)(nvmlGpuInstance_t, nvmlGpuInstanceInfo_t*) = nullptr;
  nvmlReturn_t (*gi_create_)(nvmlDevice_t, unsigned int, const nvmlGpuInstancePlacement_t*,
                             nvmlGpuInstance_t*) = nullptr;
  nvmlReturn_t (*gi_destroy_)(nvmlGpuInstance_t) = nullptr;
  nvmlReturn_t (*ci_profile_)(nvmlGpuInstance_t, unsigned int, unsigned int,
                              nvmlComputeInstanceProfileInfo_t*) = nullptr;
  nvmlReturn_t (*ci_create_)(nvmlGpuInstance_t, unsigned int, nvmlComputeInstance_t*) = nullptr;
  nvmlReturn_t (*cis_)(nvmlGpuInstance_t, unsigned int, nvmlComputeInstance_t*,
                       unsigned int*) = nullptr;
  nvmlReturn_t (*ci_destroy_)(nvmlComputeInstance_t) = nullptr;
  nvmlReturn_t (*max_mig_)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*mig_handle_)(nvmlDevice_t, unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*gi_id_)(nvmlDevice_t, unsigned int*) = nullptr;
  nvml_abi::ErrorStringFn error_string_ = nullptr;
};

}  // namespace

Result<std::unique_ptr<MigDriver>> OpenNvmlMig(const std::string& library,
                                               const std::vector<GpuInfo>& gpus) {
  if (std::none_of(gpus.begin(), gpus.end(), [](const GpuInfo& g) { return g.mig; })) {
    return Status::NotFound("no GPU in MIG mode");
  }
  auto driver = std::make_unique<NvmlMigDriver>();
  if (Status s = driver->Load(library, gpus); !s.ok()) return s;
  return std::unique_ptr<MigDriver>(std::move(driver));
}

Result<std::unique_ptr<MigDriver>> NvmlBackend::OpenMig(const std::vector<GpuInfo>& gpus) {
  return OpenNvmlMig(library_, gpus);
}

}  // namespace gpuorch::agent
