#pragma once

// The cluster and the tenants' queues a replay runs on: read from CLUSTER.yaml and
// QUEUES.yaml (formats in docs/simulator.md), or derived from the Philly virtual clusters.

#include <cstdint>
#include <string>
#include <vector>

#include "core/gpu_model.h"
#include "core/node.h"
#include "core/queue.h"
#include "core/status.h"
#include "sim/replay/trace.h"

namespace gpuorch::sim {

// Identical nodes, as CLUSTER.yaml lists them.
struct NodeGroup {
  std::string name;  // nodes are named <name>-<k>
  int32_t count = 1;
  int32_t gpus = 8;
  std::string model = "gpu";
  int64_t gpu_memory_mib = 16384;
  int64_t milli_cpu = 64000;
  int64_t memory_mib = 512 * 1024;
  std::string owner;  // tenant that owns these nodes under `static` ("" = by guarantee)
  std::string rack;   // explicit rack for the whole group ("" = by rack_size)
  std::string zone;
};

struct ClusterConfig {
  int32_t rack_size = 0;  // >0: consecutive nodes without an explicit rack form racks
  std::vector<NodeGroup> groups;
  // Expanded by Expand(): node i gets NodeId(i).
  core::GpuModelRegistry models;
  std::vector<core::NodeSpec> nodes;
  std::vector<std::string> owners;  // per node

  core::Status Expand();
  int32_t max_node_gpus() const;
  int64_t total_gpus() const;
};

struct TenantQueue {
  std::string name;
  int64_t guarantee_milli = 0;             // all GPU models
  int64_t limit_milli = core::kUnlimited;  // -1 = unlimited
  int32_t weight = 1;
  bool can_borrow = true;
  bool can_lend = true;
  // Parent queue ("" = top level), listed earlier. A parent's guarantee must cover its
  // children's; tenants (trace jobs, node owners) go to leaves only.
  std::string parent;
};

struct QueuesConfig {
  std::vector<TenantQueue> queues;
  // Index of a queue by name, or -1.
  int Find(const std::string& name) const;
  // True if no queue names q as its parent.
  bool IsLeaf(size_t q) const;
};

core::Result<ClusterConfig> LoadClusterYaml(const std::string& path);
core::Result<QueuesConfig> LoadQueuesYaml(const std::string& path);
// The same, from text (tests); `name` stands for the file in error messages.
core::Result<ClusterConfig> ParseClusterYaml(const std::string& text, const std::string& name);
core::Result<QueuesConfig> ParseQueuesYaml(const std::string& text, const std::string& name);

// The Philly cluster (docs/simulator.md): per VC the node count of the Helios artifact
// (vc,node num); VCs the file lacks get ceil(mean GPU demand / 8) nodes, at least enough for
// their largest job. Nodes have 8 GPUs, racks hold 8 consecutive nodes, every VC owns its
// nodes (for `static`) and is guaranteed their GPUs (for `gpuorch`). `scale_percent` scales
// every VC's node count (rounded, at least one node) to study other loads.
struct DerivedSetup {
  ClusterConfig cluster;
  QueuesConfig queues;
  std::vector<std::string> notes;  // how each VC was sized, for the report
};
core::Result<DerivedSetup> DerivePhillySetup(const Trace& trace, const std::string& vc_nodes_csv,
                                             int scale_percent);
// The same with the VC table's text; `vc_nodes_csv` names it in errors.
core::Result<DerivedSetup> DerivePhillySetupFromText(const Trace& trace, std::string_view text,
                                                     const std::string& vc_nodes_csv,
                                                     int scale_percent);

// Writes the cluster and queues as YAML (so a derived setup can be inspected and reused).
std::string ClusterToYaml(const ClusterConfig& c);
std::string QueuesToYaml(const QueuesConfig& q);

}  // namespace gpuorch::sim
