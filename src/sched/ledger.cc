#include "sched/ledger.h"

#include <algorithm>

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

}  // namespace gpuorch::sched
