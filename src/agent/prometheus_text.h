#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

// Reading a service's /metrics (docs/agent.md, "Services"): the Prometheus text exposition
// format 0.0.4 (what vLLM, TGI and every prometheus_client library serve), read strictly
// enough that a page that is not one fails rather than yields made-up numbers.
namespace gpuorch::agent {

// For each name of `names`, the sum of its samples in `text` over their label sets. A
// sample is `name[{label="value",...}] value [timestamp]`; `#` lines (HELP, TYPE, EOF) and
// blank lines are skipped; label values may hold the escapes \\, \" and \n. NaN and ±Inf
// samples are skipped (they say nothing that adds up); a name with no finite sample, or
// whose sum overflows, is left out. Any malformed line fails the whole text, naming the
// line, as a Prometheus scrape would. Pure; O(size of text).
core::Result<std::map<std::string, double>> SumSamples(std::string_view text,
                                                       const std::vector<std::string>& names);

}  // namespace gpuorch::agent
