#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/gpu_model.h"
#include "core/ids.h"
#include "core/node.h"
#include "core/status.h"

namespace gpuorch::core {

enum class WorkloadKind : uint8_t { kTraining, kInference, kExperiment };
const char* ToString(WorkloadKind k);

// How a task shares a GPU (docs/partitioning.md). kTimeslice and kMps are fractions by
// accounting (the agent differs: MPS runs a control daemon and caps the task's threads and
// memory); kMig runs the task on a MIG instance of `mig_compute` compute slices; kAny takes a
// MIG instance where one can be had and a time-sliced fraction otherwise.
enum class Sharing : uint8_t { kTimeslice, kMps, kMig, kAny };
const char* ToString(Sharing s);
// "timeslice", "mps", "mig" or "any"; false on anything else.
bool ParseSharing(std::string_view text, Sharing& out);

// What one task needs. GPUs are `gpu_count` devices of `gpu_milli` each: whole GPUs have
// gpu_milli == 1000; a fraction (time-slicing/MPS) has gpu_count == 1 and gpu_milli < 1000
// and then `gpu_memory_mib` is the GPU memory it takes. For whole GPUs `gpu_memory_mib` is a
// minimum per-GPU memory (0 = any). gpu_count == 0 is a CPU-only task.
struct TaskRequest {
  int32_t gpu_count = 0;
  int32_t gpu_milli = kMilliGpu;
  int64_t gpu_memory_mib = 0;
  int64_t milli_cpu = 0;
  int64_t memory_mib = 0;
  ModelSet models;  // acceptable GPU models; empty = any
  // MIG (sharing kMig or kAny): a task of gpu_count 1 needing an instance of at least
  // `mig_compute` compute slices (1..7) and `gpu_memory_mib` memory; gpu_milli is then its
  // compute share, MigMilliForCompute(mig_compute), which is what quotas count.
  Sharing sharing = Sharing::kTimeslice;
  int8_t mig_compute = 0;

  bool fractional() const { return gpu_count == 1 && gpu_milli < kMilliGpu; }
  // Whether the task may run on a MIG instance.
  bool mig() const { return mig_compute > 0; }
  // Milli-GPU one task takes in total.
  int64_t total_milli_gpu() const { return int64_t{gpu_count} * gpu_milli; }
};

struct TopologyConstraint {
  TopologyLevel level = TopologyLevel::kCluster;
  // Required: all tasks inside one domain of `level`, or nothing. Preferred: a score.
  bool required = false;
};

// A workload: a gang of between min_tasks and max_tasks identical tasks. The first
// min_tasks start together or not at all; tasks beyond are elastic.
struct WorkloadSpec {
  std::string name;
  WorkloadKind kind = WorkloadKind::kExperiment;
  QueueId queue;
  int32_t priority = 0;  // higher runs first; the driver maps priority class names to it
  bool preemptible = true;
  int32_t min_tasks = 1;
  int32_t max_tasks = 1;
  TaskRequest task;
  TopologyConstraint topology;
  Time submit_time = 0;
  Duration runtime_estimate = 0;         // 0 = unknown
  Duration min_runtime = 0;              // not preempted before it ran this long
  Duration grace_period = 30 * kSecond;  // SIGTERM -> SIGKILL on eviction

  // Checks ranges and names the offending field.
  Status Validate() const;
};

}  // namespace gpuorch::core
