#include "sched/ledger.h"

#include <algorithm>
#include <utility>

#include "core/status.h"

namespace gpuorch::sched {

void VictimLedger::Link(WorkloadId preemptor, WorkloadId victim, int32_t task) {
  const uint64_t key = Key(victim, task);
  auto [it, inserted] = by_task_.emplace(key, preemptor);
  GPUORCH_CHECK(inserted);  // a task stops for one preemptor only
  by_preemptor_[preemptor].push_back(key);
}

VictimLedger::WorkloadId VictimLedger::Unlink(WorkloadId victim, int32_t task) {
  auto it = by_task_.find(Key(victim, task));
  if (it == by_task_.end()) return WorkloadId();
  const WorkloadId p = it->second;
  by_task_.erase(it);
  auto pit = by_preemptor_.find(p);
  if (pit != by_preemptor_.end()) {
    std::erase(pit->second, Key(victim, task));
    if (pit->second.empty()) by_preemptor_.erase(pit);
  }
  return p;
}

VictimLedger::WorkloadId VictimLedger::PreemptorOf(WorkloadId victim, int32_t task) const {
  auto it = by_task_.find(Key(victim, task));
  return it == by_task_.end() ? WorkloadId() : it->second;
}

int32_t VictimLedger::Leaving(WorkloadId preemptor) const {
  auto it = by_preemptor_.find(preemptor);
  return it == by_preemptor_.end() ? 0 : static_cast<int32_t>(it->second.size());
}

void VictimLedger::Forget(WorkloadId preemptor) {
  auto it = by_preemptor_.find(preemptor);
  if (it == by_preemptor_.end()) return;
  for (uint64_t key : it->second) by_task_.erase(key);
  by_preemptor_.erase(it);
}

void Ledger::AddClaim(WorkloadId w, QueueId q, GpuModelId m, int64_t milli) {
  Unclaim(w);
  claims_[w] = ClaimRec{q, m, milli};
  if (q.value() >= claimed_.size()) claimed_.resize(q.value() + 1);
  claimed_[q.value()][m.value()] += milli;
}

void Ledger::Unclaim(WorkloadId w) {
  auto it = claims_.find(w);
  if (it == claims_.end()) return;
  claimed_[it->second.queue.value()][it->second.model.value()] -= it->second.milli;
  claims_.erase(it);
}

ClaimRec Ledger::ClaimOf(WorkloadId w) const {
  auto it = claims_.find(w);
  return it == claims_.end() ? ClaimRec{} : it->second;
}

int64_t Ledger::Claimed(QueueId q, GpuModelId m) const {
  return q.value() < claimed_.size() ? claimed_[q.value()][m.value()] : 0;
}

int64_t Ledger::claimed_total() const {
  int64_t total = 0;
  for (const auto& per_model : claimed_) {
    for (int64_t c : per_model) total += c;
  }
  return total;
}

const Hold& Ledger::HoldOf(WorkloadId w) const {
  static const Hold kNoHold;
  auto it = holds_.find(w);
  return it == holds_.end() ? kNoHold : it->second;
}

void Ledger::HoldHeadOfLine(WorkloadId w, std::vector<NodeId> nodes, core::Time eta, GpuModelId m,
                            bool in_quota, bool lends) {
  for (NodeId id : nodes) {
    // Unhealthy GPUs are nobody's room, and MIG GPUs no head-of-line gang's: not held.
    cluster_.Reserve(id, cluster_.node(id).whole_gpus(), w, lends, !in_quota);
  }
  Hold& h = holds_[w];
  h.kind = HoldKind::kHeadOfLine;
  h.nodes = std::move(nodes);
  h.eta = eta;
  h.in_quota = in_quota;
  h.model = m;
  h.lends = lends;
  holders_.push_back(w);
  ++holders_per_model_[m.value()];
}

bool Ledger::HoldGpus(WorkloadId w, NodeId node, GpuMask gpus) {
  const NodeState& n = cluster_.node(node);
  if (n.reserved_for.valid() && n.reserved_for != w) {
    // A preemptor's claim outranks a lendable head-of-line reservation (the holder plans
    // again); another preemptor's hold stands.
    if (!n.reservation_lendable) return false;
    Release(n.reserved_for);
    if (n.reserved_gpus != 0) cluster_.ClearReservation(node);
  }
  const GpuMask held = n.reserved_for == w ? n.reserved_gpus : GpuMask{0};
  cluster_.Reserve(node, static_cast<GpuMask>(held | gpus), w, false);
  std::vector<NodeId>& nodes = holds_[w].nodes;
  if (std::find(nodes.begin(), nodes.end(), node) == nodes.end()) nodes.push_back(node);
  return true;
}

void Ledger::StartPreemption(WorkloadId w) {
  if (KindOf(w) == HoldKind::kHeadOfLine) Release(w);  // the victims' GPUs are held instead
  holds_[w].kind = HoldKind::kPreemption;
}

void Ledger::MarkPreemptor(WorkloadId w) {
  Hold& h = holds_[w];
  if (h.kind == HoldKind::kNone) h.kind = HoldKind::kPreemption;
}

void Ledger::Release(WorkloadId w) {
  auto it = holds_.find(w);
  if (it == holds_.end()) return;
  for (NodeId n : it->second.nodes) {
    if (cluster_.Has(n) && cluster_.node(n).reserved_for == w) cluster_.ClearReservation(n);
  }
  if (it->second.kind == HoldKind::kHeadOfLine) {
    std::erase(holders_, w);
    --holders_per_model_[it->second.model.value()];
  }
  holds_.erase(it);
}

void Ledger::SetLending(WorkloadId h, bool on) {
  for (NodeId n : HoldOf(h).nodes) {
    const NodeState& s = cluster_.node(n);
    if (s.reserved_for == h && s.reservation_lendable != on) {
      cluster_.Reserve(n, s.reserved_gpus, h, on, s.reservation_borrowed);
    }
  }
}

void Ledger::StopLending(WorkloadId h) {
  if (auto it = holds_.find(h); it != holds_.end()) it->second.lends = false;
  SetLending(h, false);
}

void Ledger::GpusRecovered(NodeId id) {
  const NodeState& n = cluster_.node(id);
  if (!n.reserved_for.valid() || KindOf(n.reserved_for) != HoldKind::kHeadOfLine) return;
  const GpuMask held = static_cast<GpuMask>(n.reserved_gpus | n.whole_gpus());
  cluster_.Reserve(id, held, n.reserved_for, n.reservation_lendable, n.reservation_borrowed);
}

void Ledger::LoseNode(NodeId id) {
  const NodeState& n = cluster_.node(id);
  if (n.reserved_gpus == 0) return;
  if (auto it = holds_.find(n.reserved_for); it != holds_.end()) {
    if (it->second.kind == HoldKind::kHeadOfLine) {
      Release(n.reserved_for);
    } else {
      std::erase(it->second.nodes, id);
    }
  }
  if (cluster_.node(id).reserved_gpus != 0) cluster_.ClearReservation(id);
}

}  // namespace gpuorch::sched
