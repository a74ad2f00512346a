#pragma once

#include "core/rng.h"
#include "sched/policy.h"

namespace gpuorch::sched {

// Random (FGD-PROTOCOL.md §5.1): the engine draws one feasible node uniformly (MakePolicy
// pairs this policy with NodeChoice::kUniform, so the score is never used). Inside the
// node, a fractional task gets a GPU drawn uniformly among the usable ones with enough free
// milli; whole-GPU tasks get the lowest-index fully free GPUs. Every draw comes from the
// injected generator.
class RandomPolicy final : public PlacementPolicy {
 public:
  explicit RandomPolicy(core::Rng* rng) : rng_(rng) {}
  std::string_view name() const override { return "random"; }
  int64_t Score(const NodeView&, const TaskRequest&) override { return 0; }
  GpuMask SelectGpus(const NodeView& n, const TaskRequest& t) override;

 private:
  core::Rng* rng_;
};

}  // namespace gpuorch::sched
