// Static feasibility: whether a workload could run if the cluster were empty, as its
// schedulable nodes are now. Work that cannot is Unschedulable: it waits for the cluster to
// change (a node joins, comes back or grows) without preempting, reserving or holding back
// elastic growth, the way kube-scheduler's UnschedulableAndUnresolvable keeps an impossible
// pod from blocking the queue.
//
// Nodes are summarised into capacity types (model, healthy GPUs, NVLink domain, CPU, memory,
// GPU memory) counted per cluster, rack and zone, rebuilt when the node set changes, so that
// a check costs O(types) (O(racks x types) for a rack-bound gang), not O(nodes).
#include <algorithm>
#include <bit>
#include <map>
#include <tuple>

#include "sched/scheduler_impl.h"

namespace gpuorch::sched {

namespace {

constexpr int64_t kMany = int64_t{1} << 40;

int64_t Per(int64_t capacity, int64_t ask) { return ask > 0 ? capacity / ask : kMany; }

// The most healthy GPUs of n inside one NVLink domain (all of n's if it has one domain).
int HealthyPerNvlinkDomain(const NodeState& n) {
  const int dom = n.nvlink_domain_gpus > 0 ? n.nvlink_domain_gpus : n.gpu_count;
  const GpuMask healthy = n.whole_gpus();  // MIG GPUs hold no whole-GPU or fractional work
  int best = 0;
  for (int d = 0; d < n.gpu_count; d += dom) {
    const unsigned domain_mask = ((1u << dom) - 1u) << d;
    best = std::max(best, std::popcount(healthy & domain_mask));
  }
  return best;
}

}  // namespace

// How many tasks of shape t one empty node of type `c` holds (0 if none).
int64_t Scheduler::Impl::CapacityType::Holds(const TaskRequest& t) const {
  int64_t n = std::min(Per(cpu, t.milli_cpu), Per(memory, t.memory_mib));
  if (t.gpu_count == 0) return n;
  if (!t.models.Accepts(model) || gpus < t.gpu_count) return 0;
  if (t.fractional()) {
    int64_t per_gpu =
        std::min<int64_t>(core::kMilliGpu / t.gpu_milli, Per(gpu_memory, t.gpu_memory_mib));
    return std::min(n, per_gpu * gpus);
  }
  if (t.gpu_memory_mib > 0 && gpu_memory < t.gpu_memory_mib) return 0;
  return std::min<int64_t>(n, gpus / t.gpu_count);
}

void Scheduler::Impl::SummariseCapacity() {
  if (capacity_version_ == nodes_version_) return;
  capacity_version_ = nodes_version_;
  using Key = std::tuple<uint32_t, int, int, int64_t, int64_t, int64_t>;
  std::map<Key, int64_t> all;
  std::vector<std::map<Key, int64_t>> racks(cluster_.rack_count()), zones(cluster_.zone_count());
  for (const NodeState& n : cluster_.nodes()) {
    if (!n.schedulable()) continue;
    // An unhealthy GPU is no capacity: work that fits only with it is Unschedulable. Nor
    // is a GPU in MIG mode for the work this check serves (MIG requests skip it).
    const int healthy = std::popcount(n.whole_gpus());
    Key k{n.model.value(), healthy,           HealthyPerNvlinkDomain(n),
          n.cpu_capacity,  n.memory_capacity, n.gpu_memory_capacity};
    ++all[k];
    ++racks[n.rack][k];
    ++zones[n.zone][k];
  }
  auto flatten = [](const std::map<Key, int64_t>& from) {
    std::vector<CapacityType> out;
    for (const auto& [k, count] : from) {
      out.push_back(CapacityType{GpuModelId(std::get<0>(k)), std::get<1>(k), std::get<2>(k),
                                 std::get<3>(k), std::get<4>(k), std::get<5>(k), count});
    }
    return out;
  };
  types_ = flatten(all);
  rack_types_.clear();
  zone_types_.clear();
  for (const auto& r : racks) rack_types_.push_back(flatten(r));
  for (const auto& z : zones) zone_types_.push_back(flatten(z));
}

bool Scheduler::Impl::FitsEmptyCluster(WorkloadRec& w) {
  if (w.feasible_version == nodes_version_) return w.feasible;
  SummariseCapacity();
  const TaskRequest& t = w.spec.task;
  const int64_t need = w.spec.min_tasks;
  const core::TopologyLevel level =
      w.spec.topology.required ? w.spec.topology.level : core::TopologyLevel::kCluster;
  // The tasks one domain holds, counting one GPU model at a time (a gang runs on one).
  auto domain_holds = [&](const std::vector<CapacityType>& types) {
    std::map<uint32_t, int64_t> per_model;
    int64_t best = 0;
    for (const CapacityType& c : types) {
      int64_t& n = per_model[t.gpu_count > 0 ? c.model.value() : 0];
      n = std::min(kMany, n + c.count * c.Holds(t));
      best = std::max(best, n);
    }
    return best;
  };
  bool ok = false;
  if (level == core::TopologyLevel::kNvlink && t.gpu_count > 0 && !t.fractional()) {
    // Every task on one node, all GPUs inside one NVLink domain.
    TaskRequest whole = t;
    whole.gpu_count = t.gpu_count * w.spec.min_tasks;
    whole.milli_cpu = t.milli_cpu * need;
    whole.memory_mib = t.memory_mib * need;
    ok = whole.gpu_count <= core::kMaxGpusPerNode &&
         std::any_of(types_.begin(), types_.end(), [&](const CapacityType& c) {
           return c.nvlink >= whole.gpu_count && c.Holds(whole) >= 1;
         });
  } else if (level >= core::TopologyLevel::kNode) {
    ok = std::any_of(types_.begin(), types_.end(),
                     [&](const CapacityType& c) { return c.Holds(t) >= need; });
  } else if (level == core::TopologyLevel::kRack) {
    ok = std::any_of(rack_types_.begin(), rack_types_.end(),
                     [&](const auto& types) { return domain_holds(types) >= need; });
  } else if (level == core::TopologyLevel::kZone) {
    ok = std::any_of(zone_types_.begin(), zone_types_.end(),
                     [&](const auto& types) { return domain_holds(types) >= need; });
  } else {
    ok = domain_holds(types_) >= need;
  }
  w.feasible_version = nodes_version_;
  w.feasible = ok;
  return ok;
}

}  // namespace gpuorch::sched
