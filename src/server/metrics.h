#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace gpuorch::server {

// A Prometheus histogram with fixed buckets (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void Observe(double v);
  // Appends the exposition lines for `name` with extra `labels` (e.g. queue="a").
  void Write(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Counters and histograms the controller updates; gauges are computed at scrape time.
struct MetricsState {
  Histogram cycle_seconds{{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}};
  std::map<std::string, Histogram> queue_wait_seconds;  // per queue
  std::map<std::string, uint64_t> preemptions;          // per reason
  uint64_t cycles = 0;
  static std::vector<double> WaitBuckets() {
    return {0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600};
  }
};

// Escapes a label value for the text exposition format.
std::string LabelValue(const std::string& v);

}  // namespace gpuorch::server
