// Randomized property tests: long event sequences against the engine, with a small driver
// that applies plans the way a real one does (evictions complete after the grace period,
// tasks finish after their runtime). After every cycle the invariants are checked.
#include <gtest/gtest.h>

#include <bit>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "core/rng.h"
#include "sched/scheduler.h"
#include "sched/testing.h"

namespace gpuorch::sched {
namespace {

using core::kSecond;
using core::QueueId;
using core::TopologyLevel;
using testing::NodeBuilder;
using testing::QueueBuilder;
using testing::WorkloadBuilder;

struct Driver {
  explicit Driver(uint64_t seed, const std::string& policy = "gpuorch") : rng(seed) {
    auto s = Scheduler::Create(SchedulerConfig{.policy = policy, .seed = seed});
    EXPECT_TRUE(s.ok());
    sched = std::move(s).value();
  }

  // Applies a plan: binds start tasks; evictions/resizes complete after their grace period.
  void Apply(const Plan& p) {
    for (const Bind& b : p.binds) {
      Time end = p.now + runtime[b.workload];
      if (!b.elastic) finish_at.emplace(end, b.workload), started[b.workload] = p.now;
    }
    for (const Eviction& e : p.evictions) evict_at.emplace(p.now + e.grace_period, e.workload);
    for (const Resize& r : p.resizes) {
      for (int32_t t : r.tasks)
        shrink_at.emplace(p.now + r.grace_period, std::make_pair(r.workload, t));
    }
  }

  // Advances time to `now`, completing due evictions, resizes and finishes.
  void Advance(Time now) {
    while (!evict_at.empty() && evict_at.begin()->first <= now) {
      WorkloadId w = evict_at.begin()->second;
      evict_at.erase(evict_at.begin());
      if (sched->state(w) == WorkloadState::kEvicting) {
        EXPECT_TRUE(sched->EvictionCompleted(w).ok());
        ++evictions_done;
      }
    }
    while (!shrink_at.empty() && shrink_at.begin()->first <= now) {
      auto [w, t] = shrink_at.begin()->second;
      shrink_at.erase(shrink_at.begin());
      if (sched->state(w) == WorkloadState::kRunning) (void)sched->TaskFinished(w, t);
    }
    while (!finish_at.empty() && finish_at.begin()->first <= now) {
      WorkloadId w = finish_at.begin()->second;
      finish_at.erase(finish_at.begin());
      if (sched->state(w) == WorkloadState::kRunning) {
        EXPECT_TRUE(sched->WorkloadFinished(w).ok());
      }
    }
  }

  core::Rng rng;
  std::unique_ptr<Scheduler> sched;
  std::map<WorkloadId, Duration> runtime;
  std::map<WorkloadId, WorkloadSpec> specs;
  std::map<WorkloadId, Time> started;        // when the current run began
  std::map<WorkloadId, int> preempting_for;  // cycles a preemptor has waited with no new victim
  std::vector<core::NodeSpec> nodes;         // as last given to the engine
  std::vector<int64_t> guarantees;           // milli-GPU per queue, every model
  std::multimap<Time, WorkloadId> finish_at, evict_at;
  std::multimap<Time, std::pair<WorkloadId, int32_t>> shrink_at;
  int evictions_done = 0;
};

std::string Serialize(const Plan& p) {
  std::ostringstream o;
  o << "t" << p.now;
  for (const Bind& b : p.binds) {
    o << " B" << b.workload.value() << (b.elastic ? "e" : "");
    for (const TaskBinding& t : b.tasks)
      o << ":" << t.task << "@" << t.node.value() << "/" << t.gpus;
  }
  for (const Eviction& e : p.evictions) {
    o << " E" << e.workload.value() << ">" << e.preemptor.value() << "r" << int(e.reason);
  }
  for (const Resize& r : p.resizes) o << " R" << r.workload.value() << "x" << r.tasks.size();
  for (const PendingExplanation& e : p.pending)
    o << " P" << e.workload.value() << "r" << int(e.reason);
  return o.str();
}

WorkloadSpec RandomWorkload(core::Rng& rng, uint32_t queues, Time now) {
  static const int kGpus[] = {1, 1, 1, 2, 4, 8};
  WorkloadBuilder b("w", static_cast<uint32_t>(rng.Uniform(queues)));
  if (rng.Uniform(5) == 0) {
    b.Fraction(static_cast<int>(100 + rng.Uniform(800)));
  } else {
    b.Gpus(kGpus[rng.Uniform(6)]);
  }
  int min = rng.Uniform(4) == 0 ? static_cast<int>(1 + rng.Uniform(4)) : 1;
  int max = rng.Uniform(4) == 0 ? min + static_cast<int>(rng.Uniform(3)) : min;
  b.Tasks(min, max).Priority(static_cast<int>(rng.Uniform(3)) * 10).Submitted(now);
  b.Grace(static_cast<Duration>(rng.Uniform(4)) * kSecond);
  if (rng.Uniform(6) == 0) b.NonPreemptible();
  if (rng.Uniform(5) == 0) b.MinRuntime(static_cast<Duration>(rng.Uniform(5)) * kSecond);
  if (rng.Uniform(4) == 0) b.Estimate(static_cast<Duration>(1 + rng.Uniform(30)) * kSecond);
  switch (rng.Uniform(6)) {
    case 0:
      b.Require(TopologyLevel::kRack);
      break;
    case 1:
      b.Prefer(TopologyLevel::kRack);
      break;
    case 2:
      b.Require(TopologyLevel::kNode);
      break;
    default:
      break;
  }
  if (rng.Uniform(5) == 0) b.Model(static_cast<uint32_t>(rng.Uniform(2)));
  return b;
}

// An oracle independent of the engine's capacity summary: whether w fits the empty cluster
// as its schedulable nodes and healthy GPUs are now (one GPU model per gang; required
// levels honoured).
bool FitsEmptyCluster(const Driver& d, const WorkloadSpec& w) {
  const core::TaskRequest& t = w.task;
  auto holds = [&](const core::NodeSpec& n) -> int64_t {
    if (n.status != core::NodeStatus::kReady || !t.models.Accepts(n.gpu_model)) return 0;
    int64_t k = std::min(n.milli_cpu / std::max<int64_t>(1, t.milli_cpu),
                         n.memory_mib / std::max<int64_t>(1, t.memory_mib));
    const int64_t healthy = n.gpu_count - std::popcount(n.unhealthy_gpus);
    if (t.fractional()) return std::min<int64_t>(k, healthy * (1000 / t.gpu_milli));
    return std::min<int64_t>(k, healthy / t.gpu_count);
  };
  const bool required = w.topology.required;
  for (uint32_t m = 0; m < 2; ++m) {
    std::map<std::string, int64_t> per_rack;
    int64_t total = 0;
    for (const core::NodeSpec& n : d.nodes) {
      if (n.gpu_model.value() != m) continue;
      int64_t h = holds(n);
      if (required && w.topology.level == TopologyLevel::kNode && h >= w.min_tasks) return true;
      per_rack[n.rack] += h;
      total += h;
    }
    if (required && w.topology.level == TopologyLevel::kNode) continue;
    if (required && w.topology.level == TopologyLevel::kRack) {
      for (const auto& [r, h] : per_rack) {
        if (h >= w.min_tasks) return true;
      }
      continue;
    }
    if (total >= w.min_tasks) return true;
  }
  return false;
}

// What ClusterState::Release does, on a copy of a node's free state (the oracle's own).
void ReleaseOnCopy(NodeState& n, const core::TaskRequest& t, const TaskBinding& b) {
  n.cpu_free += t.milli_cpu;
  n.memory_free += t.memory_mib;
  for (int j = 0; j < n.gpu_count; ++j) {
    if (!((b.gpus >> j) & 1u)) continue;
    n.gpu_free[j] = static_cast<int16_t>(n.gpu_free[j] + b.gpu_milli);
    n.gpu_mem_free[j] =
        t.fractional() ? n.gpu_mem_free[j] + t.gpu_memory_mib : n.gpu_memory_capacity;
  }
}

// Minimal victim sets: for a one-task preemptor whose victims all run on one node, every
// victim is needed. Judged on the node as the plan left it (victims still allocated):
// with all victims gone the preemptor fits, and with any one of them kept it does not.
// Returns a violation or "", and counts the sets it judged.
std::string CheckMinimalVictims(const Driver& d, const Plan& p, int* judged) {
  struct Unit {
    WorkloadId victim;
    std::vector<TaskBinding> tasks;
  };
  std::map<WorkloadId, std::vector<Unit>> by_preemptor;
  for (const Eviction& e : p.evictions) {
    if (e.reason == EvictionReason::kNodeLost) continue;
    by_preemptor[e.preemptor].push_back({e.workload, d.sched->Placement(e.workload)});
  }
  for (const Resize& r : p.resizes) {
    for (int32_t task : r.tasks) {
      for (const TaskBinding& b : d.sched->Placement(r.workload)) {
        if (b.task == task) by_preemptor[r.preemptor].push_back({r.workload, {b}});
      }
    }
  }
  const ClusterState& c = d.sched->cluster();
  for (const auto& [pid, units] : by_preemptor) {
    const WorkloadSpec& ps = d.specs.at(pid);
    if (ps.min_tasks != 1 || ps.topology.required) continue;
    std::set<uint32_t> on;
    for (const Unit& u : units) {
      for (const TaskBinding& b : u.tasks) on.insert(b.node.value());
    }
    if (on.size() != 1) continue;
    const NodeState& node = c.node(NodeId(*on.begin()));
    if (node.reserved_gpus != 0 && node.reserved_for != pid) continue;  // lent capacity
    auto fits_without = [&](size_t keep) {
      NodeState copy = node;
      for (size_t i = 0; i < units.size(); ++i) {
        if (i == keep) continue;
        for (const TaskBinding& b : units[i].tasks) {
          ReleaseOnCopy(copy, d.specs.at(units[i].victim).task, b);
        }
      }
      return Fits(copy, ps.task, pid, 0);
    };
    if (!fits_without(SIZE_MAX)) {
      std::string dbg = " node " + std::to_string(node.id.value()) + " free";
      for (int j = 0; j < node.gpu_count; ++j) dbg += " " + std::to_string(node.gpu_free[j]);
      dbg += " bad " + std::to_string(node.unhealthy_gpus);
      dbg += " res " + std::to_string(node.reserved_gpus) + " for " +
             std::to_string(node.reserved_for.value()) + " task " +
             std::to_string(ps.task.gpu_count) + "x" + std::to_string(ps.task.gpu_milli) + " cpu " +
             std::to_string(node.cpu_free) + " units " + std::to_string(units.size());
      for (const Unit& u : units) {
        for (const TaskBinding& b : u.tasks)
          dbg += " v" + std::to_string(u.victim.value()) + "@" + std::to_string(b.node.value()) +
                 "/" + std::to_string(b.gpus) + "x" + std::to_string(b.gpu_milli);
      }
      return "victims do not make room for " + std::to_string(pid.value()) + dbg;
    }
    ++*judged;
    for (size_t i = 0; i < units.size(); ++i) {
      if (fits_without(i)) {
        std::string dbg = " node " + std::to_string(node.id.value()) + " free";
        for (int j = 0; j < node.gpu_count; ++j) dbg += " " + std::to_string(node.gpu_free[j]);
        dbg += " cpu " + std::to_string(node.cpu_free) + " task gpus " +
               std::to_string(ps.task.gpu_count) + "x" + std::to_string(ps.task.gpu_milli) +
               " mem " + std::to_string(ps.task.gpu_memory_mib) + " models " +
               std::to_string(ps.task.models.bits()) + " nodemodel " +
               std::to_string(node.model.value()) + " res " + std::to_string(node.reserved_gpus);
        return "victim " + std::to_string(units[i].victim.value()) + " not needed by " +
               std::to_string(pid.value()) + dbg;
      }
    }
  }
  return "";
}

// Checks what must hold after every cycle; returns the first violation, or "".
std::string CheckInvariants(Driver& d, const Plan& p, uint32_t queues, uint32_t nodes,
                            const std::vector<int64_t>& limits, int* minimal_judged,
                            int* harvests_beyond_guarantee) {
  const ClusterState& c = d.sched->cluster();
  // No GPU over-committed, and the engine's accounting matches the placements.
  std::map<std::pair<uint32_t, int>, int64_t> used;
  for (const auto& [w, spec] : d.specs) {
    WorkloadState st = d.sched->state(w);
    if (st != WorkloadState::kRunning && st != WorkloadState::kEvicting) continue;
    auto tasks = d.sched->Placement(w);
    if (st == WorkloadState::kRunning && static_cast<int>(tasks.size()) < spec.min_tasks) {
      return "running gang below min_tasks: " + std::to_string(w.value());
    }
    if (static_cast<int>(tasks.size()) > spec.max_tasks) return "more than max_tasks";
    for (const TaskBinding& t : tasks) {
      for (int j = 0; j < 16; ++j) {
        if ((t.gpus >> j) & 1u) used[{t.node.value(), j}] += t.gpu_milli;
      }
    }
  }
  for (uint32_t n = 0; n < nodes; ++n) {
    if (!c.Has(NodeId(n))) continue;
    const NodeState& s = c.node(NodeId(n));
    for (int j = 0; j < s.gpu_count; ++j) {
      int64_t u = used.count({n, j}) ? used[{n, j}] : 0;
      if (u > 1000) return "GPU over-committed";
      if (u != 1000 - s.gpu_free[j]) return "accounting differs from placements";
    }
  }
  // Gangs atomic: a bind carries at least min_tasks. Nothing is bound on an unhealthy GPU.
  for (const Bind& b : p.binds) {
    if (!b.elastic && static_cast<int>(b.tasks.size()) < d.specs.at(b.workload).min_tasks) {
      return "partial gang bound";
    }
    for (const TaskBinding& t : b.tasks) {
      if (t.gpus & d.nodes[t.node.value()].unhealthy_gpus) {
        return "bound on an unhealthy GPU: " + std::to_string(b.workload.value());
      }
    }
  }
  // Limits held.
  for (uint32_t q = 0; q < queues; ++q) {
    for (uint32_t m = 0; m < 2; ++m) {
      int64_t u = d.sched->QueueUsage(QueueId(q), GpuModelId(m));
      if (limits[q] >= 0 && u > limits[q]) return "queue limit exceeded";
    }
  }
  // Every eviction names its preemptor; protected work goes only with its node.
  auto protected_work = [&](WorkloadId v) -> std::string {
    if (!d.specs.count(v)) return "unknown workload in the plan: " + std::to_string(v.value());
    const WorkloadSpec& s = d.specs.at(v);
    if (!s.preemptible) return "non-preemptible work evicted: " + std::to_string(v.value());
    // Nothing is bound and evicted in the same cycle (a start that is killed at once).
    if (!d.started.count(v)) return "bound and evicted in one cycle: " + std::to_string(v.value());
    if (p.now - d.started.at(v) < s.min_runtime) {
      return "evicted before min_runtime: " + std::to_string(v.value());
    }
    return "";
  };
  // Another queue's work taken for an inference preemptor is Harvested; for any other
  // preemptor it is ReclaimGuarantee; Harvested names nothing else.
  auto reason_fits = [&](WorkloadId v, EvictionReason r, WorkloadId by) -> std::string {
    if (r != EvictionReason::kHarvested && r != EvictionReason::kReclaimGuarantee) return "";
    if (!d.specs.count(by)) return "unknown preemptor: " + std::to_string(by.value());
    const bool inference = d.specs.at(by).kind == core::WorkloadKind::kInference;
    const bool other = d.specs.at(v).queue != d.specs.at(by).queue;
    if ((r == EvictionReason::kHarvested) != (inference && other)) {
      return std::string(ToString(r)) + " for " + (inference ? "an inference" : "another") +
             " preemptor: " + std::to_string(v.value());
    }
    return "";
  };
  // What this plan bound, per (queue, model): usage when a preemptor was judged was at
  // least the usage now less that.
  std::map<std::pair<uint32_t, uint32_t>, int64_t> bound;
  for (const Bind& b : p.binds) {
    for (const TaskBinding& t : b.tasks) {
      bound[{d.specs.at(b.workload).queue.value(), c.node(t.node).model.value()}] +=
          int64_t{t.gpu_milli} * std::popcount(t.gpus);
    }
  }
  std::set<WorkloadId> fresh_victims_for;
  for (const Eviction& e : p.evictions) {
    if (e.reason == EvictionReason::kNodeLost) continue;
    if (!e.preemptor.valid()) return "anonymous eviction";
    if (std::string bad = protected_work(e.workload); !bad.empty()) return bad;
    if (std::string bad = reason_fits(e.workload, e.reason, e.preemptor); !bad.empty()) return bad;
    // A preemptor whose queue was over its guarantee with its request counted was not in
    // quota: its victims are harvested, of strictly lower priority only.
    const auto tasks = d.sched->Placement(e.workload);
    if (e.reason == EvictionReason::kHarvested && !tasks.empty()) {
      const WorkloadSpec& by = d.specs.at(e.preemptor);
      const GpuModelId m = c.node(tasks.front().node).model;
      const int64_t need = by.task.total_milli_gpu() * by.min_tasks;
      const int64_t before =
          d.sched->QueueUsage(by.queue, m) - bound[{by.queue.value(), m.value()}];
      if (before + need > d.guarantees[by.queue.value()]) {
        if (d.specs.at(e.workload).priority >= by.priority) {
          return "harvested work of equal or higher priority: " +
                 std::to_string(e.workload.value());
        }
        ++*harvests_beyond_guarantee;
      }
    }
    fresh_victims_for.insert(e.preemptor);
  }
  for (const Resize& r : p.resizes) {
    if (std::string bad = protected_work(r.workload); !bad.empty()) return bad;
    if (std::string bad = reason_fits(r.workload, r.reason, r.preemptor); !bad.empty()) return bad;
    fresh_victims_for.insert(r.preemptor);
  }
  // No queue is reclaimed below its guarantee: what stays after every stopping task left,
  // not counting work this plan stops for other reasons (the queue's own higher-priority
  // work, or a reservation taking back the GPUs it lent): those are not reclaims.
  std::map<std::pair<uint32_t, uint32_t>, int64_t> own;  // (queue, model) -> milli
  auto milli_of = [&](const std::vector<TaskBinding>& tasks, GpuModelId* m) {
    int64_t sum = 0;
    for (const TaskBinding& t : tasks) {
      sum += int64_t{t.gpu_milli} * std::popcount(t.gpus);
      *m = c.node(t.node).model;
    }
    return sum;
  };
  for (const Eviction& e : p.evictions) {
    if (e.reason == EvictionReason::kNodeLost || e.reason == EvictionReason::kReclaimGuarantee ||
        e.reason == EvictionReason::kHarvested) {
      continue;
    }
    const QueueId q = d.specs.at(e.workload).queue;
    GpuModelId m;
    const int64_t milli = milli_of(d.sched->Placement(e.workload), &m);
    own[{q.value(), m.value()}] += milli;
  }
  for (const Eviction& e : p.evictions) {
    if (e.reason != EvictionReason::kReclaimGuarantee && e.reason != EvictionReason::kHarvested) {
      continue;
    }
    const QueueId q = d.specs.at(e.workload).queue;
    auto tasks = d.sched->Placement(e.workload);
    if (tasks.empty()) continue;
    const GpuModelId m = c.node(tasks.front().node).model;
    const int64_t stays =
        d.sched->QueueUsage(q, m) - d.sched->QueueEvicting(q, m) + own[{q.value(), m.value()}];
    if (stays < d.guarantees[q.value()]) {
      return "queue " + std::to_string(q.value()) + " reclaimed below its guarantee";
    }
  }
  // Every pending workload is explained, exactly once; Unschedulable exactly when the
  // workload cannot fit the empty cluster (among those that reached placement: quota and
  // model reasons are reported first).
  std::set<WorkloadId> explained;
  for (const PendingExplanation& e : p.pending) {
    if (!explained.insert(e.workload).second) return "pending workload explained twice";
    if (d.sched->state(e.workload) != WorkloadState::kPending) return "explained but not pending";
    const bool placeable =
        e.reason == PendingReason::kNoFit || e.reason == PendingReason::kTopologyUnsatisfiable ||
        e.reason == PendingReason::kPreempting || e.reason == PendingReason::kReserved ||
        e.reason == PendingReason::kBlockedByReservation;
    const bool fits = FitsEmptyCluster(d, d.specs.at(e.workload));
    if (e.reason == PendingReason::kUnschedulable && fits) {
      return "Unschedulable but fits the empty cluster: " + std::to_string(e.workload.value());
    }
    if (placeable && !fits) {
      return std::string(ToString(e.reason)) +
             " but cannot fit the empty cluster: " + std::to_string(e.workload.value());
    }
  }
  for (const auto& [w, spec] : d.specs) {
    if (d.sched->state(w) == WorkloadState::kPending && !explained.count(w)) {
      return "pending workload without a reason: " + std::to_string(w.value());
    }
  }
  // Holds and claims never leak: with nothing pending, nothing is held for anyone.
  if (p.pending.empty()) {
    Scheduler::Holds h = d.sched->holds();
    if (h.reserved_nodes || h.victim_links || h.claimed_milli || h.holders) {
      return "holds leak with nothing pending";
    }
  }
  // Liveness: a preemptor does not wait forever. Victims leave within their grace period
  // (at most 3 s here, a cycle per second), so a preemptor that saw no new victim for more
  // cycles than that has been stranded.
  std::map<WorkloadId, int> waiting;
  for (const PendingExplanation& e : p.pending) {
    if (e.reason != PendingReason::kPreempting) continue;
    int n = fresh_victims_for.count(e.workload) ? 0 : d.preempting_for[e.workload] + 1;
    if (n > 6) return "preemptor stranded: " + std::to_string(e.workload.value());
    waiting[e.workload] = n;
  }
  d.preempting_for = std::move(waiting);
  return CheckMinimalVictims(d, p, minimal_judged);
}

// What a history exercised, so the test can tell that it covered each mechanism.
struct Coverage {
  int binds = 0, elastic = 0, evictions = 0, resizes = 0, reserved = 0, node_lost = 0;
  int unschedulable = 0, minimal_judged = 0, drained = 0, health_changes = 0;
  int harvested = 0;  // evictions and resizes for an inference preemptor (Harvested)
  int harvested_beyond_guarantee = 0;  // of those evictions, by a replica not in quota
  int64_t unhealthy_gpu_cycles = 0;    // unhealthy GPUs summed over cycles
};

// Runs one random history; returns the concatenated plans.
std::string RunHistory(uint64_t seed, int steps, const std::string& policy,
                       Coverage* cov = nullptr) {
  Driver d(seed, policy);
  core::Rng& rng = d.rng;
  const uint32_t queues = 4;
  std::vector<int64_t> limits(queues, -1);
  for (uint32_t q = 0; q < queues; ++q) {
    QueueBuilder b("q" + std::to_string(q));
    int64_t g = static_cast<int64_t>(rng.Uniform(12));
    int64_t lim = rng.Uniform(3) == 0 ? g + static_cast<int64_t>(rng.Uniform(16)) : -1;
    b.Guarantee(g, lim).Weight(static_cast<int>(1 + rng.Uniform(3)));
    if (rng.Uniform(4) == 0) b.NoBorrow();
    if (rng.Uniform(4) == 0) b.NoLend();
    limits[q] = lim < 0 ? -1 : lim * 1000;
    d.guarantees.push_back(g * 1000);
    EXPECT_TRUE(d.sched->AddQueue(QueueId(q), b).ok());
  }
  const uint32_t nodes = static_cast<uint32_t>(6 + rng.Uniform(10));
  for (uint32_t n = 0; n < nodes; ++n) {
    d.nodes.push_back(NodeBuilder("n" + std::to_string(n))
                          .Gpus(rng.Uniform(3) == 0 ? 4 : 8, n % 2)
                          .Rack("r" + std::to_string(n / 4))
                          .Nvlink(4));
    EXPECT_TRUE(d.sched->AddNode(NodeId(n), d.nodes.back()).ok());
  }
  std::string trace;
  uint32_t next_id = 0;
  std::set<uint32_t> down;
  // GPU failures and recoveries draw from their own generator, so that the rest of each
  // history stays what it was without them.
  core::Rng health(seed * 7919 + 1);
  // So do workload kinds: a third of the work is inference, which may harvest.
  core::Rng kinds(seed * 104729 + 3);
  for (int step = 0; step < steps; ++step) {
    Time now = step * kSecond;
    d.Advance(now);
    for (uint64_t k = rng.Uniform(4); k > 0; --k) {
      WorkloadId id(next_id++);
      WorkloadSpec spec = RandomWorkload(rng, queues, now);
      if (kinds.Uniform(3) == 0) spec.kind = core::WorkloadKind::kInference;
      d.specs[id] = spec;
      d.runtime[id] = static_cast<Duration>(1 + rng.Uniform(40)) * kSecond;
      EXPECT_TRUE(d.sched->Submit(id, spec).ok());
    }
    if (rng.Uniform(25) == 0) {  // a node fails or is drained, or comes back
      uint32_t n = static_cast<uint32_t>(rng.Uniform(nodes));
      bool goes_down = !down.count(n);
      core::NodeSpec spec = d.nodes[n];
      spec.status = !goes_down            ? core::NodeStatus::kReady
                    : rng.Uniform(3) == 0 ? core::NodeStatus::kDraining
                                          : core::NodeStatus::kDown;
      if (cov != nullptr && spec.status == core::NodeStatus::kDraining) ++cov->drained;
      EXPECT_TRUE(d.sched->UpdateNode(NodeId(n), spec).ok());
      d.nodes[n] = spec;
      goes_down ? (void)down.insert(n) : (void)down.erase(n);
    }
    if (health.Uniform(8) == 0) {  // a GPU fails or recovers, under its tasks if any
      std::vector<std::pair<uint32_t, int>> bad;
      for (uint32_t n = 0; n < nodes; ++n) {
        for (int j = 0; j < d.nodes[n].gpu_count; ++j) {
          if ((d.nodes[n].unhealthy_gpus >> j) & 1u) bad.emplace_back(n, j);
        }
      }
      // As many recoveries as failures: a few GPUs are unhealthy at any time.
      auto [n, gpu] = !bad.empty() && health.Uniform(2) == 0
                          ? bad[health.Uniform(bad.size())]
                          : std::make_pair(static_cast<uint32_t>(health.Uniform(nodes)), -1);
      core::NodeSpec spec = d.nodes[n];
      if (gpu < 0) gpu = static_cast<int>(health.Uniform(static_cast<uint64_t>(spec.gpu_count)));
      spec.unhealthy_gpus = static_cast<uint16_t>(spec.unhealthy_gpus ^ (1u << gpu));
      EXPECT_TRUE(d.sched->UpdateNode(NodeId(n), spec).ok());
      d.nodes[n] = spec;
      if (cov != nullptr) ++cov->health_changes;
    }
    if (rng.Uniform(10) == 0 && next_id > 0)
      (void)d.sched->Cancel(WorkloadId(static_cast<uint32_t>(rng.Uniform(next_id))));
    Plan p = d.sched->Cycle(now);
    int judged = 0;
    int beyond = 0;
    std::string bad = CheckInvariants(d, p, queues, nodes, limits, &judged, &beyond);
    EXPECT_EQ(bad, "") << "seed " << seed << " step " << step << "\n" << Serialize(p);
    if (!bad.empty()) return trace;
    d.Apply(p);
    trace += Serialize(p) + "\n";
    if (cov != nullptr) {
      for (const Bind& b : p.binds) ++(b.elastic ? cov->elastic : cov->binds);
      for (const Eviction& e : p.evictions) {
        ++(e.reason == EvictionReason::kNodeLost ? cov->node_lost : cov->evictions);
        cov->harvested += e.reason == EvictionReason::kHarvested;
      }
      cov->resizes += static_cast<int>(p.resizes.size());
      for (const Resize& r : p.resizes) cov->harvested += r.reason == EvictionReason::kHarvested;
      for (const auto& e : p.pending) {
        cov->reserved += e.reason == PendingReason::kReserved;
        cov->unschedulable += e.reason == PendingReason::kUnschedulable;
      }
      cov->minimal_judged += judged;
      cov->harvested_beyond_guarantee += beyond;
      for (const core::NodeSpec& n : d.nodes) {
        cov->unhealthy_gpu_cycles += std::popcount(n.unhealthy_gpus);
      }
    }
  }
  return trace;
}

TEST(EngineProperty, InvariantsHoldOverLongRandomHistories) {
  Coverage cov;
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    static const char* kPolicies[] = {"gpuorch", "bestfit", "random", "fgd"};
    RunHistory(seed, 300, kPolicies[seed % 4], &cov);
    if (HasFailure()) break;
  }
  // The histories must exercise every mechanism, or the invariants prove little.
  EXPECT_GT(cov.binds, 1000);
  EXPECT_GT(cov.elastic, 10);
  EXPECT_GT(cov.evictions, 50);
  EXPECT_GT(cov.resizes, 5);
  EXPECT_GT(cov.reserved, 10);
  EXPECT_GT(cov.node_lost, 0);
  EXPECT_GT(cov.unschedulable, 10);
  EXPECT_GT(cov.minimal_judged, 100);
  EXPECT_GT(cov.drained, 5);
  EXPECT_GT(cov.health_changes, 500);
  EXPECT_GT(cov.unhealthy_gpu_cycles, 10000);
  EXPECT_GT(cov.harvested, 10);
  EXPECT_GT(cov.harvested_beyond_guarantee, 10);
  std::cout << "coverage: binds " << cov.binds << " elastic " << cov.elastic << " evictions "
            << cov.evictions << " resizes " << cov.resizes << " reserved " << cov.reserved
            << " node_lost " << cov.node_lost << " unschedulable " << cov.unschedulable
            << " minimal_judged " << cov.minimal_judged << " drained " << cov.drained
            << " health_changes " << cov.health_changes << " unhealthy_gpu_cycles "
            << cov.unhealthy_gpu_cycles << " harvested " << cov.harvested
            << " harvested_beyond_guarantee " << cov.harvested_beyond_guarantee << "\n";
}

TEST(EngineProperty, SameInputSamePlan) {
  for (uint64_t seed = 100; seed < 105; ++seed) {
    std::string a = RunHistory(seed, 200, "gpuorch");
    std::string b = RunHistory(seed, 200, "gpuorch");
    ASSERT_FALSE(a.empty());
    EXPECT_EQ(a, b) << "seed " << seed;
    std::string r1 = RunHistory(seed, 100, "random");
    std::string r2 = RunHistory(seed, 100, "random");
    EXPECT_EQ(r1, r2) << "seeded randomness only";
  }
}

// A queue whose guarantee was lent out gets it back within the grace period (plus the
// cycles that evict and bind), whatever shapes the borrowers run.
TEST(EngineProperty, GuaranteesAreRestoredAfterTheGracePeriod) {
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    Driver d(seed);
    core::Rng& rng = d.rng;
    ASSERT_TRUE(d.sched->AddQueue(QueueId(0), QueueBuilder("owner").Guarantee(16)).ok());
    ASSERT_TRUE(d.sched->AddQueue(QueueId(1), QueueBuilder("borrower")).ok());
    for (uint32_t n = 0; n < 4; ++n) {
      ASSERT_TRUE(d.sched->AddNode(NodeId(n), NodeBuilder("n" + std::to_string(n)).Gpus(8)).ok());
    }
    const Duration grace = static_cast<Duration>(1 + rng.Uniform(5)) * kSecond;
    uint32_t id = 0;
    static const int kGpus[] = {1, 2, 4, 8};
    for (int i = 0; i < 40; ++i) {  // borrowers fill the cluster with random shapes
      WorkloadSpec s = WorkloadBuilder("b", 1).Gpus(kGpus[rng.Uniform(4)]).Grace(grace);
      d.specs[WorkloadId(id)] = s;
      d.runtime[WorkloadId(id)] = 1000 * kSecond;
      ASSERT_TRUE(d.sched->Submit(WorkloadId(id++), s).ok());
    }
    d.Apply(d.sched->Cycle(0));
    // The owner asks for random shapes within its 16-GPU guarantee.
    std::vector<WorkloadId> owned;
    int64_t left = 16;
    while (left > 0) {
      int g = kGpus[rng.Uniform(4)];
      if (g > left) continue;
      left -= g;
      WorkloadSpec s = WorkloadBuilder("o", 0).Gpus(g).Submitted(kSecond);
      d.specs[WorkloadId(id)] = s;
      d.runtime[WorkloadId(id)] = 1000 * kSecond;
      owned.push_back(WorkloadId(id));
      ASSERT_TRUE(d.sched->Submit(WorkloadId(id++), s).ok());
    }
    // Each cycle may start one round of evictions per shape; allow a cycle per workload.
    Time deadline = kSecond + grace + static_cast<Duration>(owned.size() + 2) * kSecond;
    std::string history;
    for (Time t = kSecond; t <= deadline; t += kSecond) {
      d.Advance(t);
      Plan p = d.sched->Cycle(t);
      history += Serialize(p) + "\n";
      d.Apply(p);
    }
    SCOPED_TRACE(history);
    EXPECT_GT(d.evictions_done, 0) << "borrowers had to be evicted";
    for (WorkloadId w : owned) {
      EXPECT_EQ(d.sched->state(w), WorkloadState::kRunning)
          << "seed " << seed << " w " << w.value();
    }
    EXPECT_EQ(d.sched->QueueUsage(QueueId(0), GpuModelId(0)), 16000) << "seed " << seed;
    if (HasFailure()) break;
  }
}

}  // namespace
}  // namespace gpuorch::sched
