// `gpuorch sim mig`: the class-to-profile mapping, every policy through the engine on a small
// scenario with its invariants, the flag errors, and a short run on the real traces.
#include <gtest/gtest.h>

#include <filesystem>

#include "sim/mig/experiment.h"

namespace gpuorch::sim::mig {
namespace {

const core::MigModel& H100() { return *core::FindMigModel(kGpuModel); }

std::string ProfileName(int cls) {
  const int p = ProfileFor(Classes()[static_cast<size_t>(cls)]);
  return p < 0 ? "none" : std::string(H100().profiles[static_cast<size_t>(p)].name);
}

TEST(Models, MemoryNeedsMapToTheStatedProfiles) {
  struct Row {
    int cls;
    int64_t mib;
    const char* profile;
  };
  // weights + 8,192 tokens of KV cache + 1 GiB (docs/partitioning.md, "The experiment").
  const Row rows[] = {
      {k7b, 12856 + 4096 + 1024, "2g.20gb"},
      {k13b, 24796 + 6400 + 1024, "3g.40gb"},
      {k70b, 67330 + 1280 + 1024, "7g.80gb"},
      {kNotebook, 8192, "1g.10gb"},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(Classes()[static_cast<size_t>(r.cls)].name);
    EXPECT_EQ(MemoryNeedMib(Classes()[static_cast<size_t>(r.cls)]), r.mib);
    EXPECT_EQ(ProfileName(r.cls), r.profile);
  }
  // The vLLM paper's figure: 800 KB of KV cache per token for a 13B model (FP16).
  const ModelClass& c13 = Classes()[k13b];
  EXPECT_EQ(2 * c13.layers * c13.kv_dim * c13.kv_bytes, 800 * 1024);
}

TEST(Models, EachPolicyAsksTheEngineForItsShape) {
  const ModelClass& c7 = Classes()[k7b];
  const core::TaskRequest whole = TaskFor(c7, Policy::kWhole);
  EXPECT_EQ(whole.gpu_count, 1);
  EXPECT_EQ(whole.gpu_milli, 1000);
  EXPECT_FALSE(whole.mig());
  const core::TaskRequest ts = TaskFor(c7, Policy::kTimeslice);
  EXPECT_TRUE(ts.fractional());
  EXPECT_EQ(ts.gpu_milli, 285);  // 2 of 7 compute slices
  EXPECT_EQ(ts.gpu_memory_mib, MemoryNeedMib(c7));
  const core::TaskRequest mig = TaskFor(c7, Policy::kDynamicMig);
  EXPECT_EQ(mig.sharing, core::Sharing::kMig);
  EXPECT_EQ(mig.mig_compute, 2);
  EXPECT_EQ(mig.gpu_milli, core::MigMilliForCompute(2));
  // The 70B replica takes a whole GPU under time-slicing (7 of 7 slices).
  EXPECT_FALSE(TaskFor(Classes()[k70b], Policy::kTimeslice).fractional());
  // all-balanced is a valid layout that uses all 7 compute slices.
  auto l = core::ParseLayout(H100(), kAllBalanced);
  ASSERT_TRUE(l.ok()) << l.status().message();
  EXPECT_EQ(core::MigUsedCompute(H100(), *l), 7);
}

// One trace hour with a steady load: the replica counts follow the envelope only.
platform::HourProfile Steady() {
  platform::HourProfile p;
  p.path = "steady";
  p.seconds = 3600;
  p.requests.assign(3600, 1);
  p.prompt_tokens.assign(3600, 1000);
  p.output_tokens.assign(3600, 200);
  p.total_requests = 3600;
  p.mean_prompt = 1000;
  p.mean_output = 200;
  return p;
}

MigConfig Small() {
  MigConfig c;
  c.hours = 8;
  c.envelope.peak_hour = 4;  // the peak inside the 8 hours
  c.peak = {12, 6, 2, 0};
  c.notebooks_peak = 6;
  c.notebook_mean_min = 30;
  c.pool_gpus = 16;
  return c;
}

TEST(Workload, TheBusiestWindowWantsThePeak) {
  const MigConfig c = Small();
  auto w = BuildWorkload(c, Steady(), Steady());
  ASSERT_TRUE(w.ok()) << w.status().message();
  EXPECT_EQ(w->wanted[k7b].size(), 8u * 3600 / 300);
  for (int k = 0; k < 3; ++k) {
    const auto& row = w->wanted[static_cast<size_t>(k)];
    EXPECT_EQ(*std::max_element(row.begin(), row.end()), c.peak[static_cast<size_t>(k)]);
  }
  // The envelope's trough is inside the 8 hours: fewer 7B replicas are wanted there.
  EXPECT_LT(*std::min_element(w->wanted[k7b].begin(), w->wanted[k7b].end()), c.peak[k7b]);
  EXPECT_FALSE(w->notebooks.empty());
  EXPECT_GE(w->peak_whole_gpus, 20);
}

TEST(Run, EveryPolicyKeepsItsInvariants) {
  const MigConfig c = Small();
  auto w = BuildWorkload(c, Steady(), Steady());
  ASSERT_TRUE(w.ok());
  for (Policy p : kAllPolicies) {
    SCOPED_TRACE(ToString(p));
    auto r = RunPolicy(*w, c, p, 24);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_GT(r->total_requests(), 0);
    EXPECT_GT(r->cycles, 0);
    EXPECT_LE(r->peak_gpus_busy, 24);
    switch (p) {
      case Policy::kWhole:
        EXPECT_EQ(r->max_tasks_per_gpu, 1);  // never shares a GPU
        EXPECT_EQ(r->mig_binds, 0);
        EXPECT_EQ(r->reconfigs, 0);
        break;
      case Policy::kTimeslice:
        EXPECT_GT(r->max_tasks_per_gpu, 1);
        EXPECT_EQ(r->mig_binds, 0);
        EXPECT_EQ(r->reconfigs, 0);
        break;
      case Policy::kStaticMig:
        EXPECT_EQ(r->reconfigs, 0);  // never reconfigures
        EXPECT_GT(r->mig_binds, 0);
        // The 70B replicas run on the whole GPUs left for them.
        EXPECT_EQ(r->unplaced[k70b], 0);
        EXPECT_GT(r->requests[k70b], 0);
        break;
      case Policy::kDynamicMig:
        EXPECT_GT(r->reconfigs, 0);
        EXPECT_GT(r->mig_binds, 0);
        EXPECT_GT(r->max_tasks_per_gpu, 1);
        EXPECT_EQ(r->total_unplaced(), 0);
        // Each request's wait includes at least its layout change.
        break;
    }
  }
}

TEST(Run, StaticMigWithoutWholeGpusNeverPlacesA70b) {
  MigConfig c = Small();
  c.static_whole_gpus = 0;
  auto w = BuildWorkload(c, Steady(), Steady());
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(FitsAllBalanced(Classes()[k70b]));
  EXPECT_TRUE(FitsAllBalanced(Classes()[k13b]));
  auto r = RunPolicy(*w, c, Policy::kStaticMig, 24);
  ASSERT_TRUE(r.ok());
  EXPECT_GT(r->requests[k70b], 0);
  EXPECT_EQ(r->unplaced[k70b], r->requests[k70b]);
  EXPECT_EQ(r->reconfigs, 0);
  auto n = SearchGpusNeeded(*w, c, Policy::kStaticMig);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->gpus, -1);  // never meets the bound
}

TEST(Run, TheSearchFindsTheSmallestPoolThatMeetsTheBound) {
  const MigConfig c = Small();
  auto w = BuildWorkload(c, Steady(), Steady());
  ASSERT_TRUE(w.ok());
  auto whole = SearchGpusNeeded(*w, c, Policy::kWhole);
  auto dyn = SearchGpusNeeded(*w, c, Policy::kDynamicMig);
  auto st = SearchGpusNeeded(*w, c, Policy::kStaticMig);
  ASSERT_TRUE(whole.ok() && dyn.ok() && st.ok());
  ASSERT_GT(whole->gpus, 0);
  ASSERT_GT(dyn->gpus, 0);
  ASSERT_GT(st->gpus, 0);
  EXPECT_LT(dyn->gpus, whole->gpus);
  for (const auto* n : {&*whole, &*dyn, &*st}) {
    const Policy p = n->run.policy;
    EXPECT_TRUE(n->run.meets(c));
    auto below = RunPolicy(*w, c, p, n->gpus - 1);
    ASSERT_TRUE(below.ok());
    EXPECT_FALSE(below->meets(c)) << ToString(p) << " at " << n->gpus - 1;
  }
}

TEST(Run, IsDeterministic) {
  const MigConfig c = Small();
  auto w = BuildWorkload(c, Steady(), Steady());
  ASSERT_TRUE(w.ok());
  auto a = RunMigOn(c, *w, {Policy::kDynamicMig, Policy::kTimeslice});
  auto b = RunMigOn(c, *w, {Policy::kDynamicMig, Policy::kTimeslice});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(SummaryJson(*a, "x").dump(), SummaryJson(*b, "x").dump());
  EXPECT_NE(SummaryTable(SummaryJson(*a, "x")).find("dynamic-mig"), std::string::npos);
}

TEST(Flags, ErrorsNameTheFlag) {
  struct Row {
    void (*edit)(MigConfig&);
    const char* message;
  };
  const Row rows[] = {
      {[](MigConfig& c) { c.peak[k7b] = -1; }, "--peak-7b: must be in [0, 10000], got -1"},
      {[](MigConfig& c) { c.hours = 0; }, "--hours: must be in [1, 168], got 0"},
      {[](MigConfig& c) { c.reconfig_delay_s = 601; }, "--reconfig-delay-s: must be in"},
      {[](MigConfig& c) { c.pool_gpus = 0; }, "--pool-gpus: must be in"},
      {[](MigConfig& c) { c.max_late_fraction = 2; }, "--max-late-fraction: must be in"},
      {[](MigConfig& c) { c.gpus_per_node = 17; }, "--gpus-per-node: must be in"},
      {[](MigConfig& c) { c.static_whole_gpus = -2; }, "--static-whole-gpus: must be in"},
      {[](MigConfig& c) { c.envelope.peak_trough_ratio = 0.5; }, "--peak-trough-ratio"},
      {[](MigConfig& c) {
         c.peak = {0, 0, 0, 0}, c.notebooks_peak = 0;
       },
       "--peak-7b, --peak-13b, --peak-70b, --notebooks-peak: all zero"},
  };
  for (const Row& r : rows) {
    MigConfig c;
    r.edit(c);
    const core::Status s = ValidateFlags(c);
    ASSERT_FALSE(s.ok()) << r.message;
    EXPECT_EQ(s.message().rfind(r.message, 0), 0u) << s.message();
  }
  EXPECT_TRUE(ValidateFlags(MigConfig{}).ok());
  auto p = ParsePolicies("dynamic-mig,whole");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, (std::vector<Policy>{Policy::kDynamicMig, Policy::kWhole}));
  EXPECT_EQ(ParsePolicies("whole,mig").status().message(),
            "--policy: unknown policy 'mig' (whole, timeslice, static-mig, dynamic-mig, "
            "comma-separated)");
  EXPECT_EQ(ParsePolicies("whole,whole").status().message(), "--policy: 'whole' is listed twice");
  EXPECT_FALSE(ParsePolicies("").ok());
  auto missing = LoadWorkload(MigConfig{}, "/nonexistent");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/azure-llm-2023/"), std::string::npos);
}

TEST(RealTraces, DynamicMigNeedsFewerGpusThanWholeGpus) {
  const std::string dir = GPUORCH_TRACES_DIR;
  if (!std::filesystem::exists(dir + "/azure-llm-2023/AzureLLMInferenceTrace_conv.csv")) {
    GTEST_SKIP() << "no Azure LLM traces under " << dir << " (the shared traces folder)";
  }
  MigConfig c;
  c.hours = 3;
  c.envelope.peak_hour = 1;
  c.peak = {16, 8, 3, 0};
  c.notebooks_peak = 8;
  c.pool_gpus = 16;
  auto run = RunMig(c, dir, {Policy::kWhole, Policy::kDynamicMig});
  ASSERT_TRUE(run.ok()) << run.status().message();
  const int32_t whole = run->outcomes[0].needed.gpus, dyn = run->outcomes[1].needed.gpus;
  ASSERT_GT(whole, 0);
  ASSERT_GT(dyn, 0);
  EXPECT_LT(dyn, whole);
  EXPECT_GT(run->outcomes[1].fixed.reconfigs, 0);
}

}  // namespace
}  // namespace gpuorch::sim::mig
