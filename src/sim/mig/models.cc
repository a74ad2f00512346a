#include "sim/mig/models.h"

#include <cmath>

namespace gpuorch::sim::mig {
namespace {

constexpr int64_t kMib = 1024 * 1024;

// KV cache: 8,192 tokens, room for about six requests of the Azure conversation trace's mean
// length (about 1,000 prompt + 250 output tokens) at once; an ASSUMPTION. Compute slices: the
// compute of the smallest profile with the memory (2g.20gb, 3g.40gb, the whole GPU), except
// the notebook's one slice; an ASSUMPTION that a replica needs the compute its memory comes
// with (1g.20gb would hold a 7B model's memory but with half its compute).
constexpr ModelClass kTable[kClasses] = {
    {"7b", "7B-class replica (Llama 2 7B, FP16)", 6.74, 2, 32, 4096, 2, 8192, 1024, 0, 2},
    {"13b", "13B-class replica (Llama 2 13B, FP16)", 13.0, 2, 40, 5120, 2, 8192, 1024, 0, 3},
    {"70b", "70B-class replica (Llama 3 70B, FP8 weights and KV)", 70.6, 1, 80, 1024, 1, 8192, 1024,
     0, 7},
    // A notebook: interactive work against a small model or a slice of data; 8 GiB is an
    // ASSUMPTION (a 3B-parameter FP16 model is 6 GiB).
    {"notebook", "notebook (8 GiB working set)", 0, 2, 0, 0, 2, 0, 0, 8192, 1},
};

}  // namespace

std::span<const ModelClass> Classes() { return kTable; }

int64_t MemoryNeedMib(const ModelClass& c) {
  const double weights = c.params_b * 1e9 * c.bytes_per_param;
  const double kv = static_cast<double>(c.kv_tokens) * 2.0 * c.layers * c.kv_dim * c.kv_bytes;
  return static_cast<int64_t>(std::ceil((weights + kv) / kMib)) + c.runtime_mib + c.fixed_mib;
}

int ProfileFor(const ModelClass& c) {
  return core::SmallestProfile(*core::FindMigModel(kGpuModel), c.mig_compute, MemoryNeedMib(c));
}

const char* ToString(Policy p) {
  switch (p) {
    case Policy::kWhole:
      return "whole";
    case Policy::kTimeslice:
      return "timeslice";
    case Policy::kStaticMig:
      return "static-mig";
    case Policy::kDynamicMig:
      return "dynamic-mig";
  }
  return "?";
}

bool ParsePolicy(std::string_view text, Policy& out) {
  for (Policy p : kAllPolicies) {
    if (text == ToString(p)) {
      out = p;
      return true;
    }
  }
  return false;
}

bool FitsAllBalanced(const ModelClass& c) {
  const core::MigModel& m = *core::FindMigModel(kGpuModel);
  auto l = core::ParseLayout(m, kAllBalanced);
  if (!l.ok()) return false;
  for (const core::MigInstance& i : l->view()) {
    const core::MigProfile& p = m.profiles[static_cast<size_t>(i.profile)];
    if (p.compute_slices >= c.mig_compute && p.memory_mib >= MemoryNeedMib(c)) return true;
  }
  return false;
}

core::TaskRequest TaskFor(const ModelClass& c, Policy p) {
  if (p == Policy::kStaticMig && !FitsAllBalanced(c)) return TaskFor(c, Policy::kWhole);
  core::TaskRequest t;
  t.milli_cpu = 2000;
  t.memory_mib = 16 * 1024;
  const int64_t need = MemoryNeedMib(c);
  switch (p) {
    case Policy::kWhole:
      t.gpu_count = static_cast<int32_t>((need + kGpuMemoryMib - 1) / kGpuMemoryMib);
      t.gpu_milli = core::kMilliGpu;
      break;
    case Policy::kTimeslice:
      t.gpu_count = 1;
      t.gpu_milli = core::MigMilliForCompute(c.mig_compute);
      t.gpu_memory_mib = need;
      break;
    case Policy::kStaticMig:
    case Policy::kDynamicMig:
      t.gpu_count = 1;
      t.sharing = core::Sharing::kMig;
      t.mig_compute = static_cast<int8_t>(c.mig_compute);
      t.gpu_milli = core::MigMilliForCompute(c.mig_compute);
      t.gpu_memory_mib = need;
      break;
  }
  return t;
}

}  // namespace gpuorch::sim::mig
