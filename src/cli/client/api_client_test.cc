#include "cli/client/api_client.h"

#include <gtest/gtest.h>

namespace gpuorch::cli {
namespace {

TEST(ParseServerUrl, AcceptsHttpUrlsWithPortAndPrefix) {
  struct Case {
    const char* url;
    const char* host_port;
    const char* base;
  };
  const Case cases[] = {
      {"http://127.0.0.1:7480", "http://127.0.0.1:7480", ""},
      {"http://ctl.example:80/", "http://ctl.example:80", ""},
      {"https://gateway/gpuorch/", "https://gateway", "/gpuorch"},
      {"http://[::1]:7480", "http://[::1]:7480", ""},
  };
  for (const auto& c : cases) {
    auto u = ParseServerUrl(c.url);
    ASSERT_TRUE(u.ok()) << c.url;
    EXPECT_EQ(u.value().scheme_host_port, c.host_port);
    EXPECT_EQ(u.value().base_path, c.base);
  }
}

TEST(ParseServerUrl, RejectsOtherInputAsUsageError) {
  for (const char* url : {"127.0.0.1:7480", "ftp://x", "http://", "http://h:99999", ""}) {
    auto u = ParseServerUrl(url);
    ASSERT_FALSE(u.ok()) << url;
    EXPECT_EQ(u.failure().exit_code, kExitUsage);
    EXPECT_NE(u.failure().message.find("--server"), std::string::npos);
  }
}

TEST(QueryString, EncodesAndSkipsEmptyValues) {
  EXPECT_EQ(QueryString({}), "");
  EXPECT_EQ(QueryString({{"queue", ""}, {"state", "Pending"}}), "?state=Pending");
  EXPECT_EQ(QueryString({{"queue", "a b&c"}, {"kind", "x"}}), "?queue=a%20b%26c&kind=x");
}

TEST(DescribeHttpError, UsesTheApiErrorShape) {
  struct Case {
    int status;
    const char* body;
    const char* want;
  };
  const Case cases[] = {
      {400, R"({"error": {"code": 400, "field": "gpus", "message": "gpus: must be in 0..16"}})",
       "gpus: must be in 0..16"},
      {400, R"({"error": {"code": 400, "field": "topology.level", "message": "unknown level"}})",
       "topology.level: unknown level"},
      {409, R"({"error": {"code": 409, "field": "", "message": "already finished"}})",
       "already finished"},
      {400, R"({"error": {"code": 400, "field": "", "message": ": min_tasks too large"}})",
       "min_tasks too large"},
      {404, "Not Found\n", "HTTP 404: Not Found"},
      {500, "", "HTTP 500"},
  };
  for (const auto& c : cases) EXPECT_EQ(DescribeHttpError(c.status, c.body), c.want);
}

}  // namespace
}  // namespace gpuorch::cli
