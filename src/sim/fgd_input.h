#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/gpu_model.h"
#include "core/rng.h"
#include "sched/policy.h"
#include "sim/openb.h"

namespace gpuorch::sim {

// The inputs of one FGD experiment run that do not depend on the policy (FGD-PROTOCOL.md
// §2.2-2.4): the typical pods, the arrival sequence and the node ranks.

// One typical pod key (c, u, k, spec string) with the number of pods that have it.
struct TypicalPod {
  int64_t cpu_milli = 0;
  int32_t gpu_milli = 0;  // u; 0 for CPU-only
  int32_t num_gpu = 0;    // k
  std::string gpu_spec;   // verbatim
  int64_t pods = 0;
};

struct TypicalPods {
  size_t distinct_keys = 0;
  int64_t total_pods = 0;
  int64_t kept_pods = 0;
  std::vector<TypicalPod> kept;  // by count descending, then key descending
};

// Protocol §2.2: keys counted over the original list, sorted, and the shortest prefix that
// covers at least 95% of the pods kept.
TypicalPods ComputeTypicalPods(const std::vector<OpenbPod>& pods);

// Maps GPU model names to ids. Node models are interned first (sorted by name, so ids do
// not depend on file order); a pod's spec may name a model no node has, which then gets an
// id of its own so that the pod fits nowhere instead of everywhere.
class ModelTable {
 public:
  explicit ModelTable(const std::vector<OpenbNode>& nodes);
  core::GpuModelId Node(const std::string& model) const { return registry_.Find(model); }
  // The set named by a `|`-separated spec; empty pieces are dropped, "" = any.
  core::ModelSet Spec(const std::string& spec);

 private:
  core::GpuModelRegistry registry_;
};

// The engine's request for a pod. A GPU pod asking for 0 milli is CPU-only (protocol §3).
sched::TaskRequest ToTask(const OpenbPod& p, ModelTable& models);

// Typical pods as the policies' typical-task distribution (weights count / kept_pods).
std::vector<sched::TypicalTask> ToTypicalTasks(const TypicalPods& typical, ModelTable& models);

struct Arrivals {
  std::vector<uint32_t> sequence;  // indices into the name-sorted pod list, in arrival order
  std::vector<uint32_t> rank;      // rank of each node of the sn-sorted node list
  int64_t arriving_milli = 0;      // sum of R_p over the sequence
};

// Protocol §2.1, §2.3 and §2.4 with `rng` (seeded by the run's seed): one throw-away draw, a
// Fisher-Yates shuffle of the name-sorted pods, tune up (draws with replacement, stop at
// the first draw whose per-GPU amount would pass the target) or tune down (remove uniform
// positions) to ratio_percent of capacity, then a random permutation of node ranks. The
// generator is ours (xoshiro), not Go's math/rand, so sequences differ from the authors'.
Arrivals MakeArrivals(const std::vector<OpenbPod>& sorted_pods, size_t node_count,
                      int64_t capacity_milli, int64_t ratio_percent, core::Rng& rng);

}  // namespace gpuorch::sim
