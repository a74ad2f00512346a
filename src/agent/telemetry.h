#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agent/gpu.h"
#include "agent/task.h"
#include "core/status.h"

// Per-GPU telemetry on the node (docs/observability.md, "GPU telemetry"): what each GPU
// reads at one sampling instant, which task uses it, and the two forms the agent gives it
// away in: a Prometheus exposition under dcgm-exporter's names (so NVIDIA's dashboards work
// on it unchanged) and a compact summary that rides on the heartbeat.
namespace gpuorch::agent {

// One GPU at one sampling instant: dcgm-exporter's default field set.
struct GpuSample {
  int32_t index = 0;
  double util_pct = 0;           // DCGM_FI_DEV_GPU_UTIL
  double mem_copy_util_pct = 0;  // DCGM_FI_DEV_MEM_COPY_UTIL
  int64_t fb_used_mib = 0;       // DCGM_FI_DEV_FB_USED
  int64_t fb_free_mib = 0;       // DCGM_FI_DEV_FB_FREE
  double power_w = 0;            // DCGM_FI_DEV_POWER_USAGE
  int64_t temp_c = 0;            // DCGM_FI_DEV_GPU_TEMP
  int64_t sm_clock_mhz = 0;      // DCGM_FI_DEV_SM_CLOCK
  int64_t last_xid = 0;          // DCGM_FI_DEV_XID_ERRORS: the last XID seen (0: none)
  int64_t ecc_dbe = 0;           // DCGM_FI_DEV_ECC_DBE_VOL_TOTAL
  int64_t ecc_sbe = 0;           // DCGM_FI_DEV_ECC_SBE_VOL_TOTAL
  int64_t energy_mj = 0;         // DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION
  // Bits of the fields the device did not answer (an older GPU answers NOT_SUPPORTED for
  // some): they are left out of the exposition rather than shown as 0.
  uint32_t missing = 0;
  // Why the GPU must not be given new work ("XID 79", "ECC double-bit errors: 2"); empty
  // while it is healthy. Sticky: a GPU that failed stays unhealthy until the agent
  // restarts (after the node was drained and the GPU reset or replaced).
  std::string unhealthy;
};

// GpuSample::missing bits.
enum GpuField : uint32_t {
  kFieldUtil = 1u << 0,
  kFieldMemCopyUtil = 1u << 1,
  kFieldFb = 1u << 2,
  kFieldPower = 1u << 3,
  kFieldTemp = 1u << 4,
  kFieldSmClock = 1u << 5,
  kFieldEcc = 1u << 6,
  kFieldEnergy = 1u << 7,
};

// A running task, as telemetry needs it: where it runs and how to find its processes.
struct TaskOnNode {
  TaskKey key;
  std::string name;   // the workload's name
  std::string queue;  // the workload's queue
  std::vector<int32_t> gpus;
  int32_t gpu_milli = 1000;
  int64_t gpu_memory_mib = 0;              // what it asked for per GPU (0: not given)
  int32_t pid = 0;                         // the command's pid: the root of its process tree
  std::map<std::string, std::string> env;  // the spec's env (emulation reads it)
};

// A task's share of what one sampling found.
struct TaskUse {
  TaskKey key;
  double util_pct = 0;          // mean utilization of its GPUs
  int64_t memory_used_mib = 0;  // GPU memory its processes hold, over all its GPUs
};

struct Telemetry {
  std::vector<GpuSample> gpus;
  std::vector<TaskUse> tasks;
};

// Where samples come from: NVML on a GPU node, or emulation.
class TelemetrySource {
 public:
  virtual ~TelemetrySource() = default;
  virtual bool emulated() const = 0;
  // Reads every GPU once. `tasks` are the node's running tasks; `now_ms` a monotonic clock
  // (energy is integrated over it by the emulation).
  virtual core::Result<Telemetry> Sample(const std::vector<TaskOnNode>& tasks, int64_t now_ms) = 0;
};

// Telemetry of emulated GPUs, coherent with the tasks that run on them (named emulated in
// every HELP line and in `gpuorch nodes`):
//   - a GPU without a task reads 0% and has all its memory free;
//   - a task reads the utilization of its env GPUORCH_EMULATE_GPU_UTIL (0-100, default 90),
//     and a GPU the sum of its tasks' utilization times their share of it (gpu_milli/1000),
//     at most 100;
//   - a task holds GPUORCH_EMULATE_GPU_MEMORY_MIB, else its gpu_memory_mib, else its share
//     of the GPU's memory (as frameworks that preallocate do), on each of its GPUs;
//   - power, temperature and SM clock follow utilization; energy integrates power;
//   - a task with GPUORCH_EMULATE_XID=N (N > 0) makes its GPUs report XID N, which marks
//     them unhealthy: how tests inject a GPU fault without a GPU.
class EmulatedTelemetry final : public TelemetrySource {
 public:
  explicit EmulatedTelemetry(std::vector<GpuInfo> gpus);
  bool emulated() const override { return true; }
  core::Result<Telemetry> Sample(const std::vector<TaskOnNode>& tasks, int64_t now_ms) override;

  static constexpr double kIdlePowerW = 60;
  static constexpr double kMaxPowerW = 700;

 private:
  std::vector<GpuInfo> gpus_;
  std::vector<int64_t> energy_mj_;
  std::vector<int64_t> xid_;  // sticky
  int64_t last_ms_ = -1;
};

// A process on a GPU, as the driver lists it.
struct GpuProcess {
  int32_t gpu = 0;
  int32_t pid = 0;
  int64_t used_mib = 0;
};

// The task each pid belongs to: the task whose command pid is the pid or one of its
// ancestors (`parent_of` answers a pid's parent, 0 when unknown or gone). Pids of no task
// (another user's process, a task that ended) are left out.
std::map<int32_t, TaskKey> AttributePids(const std::vector<int32_t>& pids,
                                         const std::vector<TaskOnNode>& tasks,
                                         const std::function<int32_t(int32_t)>& parent_of);
// The parent of `pid` from /proc/PID/stat; 0 when the process is gone.
int32_t ParentPidFromProc(int32_t pid);

// Per task: the mean utilization of its GPUs and the memory of its processes (by
// attribution), from one sampling of GPUs and processes.
std::vector<TaskUse> TaskUses(const std::vector<GpuSample>& gpus,
                              const std::vector<GpuProcess>& processes,
                              const std::vector<TaskOnNode>& tasks,
                              const std::function<int32_t(int32_t)>& parent_of);

// XIDs that name an application's own fault (13 graphics exception, 31 MMU fault, 43
// stopped by the application, 45 preemptive cleanup): reported, but the GPU stays healthy.
bool XidMarksUnhealthy(int64_t xid);

// The agent's /metrics: every GpuSample field under dcgm-exporter's name and labels
// (gpu, UUID, pci_bus_id, device, modelName, Hostname), one series per GPU and task using it
// with the Kubernetes attribution labels (namespace = queue, pod = <name>-<workload id>,
// container = task index), one without them for a GPU no task uses. Also
// gpuorch_agent_gpu_healthy (1/0) and gpuorch_agent_telemetry_emulated.
std::string RenderDcgmExposition(const Telemetry& t, const std::vector<GpuInfo>& gpus,
                                 const std::vector<TaskOnNode>& tasks, const std::string& hostname,
                                 bool emulated);

}  // namespace gpuorch::agent
