#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/gpu_model.h"
#include "sched/scheduler.h"
#include "server/api_types.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/task_mix.h"
#include "store/group_commit.h"
#include "store/state_store.h"

namespace gpuorch::server {

// One task of a workload as the control plane tracks it.
struct TaskRecord {
  int32_t task = 0;
  std::string node;
  std::vector<int> gpus;
  int32_t gpu_milli = 0;
  std::string state = "assigned";  // assigned, running, exited, lost
  std::optional<int> exit_code;
  bool stopping = false;  // no longer desired: the agent stops it
  // Resource use the agent reported with the exit (the command and what it waited for).
  int64_t cpu_user_ms = 0, cpu_system_ms = 0, max_rss_kib = 0;
};

struct WorkloadRecord {
  int64_t id = 0;
  ParsedWorkload parsed;
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
  std::vector<Json> events;

  bool terminal() const {
    return state == "Succeeded" || state == "Failed" || state == "Cancelled";
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
};

// A watch the controller holds: the caller arms a timer for `wait_ms` and then calls
// Controller::ExpireWatch with it. `id` 0: it was answered at once.
struct WatchTicket {
  std::string node;
  uint64_t id = 0;
  int64_t wait_ms = 0;
};

// The control plane's state machine: API requests, agent heartbeats and engine cycles all
// go through it. It owns the engine (single-threaded, behind one mutex) and persists every
// change through the store before anyone outside can observe it: a submission before the
// API answers, a bind before any agent is told to start it.
//
// Thread-safety: every public method may be called from any thread.
class Controller {
 public:
  static core::Result<std::unique_ptr<Controller>> Create(const ServerConfig& config,
                                                          store::StateStore* store);
  ~Controller();

  // API. Each returns false with `error` set on bad input; `out` is the answer body.
  bool Submit(const Json& body, Json& out, ApiError& error);
  bool Cancel(int64_t id, Json& out, ApiError& error);
  bool GetWorkload(int64_t id, Json& out, ApiError& error);
  Json ListWorkloads(const std::string& queue, const std::string& state, const std::string& kind);
  Json ListQueues();
  bool GetQueue(const std::string& name, Json& out, ApiError& error);
  // Every node ({"nodes": [...]}) when `limit` is 0. Otherwise one page: at most `limit`
  // nodes in name order after the node named `after` ("" from the start), "continue" (the
  // last name, when more follow; pass it as `after` for the next page), and "summary":
  // counts over all nodes by status and GPU model. O(nodes) under the lock.
  Json ListNodes(int64_t limit = 0, const std::string& after = "");
  bool SetDrain(const std::string& name, bool drain, Json& out, ApiError& error);
  // Where to fetch a task's log: the agent's address and the path on it.
  bool LogTarget(int64_t id, int32_t task, std::string& address, std::string& path,
                 ApiError& error);
  std::string Metrics();

  // Agent protocol.
  bool Register(const Json& body, Json& out, ApiError& error);
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

  // One round of the controller loop: node timeouts, an engine cycle, persistence.
  void Step();
  // Persists whatever is still unwritten (at shutdown).
  void Flush();
  // The typical tasks the placement policy works with now (empty for a policy that uses
  // none): the live task mix once one was learnt (see TaskMix), else the policy's default.
  std::vector<sched::TypicalTask> TypicalTasks();

  // Extra time nodes loaded from the store get to send their first heartbeat.
  static constexpr int64_t kRestartGraceMs = 5000;

 private:
  Controller(const ServerConfig& config, store::StateStore* store);
  core::Status Load();
  core::Status AddQueues();
  int64_t Now();  // wall ms, never decreasing (the engine's time)

  // All below run with mu_ held.
  void ApplyPlan(const sched::Plan& plan);
  void OnTaskExited(WorkloadRecord& w, TaskRecord& t, int exit_code);
  void SyncFromEngine(WorkloadRecord& w);
  void Requeue(WorkloadRecord& w, const std::string& why);
  void MarkNodeDown(NodeRecord& n);
  // Whether `n` missed its heartbeats for longer than the node timeout (no watch held).
  bool NodeTimedOut(const NodeRecord& n, int64_t steady_ms) const;
  int64_t IntervalLocked() const;
  int64_t TimeoutLocked() const;
  // Answers n's held watches whose version is out of date (all of them when `all`).
  void AnswerWatches(NodeRecord& n, bool all);
  void Event(WorkloadRecord& w, const std::string& type, const std::string& message);
  void Dirty(const WorkloadRecord& w) { dirty_.insert(w.id); }
  // Tells the task mix how many of w's tasks are placed now.
  void NoteLive(const WorkloadRecord& w);
  // The desired lists of the nodes `w` has tasks on changed (except `except`'s, whose agent
  // hears it in the answer it is being given).
  void TouchNodes(const WorkloadRecord& w, const std::string& except = "");
  void Kick();
  // Removes `w` from the per-node index (it has no task that may run any more).
  void Unindex(const WorkloadRecord& w);
  Json DesiredJson(const std::string& node);
  Json WorkloadJson(const WorkloadRecord& w) const;
  Json NodeJson(const NodeRecord& n) const;
  Json QueueJson(const QueueConfig& q) const;
  Json TaskEnv(const WorkloadRecord& w, const TaskRecord& t) const;
  store::Batch TakeDirty();
  store::StoredWorkload ToStored(const WorkloadRecord& w) const;

  ServerConfig config_;
  store::StateStore* store_;
  std::unique_ptr<store::GroupCommitter> committer_;
  std::mutex mu_;
  std::unique_ptr<sched::Scheduler> engine_;
  core::GpuModelRegistry models_;
  std::map<std::string, core::QueueId> queue_ids_;  // every queue
  std::map<std::string, core::QueueId> leaf_queues_;
  std::map<int64_t, WorkloadRecord> workloads_;
  std::map<std::string, NodeRecord> nodes_;
  std::vector<std::string> node_names_;               // by engine node id
  std::map<std::string, std::set<int64_t>> on_node_;  // node -> workloads with tasks there
  std::set<int64_t> dirty_;
  std::set<std::string> dirty_nodes_;
  int64_t next_id_ = 1;
  int64_t last_now_ = 0;
  const int64_t epoch_;  // this server process: the wall clock at its start
  std::condition_variable work_cv_;
  bool work_ = true;          // guarded by mu_: a cycle is due
  bool shutdown_ = false;     // guarded by mu_
  uint64_t next_watch_ = 1;   // guarded by mu_
  int64_t held_watches_ = 0;  // guarded by mu_
  MetricsState metrics_;
  // Shapes of running and recently submitted tasks, fed to the policy as its typical tasks.
  TaskMix task_mix_;
};

}  // namespace gpuorch::server
