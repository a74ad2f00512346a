// The spread over seeds of the FGD experiment, on hand-made batches (no trace needed).
#include "sim/fgd_stats.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace gpuorch::sim {
namespace {

TEST(FgdStats, SpreadOfValues) {
  struct Case {
    std::vector<double> values;
    SeedSpread want;
  };
  const Case kCases[] = {
      {{}, {0, 0, 0, 0, 0}},
      {{95.5}, {1, 95.5, 95.5, 95.5, 0}},
      // mean 4, deviations -2 0 2: sum of squares 8, / (n - 1) = 4, sd 2.
      {{2, 4, 6}, {3, 4, 2, 6, 2}},
      {{1, 1, 1, 5}, {4, 2, 1, 5, 2}},  // ss = 3 * 1 + 9 = 12, / 3 = 4
  };
  for (const Case& c : kCases) {
    const SeedSpread s = Spread(c.values);
    EXPECT_EQ(s.n, c.want.n);
    EXPECT_DOUBLE_EQ(s.mean, c.want.mean);
    EXPECT_DOUBLE_EQ(s.min, c.want.min);
    EXPECT_DOUBLE_EQ(s.max, c.want.max);
    EXPECT_DOUBLE_EQ(s.sd, c.want.sd);
  }
}

// A run whose allocation is `a100` and `a130` hundredths of a percent.
FgdRunResult Alloc(int64_t a100, int64_t a130) {
  FgdRunResult r;
  r.alloc_centi[100] = a100;
  r.alloc_centi[130] = a130;
  return r;
}

TEST(FgdStats, MarginsArePairedBySeed) {
  FgdBatch b;
  // The batch order is (workload, policy, seed); seed 3 of gpuorch has no fgd partner and
  // must not count in the margin, only in gpuorch's own spread.
  b.keys = {{"w", "fgd", 1},     {"w", "fgd", 2},     {"w", "gpuorch", 2},
            {"w", "gpuorch", 1}, {"w", "gpuorch", 3}, {"w", "bestfit", 1}};
  b.results = {Alloc(9000, 9500), Alloc(9100, 9400), Alloc(9150, 9460),
               Alloc(9020, 9530), Alloc(9900, 9990), Alloc(8800, 9300)};
  const FgdSpreads s = ComputeSpreads(b);
  ASSERT_EQ(s.policies.size(), 3u);
  EXPECT_EQ(s.policies[0].policy, "fgd");
  EXPECT_EQ(s.policies[1].policy, "gpuorch");
  EXPECT_EQ(s.policies[1].seeds, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_DOUBLE_EQ(s.policies[1].at130.max, 99.9);
  EXPECT_NEAR(s.policies[1].at130.mean, (95.3 + 94.6 + 99.9) / 3, 1e-9);
  ASSERT_EQ(s.margins.size(), 2u);
  const MarginSpread& g = s.margins[0];
  EXPECT_EQ(g.policy, "gpuorch");
  // Seed 1: 95.30 - 95.00 = +0.30 at 130, +0.20 at 100; seed 2: 94.60 - 94.00 = +0.60, +0.50.
  EXPECT_EQ(g.at130.n, 2);
  EXPECT_NEAR(g.at130.mean, 0.45, 1e-9);
  EXPECT_NEAR(g.at130.min, 0.30, 1e-9);
  EXPECT_NEAR(g.at130.max, 0.60, 1e-9);
  EXPECT_NEAR(g.at100.mean, 0.35, 1e-9);
  EXPECT_EQ(g.wins130, 2);
  const MarginSpread& bf = s.margins[1];
  EXPECT_EQ(bf.policy, "bestfit");
  EXPECT_EQ(bf.at130.n, 1);
  EXPECT_NEAR(bf.at130.mean, -2.0, 1e-9);
  EXPECT_EQ(bf.wins130, 0);
  EXPECT_EQ(s.gpuorch_all130.n, 2);
  EXPECT_NEAR(s.gpuorch_all130.mean, 0.45, 1e-9);
}

// The report carries the spread and the paired margins into summary.json and the table.
TEST(FgdStats, ReportWritesSpreadAndMargins) {
  FgdBatch b;
  b.keys = {{"w", "fgd", 1}, {"w", "fgd", 2}, {"w", "gpuorch", 1}, {"w", "gpuorch", 2}};
  b.results = {Alloc(9000, 9500), Alloc(9100, 9400), Alloc(9020, 9530), Alloc(9150, 9460)};
  const auto dir = std::filesystem::temp_directory_path() / "gpuorch_fgd_stats_report";
  std::string table;
  ASSERT_TRUE(WriteFgdReport(b, "/nonexistent", dir.string(), &table).ok());
  std::ifstream in(dir / "summary.json");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string json = ss.str();
  // gpuorch at 130: 95.30 and 94.60, mean 94.95, sd sqrt(0.245) = 0.495.
  EXPECT_NE(json.find("\"alloc_at_130_spread\": {\"n\": 2, \"mean\": 94.950, \"min\": 94.600, "
                      "\"max\": 95.300, \"sd\": 0.495}"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"margins_vs_fgd\": [\n    {\"workload\": \"w\", \"policy\": \"gpuorch\""),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"wins_at_130\": 2"), std::string::npos) << json;
  EXPECT_NE(json.find("\"gpuorch_minus_fgd_at_130_all_runs\": {\"n\": 2, \"mean\": 0.450"),
            std::string::npos)
      << json;
  EXPECT_NE(table.find("margin over fgd, paired by seed"), std::string::npos) << table;
  std::filesystem::remove_all(dir);
}

TEST(FgdStats, NoMarginsWithoutFgd) {
  FgdBatch b;
  b.keys = {{"w", "gpuorch", 1}};
  b.results = {Alloc(9000, 9500)};
  const FgdSpreads s = ComputeSpreads(b);
  EXPECT_EQ(s.policies.size(), 1u);
  EXPECT_TRUE(s.margins.empty());
  EXPECT_EQ(s.gpuorch_all130.n, 0);
}

}  // namespace
}  // namespace gpuorch::sim
