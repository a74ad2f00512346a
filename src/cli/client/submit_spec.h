#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/client/outcome.h"

namespace gpuorch::cli {

// What `gpuorch submit` read from its flags. An empty optional (or empty vector) means "not
// given", so that a spec file's value survives; flags that were given override the file.
struct SubmitFlags {
  std::optional<std::string> spec_file;  // -f
  std::optional<std::string> name;
  std::optional<std::string> queue;
  std::optional<std::string> kind;
  std::optional<std::string> priority;
  bool non_preemptible = false;
  std::optional<int64_t> tasks;      // sets min_tasks (and max_tasks unless --max-tasks)
  std::optional<int64_t> max_tasks;  // elastic upper bound
  std::optional<int64_t> gpus;
  std::optional<int64_t> gpu_milli;
  std::optional<int64_t> gpu_memory_mib;
  std::optional<std::string> mig;      // a MIG profile, e.g. 1g.10gb
  std::optional<std::string> sharing;  // timeslice, mps, mig or any
  std::optional<int64_t> cpu_milli;
  std::optional<int64_t> memory_mib;
  std::vector<std::string> models;
  std::optional<std::string> topology;  // level
  bool require_topology = false;
  std::vector<std::string> env;  // "K=V"
  std::optional<std::string> workdir;
  std::optional<int64_t> estimate_s;
  std::optional<int64_t> min_runtime_s;
  std::optional<int64_t> grace_s;
  // An inference service (docs/inference.md): replicas "MIN:MAX", the autoscaler's target
  // and signal, its scale-to-zero wait, and the readiness path its agents probe.
  std::optional<std::string> replicas;
  std::optional<double> autoscale_target;
  std::optional<std::string> autoscale_metric;
  std::optional<int64_t> scale_to_zero_after_s;
  std::optional<std::string> readiness_path;
  std::vector<std::string> command;
};

// Reads a spec file: JSON when it is named *.json or starts with '{', YAML otherwise. The
// top level must be a mapping of API fields. Failures are usage errors that name the file
// and, where the parser knows it, the line and column.
Outcome<nlohmann::json> LoadSpecFile(const std::string& path);
// The same for a spec file's text; `path` decides JSON by its extension and names the file
// in errors.
Outcome<nlohmann::json> ParseSpecText(const std::string& text, const std::string& path);

// Builds the body of POST /v1/workloads from a spec file's object (or an empty object) and
// the flags. The client does not re-check the API's ranges: the server is the one judge of
// a spec, and its error names the field. Only what cannot become a body at all is a usage
// error here (an --env without '=', --require-topology without a level).
// When no name is given anywhere, the name defaults to the command's basename (the way
// Slurm names a job after its script), cleaned to the API's character set.
Outcome<nlohmann::json> BuildSubmitBody(const SubmitFlags& flags, nlohmann::json base);

}  // namespace gpuorch::cli
