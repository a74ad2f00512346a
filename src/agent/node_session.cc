#include "agent/node_session.h"

#include <algorithm>
#include <set>
#include <utility>

namespace gpuorch::agent {

using core::Result;
using core::Status;

NodeSession::NodeSession(Registration registration, TaskExecutor& executor, int64_t heartbeat_ms,
                         LogFn log)
    : registration_(std::move(registration)),
      executor_(executor),
      heartbeat_ms_(heartbeat_ms),
      log_(std::move(log)),
      interval_ms_(heartbeat_ms) {}

bool NodeSession::ContactDue(int64_t now_ms, bool report_now) const {
  return now_ms >= next_contact_ms_ || ((report_now || contact_now_) && failures_ == 0);
}

int64_t NodeSession::WaitMs(int64_t now_ms, int64_t poll_ms) const {
  return std::clamp<int64_t>(next_contact_ms_ - now_ms, 1, std::max<int64_t>(1, poll_ms));
}

void NodeSession::ContactDone(bool ok, int64_t now_ms) {
  contact_now_ = false;
  if (ok) {
    failures_ = 0;
    // A restarted server hears every task again at once (see ReportTracker).
    next_contact_ms_ = resend_now_ ? now_ms : now_ms + interval_ms_;
    resend_now_ = false;
  } else if (register_now_) {
    register_now_ = false;
    next_contact_ms_ = now_ms;  // A 404 to a heartbeat: register again right away.
  } else {
    const int shift = std::min(failures_, 10);
    next_contact_ms_ = now_ms + std::min(kMaxBackoffMs, interval_ms_ << shift);
    ++failures_;
  }
}

void NodeSession::ServerFailed(const std::string& why) {
  if (failures_ == 0) Log(why + "; retrying with backoff (tasks keep running)");
}

std::string NodeSession::RegisterBody() const {
  if (mig_ == nullptr) return RegisterRequestJson(registration_);
  Registration r = registration_;
  mig_->Fill(r.gpus);
  return RegisterRequestJson(r);
}

std::vector<MigPlacement> NodeSession::BusyMig() const {
  std::vector<MigPlacement> busy;
  for (const TaskStatus& t : executor_.Tasks()) {
    if (t.state == TaskState::kRunning && t.mig) busy.push_back(*t.mig);
  }
  return busy;
}

bool NodeSession::OnRegisterAnswer(const HttpAnswer& answer) {
  if (answer.status < 0) {
    ServerFailed("register: server unreachable (" + answer.error + ")");
    return false;
  }
  if (answer.status != 200) {
    ServerFailed("register: server answered " + std::to_string(answer.status) + ": " + answer.body);
    return false;
  }
  Result<int64_t> interval = ParseRegisterResponse(answer.body);
  if (!interval.ok()) {
    ServerFailed(interval.status().message());
    return false;
  }
  // The server's interval (it grows with the cluster, and the server times nodes out from
  // it); the operator's --heartbeat-ms until the server names one.
  interval_ms_ = *interval > 0 ? *interval : heartbeat_ms_;
  registered_ = true;
  reports_.Reset();   // a server that forgot the node hears every task again
  mig_force_ = true;  // and the generations of its MIG layouts
  Log("registered as " + registration_.name + ", heartbeat every " + std::to_string(interval_ms_) +
      " ms");
  return true;
}

std::string NodeSession::HeartbeatPath() const {
  return "/v1/agents/" + registration_.name + "/heartbeat";
}

std::string NodeSession::HeartbeatBody() {
  // Only what the server has not acknowledged (ReportTracker): exits, new or restarted
  // tasks; otherwise a small keep-alive.
  std::vector<TaskStatus> tasks = executor_.Tasks();
  if (!services_.empty()) {
    for (TaskStatus& t : tasks) {
      auto s = services_.find(t.key);
      if (t.state == TaskState::kRunning && s != services_.end()) t.service = s->second;
    }
  }
  reported_ = reports_.ToReport(tasks);
  telemetry_sent_ = telemetry_.has_value();
  std::vector<MigReport> mig;
  mig_in_flight_ = false;
  if (mig_ != nullptr) {
    // A layout not reached because a task held an instance is tried again once tasks ended.
    (void)mig_->Reconcile(BusyMig());
    if (mig_force_ || mig_->changes() != mig_acked_) {
      mig = mig_->Reports();
      mig_sent_ = mig_->changes();
      mig_in_flight_ = true;
    }
  }
  return HeartbeatRequestJson(reported_, telemetry_ ? &*telemetry_ : nullptr,
                              mig_in_flight_ ? &mig : nullptr);
}

bool NodeSession::OnHeartbeatAnswer(const HttpAnswer& answer) {
  if (answer.status < 0) {
    ServerFailed("heartbeat: server unreachable (" + answer.error + ")");
    return false;
  }
  if (answer.status == 404) {
    Log("server does not know this node (restarted?); registering again");
    registered_ = false;
    register_now_ = true;
    return false;
  }
  if (answer.status != 200) {
    ServerFailed("heartbeat: server answered " + std::to_string(answer.status) + ": " +
                 answer.body);
    return false;
  }
  Result<DesiredList> desired = ParseHeartbeatResponse(answer.body);
  if (!desired.ok()) {
    ServerFailed(desired.status().message());
    return false;
  }
  if (failures_ > 0) Log("server reachable again");
  if (telemetry_sent_) telemetry_.reset();
  if (!reports_.Acknowledge(desired->epoch, reported_)) resend_now_ = true;  // restarted server
  if (mig_in_flight_) {
    mig_acked_ = mig_sent_;
    mig_force_ = false;
    mig_epoch_ = desired->epoch;
  } else if (desired->epoch != mig_epoch_) {
    mig_force_ = true;  // a server that has not heard the layouts
    mig_epoch_ = desired->epoch;
    if (mig_ != nullptr) resend_now_ = true;
  }
  mig_in_flight_ = false;
  if (desired->heartbeat_interval_ms > 0) interval_ms_ = desired->heartbeat_interval_ms;
  Apply(*desired);
  // An exited task is forgotten only once the server has seen it exited (it was in this
  // heartbeat as exited) and still does not want it: an exit that happened after the
  // heartbeat was sent is reported at least once. The server never lists an attempt again
  // once it stopped wanting it, so any answer after the report can tell.
  std::set<TaskKey> wanted;
  for (const TaskSpec& d : desired->tasks) wanted.insert(d.key);
  for (const TaskStatus& t : reported_) {
    if (t.state == TaskState::kExited && !wanted.count(t.key)) {
      executor_.Forget(t.key);
      grace_ms_.erase(t.key);
    }
  }
  reported_.clear();
  return true;
}

void NodeSession::Apply(const DesiredList& desired) {
  for (const TaskSpec& d : desired.tasks) grace_ms_[d.key] = d.grace_period_ms;
  // MIG layouts first, so that the instances of the tasks below exist when they start. A
  // list as new as the one acted on may carry them too (a heartbeat's answer).
  const bool older = desired.epoch == applied_.epoch && desired.version < applied_.version;
  if (mig_ != nullptr && !older) {
    mig_->SetDesired(desired.mig_layouts);
    // The server waits for the report: send it now, or right after the contact in progress.
    if (mig_->Reconcile(BusyMig())) contact_now_ = resend_now_ = true;
  }
  if (!desired.NewerThan(applied_)) return;
  // A list from another server process (a restart) through the watch: that server knows
  // this node's tasks only from its store until the node reports them, so report now rather
  // than at the next interval (minutes in a large cluster).
  if (applied_.epoch != 0 && desired.epoch != applied_.epoch) contact_now_ = true;
  applied_ = desired;
  for (const std::string& w : desired.warnings) Log(w);
  std::set<TaskKey> wanted;
  std::vector<const TaskSpec*> to_start;
  for (const TaskSpec& d : desired.tasks) {
    wanted.insert(d.key);
    if (!executor_.EverStarted(d.key)) to_start.push_back(&d);
  }
  const std::vector<Status> started = executor_.StartAll(to_start);
  for (size_t i = 0; i < to_start.size(); ++i) {
    if (started[i].ok()) {
      Log("started task " + to_start[i]->key.DirName());
    } else {
      Log("task " + to_start[i]->key.DirName() + " failed to start: " + started[i].message());
    }
  }
  for (const TaskStatus& t : executor_.Tasks()) {
    if (wanted.count(t.key) || t.state != TaskState::kRunning) continue;
    auto g = grace_ms_.find(t.key);
    if (executor_.Stop(t.key,
                       g != grace_ms_.end() ? std::optional<int64_t>(g->second) : std::nullopt)) {
      Log("stopping task " + t.key.DirName() + " (no longer desired)");
    }
  }
}

std::string WatchPath(const std::string& node, const DesiredList& known, int64_t wait_ms) {
  return "/v1/agents/" + node + "/desired?epoch=" + std::to_string(known.epoch) +
         "&after=" + std::to_string(known.version) + "&wait_ms=" + std::to_string(wait_ms);
}

Result<DesiredList> ParseWatchAnswer(const HttpAnswer& answer) {
  if (answer.status < 0)
    return Status::Precondition("watch: server unreachable (" + answer.error + ")");
  if (answer.status != 200) {
    return Status::Precondition("watch: server answered " + std::to_string(answer.status));
  }
  return ParseHeartbeatResponse(answer.body);
}

int64_t WatchBackoffMs(int failures, int64_t interval_ms, uint64_t random) {
  const int64_t base = std::clamp<int64_t>(interval_ms, 1, NodeSession::kWatchRetryBaseMs);
  const int64_t ceiling = std::min(NodeSession::kMaxBackoffMs, base << std::min(failures, 6));
  return ceiling - static_cast<int64_t>(random % static_cast<uint64_t>(ceiling / 2 + 1));
}

}  // namespace gpuorch::agent
