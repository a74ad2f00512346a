#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/gpu_model.h"
#include "core/workload.h"
#include "server/config.h"
#include "server/service_spec.h"

namespace gpuorch::server {

using Json = nlohmann::json;

// An error for the API: HTTP status, the field at fault (JSON path), and a message that
// starts with the field.
struct ApiError {
  int code = 400;
  std::string field;
  std::string message;
  Json ToJson() const {
    return Json{{"error", {{"code", code}, {"field", field}, {"message", message}}}};
  }
};

// What a submitted workload becomes: the engine's spec plus what agents need to run it.
struct ParsedWorkload {
  core::WorkloadSpec spec;
  std::string queue_name;
  std::string priority_name;
  std::vector<std::string> command;
  std::map<std::string, std::string> env;
  std::string workdir;
  // gpu_models names that no node or config knew when it was parsed: not in spec's model
  // set (which is ModelSet::None() when every name is unknown) until one is known.
  std::vector<std::string> unknown_models;
  // The spec with defaults filled in, as stored and shown, kept serialized: every workload
  // in memory holds one, finished ones included, and it is read rarely (a GET or a list, a
  // replica's creation), while nlohmann's tree of it (a map node per key) costs several
  // times its text (issue 15's memory goal; docs/operations.md).
  std::string canonical_json;
  Json CanonicalSpec() const { return Json::parse(canonical_json); }
  // A service (kind inference with `replicas`; docs/inference.md): the record never enters
  // the engine, its replicas do.
  std::optional<ServiceSpec> service;
  // A replica: its service's id and its replica number (the controller creates replicas;
  // a submission may not name these).
  int64_t service_of = 0;
  int32_t replica = -1;
};

// Validates a submission (docs/api.md). `queue_ids` maps leaf queue names to engine ids;
// models are looked up in `models`, never added: the models nodes and the config named. A
// model no node has yet makes the workload wait with ModelUnavailable rather than fail (see
// ParsedWorkload::unknown_models). Returns the first error found.
bool ParseWorkload(const Json& body, const ServerConfig& config,
                   const std::map<std::string, core::QueueId>& leaf_queues,
                   const core::GpuModelRegistry& models, ParsedWorkload& out, ApiError& error);

// The model set of `names` as `models` knows them now (ModelSet::None() when it knows none of
// them, the empty set "any" only for no names) and, in `unknown`, the names it does not know.
// ParseWorkload's rule, applied again when a node brings a new model.
core::ModelSet ResolveModels(const std::vector<std::string>& names,
                             const core::GpuModelRegistry& models,
                             std::vector<std::string>& unknown);

// The queue's admission policy (403): its priority class must be in the queue's
// `allowed_priorities`, and non-preemptible work needs a non-preemptible class there. Checked
// at submission only: workloads stored before a config change keep running.
bool CheckQueuePolicy(const ParsedWorkload& w, const ServerConfig& config, ApiError& error);

}  // namespace gpuorch::server
