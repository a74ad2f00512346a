#include "server/usage.h"

#include <ctime>

#include "server/audit_log.h"

namespace gpuorch::server {
namespace {

// Reads `n` digits of `s` at `i` into `out`.
bool Digits(const std::string& s, size_t& i, int n, int& out) {
  if (i + static_cast<size_t>(n) > s.size()) return false;
  out = 0;
  for (int k = 0; k < n; ++k, ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

bool Char(const std::string& s, size_t& i, char c) {
  if (i >= s.size() || s[i] != c) return false;
  ++i;
  return true;
}

}  // namespace

bool ParseUsageTime(const std::string& s, int64_t& ms) {
  size_t i = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, frac_ms = 0;
  if (!Digits(s, i, 4, year) || !Char(s, i, '-') || !Digits(s, i, 2, month) || !Char(s, i, '-') ||
      !Digits(s, i, 2, day)) {
    return false;
  }
  int64_t offset_s = 0;
  if (i < s.size()) {
    if (s[i] != 'T' && s[i] != 't' && s[i] != ' ') return false;
    ++i;
    if (!Digits(s, i, 2, hour) || !Char(s, i, ':') || !Digits(s, i, 2, minute) ||
        !Char(s, i, ':') || !Digits(s, i, 2, second)) {
      return false;
    }
    if (i < s.size() && s[i] == '.') {
      ++i;
      int scale = 100, digits = 0;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        frac_ms += (s[i] - '0') * scale;  // beyond milliseconds: dropped
        scale /= 10;
        ++i;
        ++digits;
      }
      if (digits == 0 || digits > 9) return false;
    }
    if (i >= s.size()) return false;  // RFC 3339 requires the offset
    if (s[i] == 'Z' || s[i] == 'z') {
      ++i;
    } else if (s[i] == '+' || s[i] == '-') {
      const int sign = s[i] == '-' ? -1 : 1;
      ++i;
      int oh = 0, om = 0;
      if (!Digits(s, i, 2, oh) || !Char(s, i, ':') || !Digits(s, i, 2, om) || oh > 23 || om > 59) {
        return false;
      }
      offset_s = sign * (oh * 3600 + om * 60);
    } else {
      return false;
    }
    if (i != s.size()) return false;
  }
  if (year < 1970 || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 ||
      second > 60) {
    return false;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  const time_t midnight = timegm(&tm);
  // timegm normalizes 2026-02-30 to March 2nd: such a day does not exist.
  if (tm.tm_mday != day || tm.tm_mon != month - 1) return false;
  const int64_t secs =
      static_cast<int64_t>(midnight) + hour * 3600 + minute * 60 + std::min(second, 59) - offset_s;
  ms = secs * 1000 + frac_ms;
  return true;
}

int64_t StartOfMonthUtc(int64_t ms) {
  const time_t secs = static_cast<time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  tm.tm_mday = 1;
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

bool ParseUsageRequest(const std::vector<std::pair<std::string, std::string>>& params,
                       UsageRequest& out, ApiError& error) {
  auto fail = [&](const std::string& field, const std::string& why) {
    error = ApiError{400, field, field + ": " + why};
    return false;
  };
  for (const auto& [k, v] : params) {
    if (k == "from" || k == "to") {
      int64_t ms = 0;
      if (!ParseUsageTime(v, ms)) {
        return fail(k, "expected a date (2026-03-01) or an RFC 3339 time " +
                           std::string("(2026-03-01T00:00:00Z), got \"") + v + "\"");
      }
      (k == "from" ? out.from_ms : out.to_ms) = ms;
    } else if (k == "by") {
      if (v != "queue" && v != "user") return fail(k, "must be queue or user");
      out.by = v;
    } else if (k == "queue") {
      out.queue = v;
    } else {
      return fail(k, "unknown parameter");
    }
  }
  if (out.from_ms && out.to_ms && *out.from_ms >= *out.to_ms) {
    return fail("from", "must be before to (from " + IsoTimeMs(*out.from_ms) + ", to " +
                            IsoTimeMs(*out.to_ms) + ")");
  }
  return true;
}

}  // namespace gpuorch::server
