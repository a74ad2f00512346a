#include "agent/agent.h"

#include <httplib.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>

#include "log/logging.h"

namespace gpuorch::agent {

using core::Result;
using core::Status;

namespace {

// How often tasks that cannot be waited on (no pidfd; SIGKILL deadlines) are polled.
constexpr int64_t kPeriodicPollMs = 20;

int64_t MachineMemoryMib() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page / (1024 * 1024) : 0;
}

void Log(const std::string& line) { log::Info("agent", {{"msg", line}}); }

// How often the files of forgotten tasks are looked at (each look is O(forgotten tasks)).
constexpr int64_t kGcIntervalMs = 60'000;

// The task cgroups of `parent` (docs/agent.md, "Task isolation"); nullptr when off, or when
// "auto" (<cgroup2 mount>/gpuorch/<node>) finds no usable cgroup v2, which is said once, here.
Result<std::shared_ptr<const Cgroups>> OpenCgroups(const std::string& parent,
                                                   const std::string& node) {
  if (parent == "off") {
    Log("cgroups off (--cgroup-parent off): tasks run without CPU, memory and pids limits");
    return std::shared_ptr<const Cgroups>();
  }
  std::string dir = parent;
  if (parent == "auto") {
    const std::string mount = Cgroups::FindMount();
    if (mount.empty()) {
      Log("no cgroup v2 on this machine: tasks run without CPU, memory and pids limits");
      return std::shared_ptr<const Cgroups>();
    }
    dir = mount + "/gpuorch/" + node;
  }
  Result<std::unique_ptr<Cgroups>> c = Cgroups::Open(dir, {"cpu", "memory", "pids"});
  if (!c.ok()) {
    if (parent != "auto") return Status::Precondition("--cgroup-parent: " + c.status().message());
    Log(c.status().message() + ": tasks run without CPU, memory and pids limits");
    return std::shared_ptr<const Cgroups>();
  }
  Log("a cgroup per task under " + (*c)->parent() + " (cpu.max, memory.max, pids.max)");
  return std::shared_ptr<const Cgroups>(std::move(c).value());
}

// The TLS flags fit the URL and name readable files.
Status CheckTlsOptions(const AgentOptions& o) {
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return Status::Invalid("--tls-cert and --tls-key: give both or neither");
  }
  const bool https = o.server_url.rfind("https://", 0) == 0;
  if (!https && (!o.ca_file.empty() || !o.tls_cert_file.empty())) {
    return Status::Invalid("--server '" + o.server_url +
                           "': --ca, --tls-cert and --tls-key need an https:// URL");
  }
  for (const auto& [flag, path] : {std::pair<const char*, const std::string*>{"--ca", &o.ca_file},
                                   {"--tls-cert", &o.tls_cert_file},
                                   {"--tls-key", &o.tls_key_file}}) {
    if (!path->empty() && ::access(path->c_str(), R_OK) != 0) {
      return Status::Invalid(std::string(flag) + ": cannot read " + *path + ": " +
                             std::strerror(errno));
    }
  }
  return Status::Ok();
}

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

  if (options.task_retention_s < 0) {
    return Status::Invalid("--task-retention-s: must not be negative");
  }
  if (Status s = CheckRunAsPolicy(options.run_as, ::geteuid()); !s.ok()) return s;
  Runner::Options ro;
  ro.data_dir = options.data_dir;
  ro.shim_command = options.shim_command;
  ro.run_as = options.run_as;
  ro.env_allow = options.env_allow;
  ro.pids_max = options.pids_max;
  const auto [port_lo, port_hi] = options.service_ports;
  if (port_lo < 1 || port_hi > 65535 || port_lo > port_hi) {
    return Status::Invalid("--service-ports: expected LO-HI within 1-65535");
  }
  if (options.service_scrape_interval_ms < 0) {
    return Status::Invalid("--service-scrape-interval-ms: must not be negative");
  }
  ro.service_ports = options.service_ports;
  // MIG (docs/agent.md, "MIG and MPS"): GPUs in MIG mode get their layouts applied.
  Result<std::unique_ptr<MigDriver>> mig_driver = gpus->OpenMig(*found);
  const bool any_mig =
      std::any_of(found->begin(), found->end(), [](const GpuInfo& g) { return g.mig; });
  if (mig_driver.ok()) {
    Result<std::unique_ptr<MigManager>> mig =
        MigManager::Open(std::move(mig_driver).value(), *found, Log);
    if (mig.ok()) {
      a->mig_ = std::move(mig).value();
      Log("MIG (" + std::string(gpus->Name()) + "): " + std::to_string(a->mig_->Reports().size()) +
          " GPUs in MIG mode");
      MigManager* m = a->mig_.get();
      ro.mig_uuid = [m](const MigPlacement& p) { return m->Uuid(p.gpu, p.start, p.profile); };
    } else {
      Log("MIG off: " + mig.status().message());
    }
  } else if (any_mig) {
    Log("MIG off: " + mig_driver.status().message());
  }
  std::vector<std::string> visible_ids;
  for (const GpuInfo& g : *found) visible_ids.push_back(gpus->VisibleDeviceId(g));
  a->mps_ = std::make_unique<MpsControl>(options.data_dir, visible_ids, Log);
  ro.mps_pipe_dir = [mps = a->mps_.get()](int32_t gpu) { return mps->Ensure(gpu); };
  Result<std::shared_ptr<const Cgroups>> cgroups = OpenCgroups(options.cgroup_parent, options.name);
  if (!cgroups.ok()) return cgroups.status();
  ro.cgroups = *cgroups;
  ro.visible_ids = visible_ids;
  Result<std::unique_ptr<Runner>> runner = Runner::Open(std::move(ro));
  if (!runner.ok()) return runner.status();
  a->runner_ = std::move(runner).value();

  Result<std::string> secret = NewLogSecret();
  if (!secret.ok()) return secret.status();
  Result<std::unique_ptr<LogServer>> logs =
      LogServer::Start(options.listen, a->runner_->data_dir(), *secret);
  if (!logs.ok()) return logs.status();
  a->log_server_ = std::move(logs).value();

  if (Status st = CheckTlsOptions(options); !st.ok()) return st;
  for (auto* c : {&a->client_, &a->watch_client_}) {
    *c = options.tls_cert_file.empty()
             ? std::make_unique<httplib::Client>(options.server_url)
             : std::make_unique<httplib::Client>(options.server_url, options.tls_cert_file,
                                                 options.tls_key_file);
    if (!(*c)->is_valid()) {
      return Status::Invalid(
          "--server '" + options.server_url + "': expected http://host:port or https://host:port" +
          (options.tls_cert_file.empty() ? "" : " (or --tls-cert/--tls-key could not be loaded)"));
    }
    if (!options.ca_file.empty()) (*c)->set_ca_cert_path(options.ca_file);
    (*c)->set_connection_timeout(2, 0);
    (*c)->set_read_timeout(5, 0);
    (*c)->set_write_timeout(5, 0);
    (*c)->set_keep_alive(true);
    (*c)->set_tcp_nodelay(true);
    // Every request of this agent goes through these two clients.
    const std::string authorization = AuthorizationHeader(options.token);
    if (!authorization.empty()) (*c)->set_default_headers({{"Authorization", authorization}});
  }
  a->wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (a->wake_fd_ < 0) return Status::Precondition(std::string("eventfd: ") + std::strerror(errno));

  // GPU telemetry: sampled in the loop, served on its own endpoint (docs/observability.md).
  if (options.telemetry_interval_ms < 100) {
    return Status::Invalid("--telemetry-interval-s: must be at least 0.1");
  }
  Result<std::unique_ptr<TelemetrySource>> telemetry = gpus->OpenTelemetry(*found);
  if (!telemetry.ok()) {
    Log("GPU telemetry off: " + telemetry.status().message());
  } else {
    a->telemetry_ = std::move(telemetry).value();
  }
  if (options.metrics_listen != "off") {
    Result<std::unique_ptr<MetricsServer>> metrics = MetricsServer::Start(options.metrics_listen);
    if (!metrics.ok()) {
      return Status(metrics.status().code(),
                    metrics.status().message() +
                        " (another exporter on this port? give --metrics-listen HOST:PORT, :0 "
                        "for a free port, or off)");
    }
    a->metrics_server_ = std::move(metrics).value();
  }

  Registration r;
  r.name = options.name;
  // A wildcard bind is reachable through the host name, not through "0.0.0.0".
  r.address = a->log_server_->address();
  if (r.address.rfind("0.0.0.0:", 0) == 0 || r.address.rfind("[::]:", 0) == 0) {
    r.address = HostName() + r.address.substr(r.address.rfind(':'));
  }
  r.log_secret = *secret;
  r.zone = options.zone;
  r.rack = options.rack;
  r.cpu_milli = options.cpu_milli;
  r.memory_mib = options.memory_mib;
  r.backend = std::string(gpus->Name());
  r.gpus = std::move(found).value();
  if (a->metrics_server_) {
    r.metrics_address = a->metrics_server_->address();
    if (r.metrics_address.rfind("0.0.0.0:", 0) == 0 || r.metrics_address.rfind("[::]:", 0) == 0) {
      r.metrics_address = HostName() + r.metrics_address.substr(r.metrics_address.rfind(':'));
    }
  }
  if (a->telemetry_) r.telemetry = a->telemetry_->emulated() ? "emulated" : "nvml";
  a->session_ = std::make_unique<NodeSession>(std::move(r), *a->runner_, options.heartbeat_ms, Log);
  a->session_->SetMig(a->mig_.get());
  Agent* self = a.get();
  a->prober_ = std::make_unique<ServiceProber>(
      options.service_scrape_interval_ms, MonotonicMs, [self] { self->Wake(); }, Log);
  a->gpus_ = std::move(gpus);
  a->options_ = std::move(options);
  return a;
}

Agent::~Agent() {
  Shutdown();
  if (watch_thread_.joinable()) watch_thread_.join();
  prober_.reset();  // its thread wakes the loop through wake_fd_
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Agent::Run() {
  const Registration& reg = session_->registration();
  Log("node " + reg.name + " (" + std::to_string(reg.gpus.size()) + " " + reg.backend +
      " GPUs), logs on " + reg.address + ", server " + options_.server_url +
      (reg.metrics_address.empty()
           ? ""
           : ", GPU metrics on http://" + reg.metrics_address + "/metrics"));
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
      session_->Apply(d);
    }
  }
  SampleTelemetryIfDue();
  const bool report_now = TakeServiceNews(MonotonicMs()) || exited;
  if (session_->ContactDue(MonotonicMs(), report_now)) {
    const bool ok = (session_->registered() || Register()) && Heartbeat();
    session_->ContactDone(ok, MonotonicMs());
    // Whatever the reason for this contact, it carried the latest gauges (or, failed, left
    // them unacknowledged for the next one).
    if (gauges_pending_) {
      gauges_pending_ = false;
      next_gauges_ms_ = MonotonicMs() + gauges_pace_ms_;
    }
  }
  // Tasks without a pidfd, and SIGKILL deadlines, are watched by polling.
  if (const int64_t now = MonotonicMs(); now >= next_gc_ms_) {
    next_gc_ms_ = now + kGcIntervalMs;
    if (const int n = runner_->CollectGarbage(options_.task_retention_s); n > 0) {
      Log("removed the files of " + std::to_string(n) + " finished tasks");
    }
  }
  int64_t poll_ms = runner_->NeedsPeriodicPoll() ? kPeriodicPollMs : session_->interval_ms();
  if (telemetry_)
    poll_ms = std::min(poll_ms, std::max<int64_t>(1, next_sample_ms_ - MonotonicMs()));
  if (gauges_pending_ && session_->failures() == 0)
    poll_ms = std::min(poll_ms, std::max<int64_t>(1, next_gauges_ms_ - MonotonicMs()));
  return session_->WaitMs(MonotonicMs(), poll_ms);
}

bool Agent::TakeServiceNews(int64_t now_ms) {
  if (runner_->changes() != prober_changes_) {
    prober_changes_ = runner_->changes();
    prober_->SetTasks(runner_->RunningServices());
  }
  bool urgent = false;
  if (std::optional<ServiceProber::News> news = prober_->Take()) {
    session_->SetServices(std::move(news->reports));
    urgent = news->urgent;
    gauges_pending_ = gauges_pending_ || news->scraped;
    gauges_pace_ms_ = news->scrape_pace_ms;
  }
  // Fresh gauges go out at once, but never more often than they are scraped.
  return urgent || (gauges_pending_ && now_ms >= next_gauges_ms_);
}

void Agent::SampleTelemetryIfDue() {
  if (!telemetry_) return;
  // Every interval, and at once when tasks start or end: attribution follows the tasks.
  const int64_t now = MonotonicMs();
  if (now < next_sample_ms_ && runner_->changes() == sampled_changes_) return;
  next_sample_ms_ = now + options_.telemetry_interval_ms;
  sampled_changes_ = runner_->changes();
  std::vector<TaskOnNode> tasks = runner_->RunningTasks();
  Result<Telemetry> t = telemetry_->Sample(tasks, now);
  if (!t.ok()) {
    if (!telemetry_failing_) Log("GPU telemetry: " + t.status().message());
    telemetry_failing_ = true;
    return;
  }
  telemetry_failing_ = false;
  for (const GpuSample& g : t->gpus) {
    std::string& was = gpu_health_[g.index];
    if (g.unhealthy != was) {
      Log("GPU " + std::to_string(g.index) +
          (g.unhealthy.empty() ? " healthy again" : " unhealthy: " + g.unhealthy));
      was = g.unhealthy;
    }
  }
  if (metrics_server_) {
    const Registration& reg = session_->registration();
    metrics_server_->Publish(
        RenderDcgmExposition(*t, reg.gpus, tasks, reg.name, telemetry_->emulated()));
  }
  session_->SetTelemetry(std::move(t).value());
}

namespace {

HttpAnswer Answer(const httplib::Result& res, const httplib::Client& client) {
  HttpAnswer a;
  if (!res) {
    a.error = httplib::to_string(res.error());
    if (res.error() == httplib::Error::SSLServerVerification) {
      const long v = client.get_openssl_verify_result();
      a.error += v == X509_V_OK ? ": the server's certificate does not name its host"
                                : std::string(": cannot verify the server's certificate: ") +
                                      X509_verify_cert_error_string(v) + " (give --ca)";
    }
    return a;
  }
  a.status = res->status;
  a.body = res->body;
  return a;
}

}  // namespace

bool Agent::Register() {
  const HttpAnswer answer = Answer(
      client_->Post(NodeSession::kRegisterPath, session_->RegisterBody(), "application/json"),
      *client_);
  if (!session_->OnRegisterAnswer(answer)) return false;
  std::lock_guard lock(mu_);
  watch_registered_ = true;
  watch_interval_ms_ = session_->interval_ms();
  cv_.notify_all();
  return true;
}

bool Agent::Heartbeat() {
  // Closes the connection after this contact when the interval is long (see
  // NodeSession::KeepContactConnection): the watch alone stays open.
  client_->set_keep_alive(session_->KeepContactConnection());
  const std::string body = session_->HeartbeatBody();
  const bool ok = session_->OnHeartbeatAnswer(
      Answer(client_->Post(session_->HeartbeatPath(), body, "application/json"), *client_));
  // The server sizes the interval to its cluster and repeats it in every answer: the
  // watch's wait follows it.
  std::lock_guard lock(mu_);
  if (watch_interval_ms_ != session_->interval_ms()) {
    watch_interval_ms_ = session_->interval_ms();
    cv_.notify_all();
  }
  return ok;
}

void Agent::Watch() {
  int failures = 0;
  std::minstd_rand rng(std::random_device{}());  // spreads retries (WatchBackoffMs)
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
    Result<DesiredList> got = ParseWatchAnswer(
        Answer(watch_client_->Get(WatchPath(session_->registration().name, known, interval)),
               *watch_client_));
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
    cv_.wait_for(lock, std::chrono::milliseconds(WatchBackoffMs(failures++, interval, rng())),
                 [this] { return stopping_; });
    if (stopping_) return;
  }
}

}  // namespace gpuorch::agent
