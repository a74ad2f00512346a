#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "autoscale/autoscaler.h"
#include "core/gpu_model.h"
#include "sched/scheduler.h"
#include "server/api_types.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/task_mix.h"
#include "server/usage.h"
#include "store/group_commit.h"
#include "store/state_store.h"

namespace gpuorch::server {

// One task of a workload as the control plane tracks it.
struct TaskRecord {
  int32_t task = 0;
  std::string node;
  std::vector<int> gpus;
  int32_t gpu_milli = 0;
  // A MIG task's instance on its GPU (controller_mig.cc): start slice (-1: none) and profile.
  int32_t mig_start = -1;
  std::string mig_profile;
  std::string state = "assigned";  // assigned, running, exited, lost
  std::optional<int> exit_code;
  bool stopping = false;  // no longer desired: the agent stops it
  // Resource use the agent reported with the exit (the command and what it waited for).
  int64_t cpu_user_ms = 0, cpu_system_ms = 0, max_rss_kib = 0;
  int64_t memory_peak_kib = 0;  // the task cgroup's memory.peak; 0: no cgroup said
  // Accounting (controller_usage.cc): the GPU model of its node and when it was bound (wall
  // ms); `released` once its interval is written (it exited, was lost, or its workload
  // ended or was requeued), so that it is written once.
  std::string model;
  int64_t bound_ms = 0;
  bool released = false;
  // GPU telemetry from the node's heartbeats (controller_telemetry.cc; kept in memory only):
  // the mean utilization of its GPUs and the GPU memory of its processes, -1 until a sample
  // came; since when (wall ms) its utilization has stayed under the idle threshold (0: it
  // has not), and whether it has been declared idle (allocated-idle GPUs, an event).
  double gpu_util_pct = -1;
  int64_t gpu_memory_used_mib = -1;
  int64_t idle_since_ms = 0;
  bool idle = false;
  // An inference replica's serving state from its agent's reports (controller_services.cc;
  // memory only): the port its agent gave it (0: none yet), whether its readiness probe
  // passes, its latest gauges and when they came (wall ms, 0: never).
  int32_t port = 0;
  bool ready = false;
  bool service_reported = false;  // its agent reported its serving state to this process
  std::map<std::string, double> gauges;
  int64_t gauges_ms = 0;
};

// An entry of a workload's event list (GET /v1/workloads/ID shows them).
struct WorkloadEvent {
  int64_t time_ms = 0;
  std::string type;
  std::string message;
  int64_t about = -1;    // another workload the message names (-1: none)
  std::string redacted;  // the message for callers who may not read `about`'s queue
};

struct WorkloadRecord {
  int64_t id = 0;
  ParsedWorkload parsed;
  // Who submitted it: the token's name ("" when submitted before accounting existed, or by
  // a caller that names nobody); the "user" of accounting.
  std::string user;
  std::string state = "Pending";  // Pending Running Preempted Succeeded Failed Cancelled
  std::string reason;
  // The engine's latest start estimate while pending (ms since the epoch, -1 unknown) and
  // what it waits for (a workload id, -1 none). Recomputed every cycle, never stored.
  int64_t estimated_start_ms = -1;
  int64_t waiting_for = -1;
  int32_t attempt = 0;
  int64_t submitted_ms = 0, started_ms = 0, finished_ms = 0;
  int64_t queued_since_ms = 0;  // for the queue wait-time histogram
  std::vector<TaskRecord> tasks;
  bool published = true;  // tasks are visible to agents once persisted
  bool cancel_requested = false;
  bool failed = false;
  std::vector<WorkloadEvent> events;
  // A replica being scaled down (controller_services.cc): since when (wall ms; 0: it is
  // not), and its current sessions at the gateway with when the gateway said so (-1: never).
  int64_t draining_since_ms = 0;
  int64_t gateway_sessions = -1;
  int64_t gateway_ms = 0;
  // That report counted it "drained": HAProxy sent it no new request (its server was in
  // drain or maintenance, or gone) when its sessions were read.
  bool gateway_drained = false;
  // Its GPUs have all been idle for its queue's idle_reclaim.after_s (the AllocatedIdle
  // condition; memory only, judged again from each telemetry sample).
  bool allocated_idle = false;

  bool terminal() const {
    return state == "Succeeded" || state == "Failed" || state == "Cancelled";
  }
  // A replica's serving task (task 0, which the agent probes and the gateway routes to)
  // while it lives; null otherwise.
  const TaskRecord* primary() const {
    for (const TaskRecord& t : tasks) {
      if (t.task == 0 && t.state != "exited" && t.state != "lost") return &t;
    }
    return nullptr;
  }
};

struct NodeRecord {
  std::string name;
  core::NodeId id;
  Json registration;
  core::NodeSpec spec;
  bool drained = false;
  bool down = false;
  int64_t last_heartbeat_ms = 0;  // steady clock
  int64_t last_heartbeat_wall_ms = 0;
  // A heartbeat (with its report of the node's tasks) reached this server process: after a
  // restart, the node is back and its running tasks are confirmed.
  bool heard = false;
  // The node's desired list changes version whenever a task enters or leaves it; held
  // watches are answered then.
  int64_t desired_version = 1;
  // Watch requests held now (usually one): the agent is alive while one is. Each waits for
  // desired_version to differ from `after`; nothing else (no thread) waits for it.
  struct HeldWatch {
    uint64_t id = 0;
    int64_t after = 0;
    std::function<void(Json)> done;
  };
  std::vector<HeldWatch> watches;
  // The accessor of the token that registered the node ("" without authentication):
  // another token may not register, heartbeat or watch as this node while it is valid.
  std::string owner;
  bool in_engine = false;  // added to the engine (by the cycle thread's SyncNode)
  // GPU telemetry of the last heartbeat that carried it (controller_telemetry.cc): per GPU
  // its utilization (-1 unknown), memory used (-1 unknown) and why it is unhealthy ("":
  // healthy). `unhealthy_gpus` (bit j: GPU j) is what the engine is told.
  struct GpuTelemetry {
    double util_pct = -1;
    int64_t memory_used_mib = -1;
    std::string health;
  };
  std::vector<GpuTelemetry> gpu_telemetry;
  int64_t telemetry_wall_ms = 0;
  uint16_t unhealthy_gpus = 0;  // core::NodeSpec::unhealthy_gpus
  // MIG layouts the engine asked the agent to apply (controller_mig.cc), by GPU: the layout
  // text and its generation, until the agent reports that generation. `spec.mig_layouts`
  // holds what the agent last reported.
  struct MigDesired {
    std::string layout;
    int64_t generation = 0;
  };
  std::map<int, MigDesired> mig_desired;
  int64_t mig_generation = 0;
};

// What one caller may see and do with workloads, by queue. The server derives it from the
// caller's token (server/auth.h); an empty function allows everything (the controller's
// own callers, tests). A workload of a queue the caller may not read does not exist for
// it: 404, absent from lists, and its id never appears in what the caller sees.
struct Access {
  std::function<bool(const std::string& queue)> reads;   // sees the queue's workloads
  std::function<bool(const std::string& queue)> writes;  // submits to it, cancels in it
  std::function<bool(const std::string& queue)> env;     // sees environment values

  bool Reads(const std::string& q) const { return !reads || reads(q); }
  bool Writes(const std::string& q) const { return !writes || writes(q); }
  bool SeesEnv(const std::string& q) const { return !env || env(q); }
};

// A watch the controller holds: the caller arms a timer for `wait_ms` and then calls
// Controller::ExpireWatch with it. `id` 0: it was answered at once.
struct WatchTicket {
  std::string node;
  uint64_t id = 0;
  int64_t wait_ms = 0;
};

// A change the engine must hear of, queued by an API handler or a heartbeat under the
// controller's mutex and applied to the engine by the cycle thread at the start of its next
// Step, in queue order. Events name records, not copies of them: the cycle thread reads the
// record (a workload's spec, a node's spec and status) when it applies the event, so a node
// that changed twice is synced once, to its latest state.
struct EngineEvent {
  enum class Kind : uint8_t {
    kSubmit,        // `workload` entered the queue (its spec is in the record)
    kCancel,        // `workload` was cancelled while pending
    kTaskFinished,  // `task` of `workload` exited
    kSyncNode,      // `node` registered, changed, came back or was drained: add or update it
    kModels,        // `workload`'s model set changed (a node brought a model it named)
    kMigLayout,     // GPU `task` of `node` has MIG layout `layout` now (an agent's report)
  };
  Kind kind;
  int64_t workload = 0;
  int32_t task = 0;
  std::string node;
  std::string layout = {};

  static EngineEvent Workload(Kind kind, int64_t id, int32_t task = 0) {
    return EngineEvent{kind, id, task, ""};
  }
  static EngineEvent Node(std::string name) {
    return EngineEvent{Kind::kSyncNode, 0, 0, std::move(name)};
  }
};

// What the API shows of the engine's state (queue usage, node usage, per-model totals, the
// policy's typical tasks), copied by the cycle thread after each cycle and published with
// its plan, so that a read never waits for the engine.
struct EngineSnapshot {
  struct NodeUse {
    bool present = false;
    std::vector<int32_t> gpu_used_milli;
    int64_t cpu_used = 0, memory_used = 0;
  };
  // Indexed by queue id, then by GPU model id.
  std::vector<std::vector<int64_t>> queue_gpu_milli;
  std::vector<int64_t> queue_cpu_milli, queue_memory_mib;
  std::vector<int64_t> model_capacity_milli, model_free_milli;
  std::vector<NodeUse> nodes;  // by engine node id
  std::vector<sched::TypicalTask> typical_tasks;
};

// The control plane's state machine: API requests, agent heartbeats and engine cycles all
// go through it. It persists every change through the store before anyone outside can
// observe it: a submission before the API answers, a bind before any agent is told to
// start it.
//
// Threading. The records (workloads, nodes) live behind `mu_`, held only for short
// critical sections. The engine (sched::Scheduler: single-threaded) belongs to whoever runs
// Step, the cycle thread: API handlers and heartbeats never call it. They update the
// records, queue an EngineEvent in `inbox_` and kick the loop. Step drains the inbox into
// the engine and reconciles the records the events touched (under `mu_`, O(events)), runs
// the cycle without `mu_`, then takes `mu_` again to apply the plan and publish the
// EngineSnapshot the read side shows. So no API call waits for a cycle; an API call sees
// the engine's view (usage, estimates) as of the last applied cycle.
//
// Thread-safety: every public method may be called from any thread; Steps are serialized.
class Controller {
 public:
  // The wall clock in ms since the epoch: the system clock unless a test injects one.
  using WallClock = std::function<int64_t()>;
  static core::Result<std::unique_ptr<Controller>> Create(const ServerConfig& config,
                                                          store::StateStore* store,
                                                          WallClock clock = {});
  ~Controller();

  // API. Each returns false with `error` set on bad input; `out` is the answer body.
  // `user`: who submits (the token's name), recorded for accounting.
  bool Submit(const Json& body, Json& out, ApiError& error, const std::string& user = "");
  // Submit without waiting: `done` gets the outcome once the submission is durable (or at
  // once for bad input), on the store's writer thread or the caller's, with no lock held.
  // The API uses it so that a burst of submissions shares commits without holding a worker
  // each. `done` must not block.
  using SubmitDone = std::function<void(bool ok, Json out, ApiError error)>;
  void SubmitAsync(const Json& body, SubmitDone done, const std::string& user = "");
  // Inference services (controller_services.cc; docs/inference.md). The services the
  // caller reads, with their replicas ({"services": [...]}: what a gateway polls).
  Json ListServices(const Access& access = {});
  // A load report for service `id` (`{"in_flight": N, "source": "load_balancer"|"pushed",
  // "replicas": {"<replica id>": sessions}, "drained": [replica ids]}`): a sample of the
  // autoscaler's signal, and the sessions that tell the controller a draining replica is
  // done (0 sessions while drained).
  bool PushLoad(int64_t id, const Json& body, Json& out, ApiError& error,
                const Access& access = {});
  // Pins service `id` at `{"replicas": N}` (autoscaling off) or unpins it (`{"auto": true}`).
  bool Scale(int64_t id, const Json& body, Json& out, ApiError& error, const Access& access = {});
  // A workload the caller reads but may not cancel: 403.
  bool Cancel(int64_t id, Json& out, ApiError& error, const Access& access = {});
  bool GetWorkload(int64_t id, Json& out, ApiError& error, const Access& access = {});
  // The workloads the caller reads that match the filters, in id order. `limit` 0: all of
  // them. Otherwise one page: at most `limit` after the workload with id `after` (0 from
  // the start), and "continue" (the last id, as a string) when the scan stopped before the
  // end; a last page may then be empty (Kubernetes' chunking does the same).
  // `service` > 0: only that service's replicas. Records are read 1,024 at a time under the
  // lock, each as it is when its chunk is read.
  Json ListWorkloads(const std::string& queue, const std::string& state, const std::string& kind,
                     const Access& access = {}, int64_t limit = 0, int64_t after = 0,
                     int64_t service = 0);
  Json ListQueues(const Access& access = {});
  bool GetQueue(const std::string& name, Json& out, ApiError& error, const Access& access = {});
  // Every node ({"nodes": [...]}) when `limit` is 0. Otherwise one page: at most `limit`
  // nodes in name order after the node named `after` ("" from the start), "continue" (the
  // last name, when more follow; pass it as `after` for the next page), and "summary":
  // counts over all nodes by status and GPU model. O(nodes) under the lock.
  // GPU holders of queues `access` may not read are shown without name or id.
  Json ListNodes(int64_t limit = 0, const std::string& after = "", const Access& access = {});
  bool SetDrain(const std::string& name, bool drain, Json& out, ApiError& error);
  // Accounting (controller_usage.cc; docs/api.md, GET /v1/usage): allocated GPU-hours per
  // queue or user and GPU model over [from, to) (defaults: to now, from the start of to's
  // month, UTC), from the store's released intervals and the tasks holding GPUs now
  // (counted up to now). Only queues `access` reads count, and only `request.queue` when
  // set. Waits for the commits queued before it (what was released is then in the store),
  // then one store query; O(workloads in memory) under the lock.
  bool Usage(const UsageRequest& request, Json& out, ApiError& error, const Access& access = {});
  // Where to fetch a task's log: the registered node's address, the path on it, and the
  // log secret its agent registered (presented as the request's credential).
  bool LogTarget(int64_t id, int32_t task, std::string& address, std::string& path,
                 std::string& secret, ApiError& error, const Access& access = {});
  // The Prometheus exposition: the metrics of ServerMetrics, the engine gauges of the last
  // computation, and those of the records (workloads by state, nodes, heartbeat ages),
  // computed now (O(workloads + nodes) under the lock), with `extra` (the HTTP server's).
  std::string Metrics(std::vector<prometheus::MetricFamily> extra = {});
  // The longest the last Metrics() held the controller's lock at once, ns (it reads in
  // chunks; bench/observability_bench).
  int64_t MetricsLockNs() const { return metrics_lock_ns_.load(std::memory_order_relaxed); }
  ServerMetrics& metrics() { return metrics_; }
  // This server process's epoch (the wall clock at its start, ms).
  int64_t epoch() const { return epoch_; }

  // Agent protocol.
  // `owner`: the registering token's accessor. A node registered by another token is
  // refused (409) unless `may_replace(current_owner)` says that owner no longer counts.
  // `peer` is the address the agent connected from: the log address's host must be it or
  // allowed by `agent_hosts`, else the peer replaces it. Empty: trusted (a stored
  // registration being reloaded).
  bool Register(const Json& body, Json& out, ApiError& error, const std::string& owner = "",
                const std::function<bool(const std::string&)>& may_replace = {},
                const std::string& peer = "");
  // The accessor that registered `node` ("" for none or an unknown node).
  std::string NodeOwner(const std::string& node);
  bool Heartbeat(const std::string& node, const Json& body, Json& out, ApiError& error);
  // A long poll of the node's desired list, without a thread waiting for it. Answers
  // through `done` (called exactly once, with the same body a heartbeat gets): at once when
  // the version differs from `after`, `epoch` is not this server's, `wait_ms` is 0 or the
  // controller is shut down; otherwise the watch is held, and answered when the node's list
  // changes, at Shutdown, or when the caller calls ExpireWatch(ticket) after
  // `ticket.wait_ms` (the asked wait, capped at half the node timeout). A held watch counts
  // as a heartbeat. Returns false with `error` (and never calls `done`) for an unknown node.
  // `done` runs with the controller's lock held: it must not call the controller back, only
  // hand the answer on (e.g. post the write to an I/O thread).
  bool WatchDesired(const std::string& node, int64_t epoch, int64_t after, int64_t wait_ms,
                    std::function<void(Json)> done, WatchTicket& ticket, ApiError& error);
  // Answers the watch with the node's list as it is, if it is still held.
  void ExpireWatch(const WatchTicket& ticket);
  // Drops the watch without answering, if it is still held (its client went away): it no
  // longer keeps the node alive, which was heard from until now.
  void CancelWatch(const WatchTicket& ticket);
  // Watches held now, over all nodes.
  int64_t HeldWatches();
  // Nodes whose agent has heartbeated this server process (after a restart: the nodes back,
  // their running tasks reported).
  int64_t NodesHeard();

  // The heartbeat interval agents are told and the node timeout, for the cluster's size:
  //   interval = max(heartbeat_interval_ms, ceil(nodes * 1000 / max_heartbeats_per_second))
  //   timeout  = node_timeout_ms + kTimeoutIntervals * (interval - heartbeat_interval_ms)
  // over every registered node (Ready, Draining or Down), so the server hears at most
  // max_heartbeats_per_second periodic heartbeats however large the cluster grows (Nomad's
  // rule). Nodes are never forgotten, so neither value ever shrinks within a process: an
  // agent still on an older, shorter interval is only early. The timeout is the
  // configured one at the configured interval and always at least two intervals.
  int64_t HeartbeatIntervalMs();
  int64_t NodeTimeoutMs();
  static constexpr int64_t kTimeoutIntervals = 3;

  // Waits until something may have changed what a cycle would do (a submission, an exit, a
  // cancellation, a node change) or `max_ms` passed; the loop then calls Step.
  void WaitForWork(int64_t max_ms);
  // Releases every held watch and waiter (at shutdown).
  void Shutdown();

  // One round of the controller loop: queued events into the engine, node timeouts, an
  // engine cycle (without `mu_`), the plan applied and persisted.
  void Step();
  // Runs `hook` on the cycle thread in every Step after the inbox is drained and before the
  // cycle, with no lock held (tests block a cycle on it to show the API still answers).
  void SetCycleHookForTesting(std::function<void()> hook);
  // Persists whatever is still unwritten (at shutdown).
  void Flush();
  // The typical tasks the placement policy works with now (empty for a policy that uses
  // none): the live task mix once one was learnt (see TaskMix), else the policy's default.
  std::vector<sched::TypicalTask> TypicalTasks();

  // Extra time nodes loaded from the store get to send their first heartbeat.
  static constexpr int64_t kRestartGraceMs = 5000;

 private:
  Controller(const ServerConfig& config, store::StateStore* store, WallClock clock);
  core::Status Load();
  core::Status AddQueues();
  int64_t Now();  // wall ms, never decreasing (the engine's time)

  // The engine's side, on the cycle thread (step_mu_ held, or before any thread starts).
  // Overwrites `snap` with the engine's state, reusing its buffers: a Step refreshes the
  // spare snapshot and swaps it with the published one, so that at 10,000 nodes a cycle
  // allocates nothing per node (it used to copy and free every node's usage each Step).
  void RefreshSnapshot(EngineSnapshot& snap, size_t models) const;
  // Recomputes and publishes the engine gauges from the engine's state after `plan` (at
  // most every ServerMetrics::kGaugePeriodMs); takes mu_ only to read the pending records.
  void UpdateEngineGauges(const sched::Plan& plan, size_t models);

  // All below run with mu_ held. Those that call the engine (DrainInbox, SyncNode,
  // SyncFromEngine, MarkNodeDown, Reject's callers) run on the cycle thread only.
  void ApplyPlan(const sched::Plan& plan);
  // Applies the inbox to the engine (cycle thread) and reconciles the touched records.
  void DrainInbox();
  void SyncNode(NodeRecord& n);
  void Enqueue(EngineEvent e) { inbox_.push_back(std::move(e)); }
  // The engine refused what only it can check: the workload fails with its reason.
  void Reject(WorkloadRecord& w, const std::string& why);
  void OnTaskExited(WorkloadRecord& w, TaskRecord& t, int exit_code);
  // Cancels `w` as the API does, without the checks (mu_ held): pending work leaves at once,
  // running work is told to stop.
  void CancelLocked(WorkloadRecord& w, const std::string& by);

  // Services (controller_services.cc), mu_ held. A service record never enters the engine:
  // StartService gives it an autoscaler slot; ReconcileServices (each Step, before the
  // inbox is drained, so that new replicas are placed in the same cycle) feeds the
  // autoscaler, decides, and creates, drains and stops replicas.
  void StartService(WorkloadRecord& w);
  void ReconcileServices(int64_t now);
  void ReconcileService(WorkloadRecord& svc, int64_t now);
  void NewReplica(WorkloadRecord& svc, int64_t now);
  void IngestServiceReport(WorkloadRecord& w, TaskRecord& t, const Json& report);
  bool ReplicaReady(const WorkloadRecord& r) const;
  Json ServiceJson(const WorkloadRecord& svc, const Access& access) const;
  // The service gauges of Metrics(): replicas by state, in-flight.
  void ServiceSamples(prometheus::MetricFamily& replicas,
                      prometheus::MetricFamily& in_flight) const;
  // The service record `id` the caller reads, or an error (404, 400 when not a service).
  WorkloadRecord* FindService(int64_t id, const Access& access, ApiError& error);
  void SyncFromEngine(WorkloadRecord& w);
  void Requeue(WorkloadRecord& w, const std::string& why);
  void MarkNodeDown(NodeRecord& n);
  // Whether `n` missed its heartbeats for longer than the node timeout (no watch held).
  bool NodeTimedOut(const NodeRecord& n, int64_t steady_ms) const;
  int64_t IntervalLocked() const;
  int64_t TimeoutLocked() const;
  // Answers n's held watches whose version is out of date (all of them when `all`).
  // Removes the held watch `id` of n (mu_ held) and returns its completion, or an empty one
  // when it was answered already; a watch held until now counts as contact until now.
  std::function<void(Json)> TakeWatch(NodeRecord& n, uint64_t id);
  void AnswerWatches(NodeRecord& n, bool all);
  // `about`: the other workload the message names (a preemptor), whose id only callers
  // who read its queue see.
  // `about`: a workload the message names; a caller who may not read that workload's queue
  // sees `redacted` instead (docs/security.md).
  // The `telemetry` member of a heartbeat (docs/api.md, "Agent protocol"); malformed parts
  // are ignored (the heartbeat's task reports still count).
  void IngestTelemetry(NodeRecord& n, const Json& telemetry);
  // MIG (controller_mig.cc). Reads a registration's GPU entry `g` (index j) into spec: MIG
  // mode and layout; false with the field and why on bad input.
  static bool ParseMigGpu(const Json& g, size_t j, const std::string& model, core::NodeSpec& spec,
                          std::string& field, std::string& why);
  // A heartbeat's `mig` reports: the layouts the agent has now.
  void IngestMigReports(NodeRecord& n, const Json& reports);
  // The plan's layout changes, for the agents' desired lists.
  void ApplyReconfigs(const sched::Plan& plan);
  // The engine hears an agent's layout (DrainInbox, on the cycle thread).
  void MigLayoutToEngine(const EngineEvent& e);
  // Queues the layouts a node registered for the engine, after its node event.
  void ReportRegisteredLayouts(const NodeRecord& n);
  // The desired entry's `mig` member of a MIG task, and the node's `mig_layouts`.
  Json TaskMigJson(const TaskRecord& t) const;
  Json MigDesiredJson(const NodeRecord& n) const;
  // A task bound on a MIG instance: its start and profile, from the node's layout.
  void SetTaskMig(TaskRecord& t, const sched::TaskBinding& tb) const;
  // The queue's idle_reclaim policy applied to `w` after a telemetry sample (mu_ held).
  void CheckIdleReclaim(WorkloadRecord& w, int64_t now);
  void Event(WorkloadRecord& w, const std::string& type, const std::string& message,
             int64_t about = -1, const std::string& redacted = "");
  void Dirty(const WorkloadRecord& w) { dirty_.insert(w.id); }
  // Accounting (controller_usage.cc). Ends t's interval now: a usage record joins the next
  // batch TakeDirty takes, in the same transaction as the record's change. Idempotent.
  void Release(const WorkloadRecord& w, TaskRecord& t);
  void ReleaseAll(WorkloadRecord& w) {
    for (TaskRecord& t : w.tasks) Release(w, t);
  }
  // Tells the task mix how many of w's tasks are placed now.
  void NoteLive(const WorkloadRecord& w);
  // The desired lists of the nodes `w` has tasks on changed (except `except`'s, whose agent
  // hears it in the answer it is being given).
  void TouchNodes(const WorkloadRecord& w, const std::string& except = "");
  void Kick();
  // Removes `w` from the per-node index (it has no task that may run any more).
  void Unindex(const WorkloadRecord& w);
  // Drops the finished workloads past config_.finished_retention_s from memory and returns
  // their ids, for the store to delete (controller_retention.cc). Cycle thread, mu_ held.
  std::vector<int64_t> CollectFinished(int64_t now_ms);
  // Resolves again the gpu_models of the workloads that named models nobody had, after a
  // node brought new ones; a changed set reaches the engine as kModels.
  void ResolveUnknownModels();
  Json DesiredJson(const std::string& node);
  Json WorkloadJson(const WorkloadRecord& w, const Access& access = {}) const;
  Json NodeJson(const NodeRecord& n, const Access& access = {}) const;
  Json QueueJson(const QueueConfig& q) const;
  Json TaskEnv(const WorkloadRecord& w, const TaskRecord& t) const;
  store::Batch TakeDirty();
  store::StoredWorkload ToStored(const WorkloadRecord& w) const;

  ServerConfig config_;
  store::StateStore* store_;
  WallClock clock_;
  std::unique_ptr<store::GroupCommitter> committer_;
  // Serializes Steps: the engine and cycle_hook_ belong to the holder.
  std::mutex step_mu_;
  std::unique_ptr<sched::Scheduler> engine_;
  EngineSnapshot spare_snapshot_;  // the cycle thread's: the snapshot it refreshes next
  std::function<void()> cycle_hook_;
  std::atomic<int64_t> metrics_lock_ns_{0};
  std::mutex mu_;  // guards everything below
  std::vector<EngineEvent> inbox_;
  EngineSnapshot snapshot_;
  core::GpuModelRegistry models_;
  std::map<std::string, core::QueueId> queue_ids_;  // every queue
  std::map<std::string, core::QueueId> leaf_queues_;
  std::map<int64_t, WorkloadRecord> workloads_;
  std::map<std::string, NodeRecord> nodes_;
  std::vector<std::string> node_names_;               // by engine node id
  std::map<std::string, std::set<int64_t>> on_node_;  // node -> workloads with tasks there
  std::set<int64_t> dirty_;
  // Unfinished workloads whose gpu_models name a model no node or config has (yet).
  std::set<int64_t> unknown_models_;
  std::set<std::string> dirty_nodes_;
  // Usage records released since the last TakeDirty, and the id of the next one.
  std::vector<store::UsageRecord> released_;
  int64_t next_usage_id_ = 1;
  int64_t next_id_ = 1;
  int64_t last_collect_ms_ = 0;  // the last CollectFinished scan
  // No node can time out before this steady ms (cycle thread, mu_ held): the earliest
  // deadline the last scan saw. Deadlines only move later (contact sets the last heartbeat
  // to now, the timeout never shrinks), so a Step scans the nodes only once one may be due,
  // not every Step (O(nodes) each: at 10,000 nodes and a burst of submissions, hundreds of
  // Steps a second).
  int64_t next_timeout_scan_ms_ = 0;
  int64_t last_now_ = 0;
  const int64_t epoch_;  // this server process: the wall clock at its start
  std::condition_variable work_cv_;
  bool work_ = true;          // guarded by mu_: a cycle is due
  bool shutdown_ = false;     // guarded by mu_
  uint64_t next_watch_ = 1;   // guarded by mu_
  int64_t held_watches_ = 0;  // guarded by mu_
  int64_t nodes_heard_ = 0;   // guarded by mu_: nodes with `heard` set
  ServerMetrics metrics_;
  // Per GPU model with GPUs, the idle-while-waiting and fragmentation gauges as last
  // computed (guarded by mu_): the summary of GET /v1/nodes shows them.
  struct ModelSummary {
    std::string model;
    int64_t idle_while_waiting = 0;
    double fragmented_milli = 0;
  };
  std::vector<ModelSummary> model_summary_;
  // The cycle thread's: when the engine gauges were last computed (steady ms, 0 never) and
  // the idle-while-waiting GPUs then per model, integrated into the seconds counter.
  int64_t gauges_at_ms_ = 0;
  std::vector<std::pair<std::string, int64_t>> idle_then_;
  // Likewise the milli-GPUs each leaf queue held per model, integrated into
  // gpuorch_queue_allocated_gpu_seconds_total: (queue, model, milli).
  std::vector<std::tuple<std::string, std::string, int64_t>> allocated_then_;
  // Shapes of running and recently submitted tasks, fed to the policy as its typical tasks.
  TaskMix task_mix_;
  // Services (guarded by mu_): per live service its autoscaler slot, its replicas, and its
  // restart backoff. The autoscaler is pure; it runs under mu_ (samples come from
  // heartbeats and load reports, decisions from Step).
  struct ServiceState {
    autoscale::ServiceId slot;
    std::set<int64_t> replicas;  // replica records not yet forgotten
    std::optional<int32_t> pinned;
    autoscale::Decision last;
    int32_t desired = 0;
    int64_t last_tick_ms = 0;
    bool tick_now = false;      // a load report woke a service at zero: decide this Step
    int32_t failures = 0;       // replicas that ended on their own since one was Ready
    int32_t reset_from = 0;     // a Ready replica numbered from here resets `failures`
    int64_t next_start_ms = 0;  // restart backoff: no new replica before
    int64_t gateway_ms = 0;     // the last load report that listed replica sessions
    int32_t next_replica = 0;
    // After a restart the replicas' readiness is unknown until their agents report: until
    // every running replica has (or this time passes) the service neither decides nor
    // stops a replica, so that a restart never scales a service down.
    int64_t hold_until_ms = 0;
  };
  static constexpr int64_t kRestartHoldMs = 30'000;
  std::map<int64_t, ServiceState> services_;
  // Names of live services and of services being submitted: a name routes requests
  // (/svc/NAME at the gateway), so two live services may not share one.
  std::set<std::string> service_names_;
  autoscale::Autoscaler autoscaler_;
  std::vector<uint32_t> free_service_slots_;
  uint32_t next_service_slot_ = 0;
};

}  // namespace gpuorch::server
