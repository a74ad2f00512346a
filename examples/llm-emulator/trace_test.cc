#include "trace.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

namespace gpuorch::emulator {
namespace {

constexpr const char* kHeader = "TIMESTAMP,ContextTokens,GeneratedTokens\n";

TEST(ParseTraceTest, OffsetsFromTheFirstRequest) {
  std::istringstream in(std::string(kHeader) +
                        "2023-11-16 18:15:46.5,374,44\n"
                        "2023-11-16 18:15:50.75,396,109\r\n"
                        "2023-11-16 18:16:00,1,2\n");
  auto r = ParseTrace(in, "t.csv");
  ASSERT_TRUE(std::holds_alternative<std::vector<TraceRequest>>(r)) << std::get<1>(r);
  const auto& v = std::get<0>(r);
  ASSERT_EQ(v.size(), 3u);
  EXPECT_DOUBLE_EQ(v[0].offset_s, 0);
  EXPECT_DOUBLE_EQ(v[1].offset_s, 4.25);
  EXPECT_DOUBLE_EQ(v[2].offset_s, 13.5);
  EXPECT_EQ(v[1].context_tokens, 396);
  EXPECT_EQ(v[1].generated_tokens, 109);
}

TEST(ParseTraceTest, ErrorsNameFileLineAndField) {
  struct Case {
    std::string text, want;
  } cases[] = {
      {"", "t.csv:1: header: the file is empty"},
      {"a,b,c\n", "t.csv:1: header: expected"},
      {std::string(kHeader), "t.csv:1: line: no requests"},
      {std::string(kHeader) + "2023-11-16 18:15:46,1\n", "t.csv:2: line: expected 3 fields"},
      {std::string(kHeader) + "yesterday,1,2\n", "t.csv:2: TIMESTAMP: 'yesterday'"},
      {std::string(kHeader) + "2023-11-16 18:15:46.x,1,2\n", "t.csv:2: TIMESTAMP:"},
      {std::string(kHeader) + "2023-11-16 18:15:46,-1,2\n", "t.csv:2: ContextTokens: '-1'"},
      {std::string(kHeader) + "2023-11-16 18:15:46,1,2x\n", "t.csv:2: GeneratedTokens: '2x'"},
      {std::string(kHeader) + "2023-11-16 18:15:46,1,2\n2023-11-16 18:15:45,1,2\n",
       "t.csv:3: TIMESTAMP: '2023-11-16 18:15:45' goes back in time"},
  };
  for (const Case& c : cases) {
    std::istringstream in(c.text);
    auto r = ParseTrace(in, "t.csv");
    ASSERT_TRUE(std::holds_alternative<std::string>(r)) << c.text;
    EXPECT_EQ(std::get<1>(r).rfind(c.want, 0), 0u) << std::get<1>(r);
  }
}

TEST(SummarizeTest, PercentilesFailuresAndWaiting) {
  std::vector<RequestResult> rs;
  for (int i = 1; i <= 100; ++i) rs.push_back({0, i / 100.0, 200, 0.0});
  rs[0].status = 503;
  rs[99].service_s = 0.5;  // 1.0 s latency, 0.5 s of it served: waited 0.5 s
  rs[98].service_s = -1;   // unknown service time: not counted as waiting
  Summary s = Summarize(rs);
  EXPECT_EQ(s.count, 100);
  EXPECT_EQ(s.failures, 1);
  EXPECT_DOUBLE_EQ(s.p50_s, 0.50);
  EXPECT_DOUBLE_EQ(s.p99_s, 0.99);
  EXPECT_DOUBLE_EQ(s.waited_over_1s, 0);
  rs.push_back({0, 3.0, 200, 1.5});
  EXPECT_NEAR(Summarize(rs).waited_over_1s, 1.0 / 100, 1e-12);
}

// The real trace, read in place from the shared folder; skipped when it is absent.
TEST(ParseTraceTest, ReadsTheAzureConversationTrace) {
  const char* traces = std::getenv("GPUORCH_TRACES");
  const std::string path = std::string(traces ? traces : "../shared/traces") +
                           "/azure-llm-2023/AzureLLMInferenceTrace_conv.csv";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is absent";
  auto r = ReadTrace(path);
  ASSERT_TRUE(std::holds_alternative<std::vector<TraceRequest>>(r)) << std::get<1>(r);
  EXPECT_EQ(std::get<0>(r).size(), 19366u);
}

}  // namespace
}  // namespace gpuorch::emulator
