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
  struct Shape {
    core::TaskRequest task;
    core::WorkloadId first;  // a workload of this shape, and how many there are
    int64_t workloads = 0;
  };
  std::vector<Shape> shapes;
  std::vector<int64_t> asked(models, 0);
  for (const PendingWork& p : pending) {
    if (HeldByQuota(p.reason) || p.task.gpu_count <= 0) continue;
    for (size_t m = 0; m < models; ++m) {
      if (p.task.models.Accepts(core::GpuModelId(static_cast<uint32_t>(m)))) {
        asked[m] += int64_t{p.tasks} * p.task.gpu_count;
      }
    }
    bool seen = false;
    for (Shape& s : shapes) {
      if (!SameShape(s.task, p.task)) continue;
      ++s.workloads;
      seen = true;
      break;
    }
    if (!seen && shapes.size() < kMaxShapes) shapes.push_back(Shape{p.task, p.id, 1});
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
      if (n.gpu_free[j] == core::kMilliGpu && ((n.unhealthy_gpus >> j) & 1u)) {
        ++g.unhealthy;
      } else if (n.gpu_free[j] == core::kMilliGpu) {
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
    // A reserved GPU is idle for its holder's sake, unless the reservation is lendable and
    // someone else's task fits: the holder alone gathering capacity is a policy decision.
    const sched::GpuMask unreserved = free_mask & static_cast<sched::GpuMask>(~n.reserved_gpus);
    const sched::GpuMask lendable =
        free_mask & sched::UsableGpus(n, core::WorkloadId(), sched::kUseLent);
    sched::GpuMask counted = 0;
    for (const Shape& s : shapes) {
      if (counted == lendable) break;
      if (!sched::Fits(n, s.task, core::WorkloadId(), sched::kUseLent)) continue;
      const bool other = s.workloads > 1 || s.first != n.reserved_for;
      counted |= other ? lendable : unreserved;
    }
    idle[n.model.value()] += std::popcount(static_cast<unsigned>(counted));
  }
  for (size_t m = 0; m < models; ++m) out[m].idle_while_waiting = std::min(idle[m], asked[m]);
  return out;
}

}  // namespace gpuorch::server
