#pragma once

#include <gtest/gtest.h>

#include <cstdint>

#include "server/controller.h"

// Reads the controller tests share (server_test, limits_test, usage_test).
namespace gpuorch::server::test_util {

// The workload's JSON as an administrator reads it; a failed test when it does not exist.
inline Json GetWorkloadOrFail(Controller& c, int64_t id) {
  Json out;
  ApiError e;
  EXPECT_TRUE(c.GetWorkload(id, out, e)) << e.message;
  return out;
}

// Whether the workload is still known (not garbage-collected).
inline bool WorkloadExists(Controller& c, int64_t id) {
  Json out;
  ApiError e;
  return c.GetWorkload(id, out, e);
}

}  // namespace gpuorch::server::test_util
