// The controller's Prometheus metrics: the engine gauges the cycle thread computes after a
// cycle, and the record gauges a scrape computes (see ServerMetrics for which is which).
#include <algorithm>
#include <array>
#include <chrono>
#include <limits>
#include <map>

#include "sched/policy/fragmentation.h"
#include "server/controller.h"
#include "server/engine_gauges.h"
#include "server/queue_shares.h"

namespace gpuorch::server {

namespace {

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The quota entry that applies to `model`: its own, else the "*" one, else none.
const QuotaConfig* QuotaFor(const QueueConfig& q, const std::string& model) {
  const QuotaConfig* any = nullptr;
  for (const QuotaConfig& e : q.quota) {
    if (e.model == model) return &e;
    if (e.model == "*") any = &e;
  }
  return any;
}

double Gpus(int64_t milli) { return static_cast<double>(milli) / 1000.0; }

constexpr sched::PendingReason kReasons[] = {sched::PendingReason::kWaitingForQuota,
                                             sched::PendingReason::kOverLimit,
                                             sched::PendingReason::kNoFit,
                                             sched::PendingReason::kTopologyUnsatisfiable,
                                             sched::PendingReason::kModelUnavailable,
                                             sched::PendingReason::kBlockedByReservation,
                                             sched::PendingReason::kPreempting,
                                             sched::PendingReason::kReserved,
                                             sched::PendingReason::kUnschedulable,
                                             sched::PendingReason::kMigReconfiguring};

}  // namespace

void Controller::UpdateEngineGauges(const sched::Plan& plan, size_t models) {
  const int64_t steady = SteadyNowMs();
  if (gauges_at_ms_ != 0 && steady - gauges_at_ms_ < ServerMetrics::kGaugePeriodMs) return;
  const size_t queues = config_.queues.size();
  std::vector<std::string> model_names;
  std::vector<PendingWork> pending;
  std::map<std::pair<std::string, std::string>, int64_t> pending_by;  // (queue, reason)
  std::vector<std::vector<int64_t>> asked(queues, std::vector<int64_t>(models, 0));
  std::vector<sched::TypicalTask> mix;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint32_t m = 0; m < models; ++m) model_names.push_back(models_.Name(core::GpuModelId(m)));
    for (const sched::PendingExplanation& p : plan.pending) {
      auto it = workloads_.find(p.workload.value());
      if (it == workloads_.end() || it->second.state != "Pending") continue;
      const core::WorkloadSpec& spec = it->second.parsed.spec;
      pending.push_back(PendingWork{p.workload, p.reason, spec.task, spec.min_tasks});
      ++pending_by[{it->second.parsed.queue_name, sched::ToString(p.reason)}];
      const uint32_t q = spec.queue.value();
      for (uint32_t m = 0; m < models && q < queues; ++m) {
        if (spec.task.models.Accepts(core::GpuModelId(m))) {
          asked[q][m] += int64_t{spec.min_tasks} * spec.task.total_milli_gpu();
        }
      }
    }
    mix = task_mix_.Typical();
  }
  if (mix.empty()) mix = sched::DefaultTypicalTasks();
  const sched::ClusterState& cluster = engine_->cluster();
  const std::vector<ModelGauges> g = ComputeModelGauges(cluster, models, pending, mix);

  // GPU-seconds idle while work waited since the last computation, at the value then.
  if (gauges_at_ms_ != 0) {
    const double dt = static_cast<double>(steady - gauges_at_ms_) / 1000.0;
    for (const auto& [model, idle] : idle_then_) {
      metrics_.AddIdleWhileWaitingSeconds(model, static_cast<double>(idle) * dt);
    }
    for (const auto& [queue, model, milli] : allocated_then_) {
      metrics_.AddAllocatedGpuSeconds(queue, model, Gpus(milli) * dt);
    }
  }
  idle_then_.clear();
  allocated_then_.clear();
  gauges_at_ms_ = steady;

  std::vector<prometheus::MetricFamily> out;
  auto gpus = GaugeFamily("gpuorch_gpus",
                          "GPUs per model by state: allocated (any part taken), free, draining "
                          "(free on a draining node), unhealthy (free but reported unhealthy by "
                          "its agent) and down (on a node not heard from).");
  auto allocated =
      GaugeFamily("gpuorch_gpus_allocated", "Allocated GPUs per model, fractions by their share.");
  auto idle = GaugeFamily("gpuorch_gpus_idle_while_waiting",
                          "Free GPUs that runnable pending work could use now (not held by "
                          "quota or a reservation; docs/operations.md).");
  auto frag = GaugeFamily("gpuorch_fragmented_gpus",
                          "FGD fragmentation of the free capacity against the live task mix, "
                          "in GPUs.");
  std::vector<ModelSummary> summary;
  for (uint32_t m = 0; m < models; ++m) {
    const std::string& name = model_names[m];
    const ModelGauges& v = g[m];
    // A model no node has (a workload asked for it) has no GPUs to show.
    if (v.allocated + v.free + v.draining + v.down + v.unhealthy == 0) continue;
    AddSample(gpus, {{"model", name}, {"state", "allocated"}}, static_cast<double>(v.allocated));
    AddSample(gpus, {{"model", name}, {"state", "free"}}, static_cast<double>(v.free));
    AddSample(gpus, {{"model", name}, {"state", "draining"}}, static_cast<double>(v.draining));
    AddSample(gpus, {{"model", name}, {"state", "down"}}, static_cast<double>(v.down));
    AddSample(gpus, {{"model", name}, {"state", "unhealthy"}}, static_cast<double>(v.unhealthy));
    AddSample(allocated, {{"model", name}}, Gpus(v.allocated_milli));
    AddSample(idle, {{"model", name}}, static_cast<double>(v.idle_while_waiting));
    AddSample(frag, {{"model", name}}, v.fragmented_milli / 1000.0);
    idle_then_.emplace_back(name, v.idle_while_waiting);
    metrics_.AddIdleWhileWaitingSeconds(name, 0);  // the model's series exists from now on
    summary.push_back(ModelSummary{name, v.idle_while_waiting, v.fragmented_milli});
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    model_summary_ = std::move(summary);
  }

  auto used = GaugeFamily("gpuorch_queue_gpus_used",
                          "GPUs a queue's work holds per model (subtree; evicting work included).");
  auto guaranteed =
      GaugeFamily("gpuorch_queue_gpus_guaranteed", "GPUs guaranteed to a queue per model.");
  auto limit = GaugeFamily("gpuorch_queue_gpus_limit",
                           "A queue's GPU limit per model (no series when unlimited).");
  auto fair = GaugeFamily("gpuorch_queue_gpus_fair_share",
                          "GPUs a queue is entitled to now per model: its guarantee up to its "
                          "demand plus its weighted part of the rest (docs/operations.md).");
  std::map<std::string, int> index;
  for (size_t i = 0; i < queues; ++i) index[config_.queues[i].name] = static_cast<int>(i);
  for (uint32_t m = 0; m < models; ++m) {
    const core::GpuModelId model(m);
    std::vector<ShareQueue> tree(queues);
    std::vector<int64_t> use(queues, 0);
    for (size_t i = 0; i < queues; ++i) {
      const QueueConfig& q = config_.queues[i];
      const core::QueueId id = queue_ids_.at(q.name);
      const QuotaConfig* e = QuotaFor(q, model_names[m]);
      use[i] = engine_->QueueUsage(id, model);
      ShareQueue& s = tree[i];
      s.parent = q.parent.empty() ? -1 : index.at(q.parent);
      s.weight = q.weight;
      s.can_lend = q.can_lend;
      s.can_borrow = q.can_borrow;
      s.guaranteed = e != nullptr ? e->guaranteed_milli : 0;
      s.limit = e != nullptr ? e->limit_milli : -1;
      s.demand = use[i] + (id.value() < queues ? asked[id.value()][m] : 0);
    }
    const std::vector<int64_t> shares = FairShares(tree, cluster.capacity_milli(model));
    const bool has_gpus = cluster.capacity_milli(model) > 0;
    for (size_t i = 0; i < queues; ++i) {
      const Labels l = {{"queue", config_.queues[i].name}, {"model", model_names[m]}};
      AddSample(used, l, Gpus(use[i]));
      // Leaf queues only, as accounting counts them; at the usage until the next pass.
      if (has_gpus && leaf_queues_.count(config_.queues[i].name)) {
        allocated_then_.emplace_back(config_.queues[i].name, model_names[m], use[i]);
        metrics_.AddAllocatedGpuSeconds(config_.queues[i].name, model_names[m], 0);
      }
      AddSample(guaranteed, l, Gpus(tree[i].guaranteed));
      if (tree[i].limit >= 0) AddSample(limit, l, Gpus(tree[i].limit));
      AddSample(fair, l, Gpus(shares[i]));
    }
  }

  auto waiting = GaugeFamily("gpuorch_workloads_pending",
                             "Pending workloads by leaf queue and the reason of the last cycle.");
  for (const auto& [name, id] : leaf_queues_) {
    for (sched::PendingReason r : kReasons) {
      auto it = pending_by.find({name, sched::ToString(r)});
      AddSample(waiting, {{"queue", name}, {"reason", sched::ToString(r)}},
                it == pending_by.end() ? 0.0 : static_cast<double>(it->second));
    }
  }
  auto mig_instances = GaugeFamily("gpuorch_mig_instances",
                                   "MIG instances per GPU model and profile by state: used (a "
                                   "task holds it), free, and creating (in a layout being "
                                   "applied; docs/partitioning.md).");
  auto mig_frag = GaugeFamily("gpuorch_mig_fragmented_slices",
                              "Compute slices of MIG GPUs not held by a task that no profile of "
                              "the live MIG mix could use (docs/partitioning.md).");
  const std::vector<MigGauges> mig = ComputeMigGauges(cluster, models, pending);
  for (uint32_t m = 0; m < models; ++m) {
    if (!mig[m].any) continue;
    for (const auto& [profile, counts] : mig[m].instances) {
      const char* states[] = {"used", "free", "creating"};
      for (int s = 0; s < 3; ++s) {
        AddSample(mig_instances,
                  {{"model", model_names[m]}, {"profile", profile}, {"state", states[s]}},
                  static_cast<double>(counts[s]));
      }
    }
    AddSample(mig_frag, {{"model", model_names[m]}}, static_cast<double>(mig[m].fragmented_slices));
  }
  for (auto* f : {&gpus, &allocated, &idle, &frag, &used, &guaranteed, &limit, &fair, &waiting,
                  &mig_instances, &mig_frag}) {
    out.push_back(std::move(*f));
  }
  metrics_.PublishEngineGauges(std::move(out));
}

std::string Controller::Metrics(std::vector<prometheus::MetricFamily> extra) {
  auto workloads = GaugeFamily("gpuorch_workloads",
                               "Workloads by state and leaf queue (an inference service counts "
                               "by its replicas, see gpuorch_service_replicas).");
  auto nodes = GaugeFamily("gpuorch_nodes", "Nodes by status (up: heard from; down: not).");
  auto node_up = GaugeFamily("gpuorch_node_up", "1 while the node is heard from, 0 once Down.");
  auto age = GaugeFamily("gpuorch_node_heartbeat_age_seconds",
                         "Seconds since the node's agent was last heard from (0 while its "
                         "watch is held: a held watch is contact).");
  auto alloc_idle = GaugeFamily(
      "gpuorch_gpus_allocated_idle",
      "Allocated GPUs (fractions by their share) whose measured utilization has stayed under "
      "gpu_idle_util_pct for gpu_idle_after, per model and leaf queue (docs/observability.md).");
  auto allocated_idle = GaugeFamily(
      "gpuorch_workloads_allocated_idle",
      "Running workloads with the AllocatedIdle condition (their GPUs idle for their queue's "
      "idle_reclaim.after_s, reported rather than stopped), per leaf queue.");
  auto queue_util = GaugeFamily(
      "gpuorch_queue_gpu_utilization",
      "Mean measured utilization (%) of a leaf queue's allocated GPUs, weighted by their share; "
      "no series while none of them has reported telemetry.");
  // The record gauges walk workloads and nodes a chunk at a time, taking the controller's
  // lock for one chunk only and resuming after the last key read (ids and names are stable),
  // so a scrape never holds the scheduler or the API off for long. Each workload and node is
  // counted once, as it was when its chunk was read; the totals are not one atomic snapshot.
  constexpr size_t kChunk = 1024;
  int64_t lock_max_ns = 0;
  auto locked = [&](auto&& read) {
    std::lock_guard<std::mutex> lock(mu_);
    const auto t0 = std::chrono::steady_clock::now();
    read();
    lock_max_ns = std::max<int64_t>(
        lock_max_ns,
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
            .count());
  };
  static const char* kStates[] = {"Pending",   "Running", "Preempted",
                                  "Succeeded", "Failed",  "Cancelled"};
  std::map<std::string, std::array<int64_t, 6>> by;
  std::map<std::string, int64_t> idle_workloads;
  // Telemetry of running tasks: idle milli-GPU per (model, queue); utilization x milli and
  // the milli measured, per queue.
  std::map<std::pair<std::string, std::string>, int64_t> idle_milli;
  std::map<std::string, std::pair<double, int64_t>> util;
  std::vector<std::string> leaves, model_names;
  size_t node_count = 0;
  locked([&] {
    leaves.reserve(leaf_queues_.size());
    for (const auto& [name, id] : leaf_queues_) leaves.push_back(name);
    for (uint32_t m = 0; m < models_.size(); ++m) {
      model_names.push_back(models_.Name(core::GpuModelId(m)));
    }
    node_count = nodes_.size();
  });
  for (const std::string& q : leaves) by[q] = {};
  for (const std::string& m : model_names) {
    for (const std::string& q : leaves) idle_milli[{m, q}] = 0;
  }
  for (int64_t after = std::numeric_limits<int64_t>::min(), more = 1; more;) {
    locked([&] {
      auto it = workloads_.upper_bound(after);
      for (size_t n = 0; it != workloads_.end() && n < kChunk; ++it, ++n) {
        const WorkloadRecord& w = it->second;
        after = it->first;
        // A service record holds nothing: its replicas are the workloads counted.
        if (w.parsed.service) continue;
        auto& counts = by[w.parsed.queue_name];
        for (size_t st = 0; st < 6; ++st) {
          if (w.state == kStates[st]) ++counts[st];
        }
        if (w.state != "Running") continue;
        if (w.allocated_idle) ++idle_workloads[w.parsed.queue_name];
        for (const TaskRecord& t : w.tasks) {
          if (t.gpus.empty() || t.gpu_util_pct < 0 || t.state == "exited" || t.state == "lost") {
            continue;
          }
          const int64_t milli = static_cast<int64_t>(t.gpus.size()) * t.gpu_milli;
          auto& u = util[w.parsed.queue_name];
          u.first += t.gpu_util_pct * static_cast<double>(milli);
          u.second += milli;
          if (t.idle) idle_milli[{t.model, w.parsed.queue_name}] += milli;
        }
      }
      more = it != workloads_.end();
    });
  }
  struct NodeRow {
    std::string name;
    bool down;
    int64_t age_ms;
  };
  std::vector<NodeRow> rows;
  rows.reserve(node_count + kChunk);  // no reallocation under the lock
  bool first = true;
  for (std::string after; first || !after.empty();) {
    std::string last;
    locked([&] {
      const int64_t steady = SteadyNowMs();
      auto it = first ? nodes_.begin() : nodes_.upper_bound(after);
      for (size_t n = 0; it != nodes_.end() && n < kChunk; ++it, ++n) {
        const NodeRecord& node = it->second;
        rows.push_back(NodeRow{
            it->first, node.down,
            node.watches.empty() ? std::max<int64_t>(steady - node.last_heartbeat_ms, 0) : 0});
      }
      if (it != nodes_.end()) last = rows.back().name;
    });
    first = false;
    after = last;
  }
  auto svc_replicas = GaugeFamily(
      "gpuorch_service_replicas",
      "Replicas of an inference service by state: desired (the autoscaler's decision or the "
      "pinned size), ready (receiving traffic), pending (waiting to be placed), starting "
      "(placed, not ready yet), draining (scaled down, finishing its requests), evicting "
      "(preempted, "
      "stopping to wait in the queue again).");
  auto svc_in_flight = GaugeFamily(
      "gpuorch_service_autoscaler_in_flight",
      "In-flight requests of an inference service as its autoscaler sees them: the max over "
      "its signals, averaged over the stable window.");
  locked([&] { ServiceSamples(svc_replicas, svc_in_flight); });
  metrics_lock_ns_.store(lock_max_ns, std::memory_order_relaxed);

  for (const auto& [key, milli] : idle_milli) {
    AddSample(alloc_idle, {{"model", key.first}, {"queue", key.second}}, Gpus(milli));
  }
  for (const auto& [queue, u] : util) {
    if (u.second > 0) {
      AddSample(queue_util, {{"queue", queue}}, u.first / static_cast<double>(u.second));
    }
  }
  for (const auto& [queue, counts] : by) {
    const auto n = idle_workloads.find(queue);
    AddSample(allocated_idle, {{"queue", queue}},
              n == idle_workloads.end() ? 0.0 : static_cast<double>(n->second));
    for (size_t st = 0; st < 6; ++st) {
      AddSample(workloads, {{"queue", queue}, {"state", kStates[st]}},
                static_cast<double>(counts[st]));
    }
  }
  int64_t up = 0, down = 0;
  for (const NodeRow& r : rows) {
    (r.down ? down : up)++;
    AddSample(node_up, {{"node", r.name}}, r.down ? 0.0 : 1.0);
    AddSample(age, {{"node", r.name}}, static_cast<double>(r.age_ms) / 1000.0);
  }
  AddSample(nodes, {{"status", "up"}}, static_cast<double>(up));
  AddSample(nodes, {{"status", "down"}}, static_cast<double>(down));
  for (auto* f : {&workloads, &nodes, &node_up, &age, &alloc_idle, &allocated_idle, &queue_util,
                  &svc_replicas, &svc_in_flight}) {
    extra.push_back(std::move(*f));
  }
  return metrics_.Render(std::move(extra));
}

}  // namespace gpuorch::server
