#pragma once

// The page of `gpuorch sim platform`: one self-contained HTML file (inline SVG and CSS, one
// small inline script; no network) comparing the policies of one platform experiment.
//
// Its input is OUT/summary.json with the timeline added, exactly:
//   command       string, shown verbatim (escaped); optional
//   assumptions   array of strings, listed; optional
//   policies      non-empty array of policy names; the order of the columns and charts
//   summary       object: policy -> object of metrics. A metric is a number (null reads as
//                 "n/a": JSON has no NaN), or an object of numbers (e.g. `preemptions` by
//                 reason: one row per key, after a total), or `goals`, an array of
//                 {metric: string, goal: string or number, value: number or null, met: bool}.
//                 Known keys get readable labels; unknown ones are shown under a label made
//                 from the key.
//   timeline      object: step_s (> 0), capacity_gpus (>= 0), and per policy an object with
//                 t_h (hours) and, of the same length, inference, training, experiment,
//                 idle_held and free (GPUs, means over each step), and optionally services:
//                 name -> {needed, ready} (replicas, same length).
// Anything else in the input is ignored.

#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"

namespace gpuorch::sim::platform {

// The page, or an error naming the key that is missing or malformed, e.g.
// "timeline.gpuorch.training: 3 points, expected 5". Deterministic: the same input gives the
// same bytes.
core::Result<std::string> BuildPlatformReport(const nlohmann::ordered_json& input);

}  // namespace gpuorch::sim::platform
