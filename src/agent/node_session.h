#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/executor.h"
#include "agent/protocol.h"
#include "core/status.h"

// The agent protocol's loop for one node (docs/api.md, "Agent protocol"), without its
// transport: what to send, what an answer means, what to start and stop, when to talk to
// the server next. The real agent (agent/agent.h) drives it with blocking HTTP clients on
// two threads; hollow nodes (agent/hollow.h) drive thousands of them with asynchronous
// connections on a few threads. Both therefore speak exactly the same protocol.
namespace gpuorch::agent {

// An HTTP answer as the session needs it: status -1 when no answer came (refused,
// timeout, broken connection), with the reason in `error`.
struct HttpAnswer {
  int status = -1;
  std::string body;
  std::string error;
};

// The register / heartbeat half of the protocol, and the applying of desired lists (from
// heartbeats and from the watch) to a TaskExecutor:
//   - start each desired attempt never started,
//   - stop each running task not desired (with the grace period of its last desired entry),
//   - report exited tasks until the server stops listing them, then forget them.
// Contacts follow the heartbeat interval; failures back off (the interval doubled per
// failure, at most kMaxBackoffMs); a 404 to a heartbeat re-registers at once.
//
// Not thread-safe: one thread (or one strand) drives a session and its executor.
class NodeSession {
 public:
  using LogFn = std::function<void(const std::string&)>;
  // Backoff while the server is unreachable stays under half the default node timeout
  // (10 s), so a server that comes back hears from the node before it declares it Down.
  static constexpr int64_t kMaxBackoffMs = 4000;
  // The first retry of a broken watch comes within this (WatchBackoffMs).
  static constexpr int64_t kWatchRetryBaseMs = 500;

  // `executor` must outlive the session. `log` gets the lines a person should see (first
  // failure of a run, reconnection, task starts and stops); may be empty.
  NodeSession(Registration registration, TaskExecutor& executor, int64_t heartbeat_ms, LogFn log);

  const Registration& registration() const { return registration_; }
  bool registered() const { return registered_; }
  // The heartbeat interval in force: the server's, or the operator's until the server names
  // one.
  int64_t interval_ms() const { return interval_ms_; }
  // Consecutive failed contacts (0: the last contact succeeded).
  int failures() const { return failures_; }
  // Whether the connection that registers and heartbeats stays open between contacts. A
  // node's liveness rides on its watch, which is always held; heartbeats carry only
  // changes. While the interval is short (a small cluster) the heartbeat connection is
  // kept alive; once it passes kKeepAliveMaxIntervalMs (beyond about 250 nodes at the
  // default 50 heartbeats/s) each contact opens and closes its own, so that a node holds
  // one connection to the server, not two: at 10,000 nodes a second connection each would
  // cost the server 10,000 more descriptors for a request every few minutes.
  static constexpr int64_t kKeepAliveMaxIntervalMs = 5000;
  bool KeepContactConnection() const { return interval_ms_ <= kKeepAliveMaxIntervalMs; }

  // True when the loop should contact the server now: the interval passed, or there is
  // news to report at once (`report_now`: a task has just exited, so the server can reuse
  // its GPUs; a service task's port or readiness changed, or its gauges were scraped) or
  // the watch brought a restarted server's list (it hears the node's tasks at once), and
  // the server is not failing (then the backoff stands).
  bool ContactDue(int64_t now_ms, bool report_now) const;
  // How long to wait for an event before the next loop iteration, at most `poll_ms`.
  int64_t WaitMs(int64_t now_ms, int64_t poll_ms) const;
  // Records how a contact (register if needed, then heartbeat) went and schedules the next.
  void ContactDone(bool ok, int64_t now_ms);

  // The node's MIG layer (agent/mig.h), when it has GPUs in MIG mode; it must outlive the
  // session. Then registrations carry each such GPU's layout, desired lists' `mig_layouts`
  // are applied before their tasks are started (never destroying an instance a running task
  // uses), and heartbeats report every MIG GPU's layout whenever one changed since the
  // last acknowledged report, and after each registration or new epoch.
  void SetMig(MigManager* mig) { mig_ = mig; }

  // POST /v1/agents/register.
  static constexpr const char* kRegisterPath = "/v1/agents/register";
  std::string RegisterBody() const;
  // True when registered (the heartbeat interval is then known).
  bool OnRegisterAnswer(const HttpAnswer& answer);

  // POST HeartbeatPath() with HeartbeatBody(), which snapshots the tasks it reports.
  std::string HeartbeatPath() const;
  std::string HeartbeatBody();
  // Applies the desired list of the answer and forgets tasks reported exited that the
  // server no longer lists. False on any failure (a 404 asks for a new registration).
  bool OnHeartbeatAnswer(const HttpAnswer& answer);

  // The latest telemetry sample: the next heartbeat carries it, once (a failed heartbeat
  // leaves it for the next; a newer sample replaces it).
  void SetTelemetry(Telemetry t) { telemetry_ = std::move(t); }

  // The latest probe results of running service tasks (agent/service_probe.h), which the
  // heartbeats report in place of the executor's own (a Runner knows only the port). A
  // task's entry is reported again when its port, readiness or scrape changes (see
  // ReportTracker); whether that calls for a contact at once is the caller's to say
  // (ContactDue's `report_now`).
  void SetServices(std::map<TaskKey, ServiceReport> services) { services_ = std::move(services); }

  // Starts and stops tasks to match `desired` when it is newer than the list acted on.
  void Apply(const DesiredList& desired);

 private:
  void ServerFailed(const std::string& why);
  // The MIG instances of running tasks.
  std::vector<MigPlacement> BusyMig() const;
  void Log(const std::string& line) const {
    if (log_) log_(line);
  }

  Registration registration_;
  TaskExecutor& executor_;
  int64_t heartbeat_ms_;
  LogFn log_;

  bool registered_ = false;
  bool register_now_ = false;
  int64_t interval_ms_;
  int64_t next_contact_ms_ = 0;
  int failures_ = 0;
  std::vector<TaskStatus> reported_;           // what the heartbeat in flight reports
  ReportTracker reports_;                      // what the server has acknowledged
  bool resend_now_ = false;                    // a new epoch answered: report everything again
  bool contact_now_ = false;                   // the watch brought a new epoch's list: report now
  DesiredList applied_;                        // the newest list acted on (start/stop)
  std::optional<Telemetry> telemetry_;         // not yet sent
  bool telemetry_sent_ = false;                // the heartbeat in flight carries telemetry_
  std::map<TaskKey, int64_t> grace_ms_;        // from each task's last desired entry
  std::map<TaskKey, ServiceReport> services_;  // see SetServices
  MigManager* mig_ = nullptr;                  // see SetMig
  bool mig_force_ = true;                      // report the layouts in the next heartbeat
  bool mig_in_flight_ = false;                 // the heartbeat in flight reports them
  uint64_t mig_sent_ = 0;                      // MigManager::changes() of that report
  uint64_t mig_acked_ = 0;                     // ... of the last acknowledged one
  int64_t mig_epoch_ = 0;                      // the epoch that acknowledged it
};

// The watch half: GET /v1/agents/{name}/desired, long-polled. The caller keeps the newest
// list it got (`known`) and asks for anything newer.
std::string WatchPath(const std::string& node, const DesiredList& known, int64_t wait_ms);
// The list of a watch answer; an error for anything but a 200 with a well-formed list
// (a 404 means the server forgot the node: the heartbeat side registers again).
core::Result<DesiredList> ParseWatchAnswer(const HttpAnswer& answer);
// The wait before the next watch after `failures` consecutive failed ones: a ceiling that
// starts at the heartbeat interval, at most kWatchRetryBaseMs, and doubles per failure up to
// kMaxBackoffMs, less a random part of up to half of it (`random`: any random number).
// Every node's watch breaks at once when the server restarts; at 10,000 nodes an unjittered
// 4 s wait (the old rule, the interval being minutes long) brought all of them back in the
// same instant (docs/operations.md, "Hollow nodes and scale tests").
int64_t WatchBackoffMs(int failures, int64_t interval_ms, uint64_t random);

}  // namespace gpuorch::agent
