#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/client/outcome.h"

namespace gpuorch::cli {

// Renderers from the server's JSON (docs/api.md) to what the commands print. They are pure
// (the clock is a parameter) and tolerate missing or null fields, printing "-", because a
// client must keep working against a server a version ahead or behind.

enum class OutputFormat { kTable, kJson, kYaml };

// "table", "json" or "yaml"; anything else is a usage error naming the value.
Outcome<OutputFormat> ParseOutputFormat(const std::string& s);

// ID NAME QUEUE KIND STATE REASON ESTIMATED START TASKS GPUS AGE, one row per element of
// `workloads`. ESTIMATED START is a pending workload's expected start to the second, "N/A"
// when the server has no estimate, "-" otherwise. TASKS is running/wanted ("2/4", or "2/2-4" for
// elastic gangs); GPUS is the GPUs the workload asks for at its minimum size (gpus x gpu_milli x
// min_tasks).
std::string RenderWorkloadTable(const nlohmann::json& workloads,
                                std::chrono::system_clock::time_point now);

// NAME PARENT WEIGHT MODEL USED GUARANTEED LIMIT PENDING RUNNING, one row per quota entry
// (a queue without quota gets one row), quantities in GPUs with two decimals.
std::string RenderQueueTable(const nlohmann::json& queues);

// NAME STATUS ZONE RACK MODEL GPUS HEARTBEAT; GPUS is used/total (used may be fractional),
// HEARTBEAT the age of the last heartbeat.
std::string RenderNodeTable(const nlohmann::json& nodes, std::chrono::system_clock::time_point now);
// `gpuorch nodes --gpus`: NODE GPU MODEL UTIL MEMORY HEALTH WORKLOAD, one row per GPU; UTIL
// and MEMORY from the node's telemetry ("-" until it reported), WORKLOAD the holders as
// name-id/task (or "other queue" for holders the caller may not read).
std::string RenderGpuTable(const nlohmann::json& nodes);
// A GET /v1/nodes answer's summary as a table by status and model (nodes, GPUs, GPUs in
// use), with a total line; computed from the answer's nodes when it has no "summary" (an
// unpaged answer, or an older server).
std::string RenderNodeSummary(const nlohmann::json& answer);
// "" when the answer is the last page; else the command for the next one.
std::string RenderNextPage(const nlohmann::json& answer);

// `gpuorch describe`: labelled fields (for pending work also what it waits for and its
// estimated start), the spec as YAML, the tasks and the events.
std::string RenderDescribe(const nlohmann::json& workload,
                           std::chrono::system_clock::time_point now);

// Pretty JSON (2-space indent) or YAML of `value`, each ending in a newline.
std::string RenderData(const nlohmann::json& value, OutputFormat format);

// Prometheus file-based service discovery (`gpuorch prometheus-targets`): one target group
// per node of a /v1/nodes answer, its GPU telemetry exporter's address (the node's
// `metrics_url` when the agent reports one, else its address's host with `port`), labelled
// with `node`, `zone` and `rack`. Nodes without an address are left out.
std::string RenderPrometheusTargets(const nlohmann::json& nodes, int port);

}  // namespace gpuorch::cli
