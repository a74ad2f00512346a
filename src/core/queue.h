#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/gpu_model.h"
#include "core/ids.h"
#include "core/status.h"

namespace gpuorch::core {

inline constexpr int64_t kUnlimited = -1;
inline constexpr int32_t kMaxQueueWeight = 1'000'000;

// Quota of one queue for one GPU model, in milli-GPU. An entry with an invalid model is the
// default for every model without an entry of its own.
struct QuotaEntry {
  GpuModelId model;
  int64_t guaranteed = 0;      // nominal quota: always available to the queue (<= 2^48)
  int64_t limit = kUnlimited;  // hard cap on usage, borrowed or not
};

// Quota of one queue for a host resource: CPU in milli-CPU or memory in MiB, over all nodes.
struct HostQuota {
  int64_t guaranteed = 0;      // nominal quota: work within it is in quota for this resource
  int64_t limit = kUnlimited;  // hard cap on usage of the resource, by GPU tasks too
};

// A node of the queue tree. Workloads are submitted to leaf queues. Usage of an inner queue
// is the sum of its children; limits hold at every level, guarantees are checked at the leaf,
// and a parent's guarantee must cover the sum of its children's (per GPU model, CPU, memory).
struct QueueSpec {
  std::string name;
  QueueId parent;          // invalid for a top-level queue
  int32_t weight = 1;      // share of surplus capacity relative to sibling queues (1..1e6)
  bool can_borrow = true;  // may run over its guarantee on idle capacity
  bool can_lend = true;    // others may use its unused guarantee
  std::vector<QuotaEntry> quotas;
  // CPU and memory quotas are optional. A queue without one neither guarantees nor limits
  // that resource: its work counts as in quota for it (CPU-only work is then always in
  // quota, as long as no ancestor's limit says no).
  std::optional<HostQuota> cpu_quota;     // milli-CPU
  std::optional<HostQuota> memory_quota;  // MiB

  const QuotaEntry* QuotaFor(GpuModelId model) const;
  Status Validate() const;
};

}  // namespace gpuorch::core
