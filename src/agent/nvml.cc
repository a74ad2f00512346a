#include "agent/nvml.h"

#include <dlfcn.h>

#include <nlohmann/json.hpp>

namespace gpuorch::agent {
namespace {

using core::Result;
using core::Status;

// Our own minimal declarations of the NVML ABI (nvml.h, stable since the _v2 entry points
// of CUDA 5.5). Only what the agent calls; NVML passes enums as int and handles as opaque
// pointers.
using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;
struct nvmlMemory_t {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
struct nvmlUtilization_t {
  unsigned int gpu;
  unsigned int memory;
};
constexpr nvmlReturn_t kNvmlSuccess = 0;
constexpr unsigned int kNameBufferSize = 96;    // NVML_DEVICE_NAME_V2_BUFFER_SIZE
constexpr unsigned int kUuidBufferSize = 96;    // NVML_DEVICE_UUID_V2_BUFFER_SIZE
constexpr unsigned int kDriverBufferSize = 80;  // NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE
constexpr unsigned int kMigEnabled = 1;         // NVML_DEVICE_MIG_ENABLE

// The entry points, resolved with dlsym. dlclose happens in the destructor, after
// nvmlShutdown, so no NVML code runs once the library is unmapped.
class Nvml {
 public:
  Nvml() = default;
  Nvml(const Nvml&) = delete;
  Nvml& operator=(const Nvml&) = delete;
  ~Nvml() {
    if (initialised_) shutdown_();
    if (handle_ != nullptr) dlclose(handle_);
  }

  Status Load(const std::string& library) {
    handle_ = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) {
      return Status::NotFound("NVML: " + library +
                              " not found (no NVIDIA driver on this machine); use "
                              "--emulate-gpus to run without GPUs (dlopen: " +
                              Dlerror() + ")");
    }
    Status s = Resolve(init_, "nvmlInit_v2");
    for (Status next :
         {Resolve(shutdown_, "nvmlShutdown"), Resolve(count_, "nvmlDeviceGetCount_v2"),
          Resolve(by_index_, "nvmlDeviceGetHandleByIndex_v2"), Resolve(name_, "nvmlDeviceGetName"),
          Resolve(uuid_, "nvmlDeviceGetUUID"), Resolve(memory_, "nvmlDeviceGetMemoryInfo"),
          Resolve(mig_, "nvmlDeviceGetMigMode"), Resolve(util_, "nvmlDeviceGetUtilizationRates"),
          Resolve(error_string_, "nvmlErrorString"),
          Resolve(driver_, "nvmlSystemGetDriverVersion")}) {
      if (s.ok()) s = std::move(next);
    }
    if (!s.ok()) return s;
    if (nvmlReturn_t r = init_(); r != kNvmlSuccess) return Error("nvmlInit_v2", r);
    initialised_ = true;
    return Status::Ok();
  }

  Status Error(const char* call, nvmlReturn_t r) const {
    const char* text = error_string_ != nullptr ? error_string_(r) : nullptr;
    return Status::Precondition(std::string("NVML: ") + call + " failed: " +
                                (text != nullptr ? text : "error " + std::to_string(r)));
  }

  Result<std::string> DriverVersion() const {
    char buf[kDriverBufferSize] = {};
    if (nvmlReturn_t r = driver_(buf, kDriverBufferSize); r != kNvmlSuccess) {
      return Error("nvmlSystemGetDriverVersion", r);
    }
    return std::string(buf);
  }

  // Reads one device. MIG mode is optional: GPUs before Ampere answer NOT_SUPPORTED.
  Result<GpuInfo> Device(unsigned int index, nvmlUtilization_t* util) const {
    nvmlDevice_t dev = nullptr;
    if (nvmlReturn_t r = by_index_(index, &dev); r != kNvmlSuccess) {
      return Error("nvmlDeviceGetHandleByIndex_v2", r);
    }
    char name[kNameBufferSize] = {};
    char uuid[kUuidBufferSize] = {};
    nvmlMemory_t mem = {};
    if (nvmlReturn_t r = name_(dev, name, kNameBufferSize); r != kNvmlSuccess) {
      return Error("nvmlDeviceGetName", r);
    }
    if (nvmlReturn_t r = uuid_(dev, uuid, kUuidBufferSize); r != kNvmlSuccess) {
      return Error("nvmlDeviceGetUUID", r);
    }
    if (nvmlReturn_t r = memory_(dev, &mem); r != kNvmlSuccess) {
      return Error("nvmlDeviceGetMemoryInfo", r);
    }
    unsigned int current = 0, pending = 0;
    const bool mig = mig_(dev, &current, &pending) == kNvmlSuccess && current == kMigEnabled;
    if (util != nullptr && util_(dev, util) != kNvmlSuccess) *util = {};
    GpuInfo g;
    g.index = static_cast<int32_t>(index);
    g.uuid = uuid;
    g.raw_name = name;
    g.model = ModelNameFromProduct(name);
    g.memory_mib = static_cast<int64_t>(mem.total / (1024ull * 1024ull));
    g.mig = mig;
    return g;
  }

  Result<unsigned int> Count() const {
    unsigned int n = 0;
    if (nvmlReturn_t r = count_(&n); r != kNvmlSuccess) return Error("nvmlDeviceGetCount_v2", r);
    return n;
  }

 private:
  static std::string Dlerror() {
    const char* e = dlerror();
    return e != nullptr ? e : "unknown error";
  }

  template <typename Fn>
  Status Resolve(Fn*& fn, const char* symbol) {
    fn = reinterpret_cast<Fn*>(dlsym(handle_, symbol));
    if (fn == nullptr) {
      return Status::Precondition(std::string("NVML: symbol ") + symbol +
                                  " missing from the driver library (driver too old?)");
    }
    return Status::Ok();
  }

  void* handle_ = nullptr;
  bool initialised_ = false;
  nvmlReturn_t (*init_)() = nullptr;
  nvmlReturn_t (*shutdown_)() = nullptr;
  nvmlReturn_t (*count_)(unsigned int*) = nullptr;
  nvmlReturn_t (*by_index_)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*name_)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*uuid_)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*memory_)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*mig_)(nvmlDevice_t, unsigned int*, unsigned int*) = nullptr;
  nvmlReturn_t (*util_)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;
  const char* (*error_string_)(nvmlReturn_t) = nullptr;
  nvmlReturn_t (*driver_)(char*, unsigned int) = nullptr;
};

}  // namespace

Result<std::vector<GpuInfo>> NvmlBackend::Discover() {
  Nvml nvml;
  if (Status s = nvml.Load(library_); !s.ok()) return s;
  Result<std::string> driver = nvml.DriverVersion();
  if (!driver.ok()) return driver.status();
  driver_version_ = *driver;
  Result<unsigned int> count = nvml.Count();
  if (!count.ok()) return count.status();
  std::vector<GpuInfo> gpus;
  for (unsigned int i = 0; i < *count; ++i) {
    Result<GpuInfo> g = nvml.Device(i, nullptr);
    if (!g.ok()) return g.status();
    gpus.push_back(std::move(g).value());
  }
  return gpus;
}

ProbeReport ProbeNvml(const std::string& library) {
  nlohmann::json doc;
  Nvml nvml;
  Status s = nvml.Load(library);
  Result<std::string> driver = s.ok() ? nvml.DriverVersion() : Result<std::string>(s);
  Result<unsigned int> count = driver.ok() ? nvml.Count() : Result<unsigned int>(driver.status());
  if (!count.ok()) {
    doc["error"] = count.status().message();
    return {false, doc.dump(2)};
  }
  doc["library"] = library;
  doc["driver_version"] = *driver;
  doc["devices"] = nlohmann::json::array();
  for (unsigned int i = 0; i < *count; ++i) {
    nvmlUtilization_t util = {};
    Result<GpuInfo> g = nvml.Device(i, &util);
    if (!g.ok()) {
      doc["devices"].push_back({{"index", i}, {"error", g.status().message()}});
      continue;
    }
    doc["devices"].push_back({{"index", g->index},
                              {"uuid", g->uuid},
                              {"name", g->raw_name},
                              {"model", g->model},
                              {"memory_mib", g->memory_mib},
                              {"mig", g->mig},
                              {"utilization_gpu_pct", util.gpu},
                              {"utilization_memory_pct", util.memory}});
  }
  return {true, doc.dump(2)};
}

}  // namespace gpuorch::agent
