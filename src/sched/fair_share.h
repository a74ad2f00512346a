#pragma once

// Fair share across the queue tree: the fixed-point arithmetic of decayed usage and shares,
// and the hierarchical order in which borrowing queues get their next workload.
//
// Everything here is integer arithmetic, so that every machine and compiler computes the
// same shares and therefore the same plans (no libm, no floating point in decisions).

#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "core/ids.h"

namespace gpuorch::sched {

// Q32 fixed point: 1.0 is 2^32.
inline constexpr uint64_t kOneQ32 = uint64_t{1} << 32;

// floor(a * k / 2^32) for a < 2^63 and k <= 2^32, without a 128-bit type.
uint64_t MulQ32(uint64_t a, uint64_t k);

// The fraction of past usage that survives `dt` (>= 0) with half-life `half_life` (> 0):
// 2^(-dt / half_life) in Q32. Whole half-lives halve it exactly; the remainder r is written
// in binary, r / half_life = sum of b_i 2^-i (32 bits, by long division), and the factor
// is the product of the tabled 2^(-2^-i) for the bits set. Error within 8 * 2^-32 (2e-9).
uint64_t DecayKeepQ32(core::Duration dt, core::Duration half_life);

// use / capacity in parts per billion. Both are first scaled down together until the
// capacity is below 2^31 and the ratio saturates at 4, so that the product fits int64.
// A capacity of 0 (the resource is absent) gives 0.
int64_t RatioPpb(int64_t use, int64_t capacity);

// Hierarchical DRF order of borrowers (Bhattacharya et al., SoCC'13; the cohorts of
// KAI-Scheduler and Kueue). From the root down, each level takes, among the children that
// still have waiting work below them, the one with the lowest weighted share; ties go to
// the lower queue id. The leaf reached gives its next workload. Shares are relative to
// siblings only: a parent's part of the surplus is split among its children by weight.
//
// Contract: shares of queues not on the path just taken do not change between Pop and Done
// (true in a cycle: only the placed workload's queue and its ancestors gain usage). Pop and
// Done cost O(depth * log(siblings)); building costs O(queues * depth).
class BorrowerOrder {
 public:
  using ShareFn = std::function<int64_t(uint32_t)>;
  // `parents[q]`: parent of queue q (invalid for a top-level queue). `waiting[q]`: workloads
  // waiting in queue q. `share(q)`: q's current weighted share.
  BorrowerOrder(const std::vector<core::QueueId>& parents, const std::vector<size_t>& waiting,
                const ShareFn& share);
  // The queue whose next workload goes now, or nothing once no work waits.
  std::optional<uint32_t> Pop();
  // Called after the popped queue's workload was tried: it waits no more, and the queues on
  // its path rejoin their siblings with their new shares.
  void Done(const ShareFn& share);

 private:
  using Entry = std::pair<int64_t, uint32_t>;  // share, queue id
  void Push(uint32_t q, int64_t share);
  std::vector<uint32_t> parent_slot_;      // heap slot of q's parent: 0 = root, p + 1 = queue p
  std::vector<size_t> own_;                // workloads waiting in q itself
  std::vector<size_t> below_;              // workloads waiting in q's subtree
  std::vector<std::vector<Entry>> heaps_;  // per slot: children with waiting work (min-heap)
  std::vector<uint32_t> path_;             // queues popped by the last Pop, top first
};

}  // namespace gpuorch::sched
