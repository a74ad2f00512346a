#pragma once

// The inference side of `gpuorch sim platform`: how many requests and tokens each service
// receives per second of a multi-day experiment, and how many replicas that demand needs.
//
// Demand comes from one hour of a public trace (the Azure LLM inference trace 2023), tiled
// over the experiment: every hour replays the trace from a random offset, scaled by a
// diurnal and weekly envelope. The envelope is an assumption (the trace covers one hour), and
// so is the capacity model: a replica serves prompts at a fixed prefill rate and outputs at a
// fixed decode rate, both taken from a public throughput benchmark, and its utilization is
// capped so that an M/M/1 estimate of the time to first token stays within the SLO.
//
// Everything here is pure: no clocks, no threads; randomness comes from a seed only.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace gpuorch::sim::platform {

// One service's request trace (the Azure LLM inference trace 2023 format:
// TIMESTAMP,ContextTokens,GeneratedTokens; TIMESTAMP "YYYY-MM-DD HH:MM:SS.fffffff") in
// 1-second bins from its first arrival. This is the tiling period ("hour"):
// seconds = floor(last - first) + 1.
struct HourProfile {
  std::string path;
  int32_t seconds = 0;
  std::vector<double> requests, prompt_tokens, output_tokens;  // per bin, sums
  int64_t total_requests = 0;
  double mean_prompt = 0, mean_output = 0;  // tokens per request
};
// Reads and parses a trace file. Rows need not be sorted; the header names the three columns
// (in any order); blank lines and '\r' are ignored; at least one request is required.
core::Result<HourProfile> ReadAzureTrace(const std::string& path);
// Errors: "PATH:LINE: FIELD: problem" (LINE is 1-based, FIELD a column name or "row").
core::Result<HourProfile> ParseAzureTrace(std::string_view text, const std::string& path);

struct Envelope {                  // an ASSUMPTION (the trace is one hour)
  double peak_trough_ratio = 3.0;  // >= 1
  double weekend_factor = 0.6;     // Saturday and Sunday multiply by this, in (0, 1]
  double peak_hour = 14.0;         // hour of day of the daily peak, trough 12 h later, [0,24)
  int32_t start_weekday = 0;       // day 0 of the experiment: 0 = Monday .. 6 = Sunday
  core::Status Validate() const;   // "envelope.peak_trough_ratio: must be >= 1"
};
// In (0, 1]: 1 at a weekday's peak hour, 1/ratio at a weekday's trough, cosine between;
// times weekend_factor on weekend days. Second 0 is midnight of day 0. Assumes a valid `e`.
double EnvelopeFactor(const Envelope& e, int64_t second);

// The demand of one service per second of the experiment (size days * 86400).
struct Demand {
  std::vector<float> requests, prompt_tokens, output_tokens;
};
inline constexpr int32_t kMaxDemandDays = 366;
inline constexpr double kMaxRateScale = 10000;  // copies superposed (below)
// Hour k (3600 s blocks) of the experiment superposes C = ceil(rate_scale) copies of the
// profile, copy c read from its own random offset o_{k,c} (uniform in [0, seconds), drawn
// from `seed`, C draws per hour in hour order), wrapping around the profile's period; the
// last copy is weighted rate_scale - (C - 1), the others 1; the sum is multiplied by
// EnvelopeFactor(second). Second t of hour k reads bin (o_{k,c} + t) mod seconds of copy c.
// Superposing independent copies (not multiplying one) keeps bursts as independent users'
// bursts add up. A profile whose period is not 3600 s keeps its mean rate per second, not
// its total per hour: an hour holds 3600 / seconds periods' worth on average. Errors: an
// invalid envelope, rate_scale not finite or < 0, days outside [1, kMaxDemandDays], an
// empty or inconsistent profile. O(days * 86400 * C).
core::Result<Demand> TileDemand(const HourProfile& p, const Envelope& e, double rate_scale,
                                int32_t days, uint64_t seed);

// A replica's capacity (throughput-bound numbers of a public benchmark).
struct CapacityProfile {
  int32_t gpus_per_replica = 4;
  double prefill_tokens_per_s = 0;  // per replica
  double decode_tokens_per_s = 0;   // per replica, measured at a batch whose ITL meets the SLO
  double ttft_slo_s = 0, itl_slo_s = 0;
  double max_utilization = 0.9;   // upper cap on rho_max
  core::Status Validate() const;  // "capacity.prefill_tokens_per_s: must be > 0"
};

// The default replica: Llama-3 70B (FP8) on 4 x H100-SXM-80GB, run as two TP2 engines.
// Source: TensorRT-LLM's performance overview
// (https://nvidia.github.io/TensorRT-LLM/performance/perf-overview.html, "Llama 3.3 70B",
// H100 TP2 FP8, trtllm-bench at maximum load), output tokens/s of one TP2 engine:
// ISL/OSL 2048/128 -> 762, 1000/1000 -> 4,205, 5000/500 -> 898. Solving
// t(request) = ISL / prefill + OSL / decode on the first two rows gives ~14,000 prefill and
// ~6,000 decode tokens/s per engine; prefill is rounded down to 12,000 because the linear
// model overestimates the long-prompt row by 26%. Two engines: 24,000 and 12,000 per replica.
// The 4-GPU TP4 configuration is not in the current table; see /work/issue11-capacity.md
// (outside the repository) for the derivation and cross-checks.
// SLOs: TTFT 2 s as MLPerf Inference's llama2-70b Server scenario (p99, loadgen/mlperf.conf);
// ITL 100 ms, between MLPerf's Server (200 ms) and Interactive (40 ms) bounds and faster than
// reading speed. NVIDIA NIM's published Llama-3.3-70B TP2 H100 sweep (5000/500) stays at
// ITL ~93 ms at saturation, so the saturated decode rate meets that SLO.
CapacityProfile DefaultLlama70bCapacity();

// Replica-seconds of work per second: prompt_tps / prefill + output_tps / decode.
// Assumes a valid `c`.
double ReplicaLoad(const CapacityProfile& c, double prompt_tokens_per_s,
                   double output_tokens_per_s);
// rho_max = min(max_utilization, 1 - s_p / ttft_slo) with s_p = mean_prompt / prefill_tokens_per_s
// (M/M/1 response time s_p/(1-rho) <= TTFT SLO). Error when `c` is invalid, when
// mean_prompt_tokens is not finite or < 0, and when s_p >= ttft_slo (SLO unreachable), naming
// ttft_slo_s and the numbers.
// The ITL SLO is not checked here: whether one token's decode at the replica's full batch
// exceeds it cannot be told from throughput alone (it needs the step time at that batch). The
// ITL SLO enters only through decode_tokens_per_s, which must be measured at a batch that
// meets it.
core::Result<double> MaxUtilization(const CapacityProfile& c, double mean_prompt_tokens);
// ceil(load / rho_max - 1e-9), 0 for load <= 0. Requires rho_max > 0.
int32_t NeededReplicas(double load, double rho_max);

}  // namespace gpuorch::sim::platform
