#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "server/api_types.h"

// Accounting queries (docs/api.md, GET /v1/usage): what a request asks, parsed and checked
// before the controller answers it. Pure functions of their input, so tests need no server.
namespace gpuorch::server {

// Parses a time as the usage API takes it, to ms since the epoch: a date (2026-03-01, its
// 00:00 UTC) or an RFC 3339 time (2026-03-01T12:30:00Z, 2026-03-01T12:30:00.250+02:00; a
// space may stand for the T). False for anything else, or a day that does not exist.
bool ParseUsageTime(const std::string& text, int64_t& ms);

// The first instant (00:00 UTC) of the month that holds `ms`.
int64_t StartOfMonthUtc(int64_t ms);

struct UsageRequest {
  std::optional<int64_t> from_ms, to_ms;  // unset: the defaults (Controller::Usage)
  std::string by = "queue";               // "queue" or "user"
  std::string queue;                      // "": every queue the caller reads
};

// Parses the query parameters (from, to, by, queue); false with `error` (HTTP 400, naming
// the field) on an unknown parameter, a malformed time or `by`, or `from` not before `to`.
bool ParseUsageRequest(const std::vector<std::pair<std::string, std::string>>& params,
                       UsageRequest& out, ApiError& error);

}  // namespace gpuorch::server
