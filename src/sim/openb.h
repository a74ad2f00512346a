#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace gpuorch::sim {

// Readers for the Alibaba cluster-trace-gpu-v2023 ("openb") CSV files, as used by the FGD
// experiment (FGD-PROTOCOL.md §1). Columns are found by header name, so extra columns (qos,
// times) are ignored and the short multigpu files work. Bad input gives a Status naming the
// file, line and column; nothing throws.

struct OpenbNode {
  std::string sn;
  int64_t cpu_milli = 0;
  int64_t memory_mib = 0;
  int32_t gpu = 0;
  std::string model;
};

struct OpenbPod {
  std::string name;
  int64_t cpu_milli = 0;
  int64_t memory_mib = 0;
  int32_t num_gpu = 0;
  int32_t gpu_milli = 0;  // per GPU, clipped to [0, 1000]; 0 when num_gpu == 0
  std::string gpu_spec;   // verbatim, "" = any model

  // Total milli-GPU the pod asks for (R_p).
  int64_t total_milli() const { return int64_t{num_gpu} * gpu_milli; }
};

// `file` only names the input in error messages.
core::Result<std::vector<OpenbNode>> ParseOpenbNodes(std::string_view csv, std::string_view file);
core::Result<std::vector<OpenbPod>> ParseOpenbPods(std::string_view csv, std::string_view file);

core::Result<std::vector<OpenbNode>> ReadOpenbNodes(const std::string& path);
core::Result<std::vector<OpenbPod>> ReadOpenbPods(const std::string& path);

// Reads a whole file; the error names the path.
core::Result<std::string> ReadFile(const std::string& path);

}  // namespace gpuorch::sim
