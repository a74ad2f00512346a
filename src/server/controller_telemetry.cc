// GPU telemetry from the agents' heartbeats (docs/observability.md): per-GPU readings on the
// node record, per-task utilization and memory on the task records, GPU health into the
// engine (it places nothing new on an unhealthy GPU), and idle detection (allocated-idle
// GPUs, an event when a task's GPUs go idle and when they are busy again).
#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "log/logging.h"
#include "server/controller.h"

namespace gpuorch::server {

namespace {

// A number in [lo, hi], or -1 when absent or not a number.
double Number(const Json& j, const char* key, double lo, double hi) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return -1;
  const double v = it->get<double>();
  return std::isfinite(v) ? std::clamp(v, lo, hi) : -1;
}

std::string Minutes(int64_t seconds) {
  if (seconds % 60 != 0) return std::to_string(seconds) + "s";
  return std::to_string(seconds / 60) + "m";
}

}  // namespace

void Controller::IngestTelemetry(NodeRecord& n, const Json& t) {
  if (!t.is_object()) return;
  const int64_t now = Now();
  n.telemetry_wall_ms = now;
  n.gpu_telemetry.resize(static_cast<size_t>(n.spec.gpu_count));
  uint16_t unhealthy = 0;
  if (auto gpus = t.find("gpus"); gpus != t.end() && gpus->is_array()) {
    for (const Json& g : *gpus) {
      if (!g.is_object()) continue;
      const double index = Number(g, "index", -1, 64);
      if (index < 0 || index >= n.spec.gpu_count || index >= 16 || index != std::floor(index)) {
        continue;
      }
      const auto j = static_cast<size_t>(index);
      NodeRecord::GpuTelemetry& r = n.gpu_telemetry[j];
      r.util_pct = Number(g, "util", 0, 100);
      const double mem = Number(g, "mem_used_mib", 0, 1e12);
      r.memory_used_mib = mem < 0 ? -1 : static_cast<int64_t>(mem);
      const bool healthy = g.value("healthy", true) != false;
      r.health.clear();
      if (!healthy) {
        auto why = g.find("health");
        r.health = why != g.end() && why->is_string() && !why->get<std::string>().empty()
                       ? why->get<std::string>().substr(0, 200)
                       : "unhealthy";
        unhealthy = static_cast<uint16_t>(unhealthy | (1u << j));
      }
    }
  }
  if (const uint32_t changed = static_cast<uint32_t>(unhealthy ^ n.unhealthy_gpus); changed != 0) {
    for (int j = 0; j < n.spec.gpu_count; ++j) {
      if (((changed >> j) & 1u) == 0) continue;
      const bool is = (unhealthy >> j) & 1u;
      const std::string& why = n.gpu_telemetry[static_cast<size_t>(j)].health;
      if (is) {
        log::Warn("gpu_unhealthy", {{"node", n.name}, {"gpu", j}, {"why", why}});
      } else {
        log::Info("gpu_healthy", {{"node", n.name}, {"gpu", j}});
      }
      // The workloads on the GPU hear of it: their work may fail, nothing new joins them.
      for (int64_t id : on_node_[n.name]) {
        WorkloadRecord& w = workloads_.at(id);
        for (const TaskRecord& task : w.tasks) {
          if (task.node != n.name || task.state == "exited" || task.state == "lost") continue;
          if (std::find(task.gpus.begin(), task.gpus.end(), j) == task.gpus.end()) continue;
          Event(w, is ? "GpuUnhealthy" : "GpuHealthy",
                "GPU " + std::to_string(j) + " of " + n.name +
                    (is ? " (task " + std::to_string(task.task) + ") unhealthy: " + why +
                              "; no new work is placed on it"
                        : " healthy again"));
          break;
        }
      }
    }
    n.unhealthy_gpus = unhealthy;
    Enqueue(EngineEvent::Node(n.name));
    Kick();
  }
  auto tasks = t.find("tasks");
  if (tasks == t.end() || !tasks->is_array()) return;
  std::set<int64_t> sampled;
  for (const Json& r : *tasks) {
    if (!r.is_object()) continue;
    auto wid = r.find("workload");
    if (wid == r.end() || !wid->is_number_integer()) continue;
    auto w = workloads_.find(wid->get<int64_t>());
    if (w == workloads_.end() || w->second.state != "Running") continue;
    WorkloadRecord& rec = w->second;
    if (r.value("attempt", -1) != rec.attempt) continue;
    const int32_t index = r.value("task", -1);
    for (TaskRecord& task : rec.tasks) {
      if (task.task != index || task.node != n.name || task.state == "exited" ||
          task.state == "lost") {
        continue;
      }
      sampled.insert(rec.id);
      task.gpu_util_pct = Number(r, "util", 0, 100);
      const double mem = Number(r, "mem_used_mib", 0, 1e12);
      task.gpu_memory_used_mib = mem < 0 ? -1 : static_cast<int64_t>(mem);
      if (task.gpus.empty() || task.gpu_util_pct < 0) break;
      if (task.gpu_util_pct >= config_.gpu_idle_util_pct) {
        task.idle_since_ms = 0;
        if (task.idle) {
          task.idle = false;
          Event(rec, "Busy",
                "task " + std::to_string(task.task) + "'s GPUs in use again (" +
                    std::to_string(static_cast<int>(std::lround(task.gpu_util_pct))) + "%)");
        }
      } else {
        if (task.idle_since_ms == 0) task.idle_since_ms = now;
        if (!task.idle && now - task.idle_since_ms >= config_.gpu_idle_after_s * 1000) {
          task.idle = true;
          const std::string threshold =
              std::to_string(static_cast<int>(std::lround(config_.gpu_idle_util_pct)));
          log::Info("gpu_idle", {{"workload", rec.id},
                                 {"queue", rec.parsed.queue_name},
                                 {"task", task.task},
                                 {"node", n.name},
                                 {"gpus", task.gpus},
                                 {"util_pct", task.gpu_util_pct}});
          Event(rec, "Idle",
                "task " + std::to_string(task.task) + "'s GPUs under " + threshold +
                    "% utilization for " + Minutes(config_.gpu_idle_after_s) + " (on " + n.name +
                    ")");
        }
      }
      break;
    }
  }
  for (int64_t id : sampled) CheckIdleReclaim(workloads_.at(id), now);
}

void Controller::CheckIdleReclaim(WorkloadRecord& w, int64_t now) {
  const QueueConfig::IdleReclaim* policy = config_.IdleReclaimOf(w.parsed.queue_name);
  if (policy == nullptr || w.state != "Running" || w.cancel_requested) return;
  // Idle since the latest of its GPU tasks went idle; not idle while any of them is busy or
  // has not reported.
  int64_t since = 0;
  bool any = false;
  for (const TaskRecord& t : w.tasks) {
    if (t.gpus.empty() || t.stopping || t.state != "running") continue;
    if (t.idle_since_ms == 0) {
      w.allocated_idle = false;
      return;
    }
    since = std::max(since, t.idle_since_ms);
    any = true;
  }
  if (!any || now - since < policy->after_s * 1000) {
    w.allocated_idle = false;
    return;
  }
  const std::string kind = core::ToString(w.parsed.spec.kind);
  const bool listed =
      std::find(policy->kinds.begin(), policy->kinds.end(), kind) != policy->kinds.end();
  const std::string what =
      "its GPUs under " + std::to_string(static_cast<int>(std::lround(config_.gpu_idle_util_pct))) +
      "% utilization for " + Minutes(policy->after_s);
  // A service's replica is never stopped for idleness: its autoscaler sizes the service and
  // would only start another.
  if (policy->evict && listed && w.parsed.spec.preemptible && w.parsed.service_of == 0) {
    log::Info("idle_reclaim", {{"workload", w.id}, {"queue", w.parsed.queue_name}, {"kind", kind}});
    Event(w, "IdleReclaimed", what + ": stopped by its queue's idle_reclaim policy");
    metrics_.CountPreemption("IdleReclaimed", w.parsed.queue_name);
    CancelLocked(w, "idle reclaim");
    return;
  }
  if (!w.allocated_idle) {
    w.allocated_idle = true;
    Event(w, "AllocatedIdle",
          what + (policy->evict && listed
                      ? (w.parsed.service_of > 0 ? " (a service's replica: its autoscaler "
                                                   "scales it; reported, not stopped)"
                                                 : " (not preemptible: reported, not stopped)")
                      : " (reported by its queue's idle_reclaim policy)"));
  }
}

}  // namespace gpuorch::server
