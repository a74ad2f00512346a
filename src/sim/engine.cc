#include "sim/engine.h"

#include "sched/placer.h"

namespace gpuorch::sim {

core::Result<std::unique_ptr<SimEngine>> SimEngine::Create(const std::string& policy,
                                                           core::Rng* rng) {
  auto p = sched::MakePolicy(policy, rng);
  if (!p.ok()) return p.status();
  return std::unique_ptr<SimEngine>(new SimEngine(std::move(p).value(), rng));
}

core::Status SimEngine::AddNode(core::NodeId id, const core::NodeSpec& spec) {
  return cluster_.AddNode(id, spec);
}

void SimEngine::SetTypicalTasks(std::vector<sched::TypicalTask> tasks) {
  policy_->SetTypicalTasks(std::move(tasks));
}

std::optional<core::NodeId> SimEngine::Place(const sched::TaskRequest& t) {
  auto placement = sched::ChooseNode(cluster_, *policy_, t, core::WorkloadId(0),
                                     /*preemptible=*/false, *rng_);
  if (!placement) return std::nullopt;
  cluster_.Allocate(placement->node, t, placement->gpus);
  return placement->node;
}

}  // namespace gpuorch::sim
