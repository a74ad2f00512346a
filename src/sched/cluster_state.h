#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/ids.h"
#include "core/node.h"
#include "core/status.h"
#include "core/workload.h"

namespace gpuorch::sched {

using core::GpuModelId;
using core::NodeId;
using core::TaskRequest;
using core::WorkloadId;

// GPUs chosen on one node, as a bit mask over the node's GPU indices. Every chosen GPU gives
// the task `gpu_milli` (and, for a fraction, `gpu_memory_mib`).
using GpuMask = uint16_t;
static_assert(sizeof(GpuMask) == sizeof(core::NodeSpec::unhealthy_gpus));

// The free state of one node: what filters and scorers read. Fields are plain so that a
// policy can compute on them without calls.
struct NodeState {
  NodeId id;
  bool present = false;
  core::NodeStatus status = core::NodeStatus::kReady;
  GpuModelId model;
  int8_t gpu_count = 0;
  int8_t nvlink_domain_gpus = 0;  // >0: GPUs per NVLink domain
  uint32_t zone = 0;              // dense domain index
  uint32_t rack = 0;              // dense domain index
  int64_t cpu_capacity = 0, cpu_free = 0;
  int64_t memory_capacity = 0, memory_free = 0;
  int64_t gpu_memory_capacity = 0;                            // per GPU
  std::array<int16_t, core::kMaxGpusPerNode> gpu_free{};      // milli-GPU free per GPU
  std::array<int64_t, core::kMaxGpusPerNode> gpu_mem_free{};  // MiB free per GPU
  // Number of GPU tasks on the node per shape tag (see ShapeTag): GpuClustering reads it.
  std::array<uint16_t, core::kMaxGpusPerNode + 1> tag_counts{};
  // GPUs held for one pending workload (a preemptor or a starving gang); see Reservation.
  GpuMask reserved_gpus = 0;
  WorkloadId reserved_for;
  bool reservation_lendable = false;
  // Held by a workload that borrows: in-quota work may use it (the holder then plans again).
  bool reservation_borrowed = false;
  // GPUs reported unhealthy (see NodeSpec::unhealthy_gpus): no new work goes there, and
  // they count as neither capacity nor free; tasks already on them keep their allocation.
  GpuMask unhealthy_gpus = 0;
  // GPUs in MIG mode (see MigNodeState): only MIG tasks go there. Of those, the ones with a
  // layout change under way: nothing new goes there until it is applied.
  GpuMask mig_gpus = 0;
  GpuMask mig_reconfiguring = 0;

  bool schedulable() const { return present && status == core::NodeStatus::kReady; }
  // Healthy GPUs not in MIG mode with all 1000 milli free.
  int full_free_gpus() const;
  // Sum of free milli-GPU over the healthy GPUs.
  int64_t idle_milli() const;
  // Whether any GPU, healthy or not, has something allocated.
  bool gpus_in_use() const;
  GpuMask all_gpus() const { return static_cast<GpuMask>((1u << gpu_count) - 1u); }
  // The GPUs new work may be placed on, before reservations.
  GpuMask healthy_gpus() const { return static_cast<GpuMask>(all_gpus() & ~unhealthy_gpus); }
  // The healthy GPUs not in MIG mode: what whole-GPU and fractional work may ever use.
  GpuMask whole_gpus() const { return static_cast<GpuMask>(healthy_gpus() & ~mig_gpus); }
};

// The MIG state of one node beside its NodeState: the layouts, which instances hold a
// task, and the layouts being applied.
struct MigNodeState {
  const core::MigModel* model = nullptr;
  std::array<core::MigLayout, core::kMaxGpusPerNode> layout{};  // what each GPU has now
  std::array<core::MigLayout, core::kMaxGpusPerNode> target{};  // while reconfiguring
  // Per GPU, bit s: the instance starting at memory slice s holds a task.
  std::array<uint8_t, core::kMaxGpusPerNode> busy{};
};

// Tag of a task shape: 0 for a fractional GPU, k for k whole GPUs. CPU-only tasks have none.
int ShapeTag(const TaskRequest& t);

// Which reservations of other workloads a placement may use, as bits: kUseLent for GPUs
// lent out by their holder (work that can be evicted, or that ends in time), and
// kUseBorrowed for reservations held by borrowers (in-quota work outranks them). A plain
// `true` means kUseLent.
using ReservationAccess = uint8_t;
inline constexpr ReservationAccess kUseLent = 1;
inline constexpr ReservationAccess kUseBorrowed = 2;

// True if `t` may run on node `n` at all: node status, model, CPU, memory and enough healthy
// GPUs with enough free milli and memory. `as` and `access` decide which reserved GPUs are usable.
bool Fits(const NodeState& n, const TaskRequest& t, WorkloadId as, ReservationAccess access);
// The GPU part of Fits (model, GPU count, free milli and GPU memory), without health, CPU
// and memory: equal for every node of one group (see ClusterState).
bool FitsGpus(const NodeState& n, const TaskRequest& t, WorkloadId as, ReservationAccess access);
// The host part of Fits: free CPU and memory.
inline bool FitsHost(const NodeState& n, const TaskRequest& t) {
  return n.cpu_free >= t.milli_cpu && n.memory_free >= t.memory_mib;
}

// The "best" GPU choice of the FGD protocol: for a fraction, the GPU with the least free
// milli that still fits (lowest index on ties); for whole GPUs, the lowest-index fully free
// GPUs, kept inside one NVLink domain when the node has several and one can hold the task.
// Returns 0 if nothing fits. `usable` masks GPUs the caller may use.
GpuMask SelectGpusBestFit(const NodeState& n, const TaskRequest& t, GpuMask usable);

// GPUs of `n` that whole-GPU or fractional work of workload `as` may use: the healthy ones
// not in MIG mode, less what others reserved.
GpuMask UsableGpus(const NodeState& n, WorkloadId as, ReservationAccess access);
// The MIG GPUs of `n` that a MIG task of `as` may use: healthy, in MIG mode, no layout
// change under way, less what others reserved.
GpuMask MigUsableGpus(const NodeState& n, WorkloadId as, ReservationAccess access);

// Indexed, incrementally maintained free state of the whole cluster.
//
// Contract: single-threaded; every mutation keeps the indexes exact. Schedulable nodes with
// the same GPU state (model, shape, free milli and GPU memory per GPU, tasks per shape tag,
// reservation, unhealthy GPUs) form one group, whatever their free CPU and memory: every node of a
// group passes or fails the GPU part of Fits alike, and a policy scores them alike once they have
// enough CPU (see PlacementPolicy::CpuHeadroom). Inside a group, nodes are indexed by id
// and by free CPU, so that the engine finds the lowest node with enough CPU and memory
// without visiting the others (see ForEachGroup, LowestFitting).
class ClusterState {
 public:
  core::Status AddNode(NodeId id, const core::NodeSpec& spec);
  // Changes capacity, status, topology or GPU health. Capacity may not drop below what is
  // allocated; a GPU may turn unhealthy (or healthy again) while tasks run on it.
  core::Status UpdateNode(NodeId id, const core::NodeSpec& spec);
  // What UpdateNode would refuse, without changing anything.
  core::Status CheckUpdate(NodeId id, const core::NodeSpec& spec) const;
  core::Status RemoveNode(NodeId id);
  void SetStatus(NodeId id, core::NodeStatus status);

  // Takes (Allocate) or gives back (Release) one task's resources on `mask` GPUs of node id.
  // A MIG task names its instance by `mig_start` on the one GPU of `mask`: it must exist and
  // be idle (Allocate) or held (Release).
  void Allocate(NodeId id, const TaskRequest& t, GpuMask mask, int mig_start = -1);
  void Release(NodeId id, const TaskRequest& t, GpuMask mask, int mig_start = -1);

  // MIG layouts. BeginMigReconfig marks GPU `gpu` as changing to `target` (which keeps every
  // instance that holds a task); nothing is placed there until MigLayoutApplied reports the
  // layout it has now (the target, or what the driver managed), which must keep them too.
  void BeginMigReconfig(NodeId id, int gpu, const core::MigLayout& target);
  core::Status MigLayoutApplied(NodeId id, int gpu, const core::MigLayout& layout);
  const MigNodeState& mig(NodeId id) const { return mig_[id.value()]; }

  // Reservations: GPUs of a node held for one workload. Lendable reservations may be used
  // by preemptible work of others (which is evicted when the holder is ready).
  void Reserve(NodeId id, GpuMask gpus, WorkloadId holder, bool lendable, bool borrowed = false);
  void ClearReservation(NodeId id);

  bool Has(NodeId id) const { return id.value() < nodes_.size() && nodes_[id.value()].present; }
  const NodeState& node(NodeId id) const { return nodes_[id.value()]; }
  const std::vector<NodeState>& nodes() const { return nodes_; }
  size_t node_count() const { return node_count_; }

  // Domain names, for explanations and plans.
  uint32_t rack_count() const { return static_cast<uint32_t>(racks_.size()); }
  uint32_t zone_count() const { return static_cast<uint32_t>(zones_.size()); }
  const std::vector<NodeId>& rack_nodes(uint32_t rack) const { return racks_[rack].nodes; }
  const std::vector<NodeId>& zone_nodes(uint32_t zone) const { return zones_[zone].nodes; }
  const std::string& rack_name(uint32_t rack) const { return racks_[rack].name; }
  const std::string& zone_name(uint32_t zone) const { return zones_[zone].name; }
  // Schedulable nodes of a rack by number of fully free GPUs: an upper bound on what a gang
  // can get there, O(kMaxGpusPerNode) to read.
  const std::array<int32_t, core::kMaxGpusPerNode + 1>& rack_free_histogram(uint32_t r) const {
    return racks_[r].free_hist;
  }

  const std::array<int32_t, core::kMaxGpusPerNode + 1>& zone_free_histogram(uint32_t z) const {
    return zones_[z].free_hist;
  }

  // Totals over the healthy GPUs of schedulable nodes, per GPU model (milli-GPU).
  int64_t capacity_milli(GpuModelId m) const;
  int64_t free_milli(GpuModelId m) const;
  uint32_t model_bound() const { return static_cast<uint32_t>(model_capacity_.size()); }
  // Totals over schedulable nodes of CPU (milli-CPU) and memory (MiB) capacity, O(1).
  int64_t cpu_capacity() const { return cpu_capacity_; }
  int64_t memory_capacity() const { return memory_capacity_; }

  // A group of schedulable nodes with the same GPU state (see the class comment).
  struct Group {
    std::string key;
    std::set<uint32_t> members;                     // node ids, ascending
    std::set<std::pair<int64_t, uint32_t>> by_cpu;  // (cpu_free, id), ascending
    std::multiset<int64_t> memory_free;             // of the members
    uint32_t slot = 0;                              // index of the group, reused once empty
    uint64_t generation = 0;  // changes whenever the slot takes a new group (for caches)
    uint32_t active_index = 0;
    // Of the GPU state the members share, for a quick first test (see MayFitGpus).
    GpuModelId model;
    int8_t gpu_count = 0;
    int8_t full_free_gpus = 0;
    int16_t max_gpu_free = 0;  // milli
    GpuMask mig_gpus = 0;
    // Of the members, kept as they change.
    int64_t max_cpu = 0, max_memory = 0;

    int64_t max_cpu_free() const { return max_cpu; }
    int64_t max_memory_free() const { return max_memory; }
    // False when no member can hold t's GPUs whatever the reservations: a necessary
    // condition of FitsGpus, in O(1).
    bool MayFitGpus(const TaskRequest& t) const {
      if (t.gpu_count == 0) return true;
      if (gpu_count < t.gpu_count || !t.models.Accepts(model)) return false;
      if (t.sharing == core::Sharing::kMig) return mig_gpus != 0;
      return t.gpu_milli >= core::kMilliGpu ? full_free_gpus >= t.gpu_count
                                            : max_gpu_free >= t.gpu_milli;
    }
  };

  // Calls fn(const Group& group, const NodeState& representative) once per group of
  // schedulable nodes; the representative is its lowest member and stands for every member
  // in what they share (GPU state). Order is unspecified; callers break ties by node id to
  // stay deterministic.
  template <typename Fn>
  void ForEachGroup(Fn&& fn) const {
    for (uint32_t g : active_groups_) {
      const Group& group = groups_[g];
      fn(group, nodes_[*group.members.begin()]);
    }
  }
  size_t group_count() const { return active_groups_.size(); }
  // The lowest member of `g` with at least `cpu` free milli-CPU and `memory` free MiB, or an
  // invalid id. Walks members by id while they are few or the first ones fit; otherwise the
  // members with enough CPU.
  NodeId LowestFitting(const Group& g, int64_t cpu, int64_t memory) const;

  // Monotonic counter bumped by every mutation; callers cache per-node data against it.
  uint64_t version(NodeId id) const { return versions_[id.value()]; }

 private:
  struct Domain {
    std::string name;
    std::vector<NodeId> nodes;
    std::array<int32_t, core::kMaxGpusPerNode + 1> free_hist{};
  };
  static constexpr uint32_t kNoGroup = UINT32_MAX;

  uint32_t InternDomain(std::vector<Domain>& domains, std::unordered_map<std::string, uint32_t>& ix,
                        const std::string& name);
  // Removes the node from every index, lets the caller mutate it, then indexes it again.
  void Unindex(NodeId id);
  void Index(NodeId id);
  std::string GroupKey(const NodeState& n) const;

  // Whether `spec`'s MIG layouts keep every instance that holds a task (an error naming the
  // first one that does not).
  core::Status CheckMigUpdate(NodeId id, const core::NodeSpec& spec) const;

  std::vector<NodeState> nodes_;
  std::vector<MigNodeState> mig_;
  std::vector<uint64_t> versions_;
  std::vector<uint32_t> group_of_;
  size_t node_count_ = 0;
  std::vector<Domain> racks_, zones_;
  std::unordered_map<std::string, uint32_t> rack_ix_, zone_ix_;
  std::vector<Group> groups_;
  std::vector<uint32_t> free_groups_;
  std::vector<uint32_t> active_groups_;
  std::unordered_map<std::string, uint32_t> group_ix_;
  std::vector<int64_t> model_capacity_, model_free_;
  int64_t cpu_capacity_ = 0, memory_capacity_ = 0;
  uint64_t clock_ = 0;
  uint64_t generations_ = 0;
};

}  // namespace gpuorch::sched
