#include "core/mig.h"

#include <algorithm>
#include <bit>
#include <charconv>

namespace gpuorch::core {
namespace {

// NVML_GPU_INSTANCE_PROFILE_* values (nvml.h).
constexpr uint8_t k1Slice = 0x0, k2Slice = 0x1, k3Slice = 0x2, k4Slice = 0x3, k7Slice = 0x4,
                  k1SliceRev2 = 0x9;
// Allowed starts (memory slice indices) by placement size, from the user guide's placement
// diagrams: a 1-slice instance anywhere but slice 7, a 2-slice one at an even slice (the
// 2g profiles not at 6), 4-slice ones at 0 or 4 (4g only at 0), the whole GPU at 0.
constexpr uint8_t kStarts1 = 0x7F, kStarts1x2 = 0x55, kStarts2 = 0x15, kStarts3 = 0x11,
                  kStartsAt0 = 0x01;

// Memory of a profile: its share of the model's nominal memory (slices / 8). nvidia-smi
// shows a little less (the driver keeps a reserve), which no request here depends on.
constexpr int64_t Mem(int64_t gib, int slices) { return gib * 1024 * slices / kMigMemorySlices; }

// Profiles of one model with nominal memory `gib` and the given names, smallest first.
#define GPUORCH_MIG_TABLE(gib, n1, n1x2, n2, n3, n4, n7)                     \
  {                                                                          \
    MigProfile{n1, k1Slice, 19, 1, 1, 7, kStarts1, Mem(gib, 1)},             \
        MigProfile{n1x2, k1SliceRev2, 15, 1, 2, 4, kStarts1x2, Mem(gib, 2)}, \
        MigProfile{n2, k2Slice, 14, 2, 2, 3, kStarts2, Mem(gib, 2)},         \
        MigProfile{n3, k3Slice, 9, 3, 4, 2, kStarts3, Mem(gib, 4)},          \
        MigProfile{n4, k4Slice, 5, 4, 4, 1, kStartsAt0, Mem(gib, 4)},        \
        MigProfile{n7, k7Slice, 0, 7, 8, 1, kStartsAt0, Mem(gib, 8)},        \
  }

constexpr MigProfile kA100_40[] =
    GPUORCH_MIG_TABLE(40, "1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb");
constexpr MigProfile kA100_80[] =
    GPUORCH_MIG_TABLE(80, "1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb");
constexpr MigProfile kH100_80[] =
    GPUORCH_MIG_TABLE(80, "1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb");
constexpr MigProfile kH200_141[] =
    GPUORCH_MIG_TABLE(141, "1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb");
#undef GPUORCH_MIG_TABLE

constexpr MigModel kModels[] = {
    {"A100-40GB", kA100_40},
    {"A100-80GB", kA100_80},
    {"H100-80GB", kH100_80},
    {"H200-141GB", kH200_141},
};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

uint8_t SliceBits(int start, int size) {
  return static_cast<uint8_t>(((1u << size) - 1u) << start);
}

}  // namespace

std::span<const MigModel> MigModels() { return kModels; }

const MigModel* FindMigModel(std::string_view model) {
  for (const MigModel& m : kModels) {
    if (m.model == model) return &m;
  }
  return nullptr;
}

int FindProfile(const MigModel& m, std::string_view name) {
  for (size_t i = 0; i < m.profiles.size(); ++i) {
    if (m.profiles[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

uint8_t MigUsedSlices(const MigModel& m, const MigLayout& l) {
  uint8_t used = 0;
  for (const MigInstance& i : l.view()) {
    used |= SliceBits(i.start, m.profiles[i.profile].memory_slices);
  }
  return used;
}

int MigUsedCompute(const MigModel& m, const MigLayout& l) {
  int used = 0;
  for (const MigInstance& i : l.view()) used += m.profiles[i.profile].compute_slices;
  return used;
}

Status ValidateLayout(const MigModel& m, const MigLayout& l) {
  if (l.count < 0 || l.count > kMaxMigInstances) {
    return Status::Invalid("mig layout: " + std::to_string(l.count) + " instances, at most " +
                           std::to_string(kMaxMigInstances));
  }
  uint8_t used = 0;
  int compute = 0;
  std::array<int, 16> per_profile{};
  for (int k = 0; k < l.count; ++k) {
    const MigInstance& i = l.instances[k];
    const std::string where = "mig layout: instance " + std::to_string(k);
    if (i.profile < 0 || static_cast<size_t>(i.profile) >= m.profiles.size()) {
      return Status::Invalid(where + ": no profile " + std::to_string(i.profile) + " on " +
                             std::string(m.model));
    }
    const MigProfile& p = m.profiles[i.profile];
    const std::string named =
        where + " (" + std::string(p.name) + "@" + std::to_string(i.start) + ")";
    if (i.start < 0 || i.start >= kMigMemorySlices || !((p.start_mask >> i.start) & 1u)) {
      return Status::Invalid(named + ": " + std::string(p.name) + " cannot start at slice " +
                             std::to_string(i.start));
    }
    if (k > 0 && l.instances[k - 1].start > i.start) {
      return Status::Invalid(named + ": instances must be sorted by start");
    }
    const uint8_t bits = SliceBits(i.start, p.memory_slices);
    if (used & bits) return Status::Invalid(named + ": overlaps another instance's memory slices");
    used |= bits;
    compute += p.compute_slices;
    if (compute > kMigComputeSlices) {
      return Status::Invalid(named + ": more than " + std::to_string(kMigComputeSlices) +
                             " compute slices in all");
    }
    if (++per_profile[i.profile] > p.max_instances) {
      return Status::Invalid(named + ": more than " + std::to_string(p.max_instances) + " " +
                             std::string(p.name) + " instances");
    }
  }
  return Status::Ok();
}

bool MigFitsAt(const MigModel& m, const MigLayout& l, int p, int start) {
  const MigProfile& pr = m.profiles[p];
  if (l.count >= kMaxMigInstances || !((pr.start_mask >> start) & 1u)) return false;
  if (MigUsedSlices(m, l) & SliceBits(start, pr.memory_slices)) return false;
  if (MigUsedCompute(m, l) + pr.compute_slices > kMigComputeSlices) return false;
  int same = 0;
  for (const MigInstance& i : l.view()) same += i.profile == p;
  return same < pr.max_instances;
}

uint8_t MigFreeStarts(const MigModel& m, const MigLayout& l, int p) {
  const MigProfile& pr = m.profiles[p];
  if (l.count >= kMaxMigInstances) return 0;
  if (MigUsedCompute(m, l) + pr.compute_slices > kMigComputeSlices) return 0;
  int same = 0;
  for (const MigInstance& i : l.view()) same += i.profile == p;
  if (same >= pr.max_instances) return 0;
  const uint8_t used = MigUsedSlices(m, l);
  uint8_t starts = 0;
  for (int s = 0; s < kMigMemorySlices; ++s) {
    if (((pr.start_mask >> s) & 1u) && !(used & SliceBits(s, pr.memory_slices))) {
      starts |= static_cast<uint8_t>(1u << s);
    }
  }
  return starts;
}

void MigAdd(MigLayout& l, int p, int start) {
  int k = l.count;
  while (k > 0 && l.instances[k - 1].start > start) {
    l.instances[k] = l.instances[k - 1];
    --k;
  }
  l.instances[k] = MigInstance{static_cast<int8_t>(p), static_cast<int8_t>(start)};
  ++l.count;
}

bool MigRemove(MigLayout& l, int start) {
  for (int k = 0; k < l.count; ++k) {
    if (l.instances[k].start != start) continue;
    std::copy(l.instances.begin() + k + 1, l.instances.begin() + l.count, l.instances.begin() + k);
    --l.count;
    return true;
  }
  return false;
}

int SmallestProfile(const MigModel& m, int compute_slices, int64_t memory_mib) {
  // The table is sorted by compute then memory, so the first that fits is the smallest.
  for (size_t i = 0; i < m.profiles.size(); ++i) {
    if (m.profiles[i].compute_slices >= compute_slices && m.profiles[i].memory_mib >= memory_mib) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

int ProfileFor(const MigModel& m, int compute_slices, int64_t memory_mib) {
  for (size_t i = 0; i < m.profiles.size(); ++i) {
    if (m.profiles[i].compute_slices == compute_slices && m.profiles[i].memory_mib >= memory_mib) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

int MigComputeForMilli(int32_t gpu_milli) {
  const int slices = (gpu_milli * kMigComputeSlices + 999) / 1000;
  return std::clamp(slices, 1, kMigComputeSlices);
}

int32_t MigMilliForCompute(int compute_slices) {
  // Rounded down, so that seven 1g instances (7 x 142) fit the GPU's 1000.
  return static_cast<int32_t>(compute_slices * 1000 / kMigComputeSlices);
}

int MigPackableCompute(const MigModel& m, const MigLayout& l, int p) {
  MigLayout probe = l;
  int usable = 0;
  for (uint8_t starts = MigFreeStarts(m, probe, p); starts != 0;
       starts = MigFreeStarts(m, probe, p)) {
    MigAdd(probe, p, std::countr_zero(starts));
    usable += m.profiles[p].compute_slices;
  }
  return usable;
}

int64_t MigFragmentation(const MigModel& m, const MigLayout& l, std::span<const int64_t> weights) {
  const int free_compute = kMigComputeSlices - MigUsedCompute(m, l);
  if (free_compute == 0) return 0;
  int64_t score = 0;
  for (size_t p = 0; p < m.profiles.size() && p < weights.size(); ++p) {
    // What p cannot use of the free compute is lost to it.
    if (weights[p] != 0) {
      score += weights[p] * (free_compute - MigPackableCompute(m, l, static_cast<int>(p)));
    }
  }
  return score;
}

std::string FormatLayout(const MigModel& m, const MigLayout& l) {
  std::string out;
  for (const MigInstance& i : l.view()) {
    if (!out.empty()) out += ',';
    out += m.profiles[i.profile].name;
    out += '@';
    out += std::to_string(i.start);
  }
  return out;
}

Result<MigLayout> ParseLayout(const MigModel& m, std::string_view text) {
  MigLayout l;
  if (Trim(text).empty()) return l;
  std::vector<std::pair<int, int>> entries;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    const std::string_view entry = Trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    const std::string quoted = "mig layout entry '" + std::string(entry) + "'";
    const size_t at = entry.find('@');
    if (at == std::string_view::npos) {
      return Status::Invalid(quoted + ": expected <profile>@<start slice>, e.g. 3g.40gb@4");
    }
    const int p = FindProfile(m, entry.substr(0, at));
    if (p < 0) {
      return Status::Invalid(quoted + ": " + std::string(m.model) + " has no profile '" +
                             std::string(entry.substr(0, at)) + "'");
    }
    int start = -1;
    const std::string_view s = entry.substr(at + 1);
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), start);
    if (ec != std::errc() || ptr != s.data() + s.size() || start < 0 || start >= kMigMemorySlices) {
      return Status::Invalid(quoted + ": the start must be a slice 0-7");
    }
    if (entries.size() >= kMaxMigInstances) {
      return Status::Invalid(quoted + ": more than " + std::to_string(kMaxMigInstances) +
                             " instances");
    }
    entries.emplace_back(start, p);
  }
  std::sort(entries.begin(), entries.end());
  for (auto [start, p] : entries) {
    l.instances[l.count++] = MigInstance{static_cast<int8_t>(p), static_cast<int8_t>(start)};
  }
  if (Status s = ValidateLayout(m, l); !s.ok()) return s;
  return l;
}

}  // namespace gpuorch::core
