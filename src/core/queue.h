#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/gpu_model.h"
#include "core/ids.h"
#include "core/status.h"

namespace gpuorch::core {

inline constexpr int64_t kUnlimited = -1;
inline constexpr int64_t kNoGuarantee = -1;
inline constexpr int32_t kMaxQueueWeight = 1'000'000;

// Quota of one queue for one GPU model, in milli-GPU. An entry with an invalid model is the
// default for every model without an entry of its own.
struct QuotaEntry {
  GpuModelId model;
  int64_t guaranteed = 0;      // nominal quota: always available to the queue (<= 2^48)
  int64_t limit = kUnlimited;  // hard cap on usage, borrowed or not
};

// Quota of one queue for a host resource: CPU in milli-CPU or memory in MiB, over all nodes,
// counting the tasks of GPU work too. Both parts are optional. Without a guarantee the
// resource does not decide whether work is in quota (CPU-only work is then in quota, as
// before CPU quotas existed); with one, work is in quota only while the queue's usage of the
// resource stays within it (and, for GPU work, within its GPU guarantee too).
struct HostQuota {
  int64_t guaranteed = kNoGuarantee;  // kNoGuarantee or 0..2^48
  int64_t limit = kUnlimited;         // hard cap, at every level of the tree
  bool has_guarantee() const { return guaranteed != kNoGuarantee; }
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
  HostQuota cpu_quota;     // milli-CPU; unset by default
  HostQuota memory_quota;  // MiB; unset by default

  const QuotaEntry* QuotaFor(GpuModelId model) const;
  Status Validate() const;
};

}  // namespace gpuorch::core
