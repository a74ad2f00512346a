#include "core/mig.h"

#include <gtest/gtest.h>

#include <bit>
#include <random>
#include <string>

namespace gpuorch::core {
namespace {

const MigModel& Model(std::string_view name) {
  const MigModel* m = FindMigModel(name);
  EXPECT_NE(m, nullptr) << name;
  return *m;
}

TEST(MigTables, EveryKnownModelHasSixProfilesSortedSmallestFirst) {
  ASSERT_EQ(MigModels().size(), 4u);
  for (const MigModel& m : MigModels()) {
    ASSERT_EQ(m.profiles.size(), 6u) << m.model;
    for (size_t i = 1; i < m.profiles.size(); ++i) {
      const MigProfile &a = m.profiles[i - 1], &b = m.profiles[i];
      EXPECT_TRUE(a.compute_slices < b.compute_slices ||
                  (a.compute_slices == b.compute_slices && a.memory_mib < b.memory_mib))
          << m.model << " " << a.name << " before " << b.name;
    }
    // The whole-GPU profile takes every slice.
    EXPECT_EQ(m.profiles.back().compute_slices, kMigComputeSlices);
    EXPECT_EQ(m.profiles.back().memory_slices, kMigMemorySlices);
  }
  EXPECT_EQ(FindMigModel("T4"), nullptr);
  EXPECT_EQ(Model("H100-80GB").profiles[3].name, "3g.40gb");
  EXPECT_EQ(Model("H200-141GB").profiles[0].name, "1g.18gb");
  EXPECT_EQ(Model("A100-40GB").profiles[0].name, "1g.5gb");
}

// The conformance table: layouts as `nvidia-smi mig -cgi` would accept or refuse them.
struct LayoutCase {
  const char* model;
  const char* layout;
  bool valid;
  const char* error_part;  // part of the error for invalid layouts
};

class MigLayoutConformance : public ::testing::TestWithParam<LayoutCase> {};

TEST_P(MigLayoutConformance, ParsesAndValidatesAsTheHardwareWould) {
  const LayoutCase& c = GetParam();
  auto l = ParseLayout(Model(c.model), c.layout);
  EXPECT_EQ(l.ok(), c.valid) << c.model << " " << c.layout << ": "
                             << (l.ok() ? "valid" : l.status().message());
  if (!l.ok()) {
    EXPECT_NE(l.status().message().find(c.error_part), std::string::npos) << l.status().message();
  } else {
    // Round trip through the text form (sorted by start).
    auto again = ParseLayout(Model(c.model), FormatLayout(Model(c.model), *l));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *l);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Models, MigLayoutConformance,
    ::testing::Values(
        // Valid: the user guide's documented combinations.
        LayoutCase{"H100-80GB", "", true, ""}, LayoutCase{"H100-80GB", "7g.80gb@0", true, ""},
        LayoutCase{"H100-80GB", "4g.40gb@0,3g.40gb@4", true, ""},
        LayoutCase{"H100-80GB", "3g.40gb@0,3g.40gb@4", true, ""},
        LayoutCase{"H100-80GB", "2g.20gb@0,2g.20gb@2,3g.40gb@4", true, ""},
        LayoutCase{"H100-80GB",
                   "1g.10gb@0,1g.10gb@1,1g.10gb@2,1g.10gb@3,1g.10gb@4,1g.10gb@5,1g.10gb@6", true,
                   ""},
        LayoutCase{"H100-80GB", "1g.20gb@0,1g.20gb@2,1g.20gb@4,1g.20gb@6", true, ""},
        LayoutCase{"H100-80GB", "3g.40gb@4,1g.10gb@0,2g.20gb@2", true, ""},  // any order
        LayoutCase{"A100-40GB", "4g.20gb@0,2g.10gb@4,1g.5gb@6", true, ""},
        LayoutCase{"A100-80GB", "3g.40gb@0,1g.10gb@4,1g.10gb@5,1g.10gb@6", true, ""},
        LayoutCase{"H200-141GB", "3g.71gb@0,2g.35gb@4,1g.18gb@6", true, ""},
        // Invalid: starts the hardware refuses.
        LayoutCase{"H100-80GB", "4g.40gb@4", false, "cannot start at slice 4"},
        LayoutCase{"H100-80GB", "3g.40gb@2", false, "cannot start at slice 2"},
        LayoutCase{"H100-80GB", "1g.10gb@7", false, "cannot start at slice 7"},
        LayoutCase{"H100-80GB", "2g.20gb@6", false, "cannot start at slice 6"},
        LayoutCase{"H100-80GB", "1g.20gb@1", false, "cannot start at slice 1"},
        LayoutCase{"H100-80GB", "7g.80gb@1", false, "cannot start at slice 1"},
        // Invalid: overlapping memory slices.
        LayoutCase{"H100-80GB", "4g.40gb@0,1g.10gb@3", false, "overlaps"},
        LayoutCase{"H100-80GB", "7g.80gb@0,1g.10gb@0", false, "overlaps"},
        LayoutCase{"A100-40GB", "3g.20gb@4,2g.10gb@4", false, "overlaps"},
        // Exactly 7 compute slices is a full GPU; an eighth has no start left.
        LayoutCase{"H100-80GB", "4g.40gb@0,2g.20gb@4,1g.10gb@6", true, ""},
        LayoutCase{"H100-80GB", "3g.40gb@0,3g.40gb@4,1g.10gb@7", false, "cannot start"},
        // Invalid: names and syntax.
        LayoutCase{"H100-80GB", "3g.20gb@0", false, "no profile '3g.20gb'"},
        LayoutCase{"A100-40GB", "3g.40gb@0", false, "no profile '3g.40gb'"},
        LayoutCase{"H100-80GB", "3g.40gb", false, "expected <profile>@<start slice>"},
        LayoutCase{"H100-80GB", "3g.40gb@x", false, "start must be a slice 0-7"},
        LayoutCase{"H100-80GB", "3g.40gb@9", false, "start must be a slice 0-7"}));

TEST(MigLayout, AFullGpuOffersNoStart) {
  const MigModel& m = Model("H100-80GB");
  auto l = ParseLayout(m, "4g.40gb@0,2g.20gb@4");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(MigUsedCompute(m, *l), 6);
  EXPECT_TRUE(MigFitsAt(m, *l, FindProfile(m, "1g.20gb"), 6));
  EXPECT_FALSE(MigFitsAt(m, *l, FindProfile(m, "2g.20gb"), 6));  // 2g never starts at 6
  auto full = ParseLayout(m, "4g.40gb@0,3g.40gb@4");
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(MigUsedCompute(m, *full), kMigComputeSlices);
  for (int p = 0; p < 6; ++p) EXPECT_EQ(MigFreeStarts(m, *full, p), 0) << p;
}

TEST(MigLayout, InstanceLimitsPerProfile) {
  const MigModel& m = Model("H100-80GB");
  auto l = ParseLayout(m, "2g.20gb@0,2g.20gb@2,2g.20gb@4");
  ASSERT_TRUE(l.ok());
  // Slices 6-7 are free and a 1g fits, but a fourth 2g is past its limit (and its start).
  EXPECT_EQ(MigFreeStarts(m, *l, FindProfile(m, "2g.20gb")), 0);
  EXPECT_EQ(MigFreeStarts(m, *l, FindProfile(m, "1g.10gb")), 0b0100'0000);
  MigLayout over = *l;
  over.instances[over.count++] = MigInstance{static_cast<int8_t>(FindProfile(m, "2g.20gb")), 6};
  EXPECT_FALSE(ValidateLayout(m, over).ok());
}

TEST(MigProfiles, SmallestProfileForARequest) {
  const MigModel& h100 = Model("H100-80GB");
  // 1 compute slice, 8 GiB: 1g.10gb; 1 slice, 15 GiB: 1g.20gb; 2 slices, 15 GiB: 2g.20gb.
  EXPECT_EQ(h100.profiles[SmallestProfile(h100, 1, 8 * 1024)].name, "1g.10gb");
  EXPECT_EQ(h100.profiles[SmallestProfile(h100, 1, 15 * 1024)].name, "1g.20gb");
  EXPECT_EQ(h100.profiles[SmallestProfile(h100, 2, 15 * 1024)].name, "2g.20gb");
  EXPECT_EQ(h100.profiles[SmallestProfile(h100, 1, 30 * 1024)].name, "3g.40gb");
  EXPECT_EQ(h100.profiles[SmallestProfile(h100, 4, 0)].name, "4g.40gb");
  EXPECT_EQ(h100.profiles[SmallestProfile(h100, 1, 50 * 1024)].name, "7g.80gb");
  EXPECT_EQ(SmallestProfile(h100, 1, 90 * 1024), -1);
  // ProfileFor keeps the compute exact: 1 slice and 15 GiB is 1g.20gb, 2 slices and 30 GiB
  // has no H100 profile (3g.40gb would hold more compute than the request counts).
  EXPECT_EQ(h100.profiles[ProfileFor(h100, 1, 15 * 1024)].name, "1g.20gb");
  EXPECT_EQ(h100.profiles[ProfileFor(h100, 3, 0)].name, "3g.40gb");
  EXPECT_EQ(ProfileFor(h100, 2, 30 * 1024), -1);
  EXPECT_EQ(ProfileFor(h100, 5, 0), -1);
  EXPECT_EQ(Model("H200-141GB").profiles[ProfileFor(Model("H200-141GB"), 2, 30 * 1024)].name,
            "2g.35gb");
  // Milli to compute slices and back: 1/7 of a GPU is 143 milli.
  EXPECT_EQ(MigComputeForMilli(100), 1);
  EXPECT_EQ(MigComputeForMilli(143), 2);  // 143 * 7 = 1001 > 1000
  EXPECT_EQ(MigComputeForMilli(142), 1);
  EXPECT_EQ(MigComputeForMilli(500), 4);
  EXPECT_EQ(MigComputeForMilli(1000), 7);
  EXPECT_EQ(MigMilliForCompute(1), 142);
  EXPECT_EQ(MigMilliForCompute(3), 428);
  for (int c = 1; c <= kMigComputeSlices; ++c)
    EXPECT_EQ(MigComputeForMilli(MigMilliForCompute(c)), c);
  EXPECT_EQ(MigMilliForCompute(7), 1000);
}

TEST(MigFragmentation, KeepingRoomForTheMixScoresLower) {
  const MigModel& m = Model("H100-80GB");
  const int p1 = FindProfile(m, "1g.10gb"), p4 = FindProfile(m, "4g.40gb");
  std::array<int64_t, 6> mix{};
  mix[p4] = 1;  // the live mix asks for 4g instances only, which start only at slice 0
  // A 1g at slice 4 leaves room for a 4g (2 compute slices lost); at slice 0 it leaves none
  // (all 6 free compute slices lost).
  MigLayout at0, at4;
  MigAdd(at0, p1, 0);
  MigAdd(at4, p1, 4);
  EXPECT_EQ(MigFragmentation(m, at4, mix), 2);
  EXPECT_EQ(MigFragmentation(m, at0, mix), 6);
  // Weights scale the score; profiles outside the mix do not count.
  mix[p4] = 3;
  EXPECT_EQ(MigFragmentation(m, at0, mix), 18);
  // An empty GPU loses only what the profile's own geometry loses: one 4g leaves 3 slices;
  // seven 1g lose nothing. A full GPU has nothing to lose.
  EXPECT_EQ(MigFragmentation(m, MigLayout{}, mix), 9);
  std::array<int64_t, 6> small{};
  small[p1] = 1;
  EXPECT_EQ(MigFragmentation(m, MigLayout{}, small), 0);
  auto full = ParseLayout(m, "4g.40gb@0,3g.40gb@4");
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(MigFragmentation(m, *full, mix), 0);
}

// Property: adding instances at the starts MigFreeStarts offers always keeps a valid layout,
// and a start it does not offer would break one of the rules.
TEST(MigProperties, FreeStartsAreExactlyTheValidAdditions) {
  std::mt19937 rng(7);
  for (const MigModel& m : MigModels()) {
    for (int round = 0; round < 300; ++round) {
      MigLayout l;
      for (int step = 0; step < 8; ++step) {
        const int p = static_cast<int>(rng() % m.profiles.size());
        const uint8_t starts = MigFreeStarts(m, l, p);
        for (int s = 0; s < kMigMemorySlices; ++s) {
          MigLayout probe = l;
          if (probe.count < kMaxMigInstances) MigAdd(probe, p, s);
          const bool valid = probe.count > l.count && ValidateLayout(m, probe).ok();
          EXPECT_EQ(valid, bool((starts >> s) & 1u))
              << m.model << " " << FormatLayout(m, l) << " + " << m.profiles[p].name << "@" << s;
          EXPECT_EQ(MigFitsAt(m, l, p, s), bool((starts >> s) & 1u));
        }
        if (starts != 0) {
          const int choices = std::popcount(starts);
          int pick = static_cast<int>(rng() % choices);
          for (int s = 0; s < kMigMemorySlices; ++s) {
            if (((starts >> s) & 1u) && pick-- == 0) {
              MigAdd(l, p, s);
              break;
            }
          }
        }
        ASSERT_TRUE(ValidateLayout(m, l).ok());
      }
      // Removing an instance keeps it valid.
      if (l.count > 0) {
        ASSERT_TRUE(MigRemove(l, l.instances[rng() % l.count].start));
        EXPECT_TRUE(ValidateLayout(m, l).ok());
      }
    }
  }
}

}  // namespace
}  // namespace gpuorch::core
