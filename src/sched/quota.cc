// Queue accounting: usage per queue and GPU model, guarantees, limits, lending, and the
// weighted dominant share with exponentially decayed past usage that orders borrowers.
#include <algorithm>
#include <cmath>

#include "sched/scheduler_impl.h"

namespace gpuorch::sched {

void Scheduler::Impl::Charge(const WorkloadRec& w, GpuModelId m, int64_t milli) {
  QueueRec& leaf = queues_[w.spec.queue.value()];
  leaf.usage[m.value()] += milli;
  GPUORCH_CHECK(leaf.usage[m.value()] >= 0);
  for (QueueId a : leaf.ancestors) queues_[a.value()].usage[m.value()] += milli;
}

bool Scheduler::Impl::WithinLimit(QueueId q, GpuModelId m, int64_t extra) const {
  const QueueRec& leaf = queues_[q.value()];
  auto ok = [&](const QueueRec& r) {
    int64_t lim = r.limit[m.value()];
    return lim == core::kUnlimited || r.usage[m.value()] + extra <= lim;
  };
  if (!ok(leaf)) return false;
  return std::all_of(leaf.ancestors.begin(), leaf.ancestors.end(),
                     [&](QueueId a) { return ok(queues_[a.value()]); });
}

bool Scheduler::Impl::InQuota(QueueId q, GpuModelId m, int64_t extra) const {
  const QueueRec& leaf = queues_[q.value()];
  return leaf.usage[m.value()] + ledger_.Claimed(q, m) + extra <= leaf.guaranteed[m.value()];
}

bool Scheduler::Impl::Borrowing(QueueId q, GpuModelId m, int64_t minus) const {
  const QueueRec& r = queues_[q.value()];
  return r.usage[m.value()] - r.evicting[m.value()] - minus > r.guaranteed[m.value()];
}

int64_t Scheduler::Impl::HeldBack(GpuModelId m, QueueId q) const {
  int64_t held = 0;
  for (size_t i = 0; i < queues_.size(); ++i) {
    const QueueRec& r = queues_[i];
    if (!r.present || !r.leaf || r.spec.can_lend || QueueId(static_cast<uint32_t>(i)) == q) {
      continue;
    }
    held += std::max<int64_t>(0, r.guaranteed[m.value()] - r.usage[m.value()]);
  }
  return held;
}

// Past usage decays with the configured half-life: after one half-life a queue's history
// counts half as much. Float is fine here: it only orders borrowers, it never accounts.
void Scheduler::Impl::Decay(Time now) {
  if (!decay_started_) {
    decay_started_ = true;
    last_decay_ = now;
    return;
  }
  Duration dt = now - last_decay_;
  if (dt <= 0) return;
  last_decay_ = now;
  double keep =
      std::exp2(-static_cast<double>(dt) / static_cast<double>(config_.fair_share_half_life));
  for (QueueRec& q : queues_) {
    if (!q.present) continue;
    for (uint32_t m = 0; m < cluster_.model_bound(); ++m) {
      q.decayed[m] = q.decayed[m] * keep + static_cast<double>(q.usage[m]) * (1.0 - keep);
    }
  }
}

// Weighted dominant share: over GPU models, the largest (current + decayed past usage) as a
// fraction of the cluster's capacity of that model, divided by the queue's weight.
int64_t Scheduler::Impl::Share(QueueId q) const {
  const QueueRec& r = queues_[q.value()];
  double dominant = 0;
  for (uint32_t m = 0; m < cluster_.model_bound(); ++m) {
    int64_t cap = cluster_.capacity_milli(GpuModelId(m));
    if (cap <= 0) continue;
    double use = static_cast<double>(r.usage[m]) + r.decayed[m];
    dominant = std::max(dominant, use / static_cast<double>(cap));
  }
  return static_cast<int64_t>(std::llround(dominant * 1e9 / r.spec.weight));
}

}  // namespace gpuorch::sched
