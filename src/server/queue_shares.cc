#include "server/queue_shares.h"

#include <algorithm>

namespace gpuorch::server {

namespace {

// Splits `capacity` among `level` (indices of siblings) into `share`.
void Split(const std::vector<ShareQueue>& q, const std::vector<int>& level, int64_t capacity,
           std::vector<int64_t>& share) {
  if (level.empty()) return;
  auto limit = [&](int i) { return q[i].limit < 0 ? INT64_MAX : q[i].limit; };
  std::vector<int64_t> cap(q.size(), 0);
  int64_t base_total = 0;
  for (int i : level) {
    const int64_t kept = q[i].can_lend ? std::min(q[i].guaranteed, q[i].demand) : q[i].guaranteed;
    share[i] = std::min(kept, limit(i));
    base_total += share[i];
  }
  if (base_total > capacity) {
    // Guarantees beyond what exists: each keeps its part of what does.
    for (int i : level) {
      share[i] = base_total == 0 ? 0 : (share[i] * capacity / base_total);
    }
    return;
  }
  int64_t left = capacity - base_total;
  std::vector<int> active;
  for (int i : level) {
    const int64_t want = std::min(q[i].demand, limit(i));
    cap[i] = q[i].can_borrow ? std::max(share[i], want) : share[i];
    if (cap[i] > share[i]) active.push_back(i);
  }
  while (left > 0 && !active.empty()) {
    int64_t weights = 0;
    for (int i : active) weights += std::max<int64_t>(q[i].weight, 1);
    int64_t given = 0;
    std::vector<int> still;
    for (int i : active) {
      const int64_t part = (left * std::max<int64_t>(q[i].weight, 1) / weights);
      const int64_t give = std::min(part, cap[i] - share[i]);
      share[i] += give;
      given += give;
      if (share[i] < cap[i]) still.push_back(i);
    }
    if (given == 0) break;  // less than one milli per weight left
    left -= given;
    active = std::move(still);
  }
}

}  // namespace

std::vector<int64_t> FairShares(std::vector<ShareQueue> queues, int64_t capacity) {
  const int n = static_cast<int>(queues.size());
  std::vector<bool> inner(queues.size(), false);
  for (int i = 0; i < n; ++i) {
    if (queues[i].parent >= 0) inner[queues[i].parent] = true;
  }
  for (int i = 0; i < n; ++i) {
    if (inner[i]) queues[i].demand = 0;
  }
  // Children follow their parents, so a backward pass adds each subtree's demand up.
  for (int i = n - 1; i >= 0; --i) {
    if (queues[i].parent >= 0) queues[queues[i].parent].demand += queues[i].demand;
  }
  std::vector<int64_t> share(queues.size(), 0);
  std::vector<std::vector<int>> children(queues.size());
  std::vector<int> top;
  for (int i = 0; i < n; ++i) {
    (queues[i].parent >= 0 ? children[queues[i].parent] : top).push_back(i);
  }
  Split(queues, top, std::max<int64_t>(capacity, 0), share);
  for (int i = 0; i < n; ++i) Split(queues, children[i], share[i], share);
  return share;
}

}  // namespace gpuorch::server
