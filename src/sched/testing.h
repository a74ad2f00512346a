#pragma once

// Fluent builders for test and benchmark fixtures (in the spirit of the Kubernetes
// scheduler's MakeNode().Gpus(8)): a test states only what it is about.

#include <string>
#include <utility>

#include "core/node.h"
#include "core/queue.h"
#include "core/workload.h"

namespace gpuorch::sched::testing {

class NodeBuilder {
 public:
  explicit NodeBuilder(std::string name) {
    spec_.name = std::move(name);
    spec_.milli_cpu = 128000;
    spec_.memory_mib = 1 << 20;
  }
  NodeBuilder& Gpus(int n, uint32_t model = 0, int64_t mem_mib = 81920) {
    spec_.gpu_count = n;
    spec_.gpu_model = core::GpuModelId(model);
    spec_.gpu_memory_mib = mem_mib;
    return *this;
  }
  NodeBuilder& Cpu(int64_t milli) { return spec_.milli_cpu = milli, *this; }
  NodeBuilder& Memory(int64_t mib) { return spec_.memory_mib = mib, *this; }
  NodeBuilder& Rack(std::string r) { return spec_.rack = std::move(r), *this; }
  NodeBuilder& Zone(std::string z) { return spec_.zone = std::move(z), *this; }
  NodeBuilder& Nvlink(int gpus) { return spec_.nvlink_domain_gpus = gpus, *this; }
  NodeBuilder& Status(core::NodeStatus s) { return spec_.status = s, *this; }
  // Bit j: GPU j is unhealthy.
  NodeBuilder& Unhealthy(uint16_t gpus) { return spec_.unhealthy_gpus = gpus, *this; }
  // Bit j: GPU j is in MIG mode with `layout` (core::ParseLayout text; "" = no instances),
  // profiles of `model` (e.g. "H100-80GB").
  NodeBuilder& Mig(uint16_t gpus, const char* model = "H100-80GB", const char* layout = "") {
    spec_.mig_gpus = gpus;
    spec_.mig_model = core::FindMigModel(model);
    for (int j = 0; j < spec_.gpu_count; ++j) {
      if (!((gpus >> j) & 1u)) continue;
      auto l = core::ParseLayout(*spec_.mig_model, layout);
      if (l.ok()) spec_.mig_layouts[j] = *l;
    }
    return *this;
  }
  core::NodeSpec Build() const { return spec_; }
  operator core::NodeSpec() const { return spec_; }  // NOLINT: builder converts implicitly

 private:
  core::NodeSpec spec_;
};

class WorkloadBuilder {
 public:
  WorkloadBuilder(std::string name, uint32_t queue) {
    spec_.name = std::move(name);
    spec_.queue = core::QueueId(queue);
    spec_.task.gpu_count = 1;
    spec_.task.milli_cpu = 1000;
    spec_.task.memory_mib = 1024;
    spec_.grace_period = 30 * core::kSecond;
  }
  WorkloadBuilder& Gpus(int n) {
    return spec_.task.gpu_count = n, spec_.task.gpu_milli = 1000, *this;
  }
  WorkloadBuilder& Fraction(int milli, int64_t mem_mib = 0) {
    spec_.task.gpu_count = 1;
    spec_.task.gpu_milli = milli;
    spec_.task.gpu_memory_mib = mem_mib;
    return *this;
  }
  // A MIG task of `compute` slices and `mem_mib` of instance memory (sharing mig).
  WorkloadBuilder& Mig(int compute, int64_t mem_mib = 0,
                       core::Sharing sharing = core::Sharing::kMig) {
    spec_.task.gpu_count = 1;
    spec_.task.sharing = sharing;
    spec_.task.mig_compute = static_cast<int8_t>(compute);
    spec_.task.gpu_milli = core::MigMilliForCompute(compute);
    spec_.task.gpu_memory_mib = mem_mib;
    return *this;
  }
  WorkloadBuilder& CpuOnly(int64_t milli) {
    spec_.task.gpu_count = 0;
    spec_.task.milli_cpu = milli;
    return *this;
  }
  WorkloadBuilder& Cpu(int64_t milli) { return spec_.task.milli_cpu = milli, *this; }
  WorkloadBuilder& Memory(int64_t mib) { return spec_.task.memory_mib = mib, *this; }
  WorkloadBuilder& Tasks(int min, int max = 0) {
    spec_.min_tasks = min;
    spec_.max_tasks = max == 0 ? min : max;
    return *this;
  }
  WorkloadBuilder& Model(uint32_t m) { return spec_.task.models.Add(core::GpuModelId(m)), *this; }
  WorkloadBuilder& Priority(int p) { return spec_.priority = p, *this; }
  WorkloadBuilder& NonPreemptible() { return spec_.preemptible = false, *this; }
  WorkloadBuilder& Kind(core::WorkloadKind k) { return spec_.kind = k, *this; }
  WorkloadBuilder& Submitted(core::Time t) { return spec_.submit_time = t, *this; }
  WorkloadBuilder& Estimate(core::Duration d) { return spec_.runtime_estimate = d, *this; }
  WorkloadBuilder& MinRuntime(core::Duration d) { return spec_.min_runtime = d, *this; }
  WorkloadBuilder& Grace(core::Duration d) { return spec_.grace_period = d, *this; }
  WorkloadBuilder& Require(core::TopologyLevel l) {
    spec_.topology = {l, true};
    return *this;
  }
  WorkloadBuilder& Prefer(core::TopologyLevel l) {
    spec_.topology = {l, false};
    return *this;
  }
  core::WorkloadSpec Build() const { return spec_; }
  operator core::WorkloadSpec() const { return spec_; }  // NOLINT

 private:
  core::WorkloadSpec spec_;
};

class QueueBuilder {
 public:
  explicit QueueBuilder(std::string name) { spec_.name = std::move(name); }
  // Guarantee/limit in whole GPUs for every model (or one model).
  QueueBuilder& Guarantee(int64_t gpus, int64_t limit_gpus = -1, int model = -1) {
    core::QuotaEntry e;
    if (model >= 0) e.model = core::GpuModelId(static_cast<uint32_t>(model));
    e.guaranteed = gpus * 1000;
    e.limit = limit_gpus < 0 ? core::kUnlimited : limit_gpus * 1000;
    spec_.quotas.push_back(e);
    return *this;
  }
  QueueBuilder& Weight(int w) { return spec_.weight = w, *this; }
  QueueBuilder& NoBorrow() { return spec_.can_borrow = false, *this; }
  QueueBuilder& NoLend() { return spec_.can_lend = false, *this; }
  QueueBuilder& Parent(uint32_t p) { return spec_.parent = core::QueueId(p), *this; }
  operator core::QueueSpec() const { return spec_; }  // NOLINT

 private:
  core::QueueSpec spec_;
};

}  // namespace gpuorch::sched::testing
