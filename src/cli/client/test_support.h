#pragma once

// Fixtures shared by the client tests: canned server answers (docs/api.md examples), a
// fixed clock and temporary spec files.
#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace gpuorch::cli::testing {

// Five minutes after the canned workload's submitted_at.
inline std::chrono::system_clock::time_point FixedNow() {
  return std::chrono::system_clock::from_time_t(1795528800) + std::chrono::minutes(5);
}

inline nlohmann::json CannedWorkload() {
  return nlohmann::json::parse(R"({
    "id": 17, "name": "llm-pretrain", "queue": "research", "kind": "training",
    "priority": "normal", "state": "Running", "reason": null,
    "spec": {"name": "llm-pretrain", "queue": "research", "kind": "training",
             "priority": "normal", "preemptible": true, "min_tasks": 2, "max_tasks": 2,
             "gpus": 2, "gpu_milli": 1000, "gpu_memory_mib": 0, "cpu_milli": 8000,
             "memory_mib": 65536, "gpu_models": ["H100-80GB"],
             "topology": {"level": "rack", "required": true},
             "command": ["python", "train.py", "--epochs", "3", "--note", "two words"],
             "env": {"WANDB_MODE": "offline"}, "workdir": "/home/me/project",
             "runtime_estimate_s": 3600, "min_runtime_s": 0, "grace_period_s": 30},
    "submitted_at": "2026-11-24T14:00:00.000Z", "started_at": "2026-11-24T14:01:00.000Z",
    "finished_at": null, "attempt": 0,
    "tasks": [{"task": 0, "node": "gpu-3", "gpus": [0, 1], "gpu_milli": 1000,
               "state": "running", "exit_code": null},
              {"task": 1, "node": "gpu-4", "gpus": [2, 3], "gpu_milli": 1000,
               "state": "running", "exit_code": null}],
    "events": [{"time": "2026-11-24T14:00:00.000Z", "type": "Submitted",
                "message": "queued in research"},
               {"time": "2026-11-24T14:01:00.000Z", "type": "Started",
                "message": "placed on gpu-3, gpu-4"}]
  })");
}

inline nlohmann::json CannedPendingFraction() {
  return nlohmann::json::parse(R"({
    "id": 18, "name": "notebook", "queue": "dev", "kind": "experiment",
    "priority": "low", "state": "Pending", "reason": "WaitingForQuota",
    "spec": {"min_tasks": 1, "max_tasks": 1, "gpus": 1, "gpu_milli": 500,
             "command": ["jupyter", "lab"]},
    "submitted_at": "2026-11-24T13:00:00.000Z", "started_at": null, "finished_at": null,
    "attempt": 0, "tasks": [], "events": []
  })");
}

inline nlohmann::json CannedQueues() {
  return nlohmann::json::parse(R"({"queues": [
    {"name": "research", "parent": "org", "weight": 1, "can_borrow": true, "can_lend": true,
     "quota": [{"model": "H100-80GB", "guaranteed_milli": 16000, "limit_milli": 32000,
                "used_milli": 8000},
               {"model": "A100-40GB", "guaranteed_milli": 4000, "limit_milli": 8000,
                "used_milli": 2505}],
     "pending": 3, "running": 2},
    {"name": "dev", "parent": "org", "weight": 2, "can_borrow": false, "can_lend": true,
     "quota": [], "pending": 0, "running": 0}
  ]})");
}

inline nlohmann::json CannedNodes() {
  return nlohmann::json::parse(R"({"nodes": [
    {"name": "gpu-3", "status": "Ready", "zone": "z1", "rack": "r2", "backend": "emulated",
     "cpu_milli": 64000, "memory_mib": 262144, "last_heartbeat": "2026-11-24T14:04:58.000Z",
     "gpus": [{"index": 0, "uuid": "GPU-a", "model": "H100-80GB", "memory_mib": 81920,
               "used_milli": 1000, "util_pct": 73, "memory_used_mib": 40960, "healthy": true,
               "holders": [{"workload": 17, "name": "llm", "queue": "prod", "task": 0,
                            "gpu_milli": 1000}]},
              {"index": 1, "uuid": "GPU-b", "model": "H100-80GB", "memory_mib": 81920,
               "used_milli": 500, "util_pct": null, "memory_used_mib": null,
               "healthy": false, "health": "XID 79",
               "holders": [{"other_queue": true, "gpu_milli": 500}]}]},
    {"name": "cpu-1", "status": "Draining", "zone": "z1", "rack": "r9", "backend": "emulated",
     "cpu_milli": 32000, "memory_mib": 65536, "last_heartbeat": null, "gpus": []}
  ]})");
}

// Writes `text` to a fresh file under the test temp dir and returns its path.
inline std::string WriteTempFile(const std::string& name, const std::string& text) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string file =
      std::string("gpuorch_client_") + info->test_suite_name() + "_" + info->name() + "_" + name;
  for (char& c : file) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  }
  const std::string path = ::testing::TempDir() + file;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

}  // namespace gpuorch::cli::testing
