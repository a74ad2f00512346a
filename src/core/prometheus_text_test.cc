#include "core/prometheus_text.h"

#include <gtest/gtest.h>

#include <cmath>

namespace gpuorch::core {
namespace {

const std::vector<std::string> kNames = {"vllm:num_requests_running", "vllm:num_requests_waiting",
                                         "up"};

struct Case {
  const char* name;
  std::string text;
  std::map<std::string, double> want;  // when ok
  bool ok = true;
};

TEST(PrometheusTextTest, SumsTheListedNamesOverTheirLabelSets) {
  const std::vector<Case> cases = {
      {"empty page", "", {}},
      {"comments and blank lines only",
       "# HELP up Whether the target is up.\n# TYPE up gauge\n\n   \n# EOF\n",
       {}},
      {"no labels", "up 1\n", {{"up", 1}}},
      {"summed over label sets",
       "vllm:num_requests_running{model_name=\"a\"} 3\n"
       "vllm:num_requests_running{model_name=\"b\"} 2.5\n",
       {{"vllm:num_requests_running", 5.5}}},
      {"an unlisted name is left out, a listed absent name too",
       "other_metric 7\nvllm:num_requests_waiting 1\n",
       {{"vllm:num_requests_waiting", 1}}},
      {"a longer name sharing a prefix is another name",
       "up_total 5\nvllm:num_requests_running_sum 9\n",
       {}},
      {"timestamps, CRLF and trailing blanks",
       "up 1 1700000000000\r\nvllm:num_requests_waiting{a=\"x\"}\t2\t-5 \n",
       {{"up", 1}, {"vllm:num_requests_waiting", 2}}},
      {"escapes, trailing comma and blanks inside the braces",
       "up{ path=\"a\\\"}b\\\\c\\nd\" , b=\"\" , } 4\n",
       {{"up", 4}}},
      {"a brace and a comma inside a label value", "up{a=\"}{,\"} 1\n", {{"up", 1}}},
      {"NaN and infinities are skipped",
       "up NaN\nup +Inf\nup -Inf\nup 2\nvllm:num_requests_waiting NaN\n",
       {{"up", 2}}},
      {"exponents, signs and a last line without newline",
       "up 1e2\nup -5\nup +0.5",
       {{"up", 95.5}}},
      {"a sum that overflows is left out", "up 1e308\nup 1e308\n", {}},
      {"no value", "up\n", {}, false},
      {"no blank before the value", "up{a=\"b\"}1\n", {}, false},
      {"a malformed value", "up one\n", {}, false},
      {"a value that is only a sign", "up +\n", {}, false},
      {"two signs", "up +-1\n", {}, false},
      {"hexadecimal is not a value", "up 0x10\n", {}, false},
      {"an unterminated label value", "up{a=\"b} 1\n", {}, false},
      {"an unknown escape", "up{a=\"\\t\"} 1\n", {}, false},
      {"a label without a value", "up{a} 1\n", {}, false},
      {"a colon in a label name", "up{a:b=\"c\"} 1\n", {}, false},
      {"labels without their closing brace", "up{a=\"b\" 1\n", {}, false},
      {"a name starting with a digit", "1up 1\n", {}, false},
      {"a malformed timestamp", "up 1 soon\n", {}, false},
      {"text after the timestamp", "up 1 2 3\n", {}, false},
      {"an HTML error page", "<html><body>Not Found</body></html>\n", {}, false},
  };
  for (const Case& c : cases) {
    core::Result<std::map<std::string, double>> got = SumSamples(c.text, kNames);
    ASSERT_EQ(got.ok(), c.ok) << c.name << ": " << (got.ok() ? "" : got.status().message());
    if (c.ok) {
      EXPECT_EQ(*got, c.want) << c.name;
    }
  }
}

TEST(PrometheusTextTest, AFailureNamesTheLine) {
  core::Result<std::map<std::string, double>> got = SumSamples("up 1\n# c\nup x\n", kNames);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(), "line 3: malformed value");
}

TEST(ParsePrometheusTextTest, SamplesWithLabels) {
  auto r = ParsePrometheusText(
      "# HELP x y\n# TYPE x gauge\n"
      "haproxy_backend_current_queue{proxy=\"svc_0\"} 3\n"
      "plain 1.5e0\n"
      "esc{a=\"q\\\"x\",b=\"\"} NaN\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].labels.at("proxy"), "svc_0");
  EXPECT_EQ((*r)[0].value, 3);
  EXPECT_EQ((*r)[1].name, "plain");
  EXPECT_EQ((*r)[1].value, 1.5);
  EXPECT_EQ((*r)[2].labels.at("a"), "q\"x");
  EXPECT_TRUE(std::isnan((*r)[2].value));
}

TEST(ParsePrometheusTextTest, ErrorsNameTheLine) {
  for (const char* bad : {"x{a=1} 2", "x{a=\"1\" 2", "x 1z", "{a=\"b\"} 1"}) {
    auto r = ParsePrometheusText(std::string("ok 1\n") + bad + "\n");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().message().rfind("line 2: ", 0), 0u) << r.status().message();
  }
}

}  // namespace
}  // namespace gpuorch::core
