#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace gpuorch::store {

// One API token as the server persists it: never the secret, only its SHA-256. The store
// does not interpret `json` (name, role, queues, node, default queue, creation time: the
// server's format).
struct StoredToken {
  std::string accessor;
  std::string secret_hash;
  std::string json;
  int64_t revoked_ms = 0;  // 0: valid
};

// Durable API tokens. Contract: each call is atomic and durable when it returns OK; Load
// returns what the successful calls wrote. Thread-safe.
class TokenStore {
 public:
  virtual ~TokenStore() = default;
  // Inserts a new token; an error if the accessor exists (a 64-bit random collision).
  virtual core::Status Insert(const StoredToken& token) = 0;
  // Marks the token revoked at `at_ms`; NotFound for an unknown accessor.
  virtual core::Status Revoke(const std::string& accessor, int64_t at_ms) = 0;
  virtual core::Result<std::vector<StoredToken>> Load() = 0;
};

// The `tokens` table of the server's SQLite database at `path` (WAL, synchronous=FULL), on a
// connection of its own beside the state store's.
core::Result<std::unique_ptr<TokenStore>> OpenSqliteTokenStore(const std::string& path);

}  // namespace gpuorch::store
