#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// Structured logs: each line is one event (a short name such as "bind") with fields. The
// server and the agent write them to stderr through spdlog, as text
//   2026-12-02T13:40:01.123Z info bind workload=17 queue=prod nodes=["a","b"]
// or, with --log-format json, as one JSON object a line
//   {"time":"2026-12-02T13:40:01.123Z","level":"info","component":"server","event":"bind",...}
// so that a log shipper needs no parsing rules. Times are UTC.
//
// Thread-safety: Setup once at start-up, before other threads log; Log and Enabled from any
// thread (spdlog's multi-threaded sink serialises the lines).
namespace gpuorch::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError, kOff };
enum class Format { kText, kJson };

using Json = nlohmann::json;
using Fields = std::vector<std::pair<std::string, Json>>;

// Parses --log-level (trace, debug, info, warn, error, off) and --log-format (text, json);
// false with `error` naming the flag otherwise.
bool ParseLevel(const std::string& s, Level& level, std::string& error);
bool ParseFormat(const std::string& s, Format& format, std::string& error);

// Replaces the process's logger: lines at `level` and above go to stderr in `format`, each
// naming `component` ("server", "agent").
void Setup(Level level, Format format, const std::string& component);
// Like Setup, into `path` (appending) instead of stderr: for tests.
void SetupFile(Level level, Format format, const std::string& component, const std::string& path);

bool Enabled(Level level);
// Writes one event; does nothing (and builds nothing) below the configured level.
void Log(Level level, std::string_view event, const Fields& fields = {});
// Flushes what the sink buffered (before exit).
void Flush();

inline void Info(std::string_view event, const Fields& fields = {}) {
  Log(Level::kInfo, event, fields);
}
inline void Warn(std::string_view event, const Fields& fields = {}) {
  Log(Level::kWarn, event, fields);
}
inline void Error(std::string_view event, const Fields& fields = {}) {
  Log(Level::kError, event, fields);
}
inline void Debug(std::string_view event, const Fields& fields = {}) {
  Log(Level::kDebug, event, fields);
}

// The body of a line without time and level, as Log writes it: `event k=v ...` (text; a
// string value is quoted when it holds a space, a quote or '=') or `"event":...,"k":v` (the
// JSON object's members after time and level).
std::string FormatFields(Format format, std::string_view component, std::string_view event,
                         const Fields& fields);

}  // namespace gpuorch::log
