#pragma once

// The Azure LLM inference trace 2023 (../shared/traces/azure-llm-2023/, CC-BY-4.0; read in
// place, never copied into the repository): CSV with a header
//   TIMESTAMP,ContextTokens,GeneratedTokens
//   2023-11-16 18:15:46.6805900,374,44
// and the load generator's accounting of what it sent. Pure functions, no I/O but ReadTrace.
#include <cstdint>
#include <istream>
#include <string>
#include <variant>
#include <vector>

namespace gpuorch::emulator {

struct TraceRequest {
  double offset_s = 0;  // since the first request of the trace
  int64_t context_tokens = 0;
  int64_t generated_tokens = 0;
};

// The requests, or an error "FILE:LINE: FIELD: what is wrong" (`name` names the file).
// Timestamps must not go backwards.
std::variant<std::vector<TraceRequest>, std::string> ParseTrace(std::istream& in,
                                                                const std::string& name);
std::variant<std::vector<TraceRequest>, std::string> ReadTrace(const std::string& path);

// Seconds since the Unix epoch of "YYYY-MM-DD HH:MM:SS[.fraction]" (UTC); false when it is
// not that.
bool ParseTimestamp(const std::string& text, double& seconds);

struct RequestResult {
  double start_s = 0;     // when it was sent, since the run started
  double latency_s = 0;   // until the answer (or the failure)
  int status = 0;         // HTTP status, -1 without an answer
  double service_s = -1;  // the emulator's compute time (x-emulator-service-ms), -1 unknown
};

struct Summary {
  int64_t count = 0;
  int64_t failures = 0;  // no answer or not 2xx
  double p50_s = 0;
  double p99_s = 0;
  // Share of answered requests whose latency minus their service time exceeded 1 s: they
  // waited for a replica or a batch slot (the SLO miss).
  double waited_over_1s = 0;
};

// Nearest-rank percentiles over every request's latency.
Summary Summarize(const std::vector<RequestResult>& results);

}  // namespace gpuorch::emulator
