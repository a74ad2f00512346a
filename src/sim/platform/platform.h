#pragma once

// The mixed LLM platform experiment (docs/platform.md): inference services whose demand rises
// and falls through the day, training gangs under guarantees, and experiments soaking up the
// rest, on one cluster, under three policies:
//   static             dedicated partitions (inference sized for its peak, one per team, a
//                      small one for experiments), FIFO inside each, no preemption;
//   pool-no-autoscale  one pool under gpuorch's engine, inference fixed at its peak size;
//   gpuorch            one pool, inference autoscaled by src/autoscale, experiments
//                      harvesting idle GPUs, idle reclaim on.
// Simulated time only: the production engine (sched::Scheduler) and the production autoscaler
// (autoscale::Autoscaler) are called with the simulated clock; the result is a function of
// the inputs alone.

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "sim/platform/config.h"
#include "sim/platform/demand.h"
#include "sim/platform/workloads.h"

namespace gpuorch::sim::platform {

enum class Policy : uint8_t { kStatic, kPoolNoAutoscale, kGpuorch };
inline constexpr std::array<Policy, 3> kPolicies = {Policy::kStatic, Policy::kPoolNoAutoscale,
                                                    Policy::kGpuorch};
const char* ToString(Policy p);
bool ParsePolicy(std::string_view s, Policy& p);

// One service's demand over the experiment, shared by every policy.
struct ServiceDemand {
  std::string name;
  CapacityProfile capacity;
  double rho_max = 1;            // the utilization a replica may run at and meet the TTFT SLO
  std::vector<float> load;       // replica-seconds of work per second, per second
  std::vector<int32_t> needed;   // replicas per minute (capacity model)
  std::vector<double> requests;  // per minute
  int32_t peak_needed = 0;
  double mean_prompt = 0, mean_output = 0;  // tokens per request, from the trace
};

// From a service's per-second demand: load, and per minute the requests and the replicas
// needed (NeededReplicas of the minute's mean load).
ServiceDemand MakeServiceDemand(const std::string& name, const CapacityProfile& capacity,
                                double rho_max, const Demand& demand);

// The static partitions in nodes (pool policies use the same numbers as guarantees):
// inference gets, per service, enough nodes for its peak replicas; experiments their
// configured nodes; the teams split the rest by share (largest remainder).
struct Partitions {
  std::vector<int32_t> service_nodes;  // per service
  std::vector<int32_t> team_nodes;     // per team
  int32_t experiment_nodes = 0;
  int32_t inference_nodes() const;
  int32_t training_nodes() const;
};
core::Result<Partitions> PlanPartitions(const PlatformConfig& config,
                                        const std::vector<ServiceDemand>& services);

// Per minute of the horizon, means over the minute (GPUs), for the timeline.
struct MinuteRow {
  float inference = 0, training = 0, experiment = 0, idle_held = 0, free = 0;
  float idle_while_waiting = 0, overprovisioned = 0;
};

struct PolicyResult {
  Policy policy = Policy::kGpuorch;
  int64_t capacity_gpus = 0;
  std::vector<MinuteRow> minutes;
  // Per service, per minute: the fewest Ready replicas in the minute, and replicas held
  // (starting, Ready or draining; mean).
  std::vector<std::vector<int32_t>> ready;
  std::vector<std::vector<float>> held;

  // GPU-milliseconds x milli over [0, horizon): see docs/platform.md for each.
  double idle = 0, idle_while_waiting = 0, idle_nothing_to_run = 0, idle_held = 0,
         overprovisioned = 0, capacity = 0;
  int64_t slo_minutes = 0, service_minutes = 0;
  // Per service: minutes short of the need, and of those, short by one replica.
  std::vector<int64_t> missed, missed_by_one;
  double requests = 0, requests_waiting = 0, replica_minutes = 0;
  int64_t training_jobs = 0, training_finished = 0, training_infeasible = 0;
  std::vector<int64_t> training_jct_ms, training_delay_ms;  // finished jobs, sorted
  double experiment_work = 0;  // milli-GPU x ms of kept experiment work within the horizon
  double experiment_lost = 0, experiment_lost_without_checkpoint = 0;
  int64_t experiments = 0, experiments_finished = 0, experiments_withdrawn = 0;
  std::map<std::string, int64_t> preemptions;  // by reason
  int64_t cycles = 0;
  core::Time end = 0;  // the last training completion (the run drains training)
};

struct PlatformInput {
  const PlatformConfig* config = nullptr;
  const std::vector<ServiceDemand>* services = nullptr;
  const Workloads* work = nullptr;
  Partitions partitions;
};

core::Result<PolicyResult> RunPolicy(const PlatformInput& input, Policy policy);

}  // namespace gpuorch::sim::platform
