#include "log/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>
#include <mutex>

namespace gpuorch::log {

namespace {

// Read by every Log call; written by Setup before other threads log.
std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
Format g_format = Format::kText;
std::string g_component = "gpuorch";
std::shared_ptr<spdlog::logger> g_logger;

spdlog::level::level_enum ToSpd(Level l) {
  switch (l) {
    case Level::kTrace:
      return spdlog::level::trace;
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
    case Level::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

// spdlog writes the time and the level; the rest of the line is our body. Its "%l" spells
// the levels trace, debug, info, warning, error.
const char* Pattern(Format f) {
  return f == Format::kJson ? R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})"
                            : "%Y-%m-%dT%H:%M:%S.%eZ %l %v";
}

void Install(Level level, Format format, const std::string& component,
             std::shared_ptr<spdlog::sinks::sink> sink) {
  auto logger = std::make_shared<spdlog::logger>("gpuorch", std::move(sink));
  logger->set_pattern(Pattern(format), spdlog::pattern_time_type::utc);
  logger->set_level(ToSpd(level));
  logger->flush_on(spdlog::level::trace);  // every line reaches the file: logs of a crash too
  g_format = format;
  g_component = component;
  g_logger = std::move(logger);
  g_level = static_cast<int>(level);
}

// A process that logs before Setup (a test, a library user) gets text at info on stderr.
std::shared_ptr<spdlog::logger> Logger() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (!g_logger) {
      Install(Level::kInfo, Format::kText, "gpuorch",
              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    }
  });
  return g_logger;
}

bool NeedsQuotes(const std::string& s) {
  if (s.empty()) return true;
  for (char c : s) {
    if (c == ' ' || c == '"' || c == '=' || c == '\n' || c == '\t') return true;
  }
  return false;
}

}  // namespace

bool ParseLevel(const std::string& s, Level& level, std::string& error) {
  static const std::pair<const char*, Level> kLevels[] = {
      {"trace", Level::kTrace}, {"debug", Level::kDebug}, {"info", Level::kInfo},
      {"warn", Level::kWarn},   {"error", Level::kError}, {"off", Level::kOff}};
  for (const auto& [name, l] : kLevels) {
    if (s == name) {
      level = l;
      return true;
    }
  }
  error = "--log-level: must be one of trace, debug, info, warn, error, off (got \"" + s + "\")";
  return false;
}

bool ParseFormat(const std::string& s, Format& format, std::string& error) {
  if (s == "text" || s == "json") {
    format = s == "json" ? Format::kJson : Format::kText;
    return true;
  }
  error = "--log-format: must be text or json (got \"" + s + "\")";
  return false;
}

void Setup(Level level, Format format, const std::string& component) {
  Install(level, format, component, std::make_shared<spdlog::sinks::stderr_sink_mt>());
}

void SetupFile(Level level, Format format, const std::string& component, const std::string& path) {
  Install(level, format, component, std::make_shared<spdlog::sinks::basic_file_sink_mt>(path));
}

bool Enabled(Level level) { return static_cast<int>(level) >= g_level.load(); }

std::string FormatFields(Format format, std::string_view component, std::string_view event,
                         const Fields& fields) {
  if (format == Format::kJson) {
    std::string out = "\"component\":" + Json(std::string(component)).dump() +
                      ",\"event\":" + Json(std::string(event)).dump();
    for (const auto& [k, v] : fields) {
      // Replaces what cannot be encoded (invalid UTF-8 in a command line) instead of failing.
      out += "," + Json(k).dump() + ":" + v.dump(-1, ' ', false, Json::error_handler_t::replace);
    }
    return out;
  }
  std::string out(event);
  for (const auto& [k, v] : fields) {
    out += " " + k + "=";
    if (v.is_string()) {
      const std::string& s = v.get_ref<const std::string&>();
      out += NeedsQuotes(s) ? v.dump(-1, ' ', false, Json::error_handler_t::replace) : s;
    } else {
      out += v.dump(-1, ' ', false, Json::error_handler_t::replace);
    }
  }
  return out;
}

void Log(Level level, std::string_view event, const Fields& fields) {
  if (!Enabled(level) || level == Level::kOff) return;
  auto logger = Logger();
  logger->log(ToSpd(level), "{}", FormatFields(g_format, g_component, event, fields));
}

void Flush() {
  if (g_logger) g_logger->flush();
}

}  // namespace gpuorch::log
