// Tests of the FGD experiment against the numbers FGD-PROTOCOL.md states. They read the
// public traces from $GPUORCH_TRACES and are skipped when the folder is absent.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "core/rng.h"
#include "sim/fgd_input.h"
#include "sim/fgd_report.h"
#include "sim/fgd_run.h"

namespace gpuorch::sim {
namespace {

std::string TracesDir() {
  const char* env = std::getenv("GPUORCH_TRACES");
  return env != nullptr ? env : "../shared/traces";
}

// Loads a prepared workload or skips the test when the traces are not here.
#define LOAD_OR_SKIP(var, name)                                                   \
  const std::string base_##var = TracesDir() + "/alibaba-v2023/";                 \
  if (!std::filesystem::exists(base_##var + "openb_node_list_gpu_node.csv")) {    \
    GTEST_SKIP() << "traces not found at " << TracesDir();                        \
  }                                                                               \
  auto nodes_##var = ReadOpenbNodes(base_##var + "openb_node_list_gpu_node.csv"); \
  ASSERT_TRUE(nodes_##var.ok()) << nodes_##var.status().message();                \
  auto pods_##var = ReadOpenbPods(base_##var + std::string(name) + ".csv");       \
  ASSERT_TRUE(pods_##var.ok()) << pods_##var.status().message();                  \
  const FgdWorkload var = PrepareWorkload(name, nodes_##var.value(), pods_##var.value())

TEST(FgdInput, TypicalPodsOfTheDefaultTrace) {
  LOAD_OR_SKIP(w, "openb_pod_list_default");
  EXPECT_EQ(w.nodes.size(), 1213u);
  EXPECT_EQ(w.capacity_milli, 6212000);
  EXPECT_EQ(w.typical.total_pods, 8152);
  EXPECT_EQ(w.typical.distinct_keys, 91u);
  EXPECT_EQ(w.typical.kept.size(), 35u);
  EXPECT_EQ(w.typical.kept_pods, 7766);
  struct Top {
    int64_t cpu;
    int32_t milli, count;
    int64_t pods;
  };
  const Top kTop[] = {{3152, 810, 1, 1047}, {11300, 1000, 1, 874}, {11400, 1000, 1, 599},
                      {3152, 1000, 1, 470}, {11908, 470, 1, 388},  {12500, 0, 0, 366}};
  for (size_t i = 0; i < std::size(kTop); ++i) {
    const TypicalPod& p = w.typical.kept[i];
    EXPECT_EQ(p.cpu_milli, kTop[i].cpu) << i;
    EXPECT_EQ(p.gpu_milli, kTop[i].milli) << i;
    EXPECT_EQ(p.num_gpu, kTop[i].count) << i;
    EXPECT_EQ(p.pods, kTop[i].pods) << i;
  }
}

TEST(FgdInput, EmptyClusterFragmentation) {
  struct Case {
    const char* workload;
    double pct;
  };
  for (const Case& c : {Case{"openb_pod_list_default", 13.94}, Case{"openb_pod_list_cpu050", 5.55},
                        Case{"openb_pod_list_gpuspec33", 35.49}}) {
    LOAD_OR_SKIP(w, c.workload);
    EXPECT_NEAR(EmptyClusterFragPct(w), c.pct, 0.005) << c.workload;
  }
}

TEST(FgdInput, ArrivalsTuneUpToTheTarget) {
  LOAD_OR_SKIP(w, "openb_pod_list_default");
  core::Rng rng(42);
  const Arrivals a = MakeArrivals(w.pods, w.nodes.size(), w.capacity_milli, 130, rng);
  const int64_t target = 8075600;
  // Within one GPU below the target, or up to 7 GPUs above it (protocol §2.3).
  EXPECT_GT(a.arriving_milli, target - 1000);
  EXPECT_LE(a.arriving_milli, target + 7000);
  EXPECT_GE(a.sequence.size(), 8152u + 2400u);
  EXPECT_LE(a.sequence.size(), 8152u + 2900u);
  // The originals come first, each exactly once.
  std::vector<int> seen(w.pods.size());
  for (size_t i = 0; i < w.pods.size(); ++i) ++seen[a.sequence[i]];
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<long>(w.pods.size()));
  // Ranks are a permutation.
  std::vector<uint32_t> ranks = a.rank;
  std::sort(ranks.begin(), ranks.end());
  for (uint32_t i = 0; i < ranks.size(); ++i) ASSERT_EQ(ranks[i], i);
}

TEST(FgdInput, ArrivalsTuneDownOnMultigpu50) {
  LOAD_OR_SKIP(w, "openb_pod_list_multigpu50");
  core::Rng rng(7);
  const Arrivals a = MakeArrivals(w.pods, w.nodes.size(), w.capacity_milli, 130, rng);
  EXPECT_LE(a.arriving_milli, 8075600);
  EXPECT_LT(a.sequence.size(), w.pods.size());
}

// One seed of the default trace end to end: our FGD and BestFit land inside the authors'
// per-seed range at 130% (protocol §7), widened by 0.2 points because our generator draws
// different sequences than theirs.
TEST(FgdRun, DefaultTraceOneSeedWithinAuthorsRange) {
  LOAD_OR_SKIP(w, "openb_pod_list_default");
  auto fgd = RunFgd(w, "fgd", 42);
  auto bestfit = RunFgd(w, "bestfit", 42);
  ASSERT_TRUE(fgd.ok() && bestfit.ok());
  const double fgd130 = static_cast<double>(fgd->alloc_centi[130]) / 100.0;
  const double bf130 = static_cast<double>(bestfit->alloc_centi[130]) / 100.0;
  EXPECT_GE(fgd130, 95.27 - 0.2);
  EXPECT_LE(fgd130, 95.49 + 0.2);
  EXPECT_GE(bf130, 92.87 - 0.2);
  EXPECT_LE(bf130, 93.25 + 0.2);
  EXPECT_GT(fgd130 - bf130, 1.5);
  EXPECT_NEAR(fgd->frag_pct[0], 13.94, 0.1);
  EXPECT_EQ(fgd->alloc_centi[0] >= 0, true);
  // Deterministic: the same seed gives the same curve.
  auto again = RunFgd(w, "fgd", 42);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->alloc_centi, fgd->alloc_centi);
  EXPECT_EQ(again->failed, fgd->failed);
}

TEST(FgdRun, UnknownPolicyIsAnError) {
  LOAD_OR_SKIP(w, "openb_pod_list_default");
  auto r = RunFgd(w, "no-such-policy", 42);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no-such-policy"), std::string::npos);
}

TEST(FgdReport, RoundHalfEven) {
  EXPECT_EQ(RoundHalfEven(5, 2), 2);
  EXPECT_EQ(RoundHalfEven(7, 2), 4);
  EXPECT_EQ(RoundHalfEven(11, 4), 3);
  EXPECT_EQ(RoundHalfEven(9, 4), 2);
  EXPECT_EQ(AuthorPolicyName("fgd"), "06-FGD");
  EXPECT_EQ(AuthorPolicyName("gpuorch"), "");
  EXPECT_EQ(AuthorWorkloads().size(), 17u);
}

}  // namespace
}  // namespace gpuorch::sim
