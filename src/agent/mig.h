#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/gpu.h"
#include "agent/task.h"
#include "core/mig.h"
#include "core/status.h"

// The agent's MIG layer (docs/agent.md, "MIG and MPS"): it lists the MIG devices of the
// node's GPUs in MIG mode, applies the layouts the server asks for and reports what each GPU
// has. Enabling MIG mode itself (nvidia-smi -i N -mig 1, then a GPU reset) is the operator's:
// the agent never does it. The rules of a change live here once (MigManager); a MigDriver
// only lists, creates and destroys instances, on real GPUs (NVML) or emulated ones.
namespace gpuorch::agent {

// A layout the server wants on one GPU (an entry of the answer's `mig_layouts`).
struct MigDesired {
  int32_t gpu = 0;
  std::string layout;  // core::FormatLayout text
  int64_t generation = 0;

  friend bool operator==(const MigDesired&, const MigDesired&) = default;
};

// What one GPU in MIG mode has (an entry of the heartbeat's `mig`).
struct MigReport {
  int32_t gpu = 0;
  std::string layout;
  // The desired generation last applied (or tried: then `error` says why it is not what the
  // server asked for); 0: none.
  int64_t generation = 0;
  std::vector<MigDevice> devices;
  std::string error;

  friend bool operator==(const MigReport&, const MigReport&) = default;
};

// Lists, creates and destroys the MIG instances of the node's GPUs. No rules: the
// MigManager decides what to do. Not thread-safe.
class MigDriver {
 public:
  virtual ~MigDriver() = default;
  // "nvml" or "emulated", for the log.
  virtual std::string_view Name() const = 0;
  // The devices of GPU `gpu` (a GPU in MIG mode), sorted by start.
  virtual core::Result<std::vector<MigDevice>> List(int32_t gpu) = 0;
  // Creates a GPU instance of `profile` at memory slice `start`, with one compute instance
  // taking all of it.
  virtual core::Status Create(int32_t gpu, const core::MigProfile& profile, int32_t start) = 0;
  // Destroys the instance `device` (its compute instances first).
  virtual core::Status Destroy(int32_t gpu, const MigDevice& device) = 0;
};

// MIG without GPUs (--emulate-mig): the instances of each GPU are a core::MigLayout, and
// Create refuses what the hardware would (core::MigFitsAt). UUIDs are stable fakes,
// MIG-emulated-<node>-<gpu>-<start>-<profile>, and GPU instance ids count from 1 per GPU.
class EmulatedMigDriver final : public MigDriver {
 public:
  // `gpus`: the node's GPUs; those in MIG mode must have a MIG profile table.
  EmulatedMigDriver(std::string node, const std::vector<GpuInfo>& gpus);
  std::string_view Name() const override { return "emulated"; }
  core::Result<std::vector<MigDevice>> List(int32_t gpu) override;
  core::Status Create(int32_t gpu, const core::MigProfile& profile, int32_t start) override;
  core::Status Destroy(int32_t gpu, const MigDevice& device) override;

 private:
  struct Gpu {
    const core::MigModel* model = nullptr;
    core::MigLayout layout;
    std::map<int32_t, int32_t> gi_ids;  // start -> GPU instance id
    int32_t next_gi_id = 1;
  };
  std::string node_;
  std::map<int32_t, Gpu> gpus_;
};

// The MIG devices through NVML (dlopen'ed as agent/nvml.h does). NotFound/Precondition when
// the library or the driver's MIG entry points are missing: no MIG support.
core::Result<std::unique_ptr<MigDriver>> OpenNvmlMig(const std::string& library,
                                                     const std::vector<GpuInfo>& gpus);

// The MIG state of a node and the applying of desired layouts. For each GPU in MIG mode it
// keeps the layout it has, the last desired layout and its generation. Apply rules, the
// same for every driver:
//   - a desired layout that does not parse or is not valid for the GPU's model
//     (core::ParseLayout / ValidateLayout) changes nothing and is reported as an error;
//   - instances not in the desired layout are destroyed, except one a running task uses
//     (kept, and named in the error);
//   - instances of the desired layout missing are created at their exact start, each with
//     a full compute instance, when they fit (core::MigFitsAt) beside what is left.
// A desired layout not reached is tried again when the set of busy instances changes or a
// new one arrives. Not thread-safe: the node's loop calls it, as it calls the executor.
class MigManager {
 public:
  using LogFn = std::function<void(const std::string&)>;
  // Reads the devices of every GPU of `gpus` in MIG mode (one of a model without a MIG table
  // is left out, with a line in the log). NotFound when no GPU is left.
  static core::Result<std::unique_ptr<MigManager>> Open(std::unique_ptr<MigDriver> driver,
                                                        const std::vector<GpuInfo>& gpus,
                                                        LogFn log);

  // Sets mig_layout and mig_devices of the GPUs in MIG mode (for a registration).
  void Fill(std::vector<GpuInfo>& gpus) const;
  // Records what the server wants now: `desired` is an answer's whole `mig_layouts` list.
  // Entries for GPUs not in MIG mode, and ones already recorded (same layout and
  // generation), change nothing; a GPU the list leaves out has no change wanted any more
  // (the server ended it: applied, failed or overtaken), so a layout not reached is not
  // tried again later.
  void SetDesired(const std::vector<MigDesired>& desired);
  // Applies the desired layouts not reached, never destroying an instance of `busy`
  // (running tasks' placements). True when a report changed.
  bool Reconcile(const std::vector<MigPlacement>& busy);
  // Every GPU in MIG mode, by index.
  std::vector<MigReport> Reports() const;
  // Grows whenever a report changes.
  uint64_t changes() const { return changes_; }
  // The UUID of the instance of `profile` at `start` on `gpu`; nullopt when there is none.
  std::optional<std::string> Uuid(int32_t gpu, int32_t start, std::string_view profile) const;
  // The devices of `gpu` (empty when not in MIG mode), for telemetry labels.
  std::vector<MigDevice> Devices(int32_t gpu) const;

 private:
  struct Gpu {
    const core::MigModel* model = nullptr;
    MigReport report;
    std::optional<MigDesired> desired;
    bool tried = false;               // `desired` was tried with `tried_busy`
    std::vector<int32_t> tried_busy;  // starts busy at the last try
  };
  MigManager(std::unique_ptr<MigDriver> driver, LogFn log)
      : driver_(std::move(driver)), log_(std::move(log)) {}
  // Applies gpu.desired; returns the error text ("" when reached).
  std::string Apply(int32_t index, Gpu& gpu, const std::vector<int32_t>& busy);
  // Re-reads the devices of one GPU into its report.
  core::Status Refresh(int32_t index, Gpu& gpu);
  void Log(const std::string& line) const {
    if (log_) log_(line);
  }

  std::unique_ptr<MigDriver> driver_;
  LogFn log_;
  std::map<int32_t, Gpu> gpus_;
  uint64_t changes_ = 0;
};

}  // namespace gpuorch::agent
