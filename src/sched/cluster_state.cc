#include "sched/cluster_state.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace gpuorch::sched {

using core::kMilliGpu;
using core::NodeSpec;
using core::Status;

int NodeState::full_free_gpus() const {
  const GpuMask healthy = whole_gpus();
  int n = 0;
  for (int j = 0; j < gpu_count; ++j) n += ((healthy >> j) & 1u) && gpu_free[j] == kMilliGpu;
  return n;
}

int64_t NodeState::idle_milli() const {
  const GpuMask healthy = healthy_gpus();
  int64_t s = 0;
  for (int j = 0; j < gpu_count; ++j) {
    if ((healthy >> j) & 1u) s += gpu_free[j];
  }
  return s;
}

bool NodeState::gpus_in_use() const {
  for (int j = 0; j < gpu_count; ++j) {
    if (gpu_free[j] != kMilliGpu) return true;
  }
  return false;
}

int ShapeTag(const TaskRequest& t) { return t.fractional() ? 0 : t.gpu_count; }

namespace {

GpuMask LessReserved(const NodeState& n, GpuMask all, WorkloadId as, ReservationAccess access) {
  if (n.reserved_gpus == 0 || n.reserved_for == as) return all;
  if (n.reservation_lendable && (access & kUseLent)) return all;
  if (n.reservation_borrowed && (access & kUseBorrowed)) return all;
  return static_cast<GpuMask>(all & ~n.reserved_gpus);
}

}  // namespace

GpuMask UsableGpus(const NodeState& n, WorkloadId as, ReservationAccess access) {
  return LessReserved(n, n.whole_gpus(), as, access);
}

GpuMask MigUsableGpus(const NodeState& n, WorkloadId as, ReservationAccess access) {
  const auto mig = static_cast<GpuMask>(n.mig_gpus & ~n.unhealthy_gpus & ~n.mig_reconfiguring);
  return LessReserved(n, mig, as, access);
}

GpuMask SelectGpusBestFit(const NodeState& n, const TaskRequest& t, GpuMask usable) {
  if (t.gpu_count == 0) return 0;
  if (t.fractional()) {
    int best = -1;
    for (int j = 0; j < n.gpu_count; ++j) {
      if (!((usable >> j) & 1u) || n.gpu_free[j] < t.gpu_milli) continue;
      if (t.gpu_memory_mib > 0 && n.gpu_mem_free[j] < t.gpu_memory_mib) continue;
      if (best < 0 || n.gpu_free[j] < n.gpu_free[best]) best = j;
    }
    return best < 0 ? GpuMask{0} : static_cast<GpuMask>(1u << best);
  }
  auto take = [&](int from, int to) -> GpuMask {
    GpuMask m = 0;
    int taken = 0;
    for (int j = from; j < to && taken < t.gpu_count; ++j) {
      if (!((usable >> j) & 1u) || n.gpu_free[j] != kMilliGpu) continue;
      if (t.gpu_memory_mib > 0 && n.gpu_memory_capacity < t.gpu_memory_mib) continue;
      m = static_cast<GpuMask>(m | (1u << j));
      ++taken;
    }
    return taken == t.gpu_count ? m : GpuMask{0};
  };
  int dom = n.nvlink_domain_gpus;
  if (dom > 0 && dom < n.gpu_count && t.gpu_count <= dom) {
    // Prefer the fullest NVLink domain that can hold the whole task, to keep others whole.
    GpuMask best = 0;
    int best_free = 1 << 30;
    for (int d = 0; d < n.gpu_count; d += dom) {
      GpuMask m = take(d, d + dom);
      if (m == 0) continue;
      int free = 0;
      for (int j = d; j < d + dom; ++j) free += n.gpu_free[j] == kMilliGpu;
      if (free < best_free) best = m, best_free = free;
    }
    if (best != 0) return best;
  }
  return take(0, n.gpu_count);
}

bool Fits(const NodeState& n, const TaskRequest& t, WorkloadId as, ReservationAccess access) {
  return n.schedulable() && FitsHost(n, t) && FitsGpus(n, t, as, access);
}

bool FitsGpus(const NodeState& n, const TaskRequest& t, WorkloadId as, ReservationAccess access) {
  if (t.gpu_count == 0) return true;
  // MIG tasks are placed on instances by the MIG placer (mig_placer.h), never here.
  if (t.sharing == core::Sharing::kMig) return false;
  if (n.gpu_count < t.gpu_count || !t.models.Accepts(n.model)) return false;
  GpuMask usable = UsableGpus(n, as, access);
  int ok = 0;
  for (int j = 0; j < n.gpu_count; ++j) {
    if (!((usable >> j) & 1u) || n.gpu_free[j] < t.gpu_milli) continue;
    // A fraction takes GPU memory; whole GPUs need a GPU with at least that much memory.
    int64_t mem = t.fractional() ? n.gpu_mem_free[j] : n.gpu_memory_capacity;
    if (t.gpu_memory_mib > 0 && mem < t.gpu_memory_mib) continue;
    if (++ok >= t.gpu_count) return true;
  }
  return false;
}

uint32_t ClusterState::InternDomain(std::vector<Domain>& domains,
                                    std::unordered_map<std::string, uint32_t>& ix,
                                    const std::string& name) {
  auto [it, inserted] = ix.emplace(name, static_cast<uint32_t>(domains.size()));
  if (inserted) domains.push_back(Domain{name, {}, {}});
  return it->second;
}

Status ClusterState::AddNode(NodeId id, const NodeSpec& spec) {
  if (!id.valid()) return Status::Invalid("node.id: invalid");
  if (Status s = spec.Validate(); !s.ok()) return s;
  if (Has(id)) return Status::Exists("node " + spec.name + ": already added");
  if (id.value() >= nodes_.size()) {
    nodes_.resize(id.value() + 1);
    mig_.resize(id.value() + 1);
    versions_.resize(id.value() + 1, 0);
    group_of_.resize(id.value() + 1, kNoGroup);
  }
  NodeState& n = nodes_[id.value()];
  n = NodeState{};
  n.id = id;
  n.present = true;
  n.status = spec.status;
  n.model = spec.gpu_model;
  n.gpu_count = static_cast<int8_t>(spec.gpu_count);
  n.nvlink_domain_gpus = static_cast<int8_t>(spec.nvlink_domain_gpus);
  n.zone = InternDomain(zones_, zone_ix_, spec.zone);
  n.rack = InternDomain(racks_, rack_ix_, spec.zone + "/" + spec.rack);
  n.cpu_capacity = n.cpu_free = spec.milli_cpu;
  n.memory_capacity = n.memory_free = spec.memory_mib;
  n.gpu_memory_capacity = spec.gpu_memory_mib;
  n.unhealthy_gpus = spec.unhealthy_gpus;
  n.mig_gpus = spec.mig_gpus;
  for (int j = 0; j < n.gpu_count; ++j) {
    n.gpu_free[j] = kMilliGpu;
    n.gpu_mem_free[j] = spec.gpu_memory_mib;
  }
  mig_[id.value()] = MigNodeState{};
  mig_[id.value()].model = spec.mig_gpus != 0 ? spec.mig_model : nullptr;
  mig_[id.value()].layout = spec.mig_layouts;
  zones_[n.zone].nodes.push_back(id);
  racks_[n.rack].nodes.push_back(id);
  ++node_count_;
  Index(id);
  return Status::Ok();
}

Status ClusterState::CheckUpdate(NodeId id, const NodeSpec& spec) const {
  if (!Has(id)) return Status::NotFound("node " + spec.name + ": unknown");
  if (Status s = spec.Validate(); !s.ok()) return s;
  const NodeState& cur = nodes_[id.value()];
  int64_t cpu_used = cur.cpu_capacity - cur.cpu_free;
  int64_t mem_used = cur.memory_capacity - cur.memory_free;
  // Health is not capacity: a GPU may turn unhealthy (or back) under running tasks.
  bool gpus_in_use = cur.gpus_in_use();
  if (spec.milli_cpu < cpu_used || spec.memory_mib < mem_used) {
    return Status::Precondition("node " + spec.name + ": capacity below what is allocated");
  }
  if (gpus_in_use && (spec.gpu_count != cur.gpu_count || spec.gpu_model != cur.model ||
                      spec.gpu_memory_mib != cur.gpu_memory_capacity)) {
    return Status::Precondition("node " + spec.name + ": GPUs change while GPUs are in use");
  }
  return CheckMigUpdate(id, spec);
}

Status ClusterState::CheckMigUpdate(NodeId id, const NodeSpec& spec) const {
  const NodeState& cur = nodes_[id.value()];
  const MigNodeState& m = mig_[id.value()];
  for (int j = 0; j < cur.gpu_count; ++j) {
    const bool was = (cur.mig_gpus >> j) & 1u, is = (spec.mig_gpus >> j) & 1u;
    const std::string gpu = "node " + spec.name + ": GPU " + std::to_string(j);
    if (was != is && cur.gpu_free[j] != kMilliGpu) {
      return Status::Precondition(gpu + " changes MIG mode while tasks use it");
    }
    if (!was || !is || m.busy[j] == 0) continue;
    if (spec.mig_model != m.model) {
      return Status::Precondition(gpu + " changes MIG profiles while instances hold tasks");
    }
    for (const core::MigInstance& i : m.layout[j].view()) {
      if (!((m.busy[j] >> i.start) & 1u)) continue;
      const auto kept = spec.mig_layouts[j].view();
      if (std::find(kept.begin(), kept.end(), i) == kept.end()) {
        return Status::Precondition(gpu + " drops the MIG instance " +
                                    std::string(m.model->profiles[i.profile].name) + "@" +
                                    std::to_string(i.start) + " that a task holds");
      }
    }
  }
  return Status::Ok();
}

Status ClusterState::UpdateNode(NodeId id, const NodeSpec& spec) {
  if (Status s = CheckUpdate(id, spec); !s.ok()) return s;
  const NodeState& cur = nodes_[id.value()];
  int64_t cpu_used = cur.cpu_capacity - cur.cpu_free;
  int64_t mem_used = cur.memory_capacity - cur.memory_free;
  bool gpus_in_use = cur.gpus_in_use();
  // Re-adding keeps the code path single; carry allocations over.
  NodeState old = cur;
  const MigNodeState old_mig = mig_[id.value()];
  if (Status s = RemoveNode(id); !s.ok()) return s;
  if (Status s = AddNode(id, spec); !s.ok()) return s;
  Unindex(id);
  NodeState& n = nodes_[id.value()];
  n.cpu_free = spec.milli_cpu - cpu_used;
  n.memory_free = spec.memory_mib - mem_used;
  if (gpus_in_use) {
    n.gpu_free = old.gpu_free;
    n.gpu_mem_free = old.gpu_mem_free;
  }
  n.tag_counts = old.tag_counts;
  n.reserved_gpus = old.reserved_gpus;
  n.reserved_for = old.reserved_for;
  n.reservation_lendable = old.reservation_lendable;
  n.reservation_borrowed = old.reservation_borrowed;
  // MIG: instances keep their tasks; a GPU whose layout change is under way finishes it when
  // the spec shows the target, and otherwise stays as it was until MigLayoutApplied.
  MigNodeState& m = mig_[id.value()];
  for (int j = 0; j < n.gpu_count; ++j) {
    if (!((n.mig_gpus >> j) & 1u) || !((old.mig_gpus >> j) & 1u)) continue;
    m.busy[j] = old_mig.busy[j];
    if (!((old.mig_reconfiguring >> j) & 1u)) continue;
    if (spec.mig_layouts[j] == old_mig.target[j]) continue;  // applied
    m.layout[j] = old_mig.layout[j];
    m.target[j] = old_mig.target[j];
    n.mig_reconfiguring |= static_cast<GpuMask>(1u << j);
  }
  Index(id);
  return Status::Ok();
}

Status ClusterState::RemoveNode(NodeId id) {
  if (!Has(id)) return Status::NotFound("node id " + std::to_string(id.value()) + ": unknown");
  Unindex(id);
  NodeState& n = nodes_[id.value()];
  auto erase = [&](std::vector<NodeId>& v) { v.erase(std::find(v.begin(), v.end(), id)); };
  erase(zones_[n.zone].nodes);
  erase(racks_[n.rack].nodes);
  n.present = false;
  --node_count_;
  return Status::Ok();
}

void ClusterState::SetStatus(NodeId id, core::NodeStatus status) {
  Unindex(id);
  nodes_[id.value()].status = status;
  Index(id);
}

void ClusterState::Allocate(NodeId id, const TaskRequest& t, GpuMask mask, int mig_start) {
  Unindex(id);
  NodeState& n = nodes_[id.value()];
  n.cpu_free -= t.milli_cpu;
  n.memory_free -= t.memory_mib;
  GPUORCH_CHECK(n.cpu_free >= 0 && n.memory_free >= 0);
  GPUORCH_CHECK(std::popcount(mask) == t.gpu_count);
  if (mig_start >= 0) {  // its instance holds it now; the instance has its own memory
    uint8_t& busy = mig_[id.value()].busy[std::countr_zero(mask)];
    GPUORCH_CHECK((n.mig_gpus & mask) && !((busy >> mig_start) & 1u));
    busy = static_cast<uint8_t>(busy | (1u << mig_start));
  }
  for (int j = 0; j < n.gpu_count; ++j) {
    if (!((mask >> j) & 1u)) continue;
    n.gpu_free[j] = static_cast<int16_t>(n.gpu_free[j] - t.gpu_milli);
    if (mig_start < 0)
      n.gpu_mem_free[j] = t.fractional() ? n.gpu_mem_free[j] - t.gpu_memory_mib : 0;
    GPUORCH_CHECK(n.gpu_free[j] >= 0 && n.gpu_mem_free[j] >= 0);
  }
  if (t.gpu_count > 0) ++n.tag_counts[ShapeTag(t)];
  Index(id);
}

void ClusterState::Release(NodeId id, const TaskRequest& t, GpuMask mask, int mig_start) {
  Unindex(id);
  NodeState& n = nodes_[id.value()];
  n.cpu_free += t.milli_cpu;
  n.memory_free += t.memory_mib;
  GPUORCH_CHECK(n.cpu_free <= n.cpu_capacity && n.memory_free <= n.memory_capacity);
  if (mig_start >= 0) {
    uint8_t& busy = mig_[id.value()].busy[std::countr_zero(mask)];
    GPUORCH_CHECK((busy >> mig_start) & 1u);
    busy = static_cast<uint8_t>(busy & ~(1u << mig_start));
  }
  for (int j = 0; j < n.gpu_count; ++j) {
    if (!((mask >> j) & 1u)) continue;
    n.gpu_free[j] = static_cast<int16_t>(n.gpu_free[j] + t.gpu_milli);
    if (mig_start < 0) {
      n.gpu_mem_free[j] =
          t.fractional() ? n.gpu_mem_free[j] + t.gpu_memory_mib : n.gpu_memory_capacity;
    }
    GPUORCH_CHECK(n.gpu_free[j] <= kMilliGpu);
  }
  if (t.gpu_count > 0) {
    GPUORCH_CHECK(n.tag_counts[ShapeTag(t)] > 0);
    --n.tag_counts[ShapeTag(t)];
  }
  Index(id);
}

void ClusterState::BeginMigReconfig(NodeId id, int gpu, const core::MigLayout& target) {
  Unindex(id);
  NodeState& n = nodes_[id.value()];
  MigNodeState& m = mig_[id.value()];
  GPUORCH_CHECK(((n.mig_gpus >> gpu) & 1u) && !((n.mig_reconfiguring >> gpu) & 1u));
  m.target[gpu] = target;
  n.mig_reconfiguring = static_cast<GpuMask>(n.mig_reconfiguring | (1u << gpu));
  Index(id);
}

Status ClusterState::MigLayoutApplied(NodeId id, int gpu, const core::MigLayout& layout) {
  if (!Has(id)) return Status::NotFound("node id " + std::to_string(id.value()) + ": unknown");
  NodeState& n = nodes_[id.value()];
  MigNodeState& m = mig_[id.value()];
  const std::string where =
      "node id " + std::to_string(id.value()) + ": GPU " + std::to_string(gpu);
  if (gpu < 0 || gpu >= n.gpu_count || !((n.mig_gpus >> gpu) & 1u)) {
    return Status::Invalid(where + ": not in MIG mode");
  }
  if (Status s = core::ValidateLayout(*m.model, layout); !s.ok()) {
    return Status::Invalid(where + ": " + s.message());
  }
  for (const core::MigInstance& i : m.layout[gpu].view()) {
    const auto kept = layout.view();
    if (((m.busy[gpu] >> i.start) & 1u) && std::find(kept.begin(), kept.end(), i) == kept.end()) {
      return Status::Precondition(where + ": the layout drops an instance a task holds");
    }
  }
  Unindex(id);
  m.layout[gpu] = layout;
  n.mig_reconfiguring = static_cast<GpuMask>(n.mig_reconfiguring & ~(1u << gpu));
  Index(id);
  return Status::Ok();
}

void ClusterState::Reserve(NodeId id, GpuMask gpus, WorkloadId holder, bool lendable,
                           bool borrowed) {
  Unindex(id);
  NodeState& n = nodes_[id.value()];
  n.reserved_gpus = gpus;
  n.reserved_for = holder;
  n.reservation_lendable = lendable;
  n.reservation_borrowed = borrowed;
  Index(id);
}

void ClusterState::ClearReservation(NodeId id) { Reserve(id, 0, WorkloadId(), false); }

int64_t ClusterState::capacity_milli(GpuModelId m) const {
  return m.value() < model_capacity_.size() ? model_capacity_[m.value()] : 0;
}

int64_t ClusterState::free_milli(GpuModelId m) const {
  return m.value() < model_free_.size() ? model_free_[m.value()] : 0;
}

std::string ClusterState::GroupKey(const NodeState& n) const {
  // Everything of the GPU state a policy may read, with GPUs sorted: scores depend on the
  // multiset of GPU states, and GPU choice is made on the real node afterwards. Free CPU and
  // memory are indexed inside the group instead.
  std::array<std::pair<int16_t, int64_t>, core::kMaxGpusPerNode> gpus{};
  for (int j = 0; j < n.gpu_count; ++j) gpus[j] = {n.gpu_free[j], n.gpu_mem_free[j]};
  // A reservation or an unhealthy GPU excludes GPUs by index: which GPUs are free then
  // matters to the fit, so the order is kept (and the mask is part of the key).
  // MIG layouts are per GPU index too.
  if (n.reserved_gpus == 0 && n.unhealthy_gpus == 0 && n.mig_gpus == 0) {
    std::sort(gpus.begin(), gpus.begin() + n.gpu_count);
  }
  std::string key;
  key.reserve(64 + 10 * n.gpu_count);
  auto put = [&key](const auto& v) { key.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
  put(n.model);
  put(n.gpu_count);
  put(n.nvlink_domain_gpus);
  put(n.gpu_memory_capacity);
  put(n.tag_counts);
  put(n.reserved_gpus);
  put(n.reserved_for);
  put(n.reservation_lendable);
  put(n.reservation_borrowed);
  put(n.unhealthy_gpus);
  for (int j = 0; j < n.gpu_count; ++j) put(gpus[j]);
  if (n.mig_gpus != 0) {
    const MigNodeState& m = mig_[n.id.value()];
    put(m.model);
    put(n.mig_gpus);
    put(n.mig_reconfiguring);
    for (int j = 0; j < n.gpu_count; ++j) {
      if (!((n.mig_gpus >> j) & 1u)) continue;
      put(m.busy[j]);
      put(m.layout[j].count);
      for (const core::MigInstance& i : m.layout[j].view()) put(i);
    }
  }
  return key;
}

void ClusterState::Unindex(NodeId id) {
  NodeState& n = nodes_[id.value()];
  ++versions_[id.value()];
  ++clock_;
  if (!n.schedulable()) return;
  racks_[n.rack].free_hist[n.full_free_gpus()]--;
  zones_[n.zone].free_hist[n.full_free_gpus()]--;
  cpu_capacity_ -= n.cpu_capacity;
  memory_capacity_ -= n.memory_capacity;
  if (n.model.valid()) {
    model_capacity_[n.model.value()] -= int64_t{std::popcount(n.healthy_gpus())} * kMilliGpu;
    model_free_[n.model.value()] -= n.idle_milli();
  }
  uint32_t g = group_of_[id.value()];
  Group& group = groups_[g];
  group.members.erase(id.value());
  group.by_cpu.erase({n.cpu_free, id.value()});
  group.memory_free.erase(group.memory_free.find(n.memory_free));
  if (!group.members.empty()) {
    group.max_cpu = group.by_cpu.rbegin()->first;
    group.max_memory = *group.memory_free.rbegin();
  }
  if (group.members.empty()) {
    uint32_t last = active_groups_.back();
    active_groups_[group.active_index] = last;
    groups_[last].active_index = group.active_index;
    active_groups_.pop_back();
    group_ix_.erase(group.key);
    free_groups_.push_back(g);
  }
  group_of_[id.value()] = kNoGroup;
}

void ClusterState::Index(NodeId id) {
  NodeState& n = nodes_[id.value()];
  if (!n.schedulable()) return;
  racks_[n.rack].free_hist[n.full_free_gpus()]++;
  zones_[n.zone].free_hist[n.full_free_gpus()]++;
  cpu_capacity_ += n.cpu_capacity;
  memory_capacity_ += n.memory_capacity;
  if (n.model.valid()) {
    if (n.model.value() >= model_capacity_.size()) {
      model_capacity_.resize(n.model.value() + 1, 0);
      model_free_.resize(n.model.value() + 1, 0);
    }
    model_capacity_[n.model.value()] += int64_t{std::popcount(n.healthy_gpus())} * kMilliGpu;
    model_free_[n.model.value()] += n.idle_milli();
  }
  std::string key = GroupKey(n);
  auto it = group_ix_.find(key);
  uint32_t g;
  if (it != group_ix_.end()) {
    g = it->second;
  } else {
    if (!free_groups_.empty()) {
      g = free_groups_.back();
      free_groups_.pop_back();
    } else {
      g = static_cast<uint32_t>(groups_.size());
      groups_.emplace_back();
    }
    groups_[g].key = key;
    groups_[g].model = n.model;
    groups_[g].gpu_count = n.gpu_count;
    groups_[g].full_free_gpus = static_cast<int8_t>(n.full_free_gpus());
    groups_[g].mig_gpus = n.mig_gpus;
    groups_[g].max_gpu_free = 0;
    for (int j = 0; j < n.gpu_count; ++j) {
      if ((n.unhealthy_gpus >> j) & 1u) continue;
      groups_[g].max_gpu_free = std::max(groups_[g].max_gpu_free, n.gpu_free[j]);
    }
    groups_[g].max_cpu = groups_[g].max_memory = INT64_MIN;
    groups_[g].slot = g;
    groups_[g].generation = ++generations_;
    groups_[g].active_index = static_cast<uint32_t>(active_groups_.size());
    active_groups_.push_back(g);
    group_ix_.emplace(std::move(key), g);
  }
  Group& group = groups_[g];
  group.members.insert(id.value());
  group.by_cpu.emplace(n.cpu_free, id.value());
  group.memory_free.insert(n.memory_free);
  group.max_cpu = std::max(group.max_cpu, n.cpu_free);
  group.max_memory = std::max(group.max_memory, n.memory_free);
  group_of_[id.value()] = g;
}

NodeId ClusterState::LowestFitting(const Group& g, int64_t cpu, int64_t memory) const {
  if (g.max_cpu_free() < cpu || g.max_memory_free() < memory) return NodeId();
  // In id order first: usually one of the first members fits. The walk is bounded, then
  // every member with enough CPU is looked at (in CPU order, keeping the lowest id).
  constexpr int kWalk = 16;
  int walked = 0;
  for (auto it = g.members.begin(); it != g.members.end() && walked < kWalk; ++it, ++walked) {
    const NodeState& n = nodes_[*it];
    if (n.cpu_free >= cpu && n.memory_free >= memory) return n.id;
  }
  if (walked == static_cast<int>(g.members.size())) return NodeId();
  uint32_t best = UINT32_MAX;
  for (auto it = g.by_cpu.lower_bound({cpu, 0}); it != g.by_cpu.end(); ++it) {
    if (it->second < best && nodes_[it->second].memory_free >= memory) best = it->second;
  }
  return best == UINT32_MAX ? NodeId() : NodeId(best);
}

}  // namespace gpuorch::sched
