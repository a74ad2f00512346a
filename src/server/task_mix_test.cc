// Tests of TaskMix, the live task distribution the server feeds to the fragmentation-aware
// policies. Expected weights are worked out by hand in the comments (parts per million).
#include "server/task_mix.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <tuple>
#include <vector>

namespace gpuorch::server {
namespace {

core::TaskRequest Gpus(int32_t count, int32_t milli = 1000, int64_t cpu = 4000) {
  core::TaskRequest t;
  t.gpu_count = count;
  t.gpu_milli = milli;
  t.milli_cpu = cpu;
  return t;
}

// (gpu_count, gpu_milli, weight in ppm) of each typical task, in order.
using Weights = std::vector<std::tuple<int32_t, int32_t, int64_t>>;

Weights Summary(const std::vector<sched::TypicalTask>& typical) {
  Weights out;
  for (const sched::TypicalTask& tt : typical) {
    out.emplace_back(tt.task.gpu_count, tt.task.gpu_milli, std::llround(tt.weight * 1e6));
  }
  return out;
}

TEST(TaskMix, EmptyUntilSomethingIsSeen) {
  TaskMix mix;
  EXPECT_TRUE(mix.Typical().empty());
  EXPECT_FALSE(mix.TakeIfChanged().has_value()) << "the policy keeps its default";
}

TEST(TaskMix, HandComputedWeights) {
  struct Case {
    const char* name;
    std::function<void(TaskMix&)> events;
    Weights want;
  };
  const Case cases[] = {
      // A then B, one task each: A decays once, 65536 - 65536/64 = 64512; B 65536; total
      // 130048. A = floor(64512e6/130048) = 496062, B = 503937; the 1 ppm of rounding goes
      // to the heaviest.
      {"recent submissions decay",
       [](TaskMix& m) {
         m.Submitted(Gpus(1), 1);
         m.Submitted(Gpus(2), 1);
       },
       {{2, 1000, 503938}, {1, 1000, 496062}}},
      // A gang of 3 weighs three tasks: 196608 decays to 193536, vs 65536; total 259072:
      // 747035.4 -> 747035 and 252964.0 -> 252964, +1 to the heaviest.
      {"a gang counts its tasks",
       [](TaskMix& m) {
         m.Submitted(Gpus(1, 500), 3);
         m.Submitted(Gpus(8), 1);
       },
       {{1, 500, 747036}, {8, 1000, 252964}}},
      // Live only: 3 and 1 tasks -> 750000 and 250000.
      {"live tasks",
       [](TaskMix& m) {
         m.SetLive(1, Gpus(4), 3);
         m.SetLive(2, Gpus(1, 250), 1);
       },
       {{4, 1000, 750000}, {1, 250, 250000}}},
      // Live 3:1 and one recent submission of a third shape: each part is half.
      {"live and recent are averaged",
       [](TaskMix& m) {
         m.SetLive(1, Gpus(4), 3);
         m.SetLive(2, Gpus(1, 250), 1);
         m.Submitted(Gpus(2), 1);
       },
       {{2, 1000, 500000}, {4, 1000, 375000}, {1, 250, 125000}}},
      // A workload's live count is replaced, not added; 0 removes it.
      {"live counts are replaced and removed",
       [](TaskMix& m) {
         m.SetLive(1, Gpus(4), 3);
         m.SetLive(1, Gpus(4), 1);
         m.SetLive(2, Gpus(1), 2);
         m.SetLive(3, Gpus(2), 5);
         m.SetLive(3, Gpus(2), 0);
       },
       {{1, 1000, 666667}, {4, 1000, 333333}}},
      // Memory is not part of a shape: two submissions that differ only in it are one
      // shape; a CPU-only task is one shape whatever its gpu_milli says.
      {"memory is ignored, CPU-only is canonical",
       [](TaskMix& m) {
         core::TaskRequest a = Gpus(1), b = Gpus(1), c = Gpus(0, 300), d = Gpus(0, 1000);
         a.memory_mib = 100;
         b.memory_mib = 200;
         m.SetLive(1, a, 1);
         m.SetLive(2, b, 1);
         m.SetLive(3, c, 1);
         m.SetLive(4, d, 1);
       },
       {{0, 1000, 500000}, {1, 1000, 500000}}},
  };
  for (const Case& c : cases) {
    TaskMix mix;
    c.events(mix);
    EXPECT_EQ(Summary(mix.Typical()), c.want) << c.name;
  }
}

TEST(TaskMix, KeepsTheHeaviestShapes) {
  TaskMix mix;
  // 20 shapes, shape k with k live tasks (k = 1..20); the 16 heaviest are 5..20.
  for (int k = 1; k <= 20; ++k) mix.SetLive(k, Gpus(1, 10 * k), k);
  const auto typical = mix.Typical();
  ASSERT_EQ(typical.size(), TaskMix::kMaxShapes);
  double sum = 0;
  for (size_t i = 0; i < typical.size(); ++i) {
    EXPECT_EQ(typical[i].task.gpu_milli, 10 * (20 - static_cast<int>(i)));
    sum += typical[i].weight;
  }
  EXPECT_NEAR(sum, 1.0, 1e-9);
}

TEST(TaskMix, OldSubmissionsAreForgotten) {
  TaskMix mix;
  mix.Submitted(Gpus(8), 1);
  // 65536 * (63/64)^n falls below 64 after 477 submissions; then the shape is gone.
  for (int k = 0; k < 500; ++k) mix.Submitted(Gpus(1), 1);
  EXPECT_EQ(Summary(mix.Typical()), (Weights{{1, 1000, 1000000}}));
}

TEST(TaskMix, OnlyMaterialChangesAreTaken) {
  TaskMix mix;
  mix.SetLive(1, Gpus(1), 50);
  mix.SetLive(2, Gpus(2), 50);
  auto first = mix.TakeIfChanged();
  ASSERT_TRUE(first.has_value()) << "the first mix is always taken";
  EXPECT_EQ(first->size(), 2u);
  EXPECT_FALSE(mix.TakeIfChanged().has_value()) << "nothing changed";
  // 54:50 moves each weight by ~1.9%: total variation 0.019 < 0.05.
  mix.SetLive(1, Gpus(1), 54);
  EXPECT_FALSE(mix.TakeIfChanged().has_value());
  // 70:50 moves them by 8.3% from what was taken (50:50): taken.
  mix.SetLive(1, Gpus(1), 70);
  auto moved = mix.TakeIfChanged();
  ASSERT_TRUE(moved.has_value());
  EXPECT_EQ(Summary(*moved), (Weights{{1, 1000, 583334}, {2, 1000, 416666}}));
  // Everything leaves: the policy keeps the last mix.
  mix.SetLive(1, Gpus(1), 0);
  mix.SetLive(2, Gpus(2), 0);
  EXPECT_TRUE(mix.Typical().empty());
  EXPECT_FALSE(mix.TakeIfChanged().has_value());
}

}  // namespace
}  // namespace gpuorch::server
