#include "sched/fair_share.h"

#include <algorithm>
#include <array>
#include <bit>
#include <functional>

#include "core/status.h"

namespace gpuorch::sched {

namespace {

// kHalfPowers[i - 1] = round(2^32 * 2^(-2^-i)) for i = 1..32: the factor for bit i of the
// fraction of a half-life (computed once with 60-digit decimal arithmetic).
constexpr std::array<uint64_t, 32> kHalfPowers = {
    3037000500, 3611622603, 3938502376, 4112874773, 4202935003, 4248701965, 4271771996, 4283353945,
    4289156690, 4292061010, 4293513907, 4294240540, 4294603903, 4294785595, 4294876445, 4294921870,
    4294944583, 4294955939, 4294961618, 4294964457, 4294965876, 4294966586, 4294966941, 4294967119,
    4294967207, 4294967252, 4294967274, 4294967285, 4294967290, 4294967293, 4294967295, 4294967295};

// round(a * k / 2^32) for a, k <= 2^32: the product of decay factors rounds at each step, so
// that errors do not all go one way.
uint64_t MulQ32Round(uint64_t a, uint64_t k) {
  return (a >> 32) * k + (((a & 0xffffffffu) * k + (uint64_t{1} << 31)) >> 32);
}

}  // namespace

uint64_t MulQ32(uint64_t a, uint64_t k) {
  // a = hi * 2^32 + lo: hi * k < 2^31 * 2^32 and lo * k < 2^64 never overflow.
  return (a >> 32) * k + (((a & 0xffffffffu) * k) >> 32);
}

uint64_t DecayKeepQ32(core::Duration dt, core::Duration half_life) {
  GPUORCH_CHECK(dt >= 0 && half_life > 0);
  const int64_t whole = dt / half_life;
  if (whole >= 33) return 0;  // below 2^-33: nothing of the past survives in Q32
  uint64_t keep = kOneQ32;
  // The remainder as a binary fraction of the half-life, one bit per step of long division
  // (r < half_life, so 2r never overflows for any half-life below 2^62).
  int64_t r = dt % half_life;
  for (size_t i = 0; i < kHalfPowers.size() && r != 0; ++i) {
    r *= 2;
    if (r >= half_life) {
      r -= half_life;
      keep = MulQ32Round(keep, kHalfPowers[i]);
    }
  }
  return keep >> whole;
}

int64_t RatioPpb(int64_t use, int64_t capacity) {
  if (capacity <= 0 || use <= 0) return 0;
  const int shift =
      std::max(0, static_cast<int>(std::bit_width(static_cast<uint64_t>(capacity))) - 31);
  capacity >>= shift;
  use = std::min(use >> shift, 4 * capacity);
  return use * 1'000'000'000 / capacity;
}

BorrowerOrder::BorrowerOrder(const std::vector<core::QueueId>& parents,
                             const std::vector<size_t>& waiting, const ShareFn& share) {
  const size_t n = parents.size();
  GPUORCH_CHECK(waiting.size() == n);
  parent_slot_.resize(n);
  own_ = waiting;
  below_.assign(n, 0);
  heaps_.resize(n + 1);
  for (uint32_t q = 0; q < n; ++q) {
    const core::QueueId p = parents[q];
    GPUORCH_CHECK(!p.valid() || p.value() < n);
    parent_slot_[q] = p.valid() ? p.value() + 1 : 0;
  }
  for (uint32_t q = 0; q < n; ++q) {
    if (waiting[q] == 0) continue;
    // Walk up the tree: the caller's parents form a forest (checked when queues are added).
    for (uint32_t a = q;;) {
      below_[a] += waiting[q];
      if (parent_slot_[a] == 0) break;
      a = parent_slot_[a] - 1;
    }
  }
  for (uint32_t q = 0; q < n; ++q) {
    if (below_[q] > 0) heaps_[parent_slot_[q]].emplace_back(share(q), q);
  }
  for (auto& h : heaps_) std::make_heap(h.begin(), h.end(), std::greater<>());
}

void BorrowerOrder::Push(uint32_t q, int64_t share) {
  auto& h = heaps_[parent_slot_[q]];
  h.emplace_back(share, q);
  std::push_heap(h.begin(), h.end(), std::greater<>());
}

std::optional<uint32_t> BorrowerOrder::Pop() {
  GPUORCH_CHECK(path_.empty());  // Done must follow every Pop that returned a queue
  uint32_t slot = 0;
  while (!heaps_[slot].empty()) {
    auto& h = heaps_[slot];
    std::pop_heap(h.begin(), h.end(), std::greater<>());
    const uint32_t q = h.back().second;
    h.pop_back();
    path_.push_back(q);
    // Work waits in leaves only; a queue with work of its own is where the descent ends.
    if (own_[q] > 0) return q;
    slot = q + 1;
  }
  GPUORCH_CHECK(path_.empty());  // a queue with work below it always has a child to take
  return std::nullopt;
}

void BorrowerOrder::Done(const ShareFn& share) {
  GPUORCH_CHECK(!path_.empty());
  --own_[path_.back()];
  // Bottom up, so that each queue rejoins its parent's heap with the share it has now.
  for (auto it = path_.rbegin(); it != path_.rend(); ++it) {
    if (--below_[*it] > 0) Push(*it, share(*it));
  }
  path_.clear();
}

}  // namespace gpuorch::sched
