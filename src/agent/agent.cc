#include "agent/agent.h"

#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>

namespace gpuorch::agent {

using core::Result;
using core::Status;

namespace {

// Backoff while the server is unreachable stays under half the default node timeout (10 s),
// so a server that comes back hears from the node before it would declare it Down.
constexpr int64_t kMaxBackoffMs = 4000;

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

  a->client_ = std::make_unique<httplib::Client>(options.server_url);
  if (!a->client_->is_valid()) {
    return Status::Invalid("--server '" + options.server_url + "': expected http://host:port");
  }
  a->client_->set_connection_timeout(2, 0);
  a->client_->set_read_timeout(5, 0);
  a->client_->set_write_timeout(5, 0);

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

Agent::~Agent() = default;

void Agent::Run() {
  Log("node " + registration_.name + " (" + std::to_string(registration_.gpus.size()) + " " +
      registration_.backend + " GPUs), logs on " + registration_.address + ", server " +
      options_.server_url);
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    const int64_t wait = Tick();
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(wait), [this] { return stopping_; });
  }
  Log("stopped; tasks keep running and will be adopted by the next agent on " + options_.data_dir);
}

void Agent::Shutdown() {
  std::lock_guard lock(mu_);
  stopping_ = true;
  cv_.notify_all();
}

int64_t Agent::Tick() {
  runner_->Poll();
  int64_t now = MonotonicMs();
  if (now >= next_contact_ms_) {
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
  // Poll at least every heartbeat interval even while backing off, so SIGKILL deadlines and
  // exits are noticed on time.
  return std::clamp<int64_t>(next_contact_ms_ - now, 1, interval_ms_);
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
  // Never slower than the server asks (it times nodes out from it), nor than the operator
  // asked with --heartbeat-ms.
  interval_ms_ = *interval > 0 ? std::min(*interval, options_.heartbeat_ms) : options_.heartbeat_ms;
  registered_ = true;
  Log("registered as " + registration_.name + ", heartbeat every " + std::to_string(interval_ms_) +
      " ms");
  return true;
}

bool Agent::Heartbeat() {
  const std::vector<TaskStatus> tasks = runner_->Tasks();
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
  Result<std::vector<TaskSpec>> desired = ParseHeartbeatResponse(res->body);
  if (!desired.ok()) {
    ServerFailed(desired.status().message());
    return false;
  }
  if (failures_ > 0) Log("server reachable again");
  Apply(*desired, tasks);
  return true;
}

void Agent::Apply(const std::vector<TaskSpec>& desired, const std::vector<TaskStatus>& reported) {
  std::set<TaskKey> wanted;
  for (const TaskSpec& d : desired) {
    wanted.insert(d.key);
    grace_ms_[d.key] = d.grace_period_ms;
    if (runner_->EverStarted(d.key)) continue;
    if (Status s = runner_->Start(d); s.ok()) {
      Log("started task " + d.key.DirName());
    } else {
      Log("task " + d.key.DirName() + " failed to start: " + s.message());
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
  // An exited task is forgotten only once the server has seen it exited (it was in this
  // heartbeat as exited) and still does not want it: an exit that happened after the
  // heartbeat was sent is reported at least once.
  for (const TaskStatus& t : reported) {
    if (t.state == TaskState::kExited && !wanted.count(t.key)) {
      runner_->Forget(t.key);
      grace_ms_.erase(t.key);
    }
  }
}

}  // namespace gpuorch::agent
