#include <string>

#include "core/node.h"
#include "core/workload.h"

namespace gpuorch::core {

const char* ToString(NodeStatus s) {
  switch (s) {
    case NodeStatus::kReady:
      return "Ready";
    case NodeStatus::kDraining:
      return "Draining";
    case NodeStatus::kDown:
      return "Down";
  }
  return "?";
}

const char* ToString(TopologyLevel l) {
  switch (l) {
    case TopologyLevel::kCluster:
      return "cluster";
    case TopologyLevel::kZone:
      return "zone";
    case TopologyLevel::kRack:
      return "rack";
    case TopologyLevel::kNode:
      return "node";
    case TopologyLevel::kNvlink:
      return "nvlink";
  }
  return "?";
}

const char* ToString(WorkloadKind k) {
  switch (k) {
    case WorkloadKind::kTraining:
      return "training";
    case WorkloadKind::kInference:
      return "inference";
    case WorkloadKind::kExperiment:
      return "experiment";
  }
  return "?";
}

const char* ToString(Sharing s) {
  switch (s) {
    case Sharing::kTimeslice:
      return "timeslice";
    case Sharing::kMps:
      return "mps";
    case Sharing::kMig:
      return "mig";
    case Sharing::kAny:
      return "any";
  }
  return "?";
}

bool ParseSharing(std::string_view text, Sharing& out) {
  for (Sharing s : {Sharing::kTimeslice, Sharing::kMps, Sharing::kMig, Sharing::kAny}) {
    if (text == ToString(s)) {
      out = s;
      return true;
    }
  }
  return false;
}

Status NodeSpec::Validate() const {
  if (name.empty()) return Status::Invalid("node.name: must not be empty");
  if (gpu_count < 0 || gpu_count > kMaxGpusPerNode) {
    return Status::Invalid("node.gpu_count: must be in 0.." + std::to_string(kMaxGpusPerNode) +
                           ", got " + std::to_string(gpu_count));
  }
  if (gpu_count > 0 && !gpu_model.valid()) {
    return Status::Invalid("node.gpu_model: required when gpu_count > 0");
  }
  if (gpu_count > 0 && gpu_model.value() >= kMaxNamedGpuModels) {
    return Status::Invalid("node.gpu_model: id " + std::to_string(gpu_model.value()) +
                           " is past the " + std::to_string(kMaxNamedGpuModels) +
                           " GPU models a cluster may hold");
  }
  if (gpu_memory_mib < 0) return Status::Invalid("node.gpu_memory_mib: must be >= 0");
  if (milli_cpu < 0) return Status::Invalid("node.milli_cpu: must be >= 0");
  if (memory_mib < 0) return Status::Invalid("node.memory_mib: must be >= 0");
  if (nvlink_domain_gpus < 0 || (gpu_count > 0 && nvlink_domain_gpus > gpu_count) ||
      (nvlink_domain_gpus > 0 && gpu_count % nvlink_domain_gpus != 0)) {
    return Status::Invalid("node.nvlink_domain_gpus: must divide gpu_count");
  }
  if ((uint32_t{unhealthy_gpus} >> gpu_count) != 0) {
    return Status::Invalid("node.unhealthy_gpus: names a GPU at or beyond gpu_count (" +
                           std::to_string(gpu_count) + ")");
  }
  if ((uint32_t{mig_gpus} >> gpu_count) != 0) {
    return Status::Invalid("node.mig_gpus: names a GPU at or beyond gpu_count (" +
                           std::to_string(gpu_count) + ")");
  }
  if (mig_gpus != 0 && mig_model == nullptr) {
    return Status::Invalid("node.mig_gpus: the node's GPU model has no MIG profiles");
  }
  for (int j = 0; j < kMaxGpusPerNode; ++j) {
    const std::string field = "node.mig_layouts[" + std::to_string(j) + "]";
    if (!((mig_gpus >> j) & 1u)) {
      if (mig_layouts[j].count != 0) return Status::Invalid(field + ": the GPU is not in MIG mode");
      continue;
    }
    if (Status s = ValidateLayout(*mig_model, mig_layouts[j]); !s.ok()) {
      return Status::Invalid(field + ": " + s.message());
    }
  }
  return Status::Ok();
}

Status WorkloadSpec::Validate() const {
  if (name.empty()) return Status::Invalid("workload.name: must not be empty");
  if (!queue.valid()) return Status::Invalid("workload.queue: required");
  if (min_tasks < 1) return Status::Invalid("workload.min_tasks: must be >= 1");
  if (max_tasks < min_tasks) return Status::Invalid("workload.max_tasks: must be >= min_tasks");
  if (max_tasks > 100000) return Status::Invalid("workload.max_tasks: must be <= 100000");
  const TaskRequest& t = task;
  if (t.gpu_count < 0 || t.gpu_count > kMaxGpusPerNode) {
    return Status::Invalid("workload.task.gpus: must be in 0.." + std::to_string(kMaxGpusPerNode));
  }
  if (t.gpu_count > 0 && (t.gpu_milli < 1 || t.gpu_milli > kMilliGpu)) {
    return Status::Invalid("workload.task.gpu_milli: must be in 1..1000");
  }
  if (t.gpu_count > 1 && t.gpu_milli != kMilliGpu) {
    return Status::Invalid("workload.task.gpu_milli: a fraction needs gpus == 1");
  }
  if (t.gpu_memory_mib < 0) return Status::Invalid("workload.task.gpu_memory_mib: must be >= 0");
  if (t.milli_cpu < 0) return Status::Invalid("workload.task.milli_cpu: must be >= 0");
  if (t.memory_mib < 0) return Status::Invalid("workload.task.memory_mib: must be >= 0");
  if (t.gpu_count == 0 && t.milli_cpu == 0 && t.memory_mib == 0) {
    return Status::Invalid("workload.task: requests nothing");
  }
  if (t.mig_compute != 0 || t.sharing == Sharing::kMig) {
    if (t.sharing != Sharing::kMig && t.sharing != Sharing::kAny) {
      return Status::Invalid("workload.task.mig: needs sharing mig or any, not " +
                             std::string(ToString(t.sharing)));
    }
    if (t.mig_compute < 1 || t.mig_compute > kMigComputeSlices) {
      return Status::Invalid("workload.task.mig_compute: must be in 1.." +
                             std::to_string(kMigComputeSlices) + " compute slices");
    }
    if (t.gpu_count != 1) return Status::Invalid("workload.task.gpus: a MIG task takes 1 GPU");
    if (t.gpu_milli != MigMilliForCompute(t.mig_compute)) {
      return Status::Invalid("workload.task.gpu_milli: a MIG task of " +
                             std::to_string(t.mig_compute) + " compute slices counts " +
                             std::to_string(MigMilliForCompute(t.mig_compute)) + " milli-GPU");
    }
    // A MIG instance has no NVLink peer-to-peer; gangs of instances are refused (as the
    // scheduler would have to reconfigure several GPUs at once for one start).
    if (max_tasks != 1) return Status::Invalid("workload.max_tasks: a MIG workload has 1 task");
  }
  if (runtime_estimate < 0) return Status::Invalid("workload.runtime_estimate: must be >= 0");
  if (min_runtime < 0) return Status::Invalid("workload.min_runtime: must be >= 0");
  if (grace_period < 0) return Status::Invalid("workload.grace_period: must be >= 0");
  return Status::Ok();
}

}  // namespace gpuorch::core
