#include "autoscale/autoscaler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <utility>
#include <vector>

#include "core/rng.h"

namespace gpuorch::autoscale {
namespace {

using core::kSecond;

// One service, fed one sample a second and decided after each.
class Harness {
 public:
  explicit Harness(const ServiceParams& p, int32_t ready = 1) {
    EXPECT_TRUE(a_.AddService(id_, p, now_, ready).ok());
  }

  // `seconds` samples of `value` from `source`, one a second, each followed by a decision;
  // returns the last decision.
  Decision Run(Source source, double value, int seconds) {
    Decision d;
    for (int i = 0; i < seconds; ++i) {
      now_ += kSecond;
      EXPECT_TRUE(a_.Observe(id_, source, value, now_).ok());
      d = *a_.Decide(id_, now_);
    }
    return d;
  }
  // Decisions without samples.
  Decision Idle(int seconds) {
    now_ += seconds * kSecond;
    return *a_.Decide(id_, now_);
  }
  void Ready(int32_t n) { EXPECT_TRUE(a_.SetReady(id_, n).ok()); }

  Autoscaler& a() { return a_; }
  ServiceId id() const { return id_; }
  core::Time now() const { return now_; }

 private:
  Autoscaler a_;
  ServiceId id_{0};
  core::Time now_ = 0;
};

ServiceParams NoGrace() {
  ServiceParams p;
  p.scale_to_zero_after_s = 0;
  return p;
}

// desired = ceil(observed / (target * target_utilization)) under a steady load, with the
// ready replicas at the answer so that no rate limit or panic intervenes.
TEST(AutoscalerTest, StableEquation) {
  struct Case {
    double in_flight, target, utilization;
    int32_t want;
  };
  const Case cases[] = {
      {0, 100, 0.7, 0},   {1, 100, 0.7, 1},   {70, 100, 0.7, 1},   {70.5, 100, 0.7, 2},
      {140, 100, 0.7, 2}, {141, 100, 0.7, 3}, {700, 100, 0.7, 10}, {10, 1, 1.0, 10},
      {9.5, 1, 0.5, 19},  {30, 10, 0.3, 10},  {0.2, 1, 0.1, 2},
  };
  for (const Case& c : cases) {
    ServiceParams p = NoGrace();
    p.target = c.target;
    p.target_utilization = c.utilization;
    Harness h(p, std::max(1, c.want));
    const Decision d = h.Run(Source::kLoadBalancer, c.in_flight, 60);
    EXPECT_EQ(d.desired, c.want) << c.in_flight << " / " << c.target << " * " << c.utilization;
    EXPECT_EQ(d.stable_wanted, c.want);
    EXPECT_EQ(d.mode, Mode::kStable);
  }
}

TEST(AutoscalerTest, SignalsCombineByMax) {
  Harness h(NoGrace(), 5);
  for (int i = 0; i < 60; ++i) {
    const core::Time t = h.now() + (i + 1) * kSecond;
    ASSERT_TRUE(h.a().Observe(h.id(), Source::kReplicaInFlight, 100, t).ok());
    ASSERT_TRUE(h.a().Observe(h.id(), Source::kLoadBalancer, 300, t).ok());
    ASSERT_TRUE(h.a().Observe(h.id(), Source::kPushedInFlight, 50, t).ok());
  }
  const Decision d = h.Idle(60);
  EXPECT_DOUBLE_EQ(d.stable_in_flight, 300);
  EXPECT_EQ(d.desired, 5);  // ceil(300 / 70), not the sum of the sources
}

TEST(AutoscalerTest, KvCacheSignal) {
  struct Case {
    double in_flight, kv;
    int32_t ready, want;
  };
  const Case cases[] = {
      {0, 0.9, 4, 4},     // at target: keep the ready replicas
      {0, 0.99, 4, 5},    // ceil(4 * 0.99 / 0.9) = ceil(4.4)
      {0, 0.45, 4, 2},    // half the target: half the replicas
      {350, 0.45, 4, 5},  // in-flight asks more: max
      {0, 0.99, 0, 0},    // no replica ready: the utilization scales nothing
  };
  for (const Case& c : cases) {
    Harness h(NoGrace(), c.ready);
    for (int i = 1; i <= 60; ++i) {
      ASSERT_TRUE(h.a().Observe(h.id(), Source::kLoadBalancer, c.in_flight, i * kSecond).ok());
    }
    const Decision d = h.Run(Source::kKvCacheUtilization, c.kv, 60);
    EXPECT_EQ(d.stable_wanted, c.want) << c.in_flight << " " << c.kv << " " << c.ready;
  }
}

// Panic is entered when ceil(panic in-flight / target) / ready >= 2: exactly 2x enters it.
TEST(AutoscalerTest, PanicEntryAtTwiceTheReadyReplicas) {
  struct Case {
    double surge;
    Mode want_mode;
    int32_t want;
  };
  const Case cases[] = {
      // 54 s at 140 then 6 s at the surge; 2 replicas ready.
      {210, Mode::kStable, 3},  // panic wants 3 = 1.5x; stable ceil(147 / 70)
      {280, Mode::kPanic, 4},   // panic wants 4 = 2x: the panic window decides
      {700, Mode::kPanic, 10},
  };
  for (const Case& c : cases) {
    Harness h(NoGrace(), 2);
    h.Run(Source::kLoadBalancer, 140, 54);
    const Decision d = h.Run(Source::kLoadBalancer, c.surge, 6);
    EXPECT_EQ(d.mode, c.want_mode) << c.surge;
    EXPECT_EQ(d.desired, c.want) << c.surge;
  }
}

TEST(AutoscalerTest, NoScaleDownInPanicAndExitAfterTheStableWindow) {
  Harness h(NoGrace(), 2);
  h.Run(Source::kLoadBalancer, 140, 54);
  Decision d = h.Run(Source::kLoadBalancer, 700, 6);
  ASSERT_EQ(d.mode, Mode::kPanic);
  ASSERT_EQ(d.desired, 10);
  h.Ready(10);
  const core::Time last_over = h.now();
  // The load vanishes: the panic window asks for 0, but panic holds its highest decision.
  for (int s = 1; s <= 60; ++s) {
    d = h.Run(Source::kLoadBalancer, 0, 1);
    EXPECT_EQ(d.mode, Mode::kPanic) << s;
    EXPECT_EQ(d.desired, 10) << s;
  }
  EXPECT_EQ(d.bound, Bound::kPanicHold);
  EXPECT_EQ(h.now(), last_over + 60 * kSecond);
  // One stable window after the last decision over the threshold: stable again, and the
  // stable window (now all zeros but 6 s at 700 gone) scales down at the rate limit.
  d = h.Run(Source::kLoadBalancer, 0, 1);
  EXPECT_EQ(d.mode, Mode::kStable);
  EXPECT_EQ(d.desired, 5);
  EXPECT_EQ(d.bound, Bound::kScaleDownRate);
}

TEST(AutoscalerTest, PanicIsExtendedWhileOverTheThreshold) {
  Harness h(NoGrace(), 1);
  Decision d = h.Run(Source::kLoadBalancer, 700, 1);
  ASSERT_EQ(d.mode, Mode::kPanic);
  // The ready replicas never come: still over the threshold, so panic never ends.
  d = h.Run(Source::kLoadBalancer, 700, 200);
  EXPECT_EQ(d.mode, Mode::kPanic);
  EXPECT_EQ(d.desired, 10);
}

TEST(AutoscalerTest, ScaleDownRateIsTwoPerStep) {
  Harness h(NoGrace(), 10);
  const int32_t want[] = {5, 2, 1, 0};
  for (int32_t w : want) {
    const Decision d = h.Run(Source::kLoadBalancer, 0, 1);
    EXPECT_EQ(d.desired, w);
    EXPECT_EQ(d.bound, w == 0 ? Bound::kNone : Bound::kScaleDownRate);
    h.Ready(d.desired);
  }
}

TEST(AutoscalerTest, ScaleUpCap) {
  struct Case {
    double rate;
    int32_t ready, want;
  };
  const Case cases[] = {{2, 1, 2}, {2, 3, 6}, {1.5, 3, 5}, {1.1, 3, 4}, {1000, 1, 100}};
  for (const Case& c : cases) {
    ServiceParams p = NoGrace();
    p.max_scale_up_rate = c.rate;
    p.target = 1;
    p.target_utilization = 1;
    Harness h(p, c.ready);
    const Decision d = h.Run(Source::kPushedInFlight, 100, 1);
    EXPECT_EQ(d.desired, c.want) << c.rate << " " << c.ready;
    EXPECT_EQ(d.bound, c.want < 100 ? Bound::kScaleUpRate : Bound::kNone);
  }
}

// The decision is the highest recommendation of the last scale_down_delay_s: compared with
// a twin without delay fed the same samples and ready counts.
TEST(AutoscalerTest, ScaleDownDelayHoldsTheHighestRecommendation) {
  ServiceParams p = NoGrace();
  p.stable_window_s = 6;
  p.panic_threshold = 10;
  p.max_scale_down_rate = 1e6;
  ServiceParams delayed = p;
  delayed.scale_down_delay_s = 30;
  Harness plain(p, 5), held(delayed, 5);
  std::deque<std::pair<core::Time, int32_t>> history;
  core::Rng rng(7);
  int held_differs = 0;
  for (int s = 0; s < 600; ++s) {
    const double load = static_cast<double>(rng.Uniform(350));
    const Decision a = plain.Run(Source::kLoadBalancer, load, 1);
    const Decision b = held.Run(Source::kLoadBalancer, load, 1);
    history.emplace_back(plain.now(), a.desired);
    while (history.front().first <= plain.now() - 30 * kSecond) history.pop_front();
    int32_t want = 0;
    for (const auto& [t, v] : history) want = std::max(want, v);
    ASSERT_EQ(b.desired, want) << s;
    if (b.desired != a.desired) {
      ++held_differs;
      EXPECT_EQ(b.bound, Bound::kScaleDownDelay);
    }
  }
  EXPECT_GT(held_differs, 0);
}

TEST(AutoscalerTest, ScaleToZeroOnlyAfterTheGraceWithoutTraffic) {
  ServiceParams p;
  p.scale_to_zero_after_s = 300;
  Harness h(p, 1);
  h.Run(Source::kLoadBalancer, 10, 30);
  const core::Time last_traffic = h.now();
  Decision d;
  while (h.now() < last_traffic + 300 * kSecond - kSecond) {
    d = h.Run(Source::kLoadBalancer, 0, 1);
    ASSERT_EQ(d.desired, 1) << h.now();
  }
  EXPECT_EQ(d.bound, Bound::kScaleToZeroGrace);
  EXPECT_EQ(d.stable_wanted, 0);
  d = h.Run(Source::kLoadBalancer, 0, 1);  // 300 s without traffic
  EXPECT_EQ(d.desired, 0);

  // A service at zero is not woken by the grace; traffic wakes it.
  h.Ready(0);
  EXPECT_EQ(h.Run(Source::kLoadBalancer, 0, 5).desired, 0);
  EXPECT_EQ(h.Run(Source::kLoadBalancer, 1, 1).desired, 1);
}

TEST(AutoscalerTest, NeverBelowMinNorAboveMax) {
  ServiceParams p = NoGrace();
  p.min_replicas = 2;
  p.max_replicas = 4;
  Harness h(p, 3);
  Decision d = h.Run(Source::kLoadBalancer, 0, 120);
  EXPECT_EQ(d.desired, 2);
  EXPECT_EQ(d.bound, Bound::kMinReplicas);
  d = h.Run(Source::kLoadBalancer, 7000, 120);
  EXPECT_EQ(d.desired, 4);
  EXPECT_EQ(d.bound, Bound::kMaxReplicas);
}

TEST(AutoscalerTest, ActivationScaleIsTheLeastNonZeroDecision) {
  ServiceParams p = NoGrace();
  p.activation_scale = 3;
  Harness h(p, 0);
  EXPECT_EQ(h.Run(Source::kLoadBalancer, 0, 10).desired, 0);
  const Decision d = h.Run(Source::kLoadBalancer, 1, 1);
  EXPECT_EQ(d.desired, 3);
  EXPECT_EQ(d.bound, Bound::kActivationScale);
}

TEST(AutoscalerTest, AnAbsentSignalDecaysToZeroAfterTheStableWindow) {
  Harness h(NoGrace(), 10);
  ASSERT_TRUE(h.a().Observe(h.id(), Source::kPushedInFlight, 700, 500).ok());  // second 0
  Decision d = *h.a().Decide(h.id(), 59 * kSecond + 999);
  EXPECT_EQ(d.desired, 10);
  EXPECT_DOUBLE_EQ(d.panic_in_flight, 700);  // the panic window keeps the newest level
  d = *h.a().Decide(h.id(), 60 * kSecond);
  EXPECT_DOUBLE_EQ(d.stable_in_flight, 0);
  EXPECT_EQ(d.stable_wanted, 0);
}

TEST(AutoscalerTest, PinnedSizeOverridesUntilUnpinned) {
  Harness h(NoGrace(), 1);
  ASSERT_TRUE(h.a().Pin(h.id(), 7).ok());
  Decision d = h.Run(Source::kLoadBalancer, 700, 60);
  EXPECT_EQ(d.mode, Mode::kPinned);
  EXPECT_EQ(d.desired, 7);
  EXPECT_DOUBLE_EQ(d.stable_in_flight, 700);  // samples are still recorded
  ASSERT_TRUE(h.a().Unpin(h.id()).ok());
  h.Ready(7);
  d = h.Run(Source::kLoadBalancer, 700, 1);
  EXPECT_EQ(d.mode, Mode::kStable);
  EXPECT_EQ(d.desired, 10);

  ServiceParams bounded = NoGrace();
  bounded.max_replicas = 5;
  ASSERT_TRUE(h.a().UpdateParams(h.id(), bounded).ok());
  const core::Status st = h.a().Pin(h.id(), 6);
  EXPECT_EQ(st.code(), core::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().rfind("autoscale.replicas:", 0), 0u);
}

TEST(AutoscalerTest, InputErrors) {
  Autoscaler a;
  const ServiceId id(3);
  EXPECT_EQ(a.Observe(id, Source::kLoadBalancer, 1, 0).code(), core::StatusCode::kNotFound);
  ServiceParams bad;
  bad.panic_window_s = 0;
  const core::Status st = a.AddService(id, bad, 0);
  EXPECT_EQ(st.message().rfind("autoscale.panic_window_s:", 0), 0u) << st.message();
  ASSERT_TRUE(a.AddService(id, ServiceParams{}, 0).ok());
  EXPECT_EQ(a.AddService(id, ServiceParams{}, 0).code(), core::StatusCode::kAlreadyExists);
  EXPECT_EQ(
      a.Observe(id, Source::kLoadBalancer, -1, 0).message().rfind("autoscale.load_balancer:", 0),
      0u);
  EXPECT_FALSE(a.Observe(id, Source::kPushedInFlight, std::nan(""), 0).ok());
  EXPECT_EQ(a.Observe(id, Source::kKvCacheUtilization, 1.5, 0)
                .message()
                .rfind("autoscale.kv_cache_utilization:", 0),
            0u);
  EXPECT_FALSE(a.SetReady(id, -1).ok());
  EXPECT_FALSE(a.Decide(ServiceId(2), 0).ok());
  EXPECT_TRUE(a.RemoveService(id).ok());
  EXPECT_FALSE(a.Has(id));
  EXPECT_TRUE(a.Tick(0).empty());
}

TEST(AutoscalerTest, TickDecidesEveryServiceInIdOrder) {
  Autoscaler a;
  for (uint32_t i : {4u, 1u, 9u}) ASSERT_TRUE(a.AddService(ServiceId(i), NoGrace(), 0, 1).ok());
  ASSERT_TRUE(a.Observe(ServiceId(9), Source::kLoadBalancer, 140, 0).ok());
  const std::vector<Decision>& d = a.Tick(kSecond);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].service, ServiceId(1));
  EXPECT_EQ(d[1].service, ServiceId(4));
  EXPECT_EQ(d[2].service, ServiceId(9));
  EXPECT_EQ(d[2].desired, 2);
}

// Over random load traces and random params, with the ready replicas following each
// decision: the decision stays in [min, max] and moves by at most the rate limits per tick
// (up to activation_scale or min_replicas, which may exceed them from few replicas), and the
// same inputs give the same decisions.
TEST(AutoscalerPropertyTest, BoundsAndRateLimitsHoldOnRandomTraces) {
  std::vector<int> bounds_seen(static_cast<int>(Bound::kMaxReplicas) + 1);
  int panics = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    core::Rng rng(seed);
    ServiceParams p;
    p.target = 1 + static_cast<double>(rng.Uniform(100));
    p.stable_window_s = 6 + static_cast<int32_t>(rng.Uniform(60));
    p.panic_window_s = 1 + static_cast<int32_t>(rng.Uniform(p.stable_window_s));
    p.max_scale_up_rate = 1.1 + static_cast<double>(rng.Uniform(20));
    p.max_scale_down_rate = 1.1 + static_cast<double>(rng.Uniform(4));
    p.scale_down_delay_s = static_cast<int32_t>(rng.Uniform(3)) * 10;
    p.min_replicas = static_cast<int32_t>(rng.Uniform(3));
    p.max_replicas =
        rng.Uniform(2) ? 0 : p.min_replicas + 1 + static_cast<int32_t>(rng.Uniform(50));
    p.scale_to_zero_after_s = static_cast<int32_t>(rng.Uniform(120));
    p.activation_scale = 1 + static_cast<int32_t>(rng.Uniform(3));
    if (p.max_replicas > 0) p.activation_scale = std::min(p.activation_scale, p.max_replicas);
    Autoscaler a, twin;
    const ServiceId id(0);
    ASSERT_TRUE(a.AddService(id, p, 0, p.min_replicas).ok());
    ASSERT_TRUE(twin.AddService(id, p, 0, p.min_replicas).ok());
    int32_t ready = p.min_replicas;
    double level = 0;
    for (int step = 1; step <= 2000; ++step) {
      const core::Time now = step * 500;
      // A random walk with bursts and silences, from random sources.
      switch (rng.Uniform(10)) {
        case 0:
          level = static_cast<double>(rng.Uniform(5000));
          break;
        case 1:
          level = 0;
          break;
        default:
          level = std::max(0.0, level + static_cast<double>(rng.Uniform(41)) - 20);
      }
      if (rng.Uniform(4) != 0) {
        const auto source = static_cast<Source>(rng.Uniform(3));
        ASSERT_TRUE(a.Observe(id, source, level, now).ok());
        ASSERT_TRUE(twin.Observe(id, source, level, now).ok());
      }
      if (rng.Uniform(3) == 0) {
        const double kv = static_cast<double>(rng.Uniform(101)) / 100;
        ASSERT_TRUE(a.Observe(id, Source::kKvCacheUtilization, kv, now).ok());
        ASSERT_TRUE(twin.Observe(id, Source::kKvCacheUtilization, kv, now).ok());
      }
      const Decision d = *a.Decide(id, now);
      const Decision t = *twin.Decide(id, now);
      ASSERT_EQ(d.desired, t.desired) << "seed " << seed << " step " << step;
      ASSERT_GE(d.desired, p.min_replicas) << "seed " << seed << " step " << step;
      if (p.max_replicas > 0) {
        ASSERT_LE(d.desired, p.max_replicas);
      }
      const int32_t base = std::max(1, ready);
      const auto up = static_cast<int32_t>(std::ceil(p.max_scale_up_rate * base - 1e-9));
      const auto down = static_cast<int32_t>(std::floor(ready / p.max_scale_down_rate + 1e-9));
      ASSERT_LE(d.desired, std::max({up, p.min_replicas, p.activation_scale}))
          << "seed " << seed << " step " << step;
      ASSERT_GE(d.desired, std::min(down, p.max_replicas > 0 ? p.max_replicas : down))
          << "seed " << seed << " step " << step;
      ++bounds_seen[static_cast<int>(d.bound)];
      panics += d.mode == Mode::kPanic;
      ready = d.desired;
      ASSERT_TRUE(a.SetReady(id, ready).ok());
      ASSERT_TRUE(twin.SetReady(id, ready).ok());
    }
  }
  // The traces reach every bound and panic, so the checks above were not vacuous.
  for (size_t b = 0; b < bounds_seen.size(); ++b) {
    EXPECT_GT(bounds_seen[b], 0) << BoundName(static_cast<Bound>(b));
  }
  EXPECT_GT(panics, 0);
}

}  // namespace
}  // namespace gpuorch::autoscale
