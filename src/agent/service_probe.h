#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/task.h"

// Readiness checks and gauge scrapes of service tasks (inference replicas; docs/agent.md,
// "Services"). Two parts: ServiceProbes, the state machine, which does no I/O and takes the
// time as an argument (tests drive it with a fake clock); and ServiceProber, one thread
// that runs the checks the machine says are due, for every service task of the node.
namespace gpuorch::agent {

// One check of one task, to be run against http://127.0.0.1:<port>.
struct ServiceCheck {
  enum class Kind {
    kHttp,     // GET <path>: 2xx is a success (the task's readiness check)
    kConnect,  // a TCP connection is accepted (readiness of a task without one)
    kScrape,   // GET /metrics: a 2xx body is the exposition to sum the gauges from
  };
  TaskKey key;
  Kind kind = Kind::kHttp;
  int32_t port = 0;
  std::string path;  // kHttp and kScrape
};

struct CheckResult {
  bool ok = false;    // 2xx (kHttp, kScrape), connected (kConnect)
  std::string body;   // kScrape
  std::string error;  // when not ok: why, for the log
};

// The probe state of every service task, after Kubernetes' readiness probes: the first
// check `initial_delay_ms` after the task is first tracked, then one every `period_ms`
// (measured from the start of the previous check); a task is Ready after 1 success
// (successThreshold) and no longer after 3 consecutive failures (failureThreshold).
// Without a readiness check the check is a TCP connection to the port. Gauges are scraped
// on their own schedule (the same delay, then every scrape interval: the agent's, else
// the task's period), whether or not the task is ready.
//
// Not thread-safe. Each call is O(tasks) at most, plus the scrape text for a scrape.
class ServiceProbes {
 public:
  static constexpr int kFailureThreshold = 3;
  // Until its first success a task is checked this often (at most its period), so that a
  // replica that starts is seen ready within this long rather than a whole period (the
  // role of a Kubernetes startupProbe with a short period); then every period.
  static constexpr int64_t kStartupCheckMs = 200;
  static constexpr const char* kMetricsPath = "/metrics";

  // `scrape_interval_ms` > 0 replaces every task's period for scrapes.
  explicit ServiceProbes(int64_t scrape_interval_ms = 0)
      : scrape_interval_ms_(scrape_interval_ms) {}

  // Tracks exactly `tasks` from now on: a new task starts not ready, its first check and
  // scrape `initial_delay_ms` after `now_ms`; a task no longer listed is dropped (a result
  // still in flight for it is then ignored).
  void SetTasks(const std::vector<ServiceTask>& tasks, int64_t now_ms);
  // The checks due at `now_ms`. Each is in flight until Done: never handed out twice.
  std::vector<ServiceCheck> Due(int64_t now_ms);
  // Records the outcome of a check Due handed out. Returns a line for the log when the
  // task became ready or not ready, or its scrape first failed to parse.
  std::optional<std::string> Done(const ServiceCheck& check, const CheckResult& result,
                                  int64_t now_ms);
  // When the next check falls due (nullopt: none is waiting; all are in flight or no task).
  std::optional<int64_t> NextDueMs() const;

  // What each tracked task reports (ServiceReport).
  std::map<TaskKey, ServiceReport> Reports() const;
  // Grows when a task is added (a port to report) or its readiness changes.
  uint64_t urgent_changes() const { return urgent_changes_; }
  // Grows with each successful scrape.
  uint64_t scrapes() const { return scrapes_; }
  // The shortest scrape interval of tasks with gauges (0: none has any): how often fresh
  // gauges may be reported.
  int64_t ScrapePaceMs() const;

 private:
  struct Probe {
    ServiceSpec spec;
    bool ready = false;
    bool ever_ready = false;  // a check has passed once: every period from then on
    int failures = 0;         // consecutive failed checks
    int64_t next_check_ms = 0;
    int64_t check_started_ms = -1;  // in flight since; -1: not in flight
    int64_t next_scrape_ms = 0;
    int64_t scrape_started_ms = -1;
    bool scrape_failing = false;
    std::map<std::string, double> gauges;
    uint64_t scrape = 0;  // scrapes_ when `gauges` was taken
  };
  int64_t ScrapeIntervalMs(const ServiceSpec& s) const {
    return scrape_interval_ms_ > 0 ? scrape_interval_ms_ : s.period_ms();
  }

  int64_t scrape_interval_ms_;
  std::map<TaskKey, Probe> probes_;
  uint64_t urgent_changes_ = 0;
  uint64_t scrapes_ = 0;
};

// Runs a check against 127.0.0.1 with `timeout_ms` to connect and `timeout_ms` per read or
// write (cpp-httplib's timeouts; it has no overall one).
CheckResult RunLocalCheck(const ServiceCheck& check, int64_t timeout_ms);

// ServiceProbes driven by one thread for all of the node's service tasks: it sleeps until
// a check is due, runs the due ones one after another (each bounded by the 1 s timeout),
// and calls `wake` when there is news for Take. One thread rather than one per task: a
// node runs a handful of replicas, and the agent's loop must never block on a replica.
//
// SetTasks and Take belong to the agent's loop thread; `wake`, `log` and `fetch` are called
// on the prober's thread.
class ServiceProber {
 public:
  static constexpr int64_t kTimeoutMs = 1000;  // Kubernetes' timeoutSeconds default
  using FetchFn = std::function<CheckResult(const ServiceCheck&)>;
  using LogFn = std::function<void(const std::string&)>;

  // `now_ms`: a monotonic clock. `fetch` empty: RunLocalCheck with kTimeoutMs.
  ServiceProber(int64_t scrape_interval_ms, std::function<int64_t()> now_ms,
                std::function<void()> wake, LogFn log, FetchFn fetch = {});
  // Stops the thread (after the check in flight, at most about two timeouts).
  ~ServiceProber();

  // The running service tasks, all of them, whenever they change.
  void SetTasks(std::vector<ServiceTask> tasks);

  struct News {
    std::map<TaskKey, ServiceReport> reports;  // every tracked task's
    bool urgent = false;                       // a port or a readiness changed: report at once
    bool scraped = false;                      // fresh gauges: report, paced by scrape_pace_ms
    int64_t scrape_pace_ms = 0;
  };
  // What changed since the last Take (nullopt: nothing).
  std::optional<News> Take();

 private:
  void Loop();

  std::function<int64_t()> now_ms_;
  std::function<void()> wake_;
  LogFn log_;
  FetchFn fetch_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;       // guarded by mu_
  ServiceProbes probes_;        // guarded by mu_
  uint64_t taken_urgent_ = 0;   // guarded by mu_: the counters at the last Take
  uint64_t taken_scrapes_ = 0;  // guarded by mu_
  std::thread thread_;
};

}  // namespace gpuorch::agent
