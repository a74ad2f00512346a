// Autoscaler benchmark (issue 10's goal: a decision for 1,000 services in at most 10 ms per
// tick). Each service has default params except the stable window, and is fed like the
// server will feed it: the load balancer once a second, the replica metrics (in-flight and
// KV-cache utilization) every 5 s, pushed in-flight every second for one service in four.
// Loads are random walks with bursts (fixed seed), and the ready replicas follow each
// decision, so some services panic, scale to zero or sit at a rate limit. 60 s of samples
// and decisions precede the timing (a Tick reads every bucket of the stable window whether
// or not it holds a sample, so a longer warm-up would not change its cost).
//
// Timed: exactly one `Autoscaler::Tick` per iteration, with the thread's CPU clock (the
// autoscaler is single-threaded and does no I/O, so its CPU time is its latency); the
// samples of each second are added outside the timed region. Counter `tick_ms` is the mean
// Tick; `observe_us` the mean cost of adding one second's samples of all services.
#include <benchmark/benchmark.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "autoscale/autoscaler.h"
#include "core/rng.h"

namespace gpuorch::autoscale {
namespace {

double CpuNow() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void Must(const core::Status& s) {
  if (s.ok()) return;
  std::fprintf(stderr, "autoscale_bench: %s\n", s.message().c_str());
  std::abort();
}

class Fleet {
 public:
  Fleet(int services, int32_t stable_window_s) : load_(services), rng_(42) {
    ServiceParams p;
    p.stable_window_s = stable_window_s;
    p.scale_down_delay_s = 30;
    for (int i = 0; i < services; ++i) {
      Must(a_.AddService(ServiceId(static_cast<uint32_t>(i)), p, 0, 1));
      load_[i] = static_cast<double>(rng_.Uniform(500));
    }
  }

  // Adds the samples of the next second.
  void Observe() {
    now_ += core::kSecond;
    const bool scrape = (now_ / core::kSecond) % 5 == 0;
    for (size_t i = 0; i < load_.size(); ++i) {
      const ServiceId id(static_cast<uint32_t>(i));
      double& l = load_[i];
      l = rng_.Uniform(200) == 0 ? static_cast<double>(rng_.Uniform(3000))
                                 : std::max(0.0, l + static_cast<double>(rng_.Uniform(21)) - 10);
      Must(a_.Observe(id, Source::kLoadBalancer, l, now_));
      if (i % 4 == 0) Must(a_.Observe(id, Source::kPushedInFlight, l * 0.9, now_));
      if (scrape) {
        Must(a_.Observe(id, Source::kReplicaInFlight, l, now_));
        Must(a_.Observe(id, Source::kKvCacheUtilization,
                        static_cast<double>(rng_.Uniform(101)) / 100, now_));
      }
    }
  }

  const std::vector<Decision>& Tick() { return a_.Tick(now_); }

  void Follow(const std::vector<Decision>& decisions) {
    for (const Decision& d : decisions) Must(a_.SetReady(d.service, d.desired));
  }

 private:
  Autoscaler a_;
  std::vector<double> load_;
  core::Rng rng_;
  core::Time now_ = 0;
};

void BM_AutoscaleTick(benchmark::State& state) {
  const int services = static_cast<int>(state.range(0));
  const auto window = static_cast<int32_t>(state.range(1));
  Fleet fleet(services, window);
  for (int s = 0; s < 60; ++s) {
    fleet.Observe();
    fleet.Follow(fleet.Tick());
  }
  double tick_s = 0, observe_s = 0;
  int64_t panics = 0;
  for (auto _ : state) {
    const double t0 = CpuNow();
    fleet.Observe();
    const double t1 = CpuNow();
    const std::vector<Decision>& d = fleet.Tick();
    const double t2 = CpuNow();
    benchmark::DoNotOptimize(d.data());
    observe_s += t1 - t0;
    tick_s += t2 - t1;
    state.SetIterationTime(t2 - t1);
    for (const Decision& x : d) panics += x.mode == Mode::kPanic;
    fleet.Follow(d);
  }
  const auto n = static_cast<double>(state.iterations());
  state.counters["tick_ms"] = tick_s * 1e3 / n;
  state.counters["observe_us"] = observe_s * 1e6 / n;
  state.counters["panic_share"] = static_cast<double>(panics) / (n * services);
}
BENCHMARK(BM_AutoscaleTick)
    ->ArgNames({"services", "stable_window_s"})
    ->Args({1000, 60})
    ->Args({10000, 60})
    ->Args({1000, 3600})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace gpuorch::autoscale

BENCHMARK_MAIN();
