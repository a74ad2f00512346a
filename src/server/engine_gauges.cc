#include "server/engine_gauges.h"

#include <bit>
#include <tuple>

#include "sched/policy/fragmentation.h"

namespace gpuorch::server {

namespace {

bool HeldByQuota(sched::PendingReason r) {
  return r == sched::PendingReason::kWaitingForQuota || r == sched::PendingReason::kOverLimit;
}

bool SameShape(const core::TaskRequest& a, const core::TaskRequest& b) {
  return std::tie(a.gpu_count, a.gpu_milli, a.gpu_memory_mib, a.milli_cpu, a.memory_mib) ==
             std::tie(b.gpu_count, b.gpu_milli, b.gpu_memory_mib, b.milli_cpu, b.memory_mib) &&
         a.models == b.models;
}

}  // namespace

std::vector<ModelGauges> ComputeModelGauges(const sched::ClusterState& cluster, size_t models,
                                            const std::vector<PendingWork>& pending,
                                            const std::vector<sched::TypicalTask>& mix) {
  std::vector<ModelGauges> out(models);
  // The distinct shapes of runnable pending GPU work, and per model the GPUs it asks for.
  std::vector<core::TaskRequest> shapes;
  std::vector<int64_t> asked(models, 0);
  for (const PendingWork& p : pending) {
    if (HeldByQuota(p.reason) || p.task.gpu_count <= 0) continue;
    for (size_t m = 0; m < models; ++m) {
      if (p.task.models.Accepts(core::GpuModelId(static_cast<uint32_t>(m)))) {
        asked[m] += int64_t{p.tasks} * p.task.gpu_count;
      }
    }
    if (shapes.size() >= kMaxShapes) continue;
    bool seen = false;
    for (const core::TaskRequest& s : shapes) seen = seen || SameShape(s, p.task);
    if (!seen) shapes.push_back(p.task);
  }
  std::vector<int64_t> idle(models, 0);
  for (const sched::NodeState& n : cluster.nodes()) {
    if (!n.present || n.model.value() >= models) continue;
    ModelGauges& g = out[n.model.value()];
    if (n.status == core::NodeStatus::kDown) {
      g.down += n.gpu_count;
      continue;
    }
    sched::GpuMask free_mask = 0;
    for (int j = 0; j < n.gpu_count; ++j) {
      g.allocated_milli += core::kMilliGpu - n.gpu_free[j];
      if (n.gpu_free[j] == core::kMilliGpu) {
        free_mask |= static_cast<sched::GpuMask>(1u << j);
      } else {
        ++g.allocated;
      }
    }
    const int free_count = std::popcount(static_cast<unsigned>(free_mask));
    if (!n.schedulable()) {
      g.draining += free_count;
      continue;
    }
    g.free += free_count;
    for (const sched::TypicalTask& t : mix) {
      g.fragmented_milli += t.weight * static_cast<double>(sched::TaskFragment(n, t.task));
    }
    // Usable by anyone but a reservation's holder: unreserved GPUs and lendable ones.
    const sched::GpuMask usable =
        free_mask & sched::UsableGpus(n, core::WorkloadId(), sched::kUseLent);
    if (usable == 0) continue;
    for (const core::TaskRequest& s : shapes) {
      if (sched::Fits(n, s, core::WorkloadId(), sched::kUseLent)) {
        idle[n.model.value()] += std::popcount(static_cast<unsigned>(usable));
        break;
      }
    }
  }
  for (size_t m = 0; m < models; ++m) out[m].idle_while_waiting = std::min(idle[m], asked[m]);
  return out;
}

}  // namespace gpuorch::server
