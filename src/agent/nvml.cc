#include "agent/nvml.h"

#include <dlfcn.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "agent/nvml_abi.h"

namespace gpuorch::agent {
namespace {

using core::Result;
using core::Status;

// Our own minimal declarations of the NVML ABI (nvml.h, stable since the _v2 entry points
// of CUDA 5.5), beyond the shared ones of agent/nvml_abi.h. Only what the agent calls.
using nvml_abi::kMigEnabled;
using nvml_abi::kSuccess;
using nvml_abi::kUuidBufferSize;
using nvml_abi::nvmlDevice_t;
using nvml_abi::nvmlReturn_t;
struct nvmlMemory_t {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
struct nvmlUtilization_t {
  unsigned int gpu;
  unsigned int memory;
};
struct nvmlPciInfo_t {  // nvmlPciInfo_t of nvmlDeviceGetPciInfo_v3
  char bus_id_legacy[16];
  unsigned int domain, bus, device, pci_device_id, pci_subsystem_id;
  char bus_id[32];
};
struct nvmlProcessInfo_t {  // nvmlProcessInfo_v2_t, as _v2 and _v3 fill it
  unsigned int pid;
  unsigned long long used_gpu_memory;
  unsigned int gpu_instance_id;
  unsigned int compute_instance_id;
};
struct nvmlFieldValue_t {
  unsigned int field_id;
  unsigned int scope_id;
  long long timestamp;
  long long latency_usec;
  int value_type;
  nvmlReturn_t nvml_return;
  union {
    double d;
    unsigned int ui;
    unsigned long ul;
    unsigned long long ull;
    long long sll;
  } value;
};
using nvmlEventSet_t = struct nvmlEventSet_st*;
struct nvmlEventData_t {
  nvmlDevice_t device;
  unsigned long long event_type;
  unsigned long long event_data;
  unsigned int gpu_instance_id;
  unsigned int compute_instance_id;
};
constexpr nvmlReturn_t kNvmlErrorInsufficientSize = 7;
constexpr unsigned int kFieldEccSbeVolTotal = 3;       // NVML_FI_DEV_ECC_SBE_VOL_TOTAL
constexpr unsigned int kFieldEccDbeVolTotal = 4;       // NVML_FI_DEV_ECC_DBE_VOL_TOTAL
constexpr unsigned long long kEventXidCritical = 0x8;  // nvmlEventTypeXidCriticalError
constexpr unsigned int kTemperatureGpu = 0;            // NVML_TEMPERATURE_GPU
constexpr unsigned int kClockSm = 1;                   // NVML_CLOCK_SM
constexpr unsigned int kNameBufferSize = 96;           // NVML_DEVICE_NAME_V2_BUFFER_SIZE
constexpr unsigned int kDriverBufferSize = 80;         // NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE

// The entry points, resolved with dlsym. dlclose happens in the destructor, after
// nvmlShutdown, so no NVML code runs once the library is unmapped.
class Nvml {
 public:
  Nvml() = default;
  Nvml(const Nvml&) = delete;
  Nvml& operator=(const Nvml&) = delete;
  ~Nvml() {
    if (events_ != nullptr && event_set_free_ != nullptr) event_set_free_(events_);
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
    if (nvmlReturn_t r = init_(); r != kSuccess) return Error("nvmlInit_v2", r);
    initialised_ = true;
    // Optional entry points: telemetry leaves out what an older driver lacks.
    Optional(pci_, "nvmlDeviceGetPciInfo_v3");
    Optional(power_, "nvmlDeviceGetPowerUsage");
    Optional(temperature_, "nvmlDeviceGetTemperature");
    Optional(clock_, "nvmlDeviceGetClockInfo");
    Optional(energy_, "nvmlDeviceGetTotalEnergyConsumption");
    Optional(field_values_, "nvmlDeviceGetFieldValues");
    Optional(processes_, "nvmlDeviceGetComputeRunningProcesses_v3");
    if (processes_ == nullptr) Optional(processes_, "nvmlDeviceGetComputeRunningProcesses_v2");
    Optional(event_set_create_, "nvmlEventSetCreate");
    Optional(register_events_, "nvmlDeviceRegisterEvents");
    Optional(event_wait_, "nvmlEventSetWait_v2");
    Optional(event_set_free_, "nvmlEventSetFree");
    return Status::Ok();
  }

  Result<nvmlDevice_t> Handle(unsigned int index) const {
    nvmlDevice_t dev = nullptr;
    if (nvmlReturn_t r = by_index_(index, &dev); r != kSuccess) {
      return Error("nvmlDeviceGetHandleByIndex_v2", r);
    }
    return dev;
  }

  // XID events of every device (nvmlEventTypeXidCriticalError), or none when the driver
  // cannot deliver them (then only ECC marks a GPU unhealthy).
  void RegisterXidEvents(const std::vector<nvmlDevice_t>& devices) {
    if (event_set_create_ == nullptr || register_events_ == nullptr || event_wait_ == nullptr) {
      return;
    }
    if (event_set_create_(&events_) != kSuccess) {
      events_ = nullptr;
      return;
    }
    for (nvmlDevice_t d : devices) (void)register_events_(d, kEventXidCritical, events_);
  }

  // The XIDs that arrived since the last call, as (device, xid); never blocks.
  std::vector<std::pair<nvmlDevice_t, unsigned long long>> TakeXids() const {
    std::vector<std::pair<nvmlDevice_t, unsigned long long>> out;
    if (events_ == nullptr) return out;
    nvmlEventData_t data = {};
    for (int i = 0; i < 64 && event_wait_(events_, &data, 0) == kSuccess; ++i) {
      if (data.event_type & kEventXidCritical) out.emplace_back(data.device, data.event_data);
    }
    return out;
  }

  // One GPU's sample; what the device does not answer is marked missing.
  GpuSample Sample(nvmlDevice_t dev, int32_t index) const {
    GpuSample s;
    s.index = index;
    nvmlUtilization_t util = {};
    if (util_(dev, &util) == kSuccess) {
      s.util_pct = util.gpu;
      s.mem_copy_util_pct = util.memory;
    } else {
      s.missing |= kFieldUtil | kFieldMemCopyUtil;
    }
    nvmlMemory_t mem = {};
    if (memory_(dev, &mem) == kSuccess) {
      s.fb_used_mib = static_cast<int64_t>(mem.used >> 20);
      s.fb_free_mib = static_cast<int64_t>(mem.free >> 20);
    } else {
      s.missing |= kFieldFb;
    }
    unsigned int u = 0;
    if (power_ != nullptr && power_(dev, &u) == kSuccess) {
      s.power_w = u / 1000.0;
    } else {
      s.missing |= kFieldPower;
    }
    if (temperature_ != nullptr && temperature_(dev, kTemperatureGpu, &u) == kSuccess) {
      s.temp_c = u;
    } else {
      s.missing |= kFieldTemp;
    }
    if (clock_ != nullptr && clock_(dev, kClockSm, &u) == kSuccess) {
      s.sm_clock_mhz = u;
    } else {
      s.missing |= kFieldSmClock;
    }
    unsigned long long mj = 0;
    if (energy_ != nullptr && energy_(dev, &mj) == kSuccess) {
      s.energy_mj = static_cast<int64_t>(mj);
    } else {
      s.missing |= kFieldEnergy;
    }
    nvmlFieldValue_t fields[2] = {};
    fields[0].field_id = kFieldEccSbeVolTotal;
    fields[1].field_id = kFieldEccDbeVolTotal;
    if (field_values_ != nullptr && field_values_(dev, 2, fields) == kSuccess &&
        fields[0].nvml_return == kSuccess && fields[1].nvml_return == kSuccess) {
      s.ecc_sbe = static_cast<int64_t>(fields[0].value.ull);
      s.ecc_dbe = static_cast<int64_t>(fields[1].value.ull);
    } else {
      s.missing |= kFieldEcc;  // GPUs without ECC (or with it off) answer NOT_SUPPORTED
    }
    return s;
  }

  // The compute processes on one GPU (empty when the driver cannot list them).
  std::vector<GpuProcess> Processes(nvmlDevice_t dev, int32_t index) const {
    std::vector<GpuProcess> out;
    if (processes_ == nullptr) return out;
    std::vector<nvmlProcessInfo_t> infos(16);
    unsigned int count = static_cast<unsigned int>(infos.size());
    nvmlReturn_t r = processes_(dev, &count, infos.data());
    if (r == kNvmlErrorInsufficientSize) {
      infos.resize(count + 8);
      count = static_cast<unsigned int>(infos.size());
      r = processes_(dev, &count, infos.data());
    }
    if (r != kSuccess) return out;
    for (unsigned int i = 0; i < count && i < infos.size(); ++i) {
      out.push_back(GpuProcess{index, static_cast<int32_t>(infos[i].pid),
                               static_cast<int64_t>(infos[i].used_gpu_memory >> 20)});
    }
    return out;
  }

  Status Error(const char* call, nvmlReturn_t r) const {
    return nvml_abi::CallFailed(error_string_, call, r);
  }

  Result<std::string> DriverVersion() const {
    char buf[kDriverBufferSize] = {};
    if (nvmlReturn_t r = driver_(buf, kDriverBufferSize); r != kSuccess) {
      return Error("nvmlSystemGetDriverVersion", r);
    }
    return std::string(buf);
  }

  // Reads one device. MIG mode is optional: GPUs before Ampere answer NOT_SUPPORTED.
  Result<GpuInfo> Device(unsigned int index, nvmlUtilization_t* util) const {
    nvmlDevice_t dev = nullptr;
    if (nvmlReturn_t r = by_index_(index, &dev); r != kSuccess) {
      return Error("nvmlDeviceGetHandleByIndex_v2", r);
    }
    char name[kNameBufferSize] = {};
    char uuid[kUuidBufferSize] = {};
    nvmlMemory_t mem = {};
    if (nvmlReturn_t r = name_(dev, name, kNameBufferSize); r != kSuccess) {
      return Error("nvmlDeviceGetName", r);
    }
    if (nvmlReturn_t r = uuid_(dev, uuid, kUuidBufferSize); r != kSuccess) {
      return Error("nvmlDeviceGetUUID", r);
    }
    if (nvmlReturn_t r = memory_(dev, &mem); r != kSuccess) {
      return Error("nvmlDeviceGetMemoryInfo", r);
    }
    unsigned int current = 0, pending = 0;
    const bool mig = mig_(dev, &current, &pending) == kSuccess && current == kMigEnabled;
    if (util != nullptr && util_(dev, util) != kSuccess) *util = {};
    GpuInfo g;
    g.index = static_cast<int32_t>(index);
    g.uuid = uuid;
    g.raw_name = name;
    g.model = ModelNameFromProduct(name);
    g.memory_mib = static_cast<int64_t>(mem.total / (1024ull * 1024ull));
    g.mig = mig;
    nvmlPciInfo_t pci = {};
    if (pci_ != nullptr && pci_(dev, &pci) == kSuccess) {
      g.pci_bus_id.assign(pci.bus_id, strnlen(pci.bus_id, sizeof(pci.bus_id)));
    }
    return g;
  }

  Result<unsigned int> Count() const {
    unsigned int n = 0;
    if (nvmlReturn_t r = count_(&n); r != kSuccess) return Error("nvmlDeviceGetCount_v2", r);
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

  template <typename Fn>
  void Optional(Fn*& fn, const char* symbol) {
    fn = reinterpret_cast<Fn*>(dlsym(handle_, symbol));
  }

  void* handle_ = nullptr;
  nvmlEventSet_t events_ = nullptr;
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
  nvml_abi::ErrorStringFn error_string_ = nullptr;
  nvmlReturn_t (*driver_)(char*, unsigned int) = nullptr;
  // Optional.
  nvmlReturn_t (*pci_)(nvmlDevice_t, nvmlPciInfo_t*) = nullptr;
  nvmlReturn_t (*power_)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*temperature_)(nvmlDevice_t, unsigned int, unsigned int*) = nullptr;
  nvmlReturn_t (*clock_)(nvmlDevice_t, unsigned int, unsigned int*) = nullptr;
  nvmlReturn_t (*energy_)(nvmlDevice_t, unsigned long long*) = nullptr;
  nvmlReturn_t (*field_values_)(nvmlDevice_t, int, nvmlFieldValue_t*) = nullptr;
  nvmlReturn_t (*processes_)(nvmlDevice_t, unsigned int*, nvmlProcessInfo_t*) = nullptr;
  nvmlReturn_t (*event_set_create_)(nvmlEventSet_t*) = nullptr;
  nvmlReturn_t (*register_events_)(nvmlDevice_t, unsigned long long, nvmlEventSet_t) = nullptr;
  nvmlReturn_t (*event_wait_)(nvmlEventSet_t, nvmlEventData_t*, unsigned int) = nullptr;
  nvmlReturn_t (*event_set_free_)(nvmlEventSet_t) = nullptr;
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

struct NvmlTelemetry::Impl {
  Nvml nvml;
  std::vector<nvmlDevice_t> devices;
  std::vector<int64_t> xid;  // sticky, per device
};

NvmlTelemetry::NvmlTelemetry() = default;
NvmlTelemetry::~NvmlTelemetry() = default;

Result<std::unique_ptr<NvmlTelemetry>> NvmlTelemetry::Open(
    const std::string& library, std::function<int32_t(int32_t)> parent_of) {
  std::unique_ptr<NvmlTelemetry> t(new NvmlTelemetry());
  t->impl_ = std::make_unique<Impl>();
  t->parent_of_ = std::move(parent_of);
  if (Status s = t->impl_->nvml.Load(library); !s.ok()) return s;
  Result<unsigned int> count = t->impl_->nvml.Count();
  if (!count.ok()) return count.status();
  for (unsigned int i = 0; i < *count; ++i) {
    Result<nvmlDevice_t> dev = t->impl_->nvml.Handle(i);
    if (!dev.ok()) return dev.status();
    t->impl_->devices.push_back(*dev);
  }
  t->impl_->xid.assign(t->impl_->devices.size(), 0);
  t->impl_->nvml.RegisterXidEvents(t->impl_->devices);
  return t;
}

Result<Telemetry> NvmlTelemetry::Sample(const std::vector<TaskOnNode>& tasks, int64_t) {
  Impl& im = *impl_;
  for (const auto& [dev, xid] : im.nvml.TakeXids()) {
    for (size_t j = 0; j < im.devices.size(); ++j) {
      if (im.devices[j] == dev) im.xid[j] = static_cast<int64_t>(xid);
    }
  }
  Telemetry out;
  std::vector<GpuProcess> processes;
  for (size_t j = 0; j < im.devices.size(); ++j) {
    const auto index = static_cast<int32_t>(j);
    GpuSample s = im.nvml.Sample(im.devices[j], index);
    s.last_xid = im.xid[j];
    if (XidMarksUnhealthy(s.last_xid)) {
      s.unhealthy = "XID " + std::to_string(s.last_xid);
    } else if (s.ecc_dbe > 0) {
      s.unhealthy = "ECC double-bit errors: " + std::to_string(s.ecc_dbe);
    }
    out.gpus.push_back(std::move(s));
    for (GpuProcess& p : im.nvml.Processes(im.devices[j], index)) processes.push_back(p);
  }
  out.tasks = TaskUses(out.gpus, processes, tasks, parent_of_);
  return out;
}

Result<std::unique_ptr<TelemetrySource>> NvmlBackend::OpenTelemetry(const std::vector<GpuInfo>&) {
  Result<std::unique_ptr<NvmlTelemetry>> t = NvmlTelemetry::Open(library_);
  if (!t.ok()) return t.status();
  return std::unique_ptr<TelemetrySource>(std::move(t).value());
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
