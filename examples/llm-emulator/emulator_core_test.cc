#include "emulator_core.h"

#include <gtest/gtest.h>

#include <thread>

namespace gpuorch::emulator {
namespace {

TEST(ServiceSecondsTest, PrefillPlusDecodeSlowingWithTheBatch) {
  Params p;
  p.prefill_tokens_per_s = 1000;
  p.decode_ms_per_token = 10;
  p.batch_knee = 4;
  struct Case {
    int64_t prompt, max_tokens;
    int running;
    double want;
  } cases[] = {
      {1000, 0, 1, 1.0},  // prefill only
      {0, 100, 1, 1.0},   // a lone request decodes at full speed
      {0, 100, 5, 2.0},   // 4 more sequences (one knee) double the per-token time
      {0, 100, 9, 3.0},   // two knees
      {500, 100, 3, 0.5 + 1.5}, {0, 100, 0, 1.0},  // running is at least the request itself
  };
  for (const Case& c : cases) {
    EXPECT_DOUBLE_EQ(ServiceSeconds(p, c.prompt, c.max_tokens, c.running), c.want)
        << c.prompt << " " << c.max_tokens << " " << c.running;
  }
}

TEST(KvBlocksTest, RoundsUpToWholeBlocks) {
  Params p;
  p.block_tokens = 16;
  EXPECT_EQ(KvBlocks(p, 0, 0), 0);
  EXPECT_EQ(KvBlocks(p, 1, 0), 1);
  EXPECT_EQ(KvBlocks(p, 10, 6), 1);
  EXPECT_EQ(KvBlocks(p, 10, 7), 2);
}

TEST(TokensOfTextTest, AboutFourCharactersEach) {
  EXPECT_EQ(TokensOfText(""), 1);
  EXPECT_EQ(TokensOfText("abcd"), 1);
  EXPECT_EQ(TokensOfText("abcde"), 2);
}

TEST(EngineTest, AccountsRunningKvAndLatency) {
  Params p;
  p.kv_blocks = 10;
  p.block_tokens = 10;
  Engine e(p);
  e.Admit(30, 20);  // 5 blocks
  Snapshot s = e.Read();
  EXPECT_EQ(s.running, 1);
  EXPECT_EQ(s.kv_blocks_used, 5);
  e.Finish(30, 20, 0.4);
  s = e.Read();
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_EQ(s.success, 1);
  EXPECT_EQ(s.latency_counts[1], 1);  // 0.3 < 0.4 <= 0.5
  const std::string text = RenderMetrics(s, "m");
  EXPECT_NE(text.find("vllm:num_requests_running{model_name=\"m\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("vllm:request_success_total{model_name=\"m\",finished_reason=\"length\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("vllm:e2e_request_latency_seconds_bucket{model_name=\"m\",le=\"0.3\"} 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("vllm:e2e_request_latency_seconds_bucket{model_name=\"m\",le=\"0.5\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("vllm:e2e_request_latency_seconds_bucket{model_name=\"m\",le=\"+Inf\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("vllm:e2e_request_latency_seconds_count{model_name=\"m\"} 1\n"),
            std::string::npos);
}

TEST(EngineTest, RequestsBeyondMaxNumSeqsWait) {
  Params p;
  p.max_num_seqs = 1;
  Engine e(p);
  e.Admit(1, 1);
  std::thread second([&] {
    e.Admit(1, 1);
    e.Finish(1, 1, 0);
  });
  // The second request waits until the first finishes; poll, never sleep-then-assert.
  while (e.Read().waiting != 1) std::this_thread::yield();
  EXPECT_EQ(e.Read().running, 1);
  e.Finish(1, 1, 0);
  second.join();
  const Snapshot s = e.Read();
  EXPECT_EQ(s.waiting, 0);
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.success, 2);
}

TEST(RenderMetricsTest, CacheUsageIsAFractionCappedAtOne) {
  Snapshot s;
  s.kv_blocks = 4;
  s.kv_blocks_used = 1;
  EXPECT_NE(RenderMetrics(s, "m").find("vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.25\n"),
            std::string::npos);
  s.kv_blocks_used = 9;
  EXPECT_NE(RenderMetrics(s, "m").find("vllm:gpu_cache_usage_perc{model_name=\"m\"} 1\n"),
            std::string::npos);
}

}  // namespace
}  // namespace gpuorch::emulator
