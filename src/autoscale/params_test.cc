#include "autoscale/params.h"

#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <string>

namespace gpuorch::autoscale {
namespace {

TEST(ServiceParamsTest, DefaultsAreKnativesAndValid) {
  const ServiceParams p;
  EXPECT_TRUE(p.Validate().ok());
  EXPECT_DOUBLE_EQ(p.TargetPerReplica(), 70.0);
  EXPECT_EQ(p.stable_window_s, 60);
  EXPECT_EQ(p.panic_window_s, 6);
  EXPECT_DOUBLE_EQ(p.panic_threshold, 2.0);
  EXPECT_DOUBLE_EQ(p.max_scale_up_rate, 1000.0);
  EXPECT_DOUBLE_EQ(p.max_scale_down_rate, 2.0);
  EXPECT_EQ(p.scale_to_zero_after_s, 300);
  EXPECT_DOUBLE_EQ(p.kv_cache_target, 0.9);
  EXPECT_EQ(p.min_replicas, 0);
}

TEST(ServiceParamsTest, ErrorsNameTheField) {
  struct Case {
    const char* field;
    std::function<void(ServiceParams&)> set;
  };
  const Case cases[] = {
      {"target", [](ServiceParams& p) { p.target = 0; }},
      {"target", [](ServiceParams& p) { p.target = std::numeric_limits<double>::quiet_NaN(); }},
      {"target_utilization", [](ServiceParams& p) { p.target_utilization = 1.5; }},
      {"kv_cache_target", [](ServiceParams& p) { p.kv_cache_target = 0; }},
      {"stable_window_s", [](ServiceParams& p) { p.stable_window_s = 5; }},
      {"stable_window_s", [](ServiceParams& p) { p.stable_window_s = 3601; }},
      {"panic_window_s", [](ServiceParams& p) { p.panic_window_s = 0; }},
      {"panic_window_s", [](ServiceParams& p) { p.panic_window_s = 61; }},
      {"panic_threshold", [](ServiceParams& p) { p.panic_threshold = 1.0; }},
      {"max_scale_up_rate", [](ServiceParams& p) { p.max_scale_up_rate = 1.0; }},
      {"max_scale_down_rate", [](ServiceParams& p) { p.max_scale_down_rate = 0.5; }},
      {"scale_down_delay_s", [](ServiceParams& p) { p.scale_down_delay_s = -1; }},
      {"min_replicas", [](ServiceParams& p) { p.min_replicas = -1; }},
      {"max_replicas", [](ServiceParams& p) { p.max_replicas = -1; }},
      {"max_replicas",
       [](ServiceParams& p) {
         p.min_replicas = 3;
         p.max_replicas = 2;
       }},
      {"activation_scale", [](ServiceParams& p) { p.activation_scale = 0; }},
      {"activation_scale",
       [](ServiceParams& p) {
         p.max_replicas = 2;
         p.activation_scale = 3;
       }},
      {"scale_to_zero_after_s", [](ServiceParams& p) { p.scale_to_zero_after_s = -1; }},
      {"in_flight_gauges", [](ServiceParams& p) { p.in_flight_gauges = {""}; }},
  };
  for (const Case& c : cases) {
    ServiceParams p;
    c.set(p);
    const core::Status st = p.Validate();
    EXPECT_FALSE(st.ok()) << c.field;
    EXPECT_EQ(st.code(), core::StatusCode::kInvalidArgument) << c.field;
    EXPECT_EQ(st.message().rfind(std::string("autoscale.") + c.field + ":", 0), 0u) << st.message();
  }
}

}  // namespace
}  // namespace gpuorch::autoscale
