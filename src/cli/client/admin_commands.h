#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "cli/client/commands.h"

// `gpuorch token create|list|revoke` and `gpuorch audit`: administrators' commands over the
// API (docs/cli.md, docs/security.md).
namespace gpuorch::cli {

struct TokenCreateArgs {
  std::string name;
  std::string role;
  std::vector<std::string> queues;
  std::string node;
  std::string default_queue;
};

// Prints the new token alone on stdout (so TOKEN=$(gpuorch token create ...) works) and
// what it is on stderr; -o json/yaml print the whole answer instead.
int RunTokenCreate(const CommonArgs& common, const TokenCreateArgs& args, const Io& io);
int RunTokenList(const CommonArgs& common, const Io& io);
int RunTokenRevoke(const CommonArgs& common, const std::string& accessor, const Io& io);
// `since`: an RFC 3339 time (2026-12-02T13:00:00Z) or a duration back from now (90s, 30m,
// 2h, 7d); "" for everything kept.
int RunAudit(const CommonArgs& common, const std::string& since, int64_t limit, const Io& io);

// The server's form of `since` (IsoTimeMs: "2026-12-02T13:00:00.000Z"), or a usage error.
Outcome<std::string> AuditSince(const std::string& since,
                                std::chrono::system_clock::time_point now);

}  // namespace gpuorch::cli
