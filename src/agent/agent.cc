#include "agent/agent.h"

#include <httplib.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <set>

namespace gpuorch::agent {

using core::Result;
using core::Status;

namespace {

// Backoff while the server is unreachable stays under half the default node timeout (10 s),
// so a server that comes back hears from the node before it would declare it Down.
constexpr int64_t kMaxBackoffMs = 4000;
// How often tasks that cannot be waited on (no pidfd; SIGKILL deadlines) are polled.
constexpr int64_t kPeriodicPollMs = 20;

int64_t MachineMemoryMib() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page / (1024 * 1024) : 0;
}

void Log(const std::string& line) { std::fprintf(stderr, "gpuorch agent: %s\n", line.c_str()); }

}  // namespace

std::string HostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

Result<std::unique_ptr<Agent>> Agent::Create(AgentOptions options,
                                             std::unique_ptr<GpuBackend> gpus) {
  std::unique_ptr<Agent> a(new Agent());
  if (options.name.empty()) options.name = HostName();
  if (options.data_dir.empty()) return Status::Invalid("--data: a data directory is required");
  if (options.heartbeat_ms < 10) return Status::Invalid("--heartbeat-ms: must be at least 10");
  if (options.cpu_milli == 0) options.cpu_milli = 1000 * ::sysconf(_SC_NPROCESSORS_ONLN);
  if (options.memory_mib == 0) options.memory_mib = MachineMemoryMib();
  Result<std::vector<GpuInfo>> found = gpus->Discover();
  if (!found.ok()) return found.status();

  Runner::Options ro;
  ro.data_dir = options.data_dir;
  ro.shim_command = options.shim_command;
  for (const GpuInfo& g : *found) ro.visible_ids.push_back(gpus->VisibleDeviceId(g));
  Result<std::unique_ptr<Runner>> runner = Runner::Open(std::move(ro));
  if (!runner.ok()) return runner.status();
  a->runner_ = std::move(runner).value();

  Result<std::unique_ptr<LogServer>> logs = LogServer::Start(options.listen, options.data_dir);
  if (!logs.ok()) return logs.status();
  a->log_server_ = std::move(logs).value();

  for (auto* c : {&a->client_, &a->watch_client_}) {
    *c = std::make_unique<httplib::Client>(options.server_url);
    if (!(*c)->is_valid()) {
      return Status::Invalid("--server '" + options.server_url + "': expected http://host:port");
    }
    (*c)->set_connection_timeout(2, 0);
    (*c)->set_read_timeout(5, 0);
    (*c)->set_write_timeout(5, 0);
    (*c)->set_keep_alive(true);
    (*c)->set_tcp_nodelay(true);
  }
  a->wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (a->wake_fd_ < 0) return Status::Precondition(std::string("eventfd: ") + std::strerror(errno));

  Registration& r = a->registration_;
  r.name = options.name;
  // A wildcard bind is reachable through the host name, not through "0.0.0.0".
  r.address = a->log_server_->address();
  if (r.address.rfind("0.0.0.0:", 0) == 0 || r.address.rfind("[::]:", 0) == 0) {
    r.address = HostName() + r.address.substr(r.address.rfind(':'));
  }
  r.zone = options.zone;
  r.rack = options.rack;
  r.cpu_milli = options.cpu_milli;
  r.memory_mib = options.memory_mib;
  r.backend = std::string(gpus->Name());
  r.gpus = std::move(found).value();
  a->interval_ms_ = options.heartbeat_ms;
  a->gpus_ = std::move(gpus);
  a->options_ = std::move(options);
  return a;
}

Agent::~Agent() {
  Shutdown();
  if (watch_thread_.joinable()) watch_thread_.join();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Agent::Run() {
  Log("node " + registration_.name + " (" + std::to_string(registration_.gpus.size()) + " " +
      registration_.backend + " GPUs), logs on " + registration_.address + ", server " +
      options_.server_url);
  watch_thread_ = std::thread([this] { Watch(); });
  std::vector<pollfd> fds;
  while (!Stopping()) {
    const int64_t wait = Tick();
    fds.clear();
    fds.push_back(pollfd{wake_fd_, POLLIN, 0});
    for (int fd : runner_->WatchFds()) fds.push_back(pollfd{fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), static_cast<int>(wait)) > 0 && (fds[0].revents & POLLIN)) {
      uint64_t n;
      ssize_t r = ::read(wake_fd_, &n, sizeof(n));
      (void)r;
    }
  }
  if (watch_thread_.joinable()) watch_thread_.join();
  Log("stopped; tasks keep running and will be adopted by the next agent on " + options_.data_dir);
}

void Agent::Shutdown() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (watch_client_) watch_client_->stop();  // ends a long poll in flight
  Wake();
}

bool Agent::Stopping() {
  std::lock_guard lock(mu_);
  return stopping_;
}

void Agent::Wake() {
  if (wake_fd_ < 0) return;
  const uint64_t one = 1;
  ssize_t r = ::write(wake_fd_, &one, sizeof(one));
  (void)r;
}

int64_t Agent::Tick() {
  const bool exited = runner_->Poll();
  {
    std::unique_lock lock(mu_);
    if (watched_new_) {
      watched_new_ = false;
      DesiredList d = watched_;
      lock.unlock();
      Apply(d);
    }
  }
  int64_t now = MonotonicMs();
  // An exit is reported at once (the server can reuse the GPUs), unless the server is
  // failing: then the backoff stands.
  if (now >= next_contact_ms_ || (exited && failures_ == 0)) {
    const bool ok = (registered_ || Register()) && Heartbeat();
    now = MonotonicMs();
    if (ok) {
      failures_ = 0;
      next_contact_ms_ = now + interval_ms_;
    } else if (register_now_) {
      register_now_ = false;
      next_contact_ms_ = now;  // A 404 to a heartbeat: register again right away.
    } else {
      const int shift = std::min(failures_, 10);
      next_contact_ms_ = now + std::min(kMaxBackoffMs, interval_ms_ << shift);
      ++failures_;
    }
  }
  // Tasks without a pidfd, and SIGKILL deadlines, are watched by polling.
  const int64_t poll_ms = runner_->NeedsPeriodicPoll() ? kPeriodicPollMs : interval_ms_;
  return std::clamp<int64_t>(next_contact_ms_ - now, 1, poll_ms);
}

void Agent::ServerFailed(const std::string& why) {
  if (failures_ == 0) Log(why + "; retrying with backoff (tasks keep running)");
}

bool Agent::Register() {
  httplib::Result res =
      client_->Post("/v1/agents/register", RegisterRequestJson(registration_), "application/json");
  if (!res) {
    ServerFailed("register: server unreachable (" + httplib::to_string(res.error()) + ")");
    return false;
  }
  if (res->status != 200) {
    ServerFailed("register: server answered " + std::to_string(res->status) + ": " + res->body);
    return false;
  }
  Result<int64_t> interval = ParseRegisterResponse(res->body);
  if (!interval.ok()) {
    ServerFailed(interval.status().message());
    return false;
  }
  registered_ = true;
  reports_.Reset();  // a server that forgot the node hears every task again
  {
    std::lock_guard lock(mu_);
    watch_registered_ = true;
  }
  FollowInterval(*interval);
  Log("registered as " + registration_.name + ", heartbeat every " + std::to_string(interval_ms_) +
      " ms");
  return true;
}

// The server sizes the interval to its cluster (it grows with the number of nodes) and
// times nodes out from it: its word wins; --heartbeat-ms serves until it has spoken.
void Agent::FollowInterval(int64_t server_ms) {
  interval_ms_ = server_ms > 0 ? server_ms : options_.heartbeat_ms;
  std::lock_guard lock(mu_);
  watch_interval_ms_ = interval_ms_;
  cv_.notify_all();
}

bool Agent::Heartbeat() {
  // Only what the server has not acknowledged (ReportTracker): exits, new or restarted
  // tasks; otherwise a small keep-alive.
  const std::vector<TaskStatus> tasks = reports_.ToReport(runner_->Tasks());
  httplib::Result res = client_->Post("/v1/agents/" + registration_.name + "/heartbeat",
                                      HeartbeatRequestJson(tasks), "application/json");
  if (!res) {
    ServerFailed("heartbeat: server unreachable (" + httplib::to_string(res.error()) + ")");
    return false;
  }
  if (res->status == 404) {
    Log("server does not know this node (restarted?); registering again");
    registered_ = false;
    register_now_ = true;
    return false;
  }
  if (res->status != 200) {
    ServerFailed("heartbeat: server answered " + std::to_string(res->status) + ": " + res->body);
    return false;
  }
  Result<DesiredList> desired = ParseHeartbeatResponse(res->body);
  if (!desired.ok()) {
    ServerFailed(desired.status().message());
    return false;
  }
  if (failures_ > 0) Log("server reachable again");
  if (!reports_.Acknowledge(desired->epoch, tasks)) return Heartbeat();  // a restarted server
  if (desired->heartbeat_interval_ms > 0 && desired->heartbeat_interval_ms != interval_ms_) {
    FollowInterval(desired->heartbeat_interval_ms);
  }
  Apply(*desired);
  ForgetReported(*desired, tasks);
  return true;
}

void Agent::Watch() {
  int failures = 0;
  while (true) {
    int64_t interval = 0;
    DesiredList known;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || watch_registered_; });
      if (stopping_) return;
      interval = watch_interval_ms_;
      known = watched_;
    }
    // The server holds the request until the list changes or one interval passes; the read
    // timeout leaves it time to answer on a loaded machine.
    watch_client_->set_read_timeout(static_cast<time_t>(interval / 1000 + 5), 0);
    httplib::Result res = watch_client_->Get(
        "/v1/agents/" + registration_.name + "/desired?epoch=" + std::to_string(known.epoch) +
        "&after=" + std::to_string(known.version) + "&wait_ms=" + std::to_string(interval));
    Result<DesiredList> got = res && res->status == 200
                                  ? ParseHeartbeatResponse(res->body)
                                  : Result<DesiredList>(Status::Precondition("watch failed"));
    std::unique_lock lock(mu_);
    if (stopping_) return;
    if (got.ok()) {
      failures = 0;
      if (got->NewerThan(watched_)) {
        watched_ = std::move(got).value();
        watched_new_ = true;
        lock.unlock();
        Wake();
      }
      continue;
    }
    // Unreachable, 404 (the loop thread registers again) or a bad answer: back off; the
    // loop's own heartbeats carry the node meanwhile.
    const int shift = std::min(failures++, 6);
    cv_.wait_for(lock, std::chrono::milliseconds(std::min(kMaxBackoffMs, interval << shift)),
                 [this] { return stopping_; });
    if (stopping_) return;
  }
}

void Agent::Apply(const DesiredList& desired) {
  for (const TaskSpec& d : desired.tasks) grace_ms_[d.key] = d.grace_period_ms;
  if (!desired.NewerThan(applied_)) return;
  applied_ = desired;
  std::set<TaskKey> wanted;
  std::vector<const TaskSpec*> to_start;
  for (const TaskSpec& d : desired.tasks) {
    wanted.insert(d.key);
    if (!runner_->EverStarted(d.key)) to_start.push_back(&d);
  }
  const std::vector<Status> started = runner_->StartAll(to_start);
  for (size_t i = 0; i < to_start.size(); ++i) {
    if (started[i].ok()) {
      Log("started task " + to_start[i]->key.DirName());
    } else {
      Log("task " + to_start[i]->key.DirName() + " failed to start: " + started[i].message());
    }
  }
  for (const TaskStatus& t : runner_->Tasks()) {
    if (wanted.count(t.key)) continue;
    if (t.state == TaskState::kRunning) {
      auto g = grace_ms_.find(t.key);
      if (runner_->Stop(t.key,
                        g != grace_ms_.end() ? std::optional<int64_t>(g->second) : std::nullopt)) {
        Log("stopping task " + t.key.DirName() + " (no longer desired)");
      }
    }
  }
}

void Agent::ForgetReported(const DesiredList& desired, const std::vector<TaskStatus>& reported) {
  // An exited task is forgotten only once the server has seen it exited (it was in this
  // heartbeat as exited) and still does not want it: an exit that happened after the
  // heartbeat was sent is reported at least once. The server never lists an attempt again
  // once it stopped wanting it, so any answer after the report can tell.
  std::set<TaskKey> wanted;
  for (const TaskSpec& d : desired.tasks) wanted.insert(d.key);
  for (const TaskStatus& t : reported) {
    if (t.state == TaskState::kExited && !wanted.count(t.key)) {
      runner_->Forget(t.key);
      grace_ms_.erase(t.key);
    }
  }
}

}  // namespace gpuorch::agent
