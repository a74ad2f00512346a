#include "server/engine_gauges.h"

#include <algorithm>
#include <bit>
#include <tuple>

#include "core/mig.h"
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

std::vector<MigGauges> ComputeMigGauges(const sched::ClusterState& cluster, size_t models,
                                        const std::vector<PendingWork>& pending) {
  std::vector<MigGauges> out(models);
  // The live mix per MIG table: profiles held by tasks, and those pending requests map to.
  std::map<const core::MigModel*, std::array<int64_t, 8>> mix;
  for (const sched::NodeState& n : cluster.nodes()) {
    if (!n.present || n.mig_gpus == 0 || n.model.value() >= models) continue;
    const sched::MigNodeState& m = cluster.mig(n.id);
    if (m.model == nullptr) continue;
    MigGauges& g = out[n.model.value()];
    g.any = true;
    auto& weights = mix[m.model];
    for (int j = 0; j < n.gpu_count; ++j) {
      if (!((n.mig_gpus >> j) & 1u)) continue;
      for (const core::MigInstance& i : m.layout[j].view()) {
        const bool used = (m.busy[j] >> i.start) & 1u;
        ++g.instances[std::string(m.model->profiles[i.profile].name)][used ? 0 : 1];
        if (used) ++weights[i.profile];
      }
      if (!((n.mig_reconfiguring >> j) & 1u)) continue;
      for (const core::MigInstance& i : m.target[j].view()) {
        const auto have = m.layout[j].view();
        if (std::find(have.begin(), have.end(), i) == have.end()) {
          ++g.instances[std::string(m.model->profiles[i.profile].name)][2];
        }
      }
    }
  }
  for (auto& [table, weights] : mix) {
    for (const PendingWork& p : pending) {
      if (!p.task.mig()) continue;
      const int prof = core::ProfileFor(*table, p.task.mig_compute, p.task.gpu_memory_mib);
      if (prof >= 0) ++weights[prof];
    }
    if (std::all_of(weights.begin(), weights.end(), [](int64_t w) { return w == 0; })) {
      std::fill(weights.begin(), weights.begin() + static_cast<long>(table->profiles.size()), 1);
    }
  }
  for (const sched::NodeState& n : cluster.nodes()) {
    if (!n.schedulable() || n.mig_gpus == 0 || n.model.value() >= models) continue;
    const sched::MigNodeState& m = cluster.mig(n.id);
    if (m.model == nullptr) continue;
    const auto& weights = mix[m.model];
    for (int j = 0; j < n.gpu_count; ++j) {
      if (!((n.mig_gpus >> j) & 1u)) continue;
      core::MigLayout held;
      for (const core::MigInstance& i : m.layout[j].view()) {
        if ((m.busy[j] >> i.start) & 1u) core::MigAdd(held, i.profile, i.start);
      }
      const int free = core::kMigComputeSlices - core::MigUsedCompute(*m.model, held);
      int best = 0;
      for (size_t p = 0; p < m.model->profiles.size(); ++p) {
        if (weights[p] != 0) {
          best = std::max(best, core::MigPackableCompute(*m.model, held, static_cast<int>(p)));
        }
      }
      out[n.model.value()].fragmented_slices += free - best;
    }
  }
  return out;
}

}  // namespace gpuorch::server
