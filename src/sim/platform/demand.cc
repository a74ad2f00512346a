#include "sim/platform/demand.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <numbers>
#include <utility>

#include "core/rng.h"
#include "sim/replay/trace.h"

namespace gpuorch::sim::platform {

using core::Result;
using core::Status;

namespace {

constexpr int64_t kNsPerSecond = 1'000'000'000;
constexpr int64_t kSecondsPerDay = 86400;
constexpr int64_t kSecondsPerHour = 3600;

Status LineError(const std::string& path, int line, std::string_view field,
                 const std::string& what) {
  return Status::Invalid(path + ":" + std::to_string(line) + ": " + std::string(field) + ": " +
                         what);
}

// Shortest text that reads back as `v` ("0.5", "24000"), for error messages.
std::string Num(double v) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::string("?");
}

// "YYYY-MM-DD HH:MM:SS" with an optional fraction of 1 to 9 digits -> ns since the epoch.
bool ParseTimestampNs(std::string_view s, int64_t& ns) {
  std::string_view whole = s.substr(0, std::min<size_t>(s.size(), 19));
  int64_t seconds = 0;
  if (!sim::ParseTimestamp(whole, seconds)) return false;
  int64_t frac = 0;
  if (s.size() > 19) {
    std::string_view f = s.substr(19);
    if (f.front() != '.' || f.size() < 2 || f.size() > 10) return false;
    f.remove_prefix(1);
    for (char c : f) {
      if (c < '0' || c > '9') return false;
      frac = frac * 10 + (c - '0');
    }
    for (size_t i = f.size(); i < 9; ++i) frac *= 10;
  }
  // Years 0..9999 stay far inside int64 nanoseconds (+-2.9e11 s).
  ns = seconds * kNsPerSecond + frac;
  return true;
}

// A non-negative token count, at most 10^9 (far above any context window).
bool ParseTokens(std::string_view s, int64_t& v) {
  return sim::ParseInt(s, v) && v >= 0 && v <= 1'000'000'000;
}

struct Row {
  int64_t ns;
  int64_t prompt, output;
};

}  // namespace

Result<HourProfile> ReadAzureTrace(const std::string& path) {
  auto text = sim::ReadWholeFile(path);
  if (!text.ok()) return text.status();
  return ParseAzureTrace(*text, path);
}

Result<HourProfile> ParseAzureTrace(std::string_view text, const std::string& path) {
  static constexpr std::string_view kColumns[] = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"};
  size_t col[3] = {0, 0, 0};
  size_t width = 0;
  bool have_header = false;
  std::vector<Row> rows;
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    const size_t nl = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.empty()) continue;
    const std::vector<std::string_view> f = sim::SplitCsv(line);
    if (!have_header) {
      for (int c = 0; c < 3; ++c) {
        auto it = std::find(f.begin(), f.end(), kColumns[c]);
        if (it == f.end()) return LineError(path, line_no, kColumns[c], "missing in the header");
        col[c] = static_cast<size_t>(it - f.begin());
        width = std::max(width, col[c] + 1);
      }
      have_header = true;
      continue;
    }
    if (f.size() < width) {
      return LineError(
          path, line_no, "row",
          "expected " + std::to_string(width) + " fields, got " + std::to_string(f.size()));
    }
    Row r{};
    if (!ParseTimestampNs(f[col[0]], r.ns)) {
      return LineError(
          path, line_no, kColumns[0],
          "expected YYYY-MM-DD HH:MM:SS[.fraction], got '" + std::string(f[col[0]]) + "'");
    }
    if (!ParseTokens(f[col[1]], r.prompt)) {
      return LineError(path, line_no, kColumns[1],
                       "expected an integer in [0, 1e9], got '" + std::string(f[col[1]]) + "'");
    }
    if (!ParseTokens(f[col[2]], r.output)) {
      return LineError(path, line_no, kColumns[2],
                       "expected an integer in [0, 1e9], got '" + std::string(f[col[2]]) + "'");
    }
    rows.push_back(r);
  }
  if (!have_header) return Status::Invalid(path + ": empty (no header)");
  if (rows.empty()) return Status::Invalid(path + ": no requests");

  int64_t first = rows.front().ns, last = rows.front().ns;
  for (const Row& r : rows) {
    first = std::min(first, r.ns);
    last = std::max(last, r.ns);
  }
  // One day at most: the profile is one tiling period, and a longer one is a wrong file.
  if (last - first >= kSecondsPerDay * kNsPerSecond) {
    return Status::Invalid(path + ": TIMESTAMP: the requests span more than one day");
  }
  HourProfile p;
  p.path = path;
  p.seconds = static_cast<int32_t>((last - first) / kNsPerSecond + 1);
  p.requests.assign(p.seconds, 0.0);
  p.prompt_tokens.assign(p.seconds, 0.0);
  p.output_tokens.assign(p.seconds, 0.0);
  double prompt_sum = 0, output_sum = 0;
  for (const Row& r : rows) {
    const size_t bin = static_cast<size_t>((r.ns - first) / kNsPerSecond);
    p.requests[bin] += 1;
    p.prompt_tokens[bin] += static_cast<double>(r.prompt);
    p.output_tokens[bin] += static_cast<double>(r.output);
    prompt_sum += static_cast<double>(r.prompt);
    output_sum += static_cast<double>(r.output);
  }
  p.total_requests = static_cast<int64_t>(rows.size());
  p.mean_prompt = prompt_sum / static_cast<double>(rows.size());
  p.mean_output = output_sum / static_cast<double>(rows.size());
  return p;
}

Status Envelope::Validate() const {
  // Written as !(x >= ...) so that NaN fails too.
  if (!(peak_trough_ratio >= 1) || !std::isfinite(peak_trough_ratio)) {
    return Status::Invalid("envelope.peak_trough_ratio: must be >= 1 (and finite), got " +
                           Num(peak_trough_ratio));
  }
  if (!(weekend_factor > 0 && weekend_factor <= 1)) {
    return Status::Invalid("envelope.weekend_factor: must be in (0, 1], got " +
                           Num(weekend_factor));
  }
  if (!(peak_hour >= 0 && peak_hour < 24)) {
    return Status::Invalid("envelope.peak_hour: must be in [0, 24), got " + Num(peak_hour));
  }
  if (start_weekday < 0 || start_weekday > 6) {
    return Status::Invalid("envelope.start_weekday: must be in 0 (Monday) .. 6 (Sunday), got " +
                           std::to_string(start_weekday));
  }
  return Status::Ok();
}

double EnvelopeFactor(const Envelope& e, int64_t second) {
  // Floor division, so that negative seconds (before day 0) still land on the right day.
  int64_t day = second / kSecondsPerDay;
  int64_t in_day = second % kSecondsPerDay;
  if (in_day < 0) {
    in_day += kSecondsPerDay;
    --day;
  }
  const double hour = static_cast<double>(in_day) / kSecondsPerHour;
  const double trough = 1.0 / e.peak_trough_ratio;
  const double phase = 2 * std::numbers::pi * (hour - e.peak_hour) / 24.0;
  double f = trough + (1.0 - trough) * 0.5 * (1.0 + std::cos(phase));
  const int64_t weekday = ((e.start_weekday + day) % 7 + 7) % 7;
  if (weekday >= 5) f *= e.weekend_factor;
  return f;
}

Result<Demand> TileDemand(const HourProfile& p, const Envelope& e, double rate_scale, int32_t days,
                          uint64_t seed) {
  if (Status s = e.Validate(); !s.ok()) return s;
  if (!(rate_scale >= 0) || !(rate_scale <= kMaxRateScale)) {
    return Status::Invalid("rate_scale: must be in [0, " + Num(kMaxRateScale) + "], got " +
                           Num(rate_scale));
  }
  if (days < 1 || days > kMaxDemandDays) {
    return Status::Invalid("days: must be in [1, " + std::to_string(kMaxDemandDays) + "], got " +
                           std::to_string(days));
  }
  const size_t period = p.seconds > 0 ? static_cast<size_t>(p.seconds) : 0;
  if (period == 0 || p.requests.size() != period || p.prompt_tokens.size() != period ||
      p.output_tokens.size() != period) {
    return Status::Invalid(p.path + ": profile: needs seconds > 0 and that many bins per series");
  }
  const size_t n = static_cast<size_t>(days) * kSecondsPerDay;
  Demand d;
  d.requests.resize(n);
  d.prompt_tokens.resize(n);
  d.output_tokens.resize(n);
  // rate_scale k superposes ceil(k) copies of the profile, each from its own offset, the last
  // weighted by the fraction left: the aggregate of k independent streams like the trace's,
  // whose bursts add up as independent bursts do (a copy scaled by k would make every burst
  // k times taller).
  const int64_t copies = static_cast<int64_t>(std::ceil(rate_scale));
  const double last_weight = rate_scale - static_cast<double>(copies - 1);
  core::Rng rng(seed);
  std::vector<size_t> bins(static_cast<size_t>(copies));
  for (size_t hour_start = 0; hour_start < n; hour_start += kSecondsPerHour) {
    for (size_t& bin : bins) bin = static_cast<size_t>(rng.Uniform(period));
    for (size_t s = hour_start; s < hour_start + kSecondsPerHour; ++s) {
      const double env = EnvelopeFactor(e, static_cast<int64_t>(s));
      double r = 0, pt = 0, ot = 0;
      for (size_t c = 0; c < bins.size(); ++c) {
        const double w = c + 1 == bins.size() ? last_weight : 1.0;
        size_t& bin = bins[c];
        r += p.requests[bin] * w;
        pt += p.prompt_tokens[bin] * w;
        ot += p.output_tokens[bin] * w;
        if (++bin == period) bin = 0;
      }
      d.requests[s] = static_cast<float>(r * env);
      d.prompt_tokens[s] = static_cast<float>(pt * env);
      d.output_tokens[s] = static_cast<float>(ot * env);
    }
  }
  return d;
}

Status CapacityProfile::Validate() const {
  if (gpus_per_replica < 1) {
    return Status::Invalid("capacity.gpus_per_replica: must be >= 1, got " +
                           std::to_string(gpus_per_replica));
  }
  const std::pair<const char*, double> positive[] = {
      {"prefill_tokens_per_s", prefill_tokens_per_s},
      {"decode_tokens_per_s", decode_tokens_per_s},
      {"ttft_slo_s", ttft_slo_s},
      {"itl_slo_s", itl_slo_s},
  };
  for (const auto& [name, v] : positive) {
    if (!(v > 0) || !std::isfinite(v)) {
      return Status::Invalid(std::string("capacity.") + name + ": must be > 0 (and finite), got " +
                             Num(v));
    }
  }
  if (!(max_utilization > 0 && max_utilization <= 1)) {
    return Status::Invalid("capacity.max_utilization: must be in (0, 1], got " +
                           Num(max_utilization));
  }
  return Status::Ok();
}

CapacityProfile DefaultLlama70bCapacity() {
  CapacityProfile c;
  c.gpus_per_replica = 4;
  c.prefill_tokens_per_s = 24000;
  c.decode_tokens_per_s = 12000;
  c.ttft_slo_s = 2.0;
  c.itl_slo_s = 0.1;
  c.max_utilization = 0.9;
  return c;
}

double ReplicaLoad(const CapacityProfile& c, double prompt_tokens_per_s,
                   double output_tokens_per_s) {
  return prompt_tokens_per_s / c.prefill_tokens_per_s + output_tokens_per_s / c.decode_tokens_per_s;
}

Result<double> MaxUtilization(const CapacityProfile& c, double mean_prompt_tokens) {
  if (Status s = c.Validate(); !s.ok()) return s;
  if (!(mean_prompt_tokens >= 0) || !std::isfinite(mean_prompt_tokens)) {
    return Status::Invalid("mean_prompt_tokens: must be finite and >= 0, got " +
                           Num(mean_prompt_tokens));
  }
  const double s_p = mean_prompt_tokens / c.prefill_tokens_per_s;
  if (s_p >= c.ttft_slo_s) {
    return Status::Invalid(
        "capacity.ttft_slo_s: unreachable: a mean prompt of " + Num(mean_prompt_tokens) +
        " tokens takes " + Num(s_p) + " s at " + Num(c.prefill_tokens_per_s) +
        " prefill tokens/s, not less than the TTFT SLO of " + Num(c.ttft_slo_s) + " s");
  }
  return std::min(c.max_utilization, 1.0 - s_p / c.ttft_slo_s);
}

int32_t NeededReplicas(double load, double rho_max) {
  GPUORCH_CHECK(rho_max > 0);
  if (!(load > 0)) return 0;
  const double n = std::ceil(load / rho_max - 1e-9);
  if (n >= static_cast<double>(std::numeric_limits<int32_t>::max())) {
    return std::numeric_limits<int32_t>::max();
  }
  return static_cast<int32_t>(n);
}

}  // namespace gpuorch::sim::platform
