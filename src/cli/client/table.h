#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gpuorch::cli {

// A kubectl-style text table: upper-case headers, columns padded to their widest cell and
// separated by three spaces, no borders, so `awk '{print $1}'` works on it.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  // Rows shorter than the header are padded with empty cells; longer ones are cut.
  void AddRow(std::vector<std::string> cells);
  // Each line ends in '\n'; trailing spaces are not written.
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;  // rows_[0] is the header
};

// Milli-GPUs as GPUs with exactly two decimals ("16.00", "0.25"), rounded half up, computed
// in integers so that accounting never goes through a float.
std::string MilliToGpus2(int64_t milli);

// Milli-GPUs as GPUs, with decimals only when the value is not whole ("8", "0.50").
std::string MilliToGpusShort(int64_t milli);

// Parses the API's RFC 3339 UTC timestamps ("2026-11-24T14:00:00.000Z"; "+00:00" accepted).
std::optional<std::chrono::system_clock::time_point> ParseTimestamp(std::string_view s);

// Elapsed time the way kubectl's AGE column shows it: "42s", "5m", "3h", "12d", "2y".
std::string ShortDuration(std::chrono::system_clock::duration d);

// ShortDuration(now - timestamp), or "-" when the timestamp is missing or unreadable.
std::string Age(std::string_view timestamp, std::chrono::system_clock::time_point now);

}  // namespace gpuorch::cli
