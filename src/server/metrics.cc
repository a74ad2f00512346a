#include "server/metrics.h"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <map>

namespace gpuorch::server {

namespace {

// Families of the three sources ordered by name, so that the exposition is stable.
void SortByName(std::vector<prometheus::MetricFamily>& families) {
  std::stable_sort(families.begin(), families.end(),
                   [](const prometheus::MetricFamily& a, const prometheus::MetricFamily& b) {
                     return a.name < b.name;
                   });
}

}  // namespace

prometheus::MetricFamily GaugeFamily(const std::string& name, const std::string& help) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = prometheus::MetricType::Gauge;
  return f;
}

void AddSample(prometheus::MetricFamily& family, const Labels& labels, double value) {
  prometheus::ClientMetric m;
  for (const auto& [k, v] : labels) m.label.push_back({k, v});
  std::sort(m.label.begin(), m.label.end());
  m.gauge.value = value;
  family.metric.push_back(std::move(m));
}

std::vector<double> ServerMetrics::WaitBuckets() {
  return {0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600};
}
std::vector<double> ServerMetrics::CycleBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
}
std::vector<double> ServerMetrics::RequestBuckets() {
  // Up to the long poll's hold (agents' watches last up to half the node timeout).
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
}
std::vector<double> ServerMetrics::CommitBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
}

ServerMetrics::ServerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      cycle_(prometheus::BuildHistogram()
                 .Name("gpuorch_cycle_seconds")
                 .Help("Scheduling cycle latency: the engine's Cycle, without applying the plan.")
                 .Register(*registry_)),
      cycle_seconds_(cycle_.Add({}, CycleBuckets())),
      wait_(prometheus::BuildHistogram()
                .Name("gpuorch_queue_wait_seconds")
                .Help("Time from queueing (or requeueing) to binding, per queue and kind.")
                .Register(*registry_)),
      preemptions_(prometheus::BuildCounter()
                       .Name("gpuorch_preemptions_total")
                       .Help("Evictions and shrinks, by reason and the evicted workload's queue.")
                       .Register(*registry_)),
      requests_(prometheus::BuildHistogram()
                    .Name("gpuorch_api_request_duration_seconds")
                    .Help("API requests from read to answer, by method, route pattern and "
                          "status code (long polls included, under their own route).")
                    .Register(*registry_)),
      commit_(prometheus::BuildHistogram()
                  .Name("gpuorch_store_commit_seconds")
                  .Help("Store transactions (group commits: one fsync for every batch merged).")
                  .Register(*registry_)),
      commit_seconds_(commit_.Add({}, CommitBuckets())),
      commit_failures_(prometheus::BuildCounter()
                           .Name("gpuorch_store_commit_failures_total")
                           .Help("Store transactions that failed and were rolled back; each is "
                                 "retried until it commits.")
                           .Register(*registry_)
                           .Add({})),
      idle_seconds_(prometheus::BuildCounter()
                        .Name("gpuorch_gpu_idle_while_waiting_seconds_total")
                        .Help("GPU-seconds of gpuorch_gpus_idle_while_waiting, per model: the "
                              "gauge integrated over time between its computations.")
                        .Register(*registry_)),
      allocated_seconds_(prometheus::BuildCounter()
                             .Name("gpuorch_queue_allocated_gpu_seconds_total")
                             .Help("GPU-seconds allocated to a leaf queue's work per model: "
                                   "gpuorch_queue_gpus_used integrated over time between its "
                                   "computations (accounting: gpuorch usage).")
                             .Register(*registry_)) {}

void ServerMetrics::ObserveCycle(double seconds) { cycle_seconds_.Observe(seconds); }

void ServerMetrics::ObserveWait(const std::string& queue, const std::string& kind, double seconds) {
  wait_.Add({{"queue", queue}, {"kind", kind}}, WaitBuckets()).Observe(seconds);
}

void ServerMetrics::CountPreemption(const std::string& reason, const std::string& queue) {
  preemptions_.Add({{"reason", reason}, {"queue", queue}}).Increment();
}

void ServerMetrics::ObserveRequest(const std::string& method, const std::string& route, int code,
                                   double seconds) {
  requests_
      .Add({{"method", method}, {"route", route}, {"code", std::to_string(code)}}, RequestBuckets())
      .Observe(seconds);
}

void ServerMetrics::ObserveCommit(double seconds) { commit_seconds_.Observe(seconds); }

void ServerMetrics::CountCommitFailure() { commit_failures_.Increment(); }

void ServerMetrics::AddIdleWhileWaitingSeconds(const std::string& model, double seconds) {
  idle_seconds_.Add({{"model", model}}).Increment(seconds);
}

void ServerMetrics::AddAllocatedGpuSeconds(const std::string& queue, const std::string& model,
                                           double seconds) {
  allocated_seconds_.Add({{"queue", queue}, {"model", model}}).Increment(seconds);
}

void ServerMetrics::InitQueue(const std::string& queue, const std::vector<std::string>& kinds) {
  for (const std::string& k : kinds) wait_.Add({{"queue", queue}, {"kind", k}}, WaitBuckets());
  for (const char* r : {"ReclaimGuarantee", "Priority", "ReservationReady", "NodeLost", "Harvested",
                        "IdleReclaimed"}) {
    preemptions_.Add({{"reason", r}, {"queue", queue}});
  }
}

void ServerMetrics::PublishEngineGauges(std::vector<prometheus::MetricFamily> families) {
  std::lock_guard<std::mutex> lock(mu_);
  engine_gauges_ = std::move(families);
}

std::string ServerMetrics::Render(std::vector<prometheus::MetricFamily> extra) const {
  std::vector<prometheus::MetricFamily> all = registry_->Collect();
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.insert(all.end(), engine_gauges_.begin(), engine_gauges_.end());
  }
  std::move(extra.begin(), extra.end(), std::back_inserter(all));
  SortByName(all);
  return prometheus::TextSerializer().Serialize(all);
}

}  // namespace gpuorch::server
