#include "trace.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <fstream>

namespace gpuorch::emulator {
namespace {

std::vector<std::string> SplitCsv(const std::string& line) {
  std::vector<std::string> out(1);
  for (char c : line) {
    if (c == ',') {
      out.emplace_back();
    } else if (c != '\r') {
      out.back() += c;
    }
  }
  return out;
}

bool ParseCount(const std::string& s, int64_t& v) {
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  return ec == std::errc() && p == end && v >= 0;
}

}  // namespace

bool ParseTimestamp(const std::string& text, double& seconds) {
  int y, mo, d, h, mi, s;
  int used = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2d %2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &used) !=
          6 ||
      used != 19) {
    return false;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return false;
  double fraction = 0;
  if (text.size() > 19) {
    if (text[19] != '.' || text.size() == 20) return false;
    double scale = 0.1;
    for (size_t i = 20; i < text.size(); ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
      fraction += (text[i] - '0') * scale;
      scale /= 10;
    }
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  seconds = static_cast<double>(timegm(&tm)) + fraction;
  return true;
}

std::variant<std::vector<TraceRequest>, std::string> ParseTrace(std::istream& in,
                                                                const std::string& name) {
  std::vector<TraceRequest> out;
  std::string line;
  int64_t n = 0;
  auto error = [&](const std::string& field, const std::string& what) {
    return name + ":" + std::to_string(n) + ": " + field + ": " + what;
  };
  if (!std::getline(in, line)) {
    n = 1;
    return error("header", "the file is empty");
  }
  n = 1;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line != "TIMESTAMP,ContextTokens,GeneratedTokens")
    return error("header",
                 "expected 'TIMESTAMP,ContextTokens,GeneratedTokens', got '" + line + "'");
  double first = 0, last = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty() || line == "\r") continue;
    const std::vector<std::string> f = SplitCsv(line);
    if (f.size() != 3) return error("line", "expected 3 fields, got " + std::to_string(f.size()));
    double t = 0;
    if (!ParseTimestamp(f[0], t))
      return error("TIMESTAMP", "'" + f[0] + "' is not 'YYYY-MM-DD HH:MM:SS[.fraction]'");
    TraceRequest r;
    if (!ParseCount(f[1], r.context_tokens))
      return error("ContextTokens", "'" + f[1] + "' is not a non-negative integer");
    if (!ParseCount(f[2], r.generated_tokens))
      return error("GeneratedTokens", "'" + f[2] + "' is not a non-negative integer");
    if (out.empty()) first = t;
    if (t < last) return error("TIMESTAMP", "'" + f[0] + "' goes back in time");
    last = t;
    r.offset_s = t - first;
    out.push_back(r);
  }
  if (out.empty()) return error("line", "no requests after the header");
  return out;
}

std::variant<std::vector<TraceRequest>, std::string> ReadTrace(const std::string& path) {
  std::ifstream in(path);
  if (!in) return path + ": cannot be read (pass --trace PATH)";
  return ParseTrace(in, path);
}

Summary Summarize(const std::vector<RequestResult>& results) {
  Summary s;
  s.count = static_cast<int64_t>(results.size());
  std::vector<double> latencies;
  int64_t answered = 0, waited = 0;
  for (const RequestResult& r : results) {
    latencies.push_back(r.latency_s);
    if (r.status < 200 || r.status >= 300) {
      ++s.failures;
      continue;
    }
    ++answered;
    if (r.service_s >= 0 && r.latency_s - r.service_s > 1.0) ++waited;
  }
  std::sort(latencies.begin(), latencies.end());
  auto rank = [&](double q) {
    if (latencies.empty()) return 0.0;
    size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(latencies.size())));
    return latencies[std::clamp<size_t>(i, 1, latencies.size()) - 1];
  };
  s.p50_s = rank(0.50);
  s.p99_s = rank(0.99);
  s.waited_over_1s = answered > 0 ? static_cast<double>(waited) / static_cast<double>(answered) : 0;
  return s;
}

}  // namespace gpuorch::emulator
