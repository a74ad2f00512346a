#include "sim/replay/trace.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

namespace gpuorch::sim {

using core::Result;
using core::Status;

uint32_t Trace::Tenant(std::string_view tenant) {
  for (uint32_t i = 0; i < tenants.size(); ++i) {
    if (tenants[i] == tenant) return i;
  }
  tenants.emplace_back(tenant);
  return static_cast<uint32_t>(tenants.size() - 1);
}

uint32_t Trace::Model(std::string_view model) {
  for (uint32_t i = 0; i < models.size(); ++i) {
    if (models[i] == model) return i;
  }
  models.emplace_back(model);
  return static_cast<uint32_t>(models.size() - 1);
}

void Trace::Normalize() {
  std::stable_sort(jobs.begin(), jobs.end(),
                   [](const TraceJob& a, const TraceJob& b) { return a.arrival < b.arrival; });
  if (jobs.empty()) return;
  const core::Time first = jobs.front().arrival;
  for (TraceJob& j : jobs) j.arrival -= first;
}

GangShape SplitGang(int32_t gpus, int32_t node_gpus) {
  if (gpus <= node_gpus) return {1, gpus};
  for (int32_t per = node_gpus; per >= 1; --per) {
    if (gpus % per == 0) return {gpus / per, per};
  }
  return {gpus, 1};
}

bool ParseInt(std::string_view s, int64_t& v) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && ptr == s.data() + s.size();
}

namespace {

// "I.F" with up to `scale_digits` fraction digits, as an integer scaled by 10^scale_digits.
// Extra fraction digits must be zeros, so that no input is silently rounded.
bool ParseScaled(std::string_view s, int scale_digits, int64_t& out) {
  if (s.empty() || s.front() == '-' || s.front() == '+') return false;
  const size_t dot = s.find('.');
  std::string_view ip = s.substr(0, dot);
  std::string_view fp = dot == std::string_view::npos ? std::string_view() : s.substr(dot + 1);
  if (ip.empty() && fp.empty()) return false;
  int64_t whole = 0;
  if (!ip.empty() && !ParseInt(ip, whole)) return false;
  int64_t frac = 0;
  for (size_t i = 0; i < fp.size(); ++i) {
    const char c = fp[i];
    if (c < '0' || c > '9') return false;
    if (static_cast<int>(i) < scale_digits) {
      frac = frac * 10 + (c - '0');
    } else if (c != '0') {
      return false;
    }
  }
  for (int i = static_cast<int>(fp.size()); i < scale_digits; ++i) frac *= 10;
  int64_t scale = 1;
  for (int i = 0; i < scale_digits; ++i) scale *= 10;
  if (whole > INT64_MAX / scale - 1) return false;
  out = whole * scale + frac;
  return true;
}

}  // namespace

bool ParseSecondsMs(std::string_view s, int64_t& ms) {
  // At most 10^9 s (31 years): traces span days, and sums over their jobs (GPU-time per
  // tenant, arrival + duration) must not overflow.
  return ParseScaled(s, 3, ms) && ms <= kMaxTraceMs;
}

bool ParseFractionMilli(std::string_view s, int32_t& milli) {
  int64_t v = 0;
  if (!ParseScaled(s, 3, v) || v < 1 || v > 1000) return false;
  milli = static_cast<int32_t>(v);
  return true;
}

bool ParseTimestamp(std::string_view s, int64_t& seconds) {
  // YYYY-MM-DD HH:MM:SS
  if (s.size() != 19 || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' ||
      s[16] != ':') {
    return false;
  }
  int64_t y, mo, d, h, mi, se;
  if (!ParseInt(s.substr(0, 4), y) || !ParseInt(s.substr(5, 2), mo) ||
      !ParseInt(s.substr(8, 2), d) || !ParseInt(s.substr(11, 2), h) ||
      !ParseInt(s.substr(14, 2), mi) || !ParseInt(s.substr(17, 2), se)) {
    return false;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return false;
  // Days from the civil date (H. Hinnant's algorithm).
  y -= mo <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const int64_t days = era * 146097 + doe - 719468;
  seconds = days * 86400 + h * 3600 + mi * 60 + se;
  return true;
}

Result<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string_view> SplitCsv(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t comma = line.find(',', start);
    std::string_view f = line.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    while (!f.empty() && (f.back() == '\r' || f.back() == ' ')) f.remove_suffix(1);
    while (!f.empty() && f.front() == ' ') f.remove_prefix(1);
    out.push_back(f);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

bool ParseKind(std::string_view s, core::WorkloadKind& k) {
  if (s == "training") return k = core::WorkloadKind::kTraining, true;
  if (s == "inference") return k = core::WorkloadKind::kInference, true;
  if (s == "experiment") return k = core::WorkloadKind::kExperiment, true;
  return false;
}

}  // namespace gpuorch::sim
