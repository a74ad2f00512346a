#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

// Reading a Prometheus text exposition (format 0.0.4: what vLLM, TGI, HAProxy's exporter and
// every prometheus_client library serve), strictly enough that a page that is not one fails
// rather than yields made-up numbers. The agent sums a service's gauges with it (docs/agent.md,
// "Services"); the gateway reads HAProxy's exporter (docs/inference.md).
namespace gpuorch::core {

// One sample: `name{labels} value`, label values unescaped.
struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Every sample of `text`. A sample is `name[{label="value",...}] value [timestamp]`; `#`
// lines (HELP, TYPE, EOF) and blank lines are skipped; label values may hold the escapes
// \\, \" and \n; values are floats as Go's ParseFloat reads them, NaN and ±Inf included.
// Any malformed line fails the whole text, naming the line, as a Prometheus scrape would.
// Pure; O(size of text).
Result<std::vector<PromSample>> ParsePrometheusText(std::string_view text);

// For each name of `names`, the sum of its samples in `text` over their label sets (parsed
// as ParsePrometheusText does, with its errors). NaN and ±Inf samples are skipped (they say
// nothing that adds up); a name with no finite sample, or whose sum overflows, is left out.
Result<std::map<std::string, double>> SumSamples(std::string_view text,
                                                 const std::vector<std::string>& names);

}  // namespace gpuorch::core
