// The run-time estimate models: deterministic per (seed, job), never below the run time,
// within the model's bounds, and really noisy.
#include "sim/replay/estimates.h"

#include <gtest/gtest.h>

#include <set>

namespace gpuorch::sim {
namespace {

using core::Duration;
using core::kSecond;

TEST(Estimates, ModesAndBounds) {
  struct Case {
    const char* name;
    EstimateOptions o;
    double max_ratio;  // estimate / runtime may reach this, never more
  };
  EstimateOptions exact, none, factor, accuracy, tight;
  none.mode = EstimateMode::kNone;
  factor.mode = accuracy.mode = tight.mode = EstimateMode::kNoisy;
  factor.f_permille = 4000;  // up to 5x
  accuracy.model = NoiseModel::kAccuracy;
  accuracy.a_min_permille = 100;  // up to 10x
  tight.f_permille = 0;           // factor exactly 1
  const Case kCases[] = {{"exact", exact, 1.0},
                         {"none", none, 0.0},
                         {"factor", factor, 5.0},
                         {"accuracy", accuracy, 10.0},
                         {"f=0", tight, 1.0}};
  for (const Case& c : kCases) {
    std::set<Duration> ratios_permille;
    for (uint32_t job = 0; job < 2000; ++job) {
      const Duration runtime = (1 + job % 97) * 61 * kSecond + job;
      const Duration est = EstimateRuntime(c.o, job, runtime);
      EXPECT_EQ(est, EstimateRuntime(c.o, job, runtime)) << c.name;  // a pure function
      if (c.o.mode == EstimateMode::kNone) {
        EXPECT_EQ(est, 0) << c.name;
        continue;
      }
      EXPECT_GE(est, runtime) << c.name << " job " << job;
      // Rounded up to the next millisecond, so at most one above the bound.
      EXPECT_LE(est, static_cast<Duration>(static_cast<double>(runtime) * c.max_ratio) + 1)
          << c.name << " job " << job;
      ratios_permille.insert(est * 1000 / runtime);
    }
    if (c.max_ratio > 1.0) {
      // Noisy: the ratios spread over most of their range, not one value.
      EXPECT_GT(ratios_permille.size(), 500u) << c.name;
      EXPECT_LT(*ratios_permille.begin(), 1100) << c.name;
      EXPECT_GT(*ratios_permille.rbegin(), static_cast<Duration>(c.max_ratio * 900)) << c.name;
    } else if (c.o.mode != EstimateMode::kNone) {
      EXPECT_EQ(ratios_permille, std::set<Duration>{1000}) << c.name;
    }
  }
}

TEST(Estimates, SeedChangesTheDrawsAndJobsDrawIndependently) {
  EstimateOptions a;
  a.mode = EstimateMode::kNoisy;
  EstimateOptions b = a;
  b.seed = 2;
  const Duration runtime = 3600 * kSecond;
  int differ = 0;
  std::set<Duration> seen;
  for (uint32_t job = 0; job < 100; ++job) {
    differ += EstimateRuntime(a, job, runtime) != EstimateRuntime(b, job, runtime);
    seen.insert(EstimateRuntime(a, job, runtime));
  }
  EXPECT_GT(differ, 90);
  EXPECT_GT(seen.size(), 90u);  // neighbouring jobs do not share a draw
}

TEST(Estimates, RoundUpToModalValues) {
  constexpr Duration kMin = 60 * kSecond, kHour = 60 * kMin;
  struct Case {
    Duration in, want;
  };
  const Case kCases[] = {{1, kMin},
                         {kMin, kMin},
                         {kMin + 1, 2 * kMin},
                         {16 * kMin, 20 * kMin},
                         {61 * kMin, 2 * kHour},
                         {13 * kHour, 24 * kHour},
                         {31 * 24 * kHour, 31 * 24 * kHour}};
  for (const Case& c : kCases) EXPECT_EQ(RoundUpToModal(c.in), c.want) << c.in;
  EstimateOptions o;
  o.mode = EstimateMode::kNoisy;
  o.round_up = true;
  for (uint32_t job = 0; job < 200; ++job) {
    const Duration runtime = (job + 1) * 37 * kSecond;
    const Duration est = EstimateRuntime(o, job, runtime);
    EXPECT_GE(est, runtime);
    EXPECT_EQ(est, RoundUpToModal(est)) << "a round value";
  }
}

TEST(Estimates, ParseAndValidate) {
  EstimateMode m;
  EXPECT_TRUE(ParseEstimateMode("noisy", m));
  EXPECT_EQ(m, EstimateMode::kNoisy);
  EXPECT_FALSE(ParseEstimateMode("fuzzy", m));
  NoiseModel n;
  EXPECT_TRUE(ParseNoiseModel("accuracy", n));
  EXPECT_EQ(n, NoiseModel::kAccuracy);
  EXPECT_FALSE(ParseNoiseModel("gauss", n));
  EstimateOptions o;
  EXPECT_TRUE(o.Validate().ok());
  o.a_min_permille = 0;  // estimates would be unbounded
  EXPECT_NE(o.Validate().message().find("estimates.a_min"), std::string::npos);
  o = EstimateOptions{};
  o.f_permille = -1;
  EXPECT_NE(o.Validate().message().find("estimates.f"), std::string::npos);
}

}  // namespace
}  // namespace gpuorch::sim
