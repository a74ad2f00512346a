// Queue accounting: usage per queue of each GPU model, CPU and memory, guarantees, limits,
// lending, and the weighted dominant share with exponentially decayed past usage that
// orders borrowers.
#include <algorithm>
#include <string>

#include "sched/fair_share.h"
#include "sched/scheduler_impl.h"

namespace gpuorch::sched {

void Scheduler::Impl::Charge(const WorkloadRec& w, GpuModelId m, int sign) {
  const bool gpus = w.spec.task.gpu_count > 0;
  GPUORCH_CHECK((sign == 1 || sign == -1) && (!gpus || m.valid()));
  const int64_t milli = sign * w.task_milli();
  const int64_t cpu = sign * w.spec.task.milli_cpu, memory = sign * w.spec.task.memory_mib;
  auto add = [&](QueueRec& r) {
    if (gpus) r.usage[m.value()] += milli;
    r.host_usage[kCpu] += cpu;
    r.host_usage[kMemory] += memory;
  };
  QueueRec& leaf = queues_[w.spec.queue.value()];
  add(leaf);
  GPUORCH_CHECK((!gpus || leaf.usage[m.value()] >= 0) && leaf.host_usage[kCpu] >= 0 &&
                leaf.host_usage[kMemory] >= 0);
  for (QueueId a : leaf.ancestors) add(queues_[a.value()]);
}

bool Scheduler::Impl::HostWithinLimit(QueueId q, int64_t cpu, int64_t memory) const {
  const std::array<int64_t, 2> extra = {cpu, memory};
  auto ok = [&](const QueueRec& r) {
    for (size_t h = 0; h < extra.size(); ++h) {
      const int64_t lim = r.host_limit[h];
      if (lim != core::kUnlimited && r.host_usage[h] + extra[h] > lim) return false;
    }
    return true;
  };
  const QueueRec& leaf = queues_[q.value()];
  if (!ok(leaf)) return false;
  return std::all_of(leaf.ancestors.begin(), leaf.ancestors.end(),
                     [&](QueueId a) { return ok(queues_[a.value()]); });
}

bool Scheduler::Impl::HostInQuota(QueueId q, int64_t cpu, int64_t memory) const {
  const QueueRec& r = queues_[q.value()];
  const std::array<int64_t, 2> extra = {cpu, memory};
  for (size_t h = 0; h < extra.size(); ++h) {
    const int64_t g = r.host_guaranteed[h];
    if (g != core::kNoGuarantee && r.host_usage[h] + extra[h] > g) return false;
  }
  return true;
}

namespace {

std::string Amount(int64_t v, const char* unit) { return std::to_string(v) + " " + unit; }

std::string Gpus(int64_t milli) {
  std::string s = std::to_string(milli / core::kMilliGpu);
  if (int64_t frac = milli % core::kMilliGpu; frac != 0) {
    std::string f = std::to_string(frac);
    s += "." + std::string(3 - f.size(), '0') + f;
    while (s.back() == '0') s.pop_back();
  }
  return s + " GPUs";
}

int64_t GuaranteedGpu(const QueueSpec& s, uint32_t m) {
  const core::QuotaEntry* e = s.QuotaFor(GpuModelId(m));
  return e != nullptr ? e->guaranteed : 0;
}

const core::HostQuota& HostQuotaOf(const QueueSpec& s, size_t h) {
  return h == kCpu ? s.cpu_quota : s.memory_quota;
}

}  // namespace

// The tree's guarantees nest: what a parent guarantees is what its children may share, so
// their guarantees together may not exceed it (per GPU model, default entry included, and
// for CPU and memory where the parent sets a quota). Checked for the queue's own children
// (on update: it has none when added) and for its siblings under its parent.
Status Scheduler::Impl::CheckNestedGuarantees(QueueId id, const QueueSpec& spec) const {
  auto check = [&](QueueId parent, const QueueSpec& p) -> Status {
    std::vector<const QueueSpec*> children;
    for (uint32_t c = 0; c < queues_.size(); ++c) {
      if (c != id.value() && queues_[c].present && queues_[c].spec.parent == parent) {
        children.push_back(&queues_[c].spec);
      }
    }
    if (spec.parent == parent) children.push_back(&spec);
    if (children.empty()) return Status::Ok();
    const std::string head = "children of \"" + p.name + "\" guarantee ";
    for (uint32_t m = 0; m < kMaxGpuModels; ++m) {
      int64_t sum = 0;
      for (const QueueSpec* c : children) sum += GuaranteedGpu(*c, m);
      if (const int64_t own = GuaranteedGpu(p, m); sum > own) {
        return Status::Invalid("queue.quota.guaranteed: " + head + Gpus(sum) + " of model " +
                               std::to_string(m) + ", more than its " + Gpus(own));
      }
    }
    for (size_t h : {kCpu, kMemory}) {
      const core::HostQuota& own = HostQuotaOf(p, h);
      if (!own.has_guarantee()) continue;  // the parent guarantees none of this resource
      int64_t sum = 0;
      for (const QueueSpec* c : children) {
        if (const core::HostQuota& q = HostQuotaOf(*c, h); q.has_guarantee()) sum += q.guaranteed;
      }
      if (sum > own.guaranteed) {
        const char* field =
            h == kCpu ? "queue.cpu_quota.guaranteed: " : "queue.memory_quota.guaranteed: ";
        const char* unit = h == kCpu ? "milli-CPU" : "MiB";
        return Status::Invalid(field + head + Amount(sum, unit) + ", more than its " +
                               Amount(own.guaranteed, unit));
      }
    }
    return Status::Ok();
  };
  if (Status s = check(id, spec); !s.ok()) return s;
  if (spec.parent.valid()) return check(spec.parent, queues_[spec.parent.value()].spec);
  return Status::Ok();
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
// counts half as much. In fixed point (see fair_share.h) so that every machine orders
// borrowers alike: decayed = decayed * keep + usage * (1 - keep), with keep in Q32 and
// decayed in Q(kDecayShift) of the resource's unit, so that even a short cycle interval
// against a long half-life moves the history (a plain integer would round that to 0).
void Scheduler::Impl::Decay(Time now) {
  if (!decay_started_) {
    decay_started_ = true;
    last_decay_ = now;
    return;
  }
  Duration dt = now - last_decay_;
  if (dt <= 0) return;
  last_decay_ = now;
  const uint64_t keep = DecayKeepQ32(dt, config_.fair_share_half_life);
  auto step = [keep](int64_t& decayed, int64_t usage) {
    // Usage saturates at 2^40 units (far beyond any cluster) so that it fits in Q20.
    const uint64_t u = static_cast<uint64_t>(std::clamp<int64_t>(usage, 0, int64_t{1} << 40))
                       << kDecayShift;
    decayed = static_cast<int64_t>(MulQ32(static_cast<uint64_t>(decayed), keep) +
                                   MulQ32(u, kOneQ32 - keep));
  };
  for (QueueRec& q : queues_) {
    if (!q.present) continue;
    for (uint32_t m = 0; m < cluster_.model_bound(); ++m) step(q.decayed[m], q.usage[m]);
    for (size_t h = 0; h < q.host_usage.size(); ++h) step(q.host_decayed[h], q.host_usage[h]);
  }
}

// Weighted dominant share: over GPU models, CPU and memory, the largest (current + decayed
// past usage) as a fraction of the cluster's capacity of that resource (DRF), divided by
// the queue's weight. Usage of an inner queue is that of its subtree, so the same number
// compares siblings at every level of the tree.
int64_t Scheduler::Impl::Share(QueueId q) const {
  const QueueRec& r = queues_[q.value()];
  auto use = [](int64_t usage, int64_t decayed) { return usage + (decayed >> kDecayShift); };
  int64_t dominant = 0;
  for (uint32_t m = 0; m < cluster_.model_bound(); ++m) {
    dominant = std::max(
        dominant, RatioPpb(use(r.usage[m], r.decayed[m]), cluster_.capacity_milli(GpuModelId(m))));
  }
  dominant = std::max(
      dominant, RatioPpb(use(r.host_usage[kCpu], r.host_decayed[kCpu]), cluster_.cpu_capacity()));
  dominant = std::max(dominant, RatioPpb(use(r.host_usage[kMemory], r.host_decayed[kMemory]),
                                         cluster_.memory_capacity()));
  // dominant <= 4e9 (RatioPpb saturates), so the product stays below 2^63.
  return dominant * core::kMaxQueueWeight / r.spec.weight;
}

}  // namespace gpuorch::sched
