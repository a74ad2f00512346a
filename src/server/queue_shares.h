#pragma once

#include <cstdint>
#include <vector>

namespace gpuorch::server {

// One queue of the tree as fair share sees it, for one GPU model (milli-GPU).
struct ShareQueue {
  int parent = -1;  // index of the parent queue, lower than this one's; -1 top level
  int64_t weight = 1;
  bool can_lend = true;
  bool can_borrow = true;
  int64_t guaranteed = 0;
  int64_t limit = -1;  // -1 unlimited
  int64_t demand = 0;  // leaves: what its work uses and its pending work asks; inner: ignored
};

// The fair share of each queue: the milli-GPU it is entitled to now, given what every queue
// wants (the `gpuorch_queue_gpus_fair_share` gauge; the engine itself orders borrowers by
// weighted dominant share and never needs the figure). Computed top-down, as the engine
// lends, over the siblings of each level with the level's capacity (the cluster's for top
// queues, the parent's fair share below):
//  1. each queue keeps its guarantee, up to its demand (all of it when it may not lend),
//     scaled down in proportion when the guarantees exceed the capacity;
//  2. what is left is split by weight among the queues that may borrow, water-filling: a
//     queue never gets more than its demand or its limit, and what it cannot take goes to
//     the others, in proportion to their weights.
// An inner queue's demand is the sum of its children's. Shares are floored to the milli,
// so a level may leave up to one milli per queue unassigned.
//
// Contract: pure; O(queues^2) at worst (water-filling rounds), queues are few.
std::vector<int64_t> FairShares(std::vector<ShareQueue> queues, int64_t capacity);

}  // namespace gpuorch::server
