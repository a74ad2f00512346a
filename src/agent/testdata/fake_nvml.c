/* A stand-in for NVIDIA's libnvidia-ml.so, for tests on machines without a GPU: the agent's
 * NVML code (agent/nvml.cc) dlopens it exactly as it dlopens the driver's library, so its
 * loading, sampling, XID events and process attribution run for real; only the numbers are
 * made up. Two devices: "NVIDIA H100 80GB HBM3" at 37% and 0%. Device 1 answers
 * NOT_SUPPORTED for its SM clock (a missing field) and has 2 double-bit ECC errors once
 * GPUORCH_FAKE_NVML_DBE is set. Processes come from GPUORCH_FAKE_NVML_PROCS
 * ("gpu:pid:mib,..."), an XID from GPUORCH_FAKE_NVML_XID ("gpu:xid", delivered once per
 * value). Layouts follow nvml.h as documented by NVIDIA. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
enum { kOk = 0, kInvalid = 2, kNotSupported = 3, kInsufficientSize = 7, kTimeout = 10 };

struct Dev { int index; };
static struct Dev devices[2] = {{0}, {1}};

typedef struct { unsigned long long total, free, used; } Memory;
typedef struct { unsigned int gpu, memory; } Utilization;
typedef struct {
  char bus_id_legacy[16];
  unsigned int domain, bus, device, pci_device_id, pci_subsystem_id;
  char bus_id[32];
} PciInfo;
typedef struct {
  unsigned int pid;
  unsigned long long used;
  unsigned int gi, ci;
} ProcessInfo;
typedef struct {
  unsigned int field_id, scope_id;
  long long timestamp, latency;
  int value_type;
  nvmlReturn_t ret;
  union { double d; unsigned long long ull; } value;
} FieldValue;
typedef struct {
  struct Dev* device;
  unsigned long long type, data;
  unsigned int gi, ci;
} EventData;

static int Index(void* d) { return d == &devices[0] ? 0 : d == &devices[1] ? 1 : -1; }

nvmlReturn_t nvmlInit_v2(void) { return kOk; }
nvmlReturn_t nvmlShutdown(void) { return kOk; }
const char* nvmlErrorString(nvmlReturn_t r) { return r == kNotSupported ? "Not Supported" : "Error"; }
nvmlReturn_t nvmlSystemGetDriverVersion(char* buf, unsigned int n) {
  snprintf(buf, n, "550.0-fake");
  return kOk;
}
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* n) {
  *n = 2;
  return kOk;
}
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, struct Dev** d) {
  if (i > 1) return kInvalid;
  *d = &devices[i];
  return kOk;
}
nvmlReturn_t nvmlDeviceGetName(struct Dev* d, char* buf, unsigned int n) {
  (void)d;
  snprintf(buf, n, "NVIDIA H100 80GB HBM3");
  return kOk;
}
nvmlReturn_t nvmlDeviceGetUUID(struct Dev* d, char* buf, unsigned int n) {
  snprintf(buf, n, "GPU-fake-%d", Index(d));
  return kOk;
}
nvmlReturn_t nvmlDeviceGetMemoryInfo(struct Dev* d, Memory* m) {
  m->total = 81559ull << 20;
  m->used = (Index(d) == 0 ? 40960ull : 0ull) << 20;
  m->free = m->total - m->used;
  return kOk;
}
nvmlReturn_t nvmlDeviceGetMigMode(struct Dev* d, unsigned int* cur, unsigned int* pending) {
  (void)d;
  *cur = *pending = 0;
  return kOk;
}
nvmlReturn_t nvmlDeviceGetUtilizationRates(struct Dev* d, Utilization* u) {
  u->gpu = Index(d) == 0 ? 37 : 0;
  u->memory = Index(d) == 0 ? 12 : 0;
  return kOk;
}
nvmlReturn_t nvmlDeviceGetPciInfo_v3(struct Dev* d, PciInfo* p) {
  memset(p, 0, sizeof(*p));
  snprintf(p->bus_id, sizeof(p->bus_id), "00000000:%02X:00.0", 0x18 + Index(d));
  return kOk;
}
nvmlReturn_t nvmlDeviceGetPowerUsage(struct Dev* d, unsigned int* mw) {
  *mw = Index(d) == 0 ? 312500 : 70000;
  return kOk;
}
nvmlReturn_t nvmlDeviceGetTemperature(struct Dev* d, unsigned int sensor, unsigned int* t) {
  if (sensor != 0) return kInvalid;
  *t = Index(d) == 0 ? 61 : 33;
  return kOk;
}
nvmlReturn_t nvmlDeviceGetClockInfo(struct Dev* d, unsigned int type, unsigned int* mhz) {
  if (Index(d) == 1 || type != 1) return kNotSupported;
  *mhz = 1980;
  return kOk;
}
nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(struct Dev* d, unsigned long long* mj) {
  *mj = Index(d) == 0 ? 123456789ull : 1000ull;
  return kOk;
}
nvmlReturn_t nvmlDeviceGetFieldValues(struct Dev* d, int n, FieldValue* v) {
  for (int i = 0; i < n; ++i) {
    v[i].ret = kOk;
    v[i].value_type = 1;
    if (v[i].field_id == 3) {
      v[i].value.ull = 5;
    } else if (v[i].field_id == 4) {
      v[i].value.ull = Index(d) == 1 && getenv("GPUORCH_FAKE_NVML_DBE") ? 2 : 0;
    } else {
      v[i].ret = kNotSupported;
    }
  }
  return kOk;
}
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(struct Dev* d, unsigned int* count,
                                                     ProcessInfo* infos) {
  const char* spec = getenv("GPUORCH_FAKE_NVML_PROCS");
  ProcessInfo found[32];
  unsigned int n = 0;
  if (spec != NULL) {
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", spec);
    for (char* item = strtok(buf, ","); item != NULL && n < 32; item = strtok(NULL, ",")) {
      int gpu = -1;
      unsigned int pid = 0;
      unsigned long long mib = 0;
      if (sscanf(item, "%d:%u:%llu", &gpu, &pid, &mib) == 3 && gpu == Index(d)) {
        found[n].pid = pid;
        found[n].used = mib << 20;
        found[n].gi = found[n].ci = 0xFFFFFFFFu;
        ++n;
      }
    }
  }
  if (*count < n) {
    *count = n;
    return kInsufficientSize;
  }
  memcpy(infos, found, n * sizeof(ProcessInfo));
  *count = n;
  return kOk;
}

static int event_set;
static char delivered[64];
nvmlReturn_t nvmlEventSetCreate(void** set) {
  *set = &event_set;
  return kOk;
}
nvmlReturn_t nvmlDeviceRegisterEvents(struct Dev* d, unsigned long long types, void* set) {
  (void)d;
  return set == &event_set && (types & 0x8) ? kOk : kInvalid;
}
nvmlReturn_t nvmlEventSetWait_v2(void* set, EventData* data, unsigned int timeout_ms) {
  (void)timeout_ms;
  const char* spec = getenv("GPUORCH_FAKE_NVML_XID");
  int gpu = -1;
  unsigned long long xid = 0;
  if (set != &event_set || spec == NULL || strcmp(spec, delivered) == 0 ||
      sscanf(spec, "%d:%llu", &gpu, &xid) != 2 || gpu < 0 || gpu > 1) {
    return kTimeout;
  }
  snprintf(delivered, sizeof(delivered), "%s", spec);
  data->device = &devices[gpu];
  data->type = 0x8;
  data->data = xid;
  return kOk;
}
nvmlReturn_t nvmlEventSetFree(void* set) { return set == &event_set ? kOk : kInvalid; }
