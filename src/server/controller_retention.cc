// Retention of finished workloads (config `finished_retention`): past it a Succeeded,
// Failed or Cancelled workload leaves memory and the store, the way Nomad's job GC or
// Kubernetes' ttlSecondsAfterFinished forget finished work. Without it the control plane
// grows with every workload ever submitted.
#include <algorithm>
#include <set>
#include <vector>

#include "server/controller.h"

namespace gpuorch::server {

std::vector<int64_t> Controller::CollectFinished(int64_t now_ms) {
  std::vector<int64_t> collected;
  if (config_.finished_retention_s == 0 || workloads_.empty()) return collected;
  // A scan of every record, so not every cycle: a tenth of the retention, at most a minute.
  const int64_t retention_ms = config_.finished_retention_s * 1000;
  const int64_t every_ms = std::clamp<int64_t>(retention_ms / 10, 1, 60'000);
  if (now_ms < last_collect_ms_ + every_ms) return collected;
  last_collect_ms_ = now_ms;
  // The newest workload stays whatever its age: a restarted server numbers new workloads
  // after the highest id in the store, and an id is never given twice.
  const int64_t newest = workloads_.rbegin()->first;
  std::set<int64_t> queued;  // named by events the engine has not applied yet
  for (const EngineEvent& e : inbox_) queued.insert(e.workload);
  for (auto it = workloads_.begin(); it != workloads_.end();) {
    const WorkloadRecord& w = it->second;
    const int64_t finished = std::max(w.finished_ms, w.submitted_ms);
    if (!w.terminal() || w.id == newest || finished + retention_ms > now_ms || dirty_.count(w.id) ||
        !w.published || queued.count(w.id)) {
      ++it;
      continue;
    }
    Unindex(w);  // tasks an agent never reported stopped are forgotten with it
    unknown_models_.erase(w.id);
    collected.push_back(w.id);
    it = workloads_.erase(it);
  }
  return collected;
}

}  // namespace gpuorch::server
