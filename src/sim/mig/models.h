#pragma once

// The request classes of `gpuorch sim mig` and what each needs: GPU memory from the model's
// weights plus its KV cache, compute slices for its throughput, and how each partitioning
// policy asks the engine for that (docs/partitioning.md, "The experiment").
//
// Memory = weights + KV cache + runtime, all in MiB:
//   weights = params * bytes_per_param;
//   KV cache = kv_tokens * 2 (K and V) * layers * kv_dim * kv_bytes (the formula of the
//   vLLM paper, Kwon et al., SOSP 2023, section 3: 800 KB per token for a 13B model with
//   5,120 hidden units, 40 layers and FP16);
//   runtime = CUDA context, activations and allocator slack, an ASSUMPTION (1 GiB).
// Architectures: Llama 2 (Touvron et al., arXiv 2307.09288, table 1 and the model cards:
// 7B 6.74e9 parameters, 32 layers, 4,096 hidden; 13B 13.0e9, 40 layers, 5,120 hidden) and
// Llama 3 70B (model card: 70.6e9 parameters, 80 layers, grouped-query attention with 8 KV
// heads of 128 dimensions, so kv_dim 1,024).

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/mig.h"
#include "core/workload.h"

namespace gpuorch::sim::mig {

// The pool's GPU: every policy runs on H100-80GB.
inline constexpr std::string_view kGpuModel = "H100-80GB";
inline constexpr int64_t kGpuMemoryMib = 80 * 1024;

struct ModelClass {
  std::string_view name;    // "7b", "13b", "70b", "notebook"
  std::string_view what;    // one line for the report
  double params_b = 0;      // parameters, billions (0: no model of its own)
  int bytes_per_param = 2;  // 2 = FP16/BF16, 1 = FP8
  int layers = 0;
  int kv_dim = 0;  // KV heads * head dimension
  int kv_bytes = 2;
  int64_t kv_tokens = 0;    // tokens of KV cache the replica keeps room for
  int64_t runtime_mib = 0;  // context, activations, slack
  int64_t fixed_mib = 0;    // added as is (a notebook's working set)
  int mig_compute = 1;      // compute slices its throughput needs (1..7)
};

inline constexpr int kClasses = 4;
enum ClassIndex : int { k7b = 0, k13b = 1, k70b = 2, kNotebook = 3 };

// The four classes, in ClassIndex order.
std::span<const ModelClass> Classes();

// weights + KV cache + runtime + fixed, in MiB, rounded up.
int64_t MemoryNeedMib(const ModelClass& c);
// The smallest H100-80GB profile with c.mig_compute compute slices and MemoryNeedMib(c)
// (core::SmallestProfile); -1 when none is large enough.
int ProfileFor(const ModelClass& c);

enum class Policy : uint8_t { kWhole, kTimeslice, kStaticMig, kDynamicMig };
inline constexpr std::array<Policy, 4> kAllPolicies = {Policy::kWhole, Policy::kTimeslice,
                                                       Policy::kStaticMig, Policy::kDynamicMig};
const char* ToString(Policy p);  // "whole", "timeslice", "static-mig", "dynamic-mig"
bool ParsePolicy(std::string_view text, Policy& out);

// What one task of class c asks the engine for under policy p:
// - whole: ceil(memory / 80 GiB) whole GPUs;
// - timeslice: one GPU's fraction, gpu_milli = the compute share of its MIG profile
//   (core::MigMilliForCompute, 1000 for 7 slices) and gpu_memory_mib = its memory need;
// - static and dynamic MIG: an instance (sharing kMig) of c.mig_compute slices and its
//   memory need; under static MIG a class that no instance of kAllBalanced holds (the 70B
//   replica) asks for whole GPUs instead, which the pool's non-MIG GPUs give.
core::TaskRequest TaskFor(const ModelClass& c, Policy p);
// Whether some instance of kAllBalanced has c.mig_compute slices and MemoryNeedMib(c).
bool FitsAllBalanced(const ModelClass& c);

// NVIDIA mig-parted's `all-balanced` for H100-80GB (2x 1g.10gb, 1x 2g.20gb, 1x 3g.40gb),
// placed at the starts `nvidia-smi mig -cgi` gives in that order.
inline constexpr std::string_view kAllBalanced = "1g.10gb@0,1g.10gb@1,2g.20gb@2,3g.40gb@4";

}  // namespace gpuorch::sim::mig
