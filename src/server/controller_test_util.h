#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "server/controller.h"

// What the controller tests share (server_test, limits_test, usage_test, telemetry_test).
namespace gpuorch::server::test_util {

// An empty directory of the running test's own under the temp dir
// (`gpuorch-PREFIX-PID-TEST`), for its SQLite store; TearDown removes it.
inline std::filesystem::path FreshTestDir(const std::string& prefix) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      ("gpuorch-" + prefix + "-" + std::to_string(::getpid()) + "-" +
       ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

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
