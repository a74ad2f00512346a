#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace gpuorch::core {

// NVIDIA Multi-Instance GPU (MIG), as data. A MIG-enabled GPU is cut into GPU instances; each
// instance takes a contiguous run of the GPU's 8 memory slices, [start, start + size), and
// some of its 7 compute slices. Which profiles a model offers, how many slices each takes and
// where it may start come from NVIDIA's MIG user guide, "Supported MIG Profiles"
// (https://docs.nvidia.com/datacenter/tesla/mig-user-guide/supported-mig-profiles.html) and
// what `nvidia-smi mig -lgip -lgipp` prints for those GPUs. The "+me" (media extension)
// profiles are left out: they differ from their plain twin only by decoders.

inline constexpr int kMigMemorySlices = 8;
inline constexpr int kMigComputeSlices = 7;
// Most instances one GPU holds (seven 1g instances).
inline constexpr int kMaxMigInstances = 7;

struct MigProfile {
  std::string_view name;  // "3g.40gb"
  // NVML's GPU instance profile (NVML_GPU_INSTANCE_PROFILE_*), what
  // nvmlDeviceGetGpuInstanceProfileInfo takes.
  uint8_t nvml_profile = 0;
  uint8_t smi_id = 0;  // the ID `nvidia-smi mig -lgip` prints (19 for 1g.10gb on an H100)
  uint8_t compute_slices = 0;
  uint8_t memory_slices = 0;  // the placement size
  uint8_t max_instances = 0;
  uint8_t start_mask = 0;  // bit s: the profile may start at memory slice s
  int64_t memory_mib = 0;  // the instance's memory as nvidia-smi reports it
};

// The MIG profiles of one GPU model, smallest first (by compute, then memory).
struct MigModel {
  std::string_view model;  // gpuorch's model name, e.g. "H100-80GB"
  std::span<const MigProfile> profiles;
};

// The models gpuorch knows MIG profiles for: A100-40GB, A100-80GB, H100-80GB, H200-141GB.
std::span<const MigModel> MigModels();
// The profiles of `model`, or nullptr when the model has no MIG table (not MIG-capable, or
// not one gpuorch knows).
const MigModel* FindMigModel(std::string_view model);
// Index of the profile named `name` in m, or -1.
int FindProfile(const MigModel& m, std::string_view name);

// One GPU instance: a profile (index into its model's table) at a start slice.
struct MigInstance {
  int8_t profile = 0;
  int8_t start = 0;
  friend bool operator==(const MigInstance&, const MigInstance&) = default;
};

// The instances of one MIG-enabled GPU, sorted by start.
struct MigLayout {
  std::array<MigInstance, kMaxMigInstances> instances{};
  int8_t count = 0;

  std::span<const MigInstance> view() const { return {instances.data(), size_t(count)}; }
  friend bool operator==(const MigLayout& a, const MigLayout& b) {
    return a.count == b.count &&
           std::equal(a.instances.begin(), a.instances.begin() + a.count, b.instances.begin());
  }
};

// Memory slices the layout's instances occupy, as bits.
uint8_t MigUsedSlices(const MigModel& m, const MigLayout& l);
// Compute slices the layout's instances take.
int MigUsedCompute(const MigModel& m, const MigLayout& l);
// Whether `l` is a valid layout of model m: known profiles, allowed starts, no overlap,
// at most 7 compute slices, no profile past its instance limit. The error names the
// instance and the rule it breaks.
Status ValidateLayout(const MigModel& m, const MigLayout& l);
// Whether profile p fits at `start` beside the instances of l (a valid layout).
bool MigFitsAt(const MigModel& m, const MigLayout& l, int p, int start);
// Starts where profile p fits in l, as bits (0 when none).
uint8_t MigFreeStarts(const MigModel& m, const MigLayout& l, int p);
// Adds profile p at start (which must fit) and keeps the instances sorted by start.
void MigAdd(MigLayout& l, int p, int start);
// Removes the instance at `start`; false when there is none.
bool MigRemove(MigLayout& l, int start);

// The smallest profile of m with at least `compute_slices` and `memory_mib`, smallest by
// compute then memory; -1 when none is large enough.
int SmallestProfile(const MigModel& m, int compute_slices, int64_t memory_mib);
// The profile a MIG request of `compute_slices` and `memory_mib` runs on with model m: the
// one with the least memory among those of exactly that compute and at least that memory;
// -1 when m has none. Exactly: quotas count a request by its compute share, so the
// instance may not hold more compute than that.
int ProfileFor(const MigModel& m, int compute_slices, int64_t memory_mib);
// The compute slices a fraction of `gpu_milli` needs: ceil(milli * 7 / 1000), at least 1.
int MigComputeForMilli(int32_t gpu_milli);
// The milli-GPU a MIG request of `compute_slices` counts as in quotas: its compute share
// of a GPU, floor(slices * 1000 / 7) (142 for 1g, 1000 for 7g).
int32_t MigMilliForCompute(int compute_slices);

// Compute slices that more instances of profile p could take beside l, packed greedily from
// the lowest free start (what p can still use of the GPU).
int MigPackableCompute(const MigModel& m, const MigLayout& l, int p);

// Expected fragmentation of a layout for a mix of profiles (FGD's idea applied to MIG
// slices): for each profile p of the mix with weight w_p, the compute slices left free that
// p cannot use at any start, weighted by w_p. A layout that keeps room for the live mix
// scores low. Weights are integers (requests of each profile seen recently); the result is
// in slice-weight units.
int64_t MigFragmentation(const MigModel& m, const MigLayout& l, std::span<const int64_t> weights);

// "1g.10gb@0,3g.40gb@4": the layout text that the API, the CLI and the agent protocol
// use. Parse errors name the entry and the rule it breaks; the result is validated.
std::string FormatLayout(const MigModel& m, const MigLayout& l);
Result<MigLayout> ParseLayout(const MigModel& m, std::string_view text);

}  // namespace gpuorch::core
