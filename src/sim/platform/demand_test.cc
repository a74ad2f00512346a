#include "sim/platform/demand.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "core/rng.h"

namespace gpuorch::sim::platform {
namespace {

constexpr int64_t kDay = 86400;
constexpr int64_t kHour = 3600;

// A profile of `seconds` bins with `requests[i]` requests of 100 prompt and 10 output tokens.
HourProfile MakeProfile(std::vector<double> requests) {
  HourProfile p;
  p.path = "test";
  p.seconds = static_cast<int32_t>(requests.size());
  p.requests = requests;
  for (double r : requests) {
    p.prompt_tokens.push_back(100 * r);
    p.output_tokens.push_back(10 * r);
    p.total_requests += static_cast<int64_t>(r);
  }
  p.mean_prompt = 100;
  p.mean_output = 10;
  return p;
}

Envelope Flat() {
  Envelope e;
  e.peak_trough_ratio = 1;
  e.weekend_factor = 1;
  return e;
}

double Sum(const std::vector<float>& v, size_t from, size_t count) {
  double s = 0;
  for (size_t i = from; i < from + count; ++i) s += v[i];
  return s;
}

TEST(ParseAzureTrace, ErrorsNameLineAndField) {
  const std::string kHeader = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
  const std::string kGood = "2023-11-16 18:15:46.6805900,374,44\n";
  struct Case {
    std::string text;
    std::string error;
  } cases[] = {
      {"", "t.csv: empty"},
      {kHeader, "t.csv: no requests"},
      {"TIMESTAMP,ContextTokens\n" + kGood, "t.csv:1: GeneratedTokens: missing in the header"},
      {kHeader + kGood + "2023-11-16 18:15:47,1\n", "t.csv:3: row: expected 3 fields"},
      {kHeader + kGood + "2023-11-16 25:00:00.0,1,2\n", "t.csv:3: TIMESTAMP: expected"},
      {kHeader + "2023-11-16 18:15:46.68x,1,2\n", "t.csv:2: TIMESTAMP: expected"},
      {kHeader + "2023-11-16 18:15:46.,1,2\n", "t.csv:2: TIMESTAMP: expected"},
      {kHeader + kGood + "\n" + "2023-11-16 18:15:47.1,-3,2\n", "t.csv:4: ContextTokens: expected"},
      {kHeader + "2023-11-16 18:15:47.1,3,2.5\n", "t.csv:2: GeneratedTokens: expected"},
      {kHeader + kGood + "2023-11-18 18:15:46.6805900,1,1\n",
       "t.csv: TIMESTAMP: the requests span"},
  };
  for (const Case& c : cases) {
    auto r = ParseAzureTrace(c.text, "t.csv");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.status().message().find(c.error), std::string::npos)
        << r.status().message() << "\nexpected: " << c.error;
  }
}

TEST(ParseAzureTrace, BinsFromTheFirstArrival) {
  // Arrivals at 0.5, 1.2 and 2.4 s past the minute: span 1.9 s, so two bins; the first two
  // requests fall in bin 0 (0.0 and 0.7 s after the first), the last in bin 1 (1.9 s).
  const std::string text =
      "TIMESTAMP,ContextTokens,GeneratedTokens\n"
      "2023-11-16 18:00:00.5000000,100,10\n"
      "2023-11-16 18:00:01.2000000,200,20\n"
      "2023-11-16 18:00:02.4000000,300,30\n";
  auto r = ParseAzureTrace(text, "hand.csv");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->path, "hand.csv");
  EXPECT_EQ(r->seconds, 2);
  EXPECT_EQ(r->requests, (std::vector<double>{2, 1}));
  EXPECT_EQ(r->prompt_tokens, (std::vector<double>{300, 300}));
  EXPECT_EQ(r->output_tokens, (std::vector<double>{30, 30}));
  EXPECT_EQ(r->total_requests, 3);
  EXPECT_DOUBLE_EQ(r->mean_prompt, 200);
  EXPECT_DOUBLE_EQ(r->mean_output, 20);

  // The same trace with CRLF line ends, columns reordered, rows out of order, and a whole
  // second: the same bins.
  const std::string shuffled =
      "GeneratedTokens,TIMESTAMP,ContextTokens\r\n"
      "30,2023-11-16 18:00:02.4,300\r\n"
      "\r\n"
      "10,2023-11-16 18:00:00.5,100\r\n"
      "20,2023-11-16 18:00:01.2,200";
  auto s = ParseAzureTrace(shuffled, "shuffled.csv");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->seconds, 2);
  EXPECT_EQ(s->requests, r->requests);
  EXPECT_EQ(s->prompt_tokens, r->prompt_tokens);

  // Exactly one second apart: floor(1.0) + 1 = 2 bins, the second request in bin 1.
  auto t = ParseAzureTrace(
      "TIMESTAMP,ContextTokens,GeneratedTokens\n"
      "2023-11-16 23:59:59,1,1\n"
      "2023-11-17 00:00:00,1,1\n",
      "midnight.csv");
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->requests, (std::vector<double>{1, 1}));
}

TEST(ReadAzureTrace, MissingFileIsAnError) {
  auto r = ReadAzureTrace("/nonexistent/azure.csv");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/nonexistent/azure.csv"), std::string::npos);
}

TEST(TileDemand, FlatEnvelopeKeepsEachHoursTotal) {
  // A 3600-s profile: every hour is one full period, whatever its offset.
  std::vector<double> req(3600);
  for (size_t i = 0; i < req.size(); ++i) req[i] = static_cast<double>((i * 7919) % 13);
  const HourProfile p = MakeProfile(req);
  const double total = std::accumulate(req.begin(), req.end(), 0.0);
  const double scale = 2.5;
  auto d = TileDemand(p, Flat(), scale, 2, 42);
  ASSERT_TRUE(d.ok()) << d.status().message();
  ASSERT_EQ(d->requests.size(), static_cast<size_t>(2 * kDay));
  for (int64_t h = 0; h < 48; ++h) {
    EXPECT_NEAR(Sum(d->requests, h * kHour, kHour), total * scale, 1e-3) << "hour " << h;
    EXPECT_NEAR(Sum(d->prompt_tokens, h * kHour, kHour), 100 * total * scale, 1e-1);
    EXPECT_NEAR(Sum(d->output_tokens, h * kHour, kHour), 10 * total * scale, 1e-2);
  }
  // A 900-s period fits four times into an hour: the rate per second is kept.
  std::vector<double> quarter(req.begin(), req.begin() + 900);
  const double quarter_total = std::accumulate(quarter.begin(), quarter.end(), 0.0);
  auto q = TileDemand(MakeProfile(quarter), Flat(), 1.0, 1, 7);
  ASSERT_TRUE(q.ok());
  for (int64_t h = 0; h < 24; ++h) {
    EXPECT_NEAR(Sum(q->requests, h * kHour, kHour), 4 * quarter_total, 1e-3) << "hour " << h;
  }
}

TEST(TileDemand, OneRequestLandsAtItsRotatedSecond) {
  // One request in bin b of a period P: hour k reads bin (o_k + t) mod P at its second t, so
  // the request shows at every t = (b - o_k) mod P + j * P below 3600.
  for (int32_t period : {5000, 1000, 3600}) {
    const size_t b = 777;
    std::vector<double> req(period, 0.0);
    req[b] = 1;
    const uint64_t seed = 2024;
    auto d = TileDemand(MakeProfile(req), Flat(), 1.0, 1, seed);
    ASSERT_TRUE(d.ok()) << d.status().message();
    core::Rng rng(seed);  // the same draws, one per hour, in hour order
    for (int64_t h = 0; h < 24; ++h) {
      const int64_t o = static_cast<int64_t>(rng.Uniform(static_cast<uint64_t>(period)));
      const int64_t first = ((static_cast<int64_t>(b) - o) % period + period) % period;
      for (int64_t t = 0; t < kHour; ++t) {
        const bool expected = t >= first && (t - first) % period == 0;
        ASSERT_EQ(d->requests[h * kHour + t], expected ? 1.0f : 0.0f)
            << "period " << period << " hour " << h << " second " << t << " offset " << o;
        ASSERT_EQ(d->prompt_tokens[h * kHour + t], expected ? 100.0f : 0.0f);
      }
    }
  }
}

TEST(TileDemand, ScaleSuperposesIndependentCopies) {
  // rate_scale 2.5: three copies per hour from their own offsets, weighted 1, 1 and 0.5. One
  // request in the profile shows at three seconds of each hour, not as one taller burst.
  const int32_t period = 3600;
  const size_t b = 100;
  std::vector<double> req(period, 0.0);
  req[b] = 1;
  const uint64_t seed = 5;
  auto d = TileDemand(MakeProfile(req), Flat(), 2.5, 1, seed);
  ASSERT_TRUE(d.ok()) << d.status().message();
  core::Rng rng(seed);
  for (int64_t h = 0; h < 24; ++h) {
    std::vector<float> expected(kHour, 0.0f);
    for (float w : {1.0f, 1.0f, 0.5f}) {
      const int64_t o = static_cast<int64_t>(rng.Uniform(period));
      expected[((static_cast<int64_t>(b) - o) % period + period) % period] += w;
    }
    for (int64_t t = 0; t < kHour; ++t) {
      ASSERT_EQ(d->requests[h * kHour + t], expected[t]) << "hour " << h << " second " << t;
    }
  }
}

TEST(TileDemand, DeterministicBySeed) {
  std::vector<double> req(2000);
  for (size_t i = 0; i < req.size(); ++i) req[i] = static_cast<double>(i % 17);
  const HourProfile p = MakeProfile(req);
  Envelope e;  // the default, diurnal and weekly
  auto a = TileDemand(p, e, 1.5, 3, 99);
  auto b = TileDemand(p, e, 1.5, 3, 99);
  auto c = TileDemand(p, e, 1.5, 3, 100);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->requests, b->requests);
  EXPECT_EQ(a->prompt_tokens, b->prompt_tokens);
  EXPECT_EQ(a->output_tokens, b->output_tokens);
  EXPECT_NE(a->requests, c->requests);
}

TEST(TileDemand, AppliesTheEnvelopeAndScale) {
  // A constant profile shows the envelope itself, times the scale.
  const HourProfile p = MakeProfile(std::vector<double>(1234, 2.0));
  Envelope e;
  e.start_weekday = 4;  // Friday, then a weekend
  auto d = TileDemand(p, e, 0.5, 3, 1);
  ASSERT_TRUE(d.ok());
  for (int64_t s : {int64_t{0}, 14 * kHour, kDay + 14 * kHour, 2 * kDay + 3 * kHour + 17}) {
    EXPECT_NEAR(d->requests[s], 2.0 * 0.5 * EnvelopeFactor(e, s), 1e-6) << s;
  }
}

TEST(TileDemand, RejectsBadArguments) {
  const HourProfile p = MakeProfile({1, 2, 3});
  struct Case {
    HourProfile profile;
    Envelope envelope;
    double scale;
    int32_t days;
    std::string error;
  };
  Envelope bad;
  bad.weekend_factor = 0;
  HourProfile empty;
  empty.path = "empty.csv";
  HourProfile ragged = p;
  ragged.output_tokens.pop_back();
  const Case cases[] = {
      {p, bad, 1, 1, "envelope.weekend_factor: must be in (0, 1]"},
      {p, Flat(), -1, 1, "rate_scale: must be in [0, 10000]"},
      {p, Flat(), std::nan(""), 1, "rate_scale"},
      {p, Flat(), 1, 0, "days: must be in [1, 366]"},
      {p, Flat(), 1, 367, "days: must be in [1, 366]"},
      {empty, Flat(), 1, 1, "empty.csv: profile"},
      {ragged, Flat(), 1, 1, "test: profile"},
  };
  for (const Case& c : cases) {
    auto r = TileDemand(c.profile, c.envelope, c.scale, c.days, 0);
    ASSERT_FALSE(r.ok()) << c.error;
    EXPECT_NE(r.status().message().find(c.error), std::string::npos) << r.status().message();
  }
}

TEST(Envelope, PeakTroughWeekendAndMonotoneBetween) {
  Envelope e;  // ratio 3, weekend 0.6, peak 14:00, day 0 a Monday
  EXPECT_DOUBLE_EQ(EnvelopeFactor(e, 14 * kHour), 1.0);
  EXPECT_NEAR(EnvelopeFactor(e, 2 * kHour), 1.0 / 3, 1e-12);         // trough 12 h earlier
  EXPECT_NEAR(EnvelopeFactor(e, kDay + 2 * kHour), 1.0 / 3, 1e-12);  // and 12 h later
  EXPECT_DOUBLE_EQ(EnvelopeFactor(e, 5 * kDay + 14 * kHour), 0.6);   // Saturday's peak
  EXPECT_DOUBLE_EQ(EnvelopeFactor(e, 6 * kDay + 14 * kHour), 0.6);   // Sunday's
  EXPECT_NEAR(EnvelopeFactor(e, 6 * kDay + 2 * kHour), 0.6 / 3, 1e-12);
  EXPECT_DOUBLE_EQ(EnvelopeFactor(e, 7 * kDay + 14 * kHour), 1.0);  // Monday again
  // Rising from the trough (02:00) to the peak (14:00), falling to the next trough.
  for (int64_t s = 2 * kHour; s < 14 * kHour; s += 60) {
    EXPECT_LT(EnvelopeFactor(e, s), EnvelopeFactor(e, s + 60)) << s;
  }
  for (int64_t s = 14 * kHour; s < kDay + 2 * kHour; s += 60) {
    EXPECT_GT(EnvelopeFactor(e, s), EnvelopeFactor(e, s + 60)) << s;
  }
  for (int64_t s = 0; s < 7 * kDay; s += 997) {
    const double f = EnvelopeFactor(e, s);
    EXPECT_GT(f, 0);
    EXPECT_LE(f, 1);
  }
  // start_weekday moves the weekend: day 0 a Saturday.
  e.start_weekday = 5;
  EXPECT_DOUBLE_EQ(EnvelopeFactor(e, 14 * kHour), 0.6);
  EXPECT_DOUBLE_EQ(EnvelopeFactor(e, 2 * kDay + 14 * kHour), 1.0);
  // A peak hour near midnight wraps around the day.
  e.start_weekday = 0;
  e.peak_hour = 23.5;
  EXPECT_DOUBLE_EQ(EnvelopeFactor(e, 23 * kHour + 1800), 1.0);
  EXPECT_NEAR(EnvelopeFactor(e, 11 * kHour + 1800), 1.0 / 3, 1e-12);
  // Ratio 1 and weekend 1: flat.
  EXPECT_DOUBLE_EQ(EnvelopeFactor(Flat(), 12345), 1.0);
}

TEST(Envelope, ValidateNamesTheField) {
  struct Case {
    Envelope e;
    std::string error;
  };
  std::vector<Case> cases(5);
  cases[0].e.peak_trough_ratio = 0.5;
  cases[0].error = "envelope.peak_trough_ratio: must be >= 1";
  cases[1].e.weekend_factor = 1.5;
  cases[1].error = "envelope.weekend_factor: must be in (0, 1]";
  cases[2].e.peak_hour = 24;
  cases[2].error = "envelope.peak_hour: must be in [0, 24)";
  cases[3].e.start_weekday = 7;
  cases[3].error = "envelope.start_weekday";
  cases[4].e.peak_trough_ratio = std::nan("");
  cases[4].error = "envelope.peak_trough_ratio";
  EXPECT_TRUE(Envelope{}.Validate().ok());
  for (const Case& c : cases) {
    const core::Status s = c.e.Validate();
    ASSERT_FALSE(s.ok()) << c.error;
    EXPECT_NE(s.message().find(c.error), std::string::npos) << s.message();
  }
}

CapacityProfile SmallReplica() {
  CapacityProfile c;
  c.prefill_tokens_per_s = 20000;
  c.decode_tokens_per_s = 2000;
  c.ttft_slo_s = 2;
  c.itl_slo_s = 0.1;
  c.max_utilization = 0.9;
  return c;
}

TEST(Capacity, HandComputedReplicasForAMinute) {
  // One minute of demand: 600 requests of 1,000 prompt and 100 output tokens, i.e. 600,000
  // prompt and 60,000 output tokens, averaged per second.
  const double prompt_tps = 600'000.0 / 60;  // 10,000 prompt tokens/s
  const double output_tps = 60'000.0 / 60;   // 1,000 output tokens/s
  const CapacityProfile c = SmallReplica();
  // 10,000 / 20,000 + 1,000 / 2,000 = 1.0 replica-seconds per second.
  EXPECT_DOUBLE_EQ(ReplicaLoad(c, prompt_tps, output_tps), 1.0);
  // Mean prompt 1,000 tokens: s_p = 0.05 s, 1 - 0.05 / 2 = 0.975, capped at 0.9.
  auto rho = MaxUtilization(c, 1000);
  ASSERT_TRUE(rho.ok());
  EXPECT_DOUBLE_EQ(*rho, 0.9);
  EXPECT_EQ(NeededReplicas(1.0, *rho), 2);  // ceil(1.111)
  // Long prompts make the TTFT bind: 30,000 tokens -> s_p = 1.5 s, rho = 1 - 0.75 = 0.25.
  auto tight = MaxUtilization(c, 30000);
  ASSERT_TRUE(tight.ok());
  EXPECT_DOUBLE_EQ(*tight, 0.25);
  EXPECT_EQ(NeededReplicas(1.0, *tight), 4);
  EXPECT_EQ(NeededReplicas(ReplicaLoad(c, 3 * prompt_tps, 3 * output_tps), *tight), 12);
  // Exact multiples do not round up (the 1e-9 slack), and no load needs no replica.
  EXPECT_EQ(NeededReplicas(1.8, 0.9), 2);
  EXPECT_EQ(NeededReplicas(0.9, 0.9), 1);
  EXPECT_EQ(NeededReplicas(0.0, 0.9), 0);
  EXPECT_EQ(NeededReplicas(-1.0, 0.9), 0);
  EXPECT_EQ(NeededReplicas(1e-6, 0.9), 1);
}

TEST(Capacity, UnreachableTtftAndInvalidProfilesAreErrors) {
  CapacityProfile c = SmallReplica();
  auto r = MaxUtilization(c, 40000);  // s_p = 2 s, the SLO itself
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("capacity.ttft_slo_s: unreachable"), std::string::npos);
  EXPECT_NE(r.status().message().find("40000 tokens takes 2 s at 20000"), std::string::npos)
      << r.status().message();
  EXPECT_FALSE(MaxUtilization(c, -1).ok());

  struct Case {
    CapacityProfile c;
    std::string error;
  };
  std::vector<Case> cases(6, Case{SmallReplica(), ""});
  cases[0].c.prefill_tokens_per_s = 0;
  cases[0].error = "capacity.prefill_tokens_per_s: must be > 0";
  cases[1].c.decode_tokens_per_s = -5;
  cases[1].error = "capacity.decode_tokens_per_s: must be > 0";
  cases[2].c.ttft_slo_s = std::nan("");
  cases[2].error = "capacity.ttft_slo_s: must be > 0";
  cases[3].c.itl_slo_s = 0;
  cases[3].error = "capacity.itl_slo_s: must be > 0";
  cases[4].c.max_utilization = 1.2;
  cases[4].error = "capacity.max_utilization: must be in (0, 1]";
  cases[5].c.gpus_per_replica = 0;
  cases[5].error = "capacity.gpus_per_replica: must be >= 1";
  EXPECT_FALSE(CapacityProfile{}.Validate().ok());  // the zero defaults must be set
  for (const Case& k : cases) {
    const core::Status s = k.c.Validate();
    ASSERT_FALSE(s.ok()) << k.error;
    EXPECT_NE(s.message().find(k.error), std::string::npos) << s.message();
    auto m = MaxUtilization(k.c, 100);
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().message(), s.message());
  }
}

TEST(Capacity, DefaultProfileIsValid) {
  const CapacityProfile c = DefaultLlama70bCapacity();
  ASSERT_TRUE(c.Validate().ok()) << c.Validate().message();
  EXPECT_EQ(c.gpus_per_replica, 4);
  // The TTFT SLO leaves room for the Azure traces' mean prompts (about 1,150 and 2,050).
  auto rho = MaxUtilization(c, 2048);
  ASSERT_TRUE(rho.ok());
  EXPECT_DOUBLE_EQ(*rho, c.max_utilization);
}

// The public Azure traces from the shared folder, when present.
std::string TracesDir() {
  if (const char* env = std::getenv("GPUORCH_TRACES"); env != nullptr && *env != '\0') {
    return env;
  }
#ifdef GPUORCH_TRACES_DIR
  return GPUORCH_TRACES_DIR;
#else
  return "";
#endif
}

TEST(AzureTraces, BothFilesParse) {
  const std::filesystem::path dir = std::filesystem::path(TracesDir()) / "azure-llm-2023";
  if (TracesDir().empty() || !std::filesystem::exists(dir)) {
    GTEST_SKIP() << "shared traces not found (GPUORCH_TRACES_DIR / GPUORCH_TRACES)";
  }
  struct File {
    const char* name;
    int64_t requests;  // data rows; the files have a header and no final newline
    int32_t seconds;   // floor(last - first) + 1
    double mean_prompt, mean_output;
  } files[] = {
      {"AzureLLMInferenceTrace_code.csv", 8819, 3436, 2047.85, 27.88},
      {"AzureLLMInferenceTrace_conv.csv", 19366, 3502, 1154.70, 211.13},
  };
  for (const File& f : files) {
    auto p = ReadAzureTrace((dir / f.name).string());
    ASSERT_TRUE(p.ok()) << p.status().message();
    EXPECT_EQ(p->total_requests, f.requests) << f.name;
    EXPECT_EQ(p->seconds, f.seconds) << f.name;
    EXPECT_NEAR(p->mean_prompt, f.mean_prompt, 0.01) << f.name;
    EXPECT_NEAR(p->mean_output, f.mean_output, 0.01) << f.name;
    EXPECT_DOUBLE_EQ(std::accumulate(p->requests.begin(), p->requests.end(), 0.0),
                     static_cast<double>(f.requests));
    EXPECT_GT(p->requests.front(), 0);  // bin 0 holds the first arrival
    EXPECT_GT(p->requests.back(), 0);   // and the last bin the last
    auto d = TileDemand(*p, Envelope{}, 1.0, 1, 1);
    ASSERT_TRUE(d.ok()) << d.status().message();
  }
}

}  // namespace
}  // namespace gpuorch::sim::platform
