#include "agent/service_probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>

#include "core/prometheus_text.h"

namespace gpuorch::agent {

void ServiceProbes::SetTasks(const std::vector<ServiceTask>& tasks, int64_t now_ms) {
  std::set<TaskKey> listed;
  for (const ServiceTask& t : tasks) {
    listed.insert(t.key);
    if (probes_.count(t.key)) continue;
    Probe& p = probes_[t.key];
    p.spec = t.spec;
    p.next_check_ms = p.next_scrape_ms = now_ms + t.spec.initial_delay_ms();
    ++urgent_changes_;  // its port is news
  }
  std::erase_if(probes_, [&](const auto& kv) { return !listed.count(kv.first); });
}

std::vector<ServiceCheck> ServiceProbes::Due(int64_t now_ms) {
  std::vector<ServiceCheck> out;
  for (auto& [key, p] : probes_) {
    if (p.check_started_ms < 0 && p.next_check_ms <= now_ms) {
      p.check_started_ms = now_ms;
      ServiceCheck c{key, ServiceCheck::Kind::kConnect, p.spec.port, ""};
      if (p.spec.readiness) {
        c.kind = ServiceCheck::Kind::kHttp;
        c.path = p.spec.readiness->http_path;
      }
      out.push_back(std::move(c));
    }
    if (!p.spec.gauges.empty() && p.scrape_started_ms < 0 && p.next_scrape_ms <= now_ms) {
      p.scrape_started_ms = now_ms;
      out.push_back(ServiceCheck{key, ServiceCheck::Kind::kScrape, p.spec.port, kMetricsPath});
    }
  }
  return out;
}

std::optional<std::string> ServiceProbes::Done(const ServiceCheck& check, const CheckResult& result,
                                               int64_t now_ms) {
  auto it = probes_.find(check.key);
  if (it == probes_.end()) return std::nullopt;  // dropped meanwhile
  Probe& p = it->second;
  const std::string who =
      "service task " + check.key.DirName() + " (port " + std::to_string(p.spec.port) + ")";
  if (check.kind == ServiceCheck::Kind::kScrape) {
    if (p.scrape_started_ms < 0) return std::nullopt;
    // From the start of this scrape, so that a slow one does not stretch the schedule; one
    // that took longer than the interval is followed at once.
    p.next_scrape_ms = std::max(now_ms, p.scrape_started_ms + ScrapeIntervalMs(p.spec));
    p.scrape_started_ms = -1;
    if (!result.ok) return std::nullopt;  // not serving yet, or gone: the readiness says so
    core::Result<std::map<std::string, double>> sums = core::SumSamples(result.body, p.spec.gauges);
    if (!sums.ok()) {
      const bool first = !p.scrape_failing;
      p.scrape_failing = true;
      if (first) {
        return who + ": " + kMetricsPath + " is not a Prometheus text exposition (" +
               sums.status().message() + "); its gauges are not reported";
      }
      return std::nullopt;
    }
    p.scrape_failing = false;
    p.gauges = std::move(sums).value();
    p.scrape = ++scrapes_;
    return std::nullopt;
  }
  if (p.check_started_ms < 0) return std::nullopt;
  p.ever_ready |= result.ok;
  const int64_t period =
      p.ever_ready ? p.spec.period_ms() : std::min<int64_t>(p.spec.period_ms(), kStartupCheckMs);
  p.next_check_ms = std::max(now_ms, p.check_started_ms + period);
  p.check_started_ms = -1;
  if (result.ok) {
    p.failures = 0;
    if (p.ready) return std::nullopt;
    p.ready = true;
    ++urgent_changes_;
    return who + " ready";
  }
  ++p.failures;
  if (!p.ready || p.failures < kFailureThreshold) return std::nullopt;
  p.ready = false;
  ++urgent_changes_;
  return who + " not ready: " + std::to_string(p.failures) + " checks failed in a row (" +
         result.error + ")";
}

std::optional<int64_t> ServiceProbes::NextDueMs() const {
  std::optional<int64_t> next;
  auto consider = [&next](int64_t t) {
    if (!next || t < *next) next = t;
  };
  for (const auto& [key, p] : probes_) {
    if (p.check_started_ms < 0) consider(p.next_check_ms);
    if (!p.spec.gauges.empty() && p.scrape_started_ms < 0) consider(p.next_scrape_ms);
  }
  return next;
}

std::map<TaskKey, ServiceReport> ServiceProbes::Reports() const {
  std::map<TaskKey, ServiceReport> out;
  for (const auto& [key, p] : probes_) {
    out[key] = ServiceReport{p.spec.port, p.ready, p.gauges, p.scrape};
  }
  return out;
}

int64_t ServiceProbes::ScrapePaceMs() const {
  int64_t pace = 0;
  for (const auto& [key, p] : probes_) {
    if (p.spec.gauges.empty()) continue;
    const int64_t i = ScrapeIntervalMs(p.spec);
    pace = pace == 0 ? i : std::min(pace, i);
  }
  return pace;
}

namespace {

// A TCP connection to 127.0.0.1:port within `timeout_ms`.
CheckResult Connect(int32_t port, int64_t timeout_ms) {
  CheckResult r;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r.error = std::string("socket: ") + std::strerror(errno);
    return r;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    rc = ::poll(&p, 1, static_cast<int>(timeout_ms));
    if (rc == 0) {
      errno = ETIMEDOUT;
      rc = -1;
    } else if (rc > 0) {
      int err = 0;
      socklen_t len = sizeof(err);
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      errno = err;
      rc = err == 0 ? 0 : -1;
    }
  }
  if (rc != 0) r.error = std::string("connect: ") + std::strerror(errno);
  r.ok = rc == 0;
  ::close(fd);
  return r;
}

}  // namespace

CheckResult RunLocalCheck(const ServiceCheck& check, int64_t timeout_ms) {
  if (check.kind == ServiceCheck::Kind::kConnect) return Connect(check.port, timeout_ms);
  httplib::Client client("127.0.0.1", check.port);
  const time_t s = static_cast<time_t>(timeout_ms / 1000);
  const time_t us = static_cast<time_t>(timeout_ms % 1000 * 1000);
  client.set_connection_timeout(s, us);
  client.set_read_timeout(s, us);
  client.set_write_timeout(s, us);
  client.set_keep_alive(false);
  CheckResult r;
  httplib::Result res = client.Get(check.path);
  if (!res) {
    r.error = "GET " + check.path + ": " + httplib::to_string(res.error());
    return r;
  }
  r.ok = res->status >= 200 && res->status < 300;
  if (!r.ok) r.error = "GET " + check.path + ": " + std::to_string(res->status);
  if (check.kind == ServiceCheck::Kind::kScrape && r.ok) r.body = std::move(res->body);
  return r;
}

ServiceProber::ServiceProber(int64_t scrape_interval_ms, std::function<int64_t()> now_ms,
                             std::function<void()> wake, LogFn log, FetchFn fetch)
    : now_ms_(std::move(now_ms)),
      wake_(std::move(wake)),
      log_(std::move(log)),
      fetch_(std::move(fetch)),
      probes_(scrape_interval_ms) {
  if (!fetch_) fetch_ = [](const ServiceCheck& c) { return RunLocalCheck(c, kTimeoutMs); };
  thread_ = std::thread([this] { Loop(); });
}

ServiceProber::~ServiceProber() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  thread_.join();
}

void ServiceProber::SetTasks(std::vector<ServiceTask> tasks) {
  std::lock_guard lock(mu_);
  probes_.SetTasks(tasks, now_ms_());
  cv_.notify_all();  // a new task's first check may be due before the thread would wake
}

std::optional<ServiceProber::News> ServiceProber::Take() {
  std::lock_guard lock(mu_);
  if (probes_.urgent_changes() == taken_urgent_ && probes_.scrapes() == taken_scrapes_) {
    return std::nullopt;
  }
  News n;
  n.reports = probes_.Reports();
  n.urgent = probes_.urgent_changes() != taken_urgent_;
  n.scraped = probes_.scrapes() != taken_scrapes_;
  n.scrape_pace_ms = probes_.ScrapePaceMs();
  taken_urgent_ = probes_.urgent_changes();
  taken_scrapes_ = probes_.scrapes();
  return n;
}

void ServiceProber::Loop() {
  std::unique_lock lock(mu_);
  uint64_t woke_urgent = 0, woke_scrapes = 0;
  while (!stopping_) {
    // News from SetTasks (a new task's port) or from the checks below.
    if (probes_.urgent_changes() != woke_urgent || probes_.scrapes() != woke_scrapes) {
      woke_urgent = probes_.urgent_changes();
      woke_scrapes = probes_.scrapes();
      wake_();
    }
    const int64_t now = now_ms_();
    std::vector<ServiceCheck> due = probes_.Due(now);
    if (due.empty()) {
      const uint64_t urgent = probes_.urgent_changes();
      auto changed = [&] { return stopping_ || probes_.urgent_changes() != urgent; };
      if (std::optional<int64_t> next = probes_.NextDueMs()) {
        cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(1, *next - now)), changed);
      } else {
        cv_.wait(lock, changed);
      }
      continue;
    }
    for (const ServiceCheck& c : due) {
      lock.unlock();
      const CheckResult r = fetch_(c);
      lock.lock();
      if (stopping_) return;
      std::optional<std::string> line = probes_.Done(c, r, now_ms_());
      if (line && log_) log_(*line);
      if (probes_.urgent_changes() != woke_urgent) {
        woke_urgent = probes_.urgent_changes();
        wake_();  // a readiness change is reported before the other checks run
      }
    }
  }
}

}  // namespace gpuorch::agent
