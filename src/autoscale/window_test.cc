#include "autoscale/window.h"

#include <gtest/gtest.h>

namespace gpuorch::autoscale {
namespace {

using core::kSecond;

TEST(SignalWindowTest, MeansOverTheSecondsThatHoldSamples) {
  SignalWindow w(60);
  // Two samples in second 10 count as their mean; seconds without samples do not count.
  w.Add(10 * kSecond, 10);
  w.Add(10 * kSecond + 500, 30);
  w.Add(40 * kSecond, 50);
  w.Add(57 * kSecond, 90);
  const SignalWindow::Averages a = w.Average(59 * kSecond, 6);
  EXPECT_TRUE(a.present);
  EXPECT_DOUBLE_EQ(a.stable, (20.0 + 50 + 90) / 3);
  EXPECT_DOUBLE_EQ(a.panic, 90);
}

TEST(SignalWindowTest, SampleRateDoesNotBiasTheMean) {
  SignalWindow sparse(60), dense(60);
  for (int s = 0; s < 60; ++s) {
    const double level = s < 30 ? 10 : 40;
    if (s % 5 == 0) sparse.Add(s * kSecond, level);
    for (int k = 0; k < 10; ++k) dense.Add(s * kSecond + k * 100, level);
  }
  EXPECT_DOUBLE_EQ(sparse.Average(59 * kSecond, 6).stable, 25);
  EXPECT_DOUBLE_EQ(dense.Average(59 * kSecond, 6).stable, 25);
}

TEST(SignalWindowTest, PanicWindowWithoutSamplesKeepsTheNewestLevel) {
  SignalWindow w(60);
  w.Add(1 * kSecond, 4);
  w.Add(20 * kSecond, 8);
  const SignalWindow::Averages a = w.Average(50 * kSecond, 6);
  EXPECT_DOUBLE_EQ(a.stable, 6);
  EXPECT_DOUBLE_EQ(a.panic, 8);
}

TEST(SignalWindowTest, AnAbsentSourceDecaysToZeroAfterTheStableWindow) {
  SignalWindow w(60);
  w.Add(5 * kSecond + 300, 7);  // second 5
  // Counted while its second is in (now - 60 s, now]: through 64.999 s.
  EXPECT_DOUBLE_EQ(w.Average(64 * kSecond + 999, 6).stable, 7);
  const SignalWindow::Averages gone = w.Average(65 * kSecond, 6);
  EXPECT_FALSE(gone.present);
  EXPECT_DOUBLE_EQ(gone.stable, 0);
  EXPECT_DOUBLE_EQ(gone.panic, 0);
}

TEST(SignalWindowTest, FutureAndOverwrittenSamples) {
  SignalWindow w(10);
  w.Add(30 * kSecond, 5);
  EXPECT_FALSE(w.Average(29 * kSecond, 6).present);  // after `now`: not counted
  w.Add(20 * kSecond, 100);                          // same slot, a window older: dropped
  EXPECT_DOUBLE_EQ(w.Average(30 * kSecond, 6).stable, 5);
  w.Add(25 * kSecond, 15);  // late but inside the window: counted
  EXPECT_DOUBLE_EQ(w.Average(30 * kSecond, 6).stable, 10);
  w.Add(-1, 3);  // second -1, before the epoch: its own bucket, outside this window
  EXPECT_DOUBLE_EQ(w.Average(30 * kSecond, 6).stable, 10);
}

TEST(MaxWindowTest, HoldsTheHighestValueOfTheDelay) {
  MaxWindow m;
  const core::Duration delay = 10 * kSecond;
  EXPECT_EQ(m.RecordAndMax(0, 5, delay), 5);
  EXPECT_EQ(m.RecordAndMax(3 * kSecond, 2, delay), 5);
  EXPECT_EQ(m.RecordAndMax(9 * kSecond + 999, 1, delay), 5);
  EXPECT_EQ(m.RecordAndMax(10 * kSecond, 1, delay), 2);  // 5 recorded at 0 is 10 s old
  EXPECT_EQ(m.RecordAndMax(13 * kSecond, 1, delay), 1);
  EXPECT_EQ(m.RecordAndMax(14 * kSecond, 7, delay), 7);
  EXPECT_EQ(m.RecordAndMax(15 * kSecond, 3, 0), 3);  // no delay: the value itself
}

}  // namespace
}  // namespace gpuorch::autoscale
