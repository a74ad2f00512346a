#include "cli/client/table.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace gpuorch::cli {
namespace {
constexpr size_t kColumnGap = 3;
}  // namespace

Table::Table(std::vector<std::string> headers) { rows_.push_back(std::move(headers)); }

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(rows_[0].size());
  rows_.push_back(std::move(cells));
}

std::string Table::Render() const {
  std::vector<size_t> width(rows_[0].size(), 0);
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(width[i] - row[i].size() + kColumnGap, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + '\n';
  }
  return out;
}

std::string MilliToGpus2(int64_t milli) {
  const bool negative = milli < 0;
  const int64_t abs_milli = negative ? -milli : milli;
  const int64_t hundredths = (abs_milli + 5) / 10;
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%s%lld.%02lld", negative ? "-" : "",
                static_cast<long long>(hundredths / 100), static_cast<long long>(hundredths % 100));
  return buf;
}

std::string MilliToGpusShort(int64_t milli) {
  if (milli % 1000 == 0) return std::to_string(milli / 1000);
  return MilliToGpus2(milli);
}

std::optional<std::chrono::system_clock::time_point> ParseTimestamp(std::string_view s) {
  std::string str(s);
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, consumed = 0;
  if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec,
                  &consumed) != 6) {
    return std::nullopt;
  }
  std::string_view rest = s.substr(static_cast<size_t>(consumed));
  int64_t millis = 0;
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    int digits = 0;
    while (!rest.empty() && rest.front() >= '0' && rest.front() <= '9') {
      if (digits < 3) millis = millis * 10 + (rest.front() - '0');
      ++digits;
      rest.remove_prefix(1);
    }
    for (; digits < 3; ++digits) millis *= 10;
  }
  if (rest != "Z" && rest != "z" && rest != "+00:00") return std::nullopt;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  const std::time_t t = timegm(&tm);
  return std::chrono::system_clock::from_time_t(t) + std::chrono::milliseconds(millis);
}

std::string ShortDuration(std::chrono::system_clock::duration d) {
  const int64_t s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  if (s < 0) return "0s";
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m";
  if (s < 86400) return std::to_string(s / 3600) + "h";
  if (s < 365 * 86400) return std::to_string(s / 86400) + "d";
  return std::to_string(s / (365 * 86400)) + "y";
}

std::string Age(std::string_view timestamp, std::chrono::system_clock::time_point now) {
  auto t = ParseTimestamp(timestamp);
  if (!t) return "-";
  return ShortDuration(now - *t);
}

}  // namespace gpuorch::cli
