#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/gpu_model.h"
#include "core/ids.h"
#include "core/mig.h"
#include "core/status.h"

namespace gpuorch::core {

// The most GPUs one node may hold (HGX boards have 8; a few have 16).
inline constexpr int kMaxGpusPerNode = 16;
// One GPU in milli-GPU: the unit of every GPU quantity in accounting.
inline constexpr int32_t kMilliGpu = 1000;

enum class NodeStatus : uint8_t { kReady, kDraining, kDown };

// The levels of the topology tree, from the widest to the narrowest. A constraint at a level
// means "all tasks inside one domain of that level". kCluster is no constraint.
enum class TopologyLevel : uint8_t { kCluster, kZone, kRack, kNode, kNvlink };

const char* ToString(NodeStatus s);
const char* ToString(TopologyLevel l);

// What a driver knows about a node. GPUs on one node share one model, which holds for every
// production GPU server we know of.
struct NodeSpec {
  std::string name;
  GpuModelId gpu_model;        // invalid when the node has no GPU
  int32_t gpu_count = 0;       // 0..kMaxGpusPerNode
  int64_t gpu_memory_mib = 0;  // memory of one GPU
  bool mig_capable = false;
  int64_t milli_cpu = 0;
  int64_t memory_mib = 0;
  NodeStatus status = NodeStatus::kReady;
  // Place in the topology tree. Empty names put the node in a default domain of that level.
  std::string zone;
  std::string rack;                // a rack, or an NVL72-style block
  int32_t nvlink_domain_gpus = 0;  // GPUs per NVLink domain inside the node; 0 = all of them
  // GPUs the agent reports unhealthy (an XID error, an uncorrectable ECC error), bit j for
  // GPU j (the engine's GpuMask). The engine places no new work on them; what already runs
  // there keeps running until an operator drains the node. Bits at or beyond gpu_count are
  // refused.
  uint16_t unhealthy_gpus = 0;
  // MIG (docs/partitioning.md). Bit j: GPU j is in MIG mode, which an operator sets (it
  // needs a GPU reset); the engine only plans layouts on such GPUs. `mig_model` is the
  // model's profile table (core::FindMigModel of its name), required when any bit is set;
  // `mig_layouts[j]` is the layout GPU j has.
  uint16_t mig_gpus = 0;
  const MigModel* mig_model = nullptr;
  std::array<MigLayout, kMaxGpusPerNode> mig_layouts{};

  // Checks ranges and names the offending field.
  Status Validate() const;
};

}  // namespace gpuorch::core
