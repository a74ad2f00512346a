#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/gpu_model.h"
#include "core/ids.h"
#include "core/status.h"

namespace gpuorch::core {

inline constexpr int64_t kUnlimited = -1;

// Quota of one queue for one GPU model, in milli-GPU. An entry with an invalid model is the
// default for every model without an entry of its own.
struct QuotaEntry {
  GpuModelId model;
  int64_t guaranteed = 0;      // nominal quota: always available to the queue
  int64_t limit = kUnlimited;  // hard cap on usage, borrowed or not
};

// A node of the queue tree. Workloads are submitted to leaf queues. Usage of an inner queue
// is the sum of its children; limits hold at every level, guarantees are checked at the leaf.
struct QueueSpec {
  std::string name;
  QueueId parent;          // invalid for a top-level queue
  int32_t weight = 1;      // share of surplus capacity relative to sibling queues
  bool can_borrow = true;  // may run over its guarantee on idle capacity
  bool can_lend = true;    // others may use its unused guarantee
  std::vector<QuotaEntry> quotas;

  const QuotaEntry* QuotaFor(GpuModelId model) const;
  Status Validate() const;
};

}  // namespace gpuorch::core
