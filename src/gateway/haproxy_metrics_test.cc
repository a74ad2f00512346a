#include "gateway/haproxy_metrics.h"

#include <gtest/gtest.h>

namespace gpuorch::gateway {
namespace {

TEST(BackendStatsOfTest, PerBackendAndServer) {
  auto r = ParsePrometheusText(
      "haproxy_backend_current_queue{proxy=\"svc_0\"} 2\n"
      "haproxy_backend_current_sessions{proxy=\"svc_0\"} 7\n"
      "haproxy_backend_response_time_average_seconds{proxy=\"svc_0\"} 0.25\n"
      "haproxy_backend_http_responses_total{proxy=\"svc_0\",code=\"2xx\"} 10\n"
      "haproxy_backend_http_responses_total{proxy=\"svc_0\",code=\"5xx\"} 1\n"
      "haproxy_server_current_sessions{proxy=\"svc_0\",server=\"w9_h_1\"} 4\n"
      "haproxy_server_current_sessions{proxy=\"svc_1\",server=\"w10_h_2\"} 0\n"
      "gpuorch_haproxy_waiting_requests{proxy=\"svc_1\"} 5\n"
      "haproxy_frontend_current_sessions{proxy=\"gpuorch_services\"} 9\n");
  ASSERT_TRUE(r.ok());
  auto stats = BackendStatsOf(*r);
  EXPECT_EQ(stats["svc_0"].queue, 2);
  EXPECT_EQ(stats["svc_0"].sessions, 7);
  EXPECT_EQ(stats["svc_0"].response_time_avg_s, 0.25);
  EXPECT_EQ(stats["svc_0"].responses_total, 11);
  EXPECT_EQ(stats["svc_0"].server_sessions.at("w9_h_1"), 4);
  EXPECT_EQ(stats["svc_1"].server_sessions.at("w10_h_2"), 0);
  EXPECT_EQ(stats["svc_1"].waiting, 5);
  EXPECT_EQ(stats["gpuorch_services"].sessions, 0);  // a frontend's family is not a backend's
}

}  // namespace
}  // namespace gpuorch::gateway
