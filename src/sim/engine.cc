#include "sim/engine.h"

namespace gpuorch::sim {

core::Result<std::unique_ptr<SimEngine>> SimEngine::Create(const std::string& policy,
                                                           uint64_t seed) {
  sched::SchedulerConfig config;
  config.policy = policy;
  config.seed = seed;
  config.preemption = false;
  config.reservations = false;
  config.elastic = false;
  auto engine = sched::Scheduler::Create(config);
  if (!engine.ok()) return engine.status();
  core::QueueSpec queue;
  queue.name = "fgd";
  if (core::Status s = (*engine)->AddQueue(core::QueueId(0), queue); !s.ok()) return s;
  return std::unique_ptr<SimEngine>(new SimEngine(std::move(engine).value()));
}

core::Status SimEngine::AddNode(core::NodeId id, const core::NodeSpec& spec) {
  return engine_->AddNode(id, spec);
}

void SimEngine::SetTypicalTasks(std::vector<sched::TypicalTask> tasks) {
  engine_->SetTypicalTasks(std::move(tasks));
}

std::optional<core::NodeId> SimEngine::Place(const sched::TaskRequest& t) {
  core::WorkloadSpec spec;
  spec.name = "pod";
  spec.queue = core::QueueId(0);
  spec.task = t;
  spec.submit_time = next_id_;
  core::WorkloadId id(next_id_++);
  if (!engine_->Submit(id, spec).ok()) return std::nullopt;
  sched::Plan plan = engine_->Cycle(static_cast<core::Time>(next_id_));
  if (plan.binds.empty()) {
    (void)engine_->Cancel(id);
    return std::nullopt;
  }
  return plan.binds.front().tasks.front().node;
}

}  // namespace gpuorch::sim
