#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

// The server's Prometheus metrics on prometheus-cpp's core library (its registry and text
// serializer; the server has its own HTTP stack, so prometheus-cpp-pull is not used).
//
// Three kinds of values, each computed where it is cheap:
// - counters and histograms (cycle latency, waits, preemptions, API requests, store
//   commits), updated by whoever observes the event, lock-free or under the family's own
//   mutex, never under the controller's;
// - gauges of the engine's state (GPUs by state, idle-while-waiting, fragmentation, queue
//   usage and shares, pending by reason), computed by the cycle thread after a cycle (at
//   most once per kGaugePeriodMs) and published here as whole families: a scrape copies
//   them and never waits for a cycle;
// - gauges of the records (workloads by state, heartbeat ages, connections), computed by
//   the scrape itself, O(workloads + nodes) under the controller's mutex.
// A family published whole has no stale series: a node or model that disappears leaves it.
//
// Thread-safety: every method may be called from any thread.
namespace gpuorch::server {

using Labels = std::vector<std::pair<std::string, std::string>>;

// A gauge family under construction.
prometheus::MetricFamily GaugeFamily(const std::string& name, const std::string& help);
void AddSample(prometheus::MetricFamily& family, const Labels& labels, double value);

class ServerMetrics {
 public:
  // The engine-state gauges are recomputed at most this often (steady clock).
  static constexpr int64_t kGaugePeriodMs = 1000;

  ServerMetrics();

  void ObserveCycle(double seconds);
  void ObserveWait(const std::string& queue, const std::string& kind, double seconds);
  void CountPreemption(const std::string& reason, const std::string& queue);
  // `route` is the matched route's pattern ("/v1/workloads/*"), never the raw path.
  void ObserveRequest(const std::string& method, const std::string& route, int code,
                      double seconds);
  void ObserveCommit(double seconds);
  // A store transaction that failed (and is retried: GroupCommitter).
  void CountCommitFailure();
  void AddIdleWhileWaitingSeconds(const std::string& model, double seconds);
  void AddAllocatedGpuSeconds(const std::string& queue, const std::string& model, double seconds);
  // Creates the zero-valued series of every queue, kind and reason that a counter or
  // histogram may later show, so that rate() sees their first increase.
  void InitQueue(const std::string& queue, const std::vector<std::string>& kinds);

  // Replaces the engine-state gauges (the cycle thread).
  void PublishEngineGauges(std::vector<prometheus::MetricFamily> families);

  // The exposition (text format 0.0.4): every registered family, the engine gauges last
  // published and `extra` (computed by the scrape).
  std::string Render(std::vector<prometheus::MetricFamily> extra) const;

  static std::vector<double> WaitBuckets();
  static std::vector<double> CycleBuckets();
  static std::vector<double> RequestBuckets();
  static std::vector<double> CommitBuckets();

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Histogram>& cycle_;
  prometheus::Histogram& cycle_seconds_;
  prometheus::Family<prometheus::Histogram>& wait_;
  prometheus::Family<prometheus::Counter>& preemptions_;
  prometheus::Family<prometheus::Histogram>& requests_;
  prometheus::Family<prometheus::Histogram>& commit_;
  prometheus::Histogram& commit_seconds_;
  prometheus::Counter& commit_failures_;
  prometheus::Family<prometheus::Counter>& idle_seconds_;
  prometheus::Family<prometheus::Counter>& allocated_seconds_;
  mutable std::mutex mu_;  // guards engine_gauges_
  std::vector<prometheus::MetricFamily> engine_gauges_;
};

}  // namespace gpuorch::server
