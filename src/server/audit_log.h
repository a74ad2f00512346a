#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "server/api_types.h"

namespace gpuorch::server {

// "2026-12-02T13:24:36.123Z" (UTC, milliseconds): sorts like the time it names.
std::string IsoTimeMs(int64_t ms_since_epoch);
// Whether `s` is a time in exactly that format.
bool IsIsoTimeMs(const std::string& s);

struct AuditEntry {
  int64_t time_ms = 0;
  std::string accessor;  // "" when no token authenticated the request
  std::string role;
  std::string verb;      // submit, cancel, drain, token.create, ...
  std::string resource;  // the request's path
  std::string queue;     // the queue the request touched, when there is one
  bool allowed = false;
  int status = 0;  // the HTTP answer
  std::string request_id;
  std::string source;  // the peer's address

  Json ToJson() const;
};

// The append-only audit log, DATA/audit.log: one JSON object per line (docs/security.md).
//
// Append returns once its line is on disk (written and fdatasync'd), so an answer given
// after it is never missing from the log, even if the machine crashes. Concurrent appends
// share one fdatasync (group commit): the first waiter writes every pending line, the
// others wait for it. When the file would grow past `max_bytes` it is renamed audit.log.1
// (older ones shift up to audit.log.`keep`, the oldest is deleted) and a new one started.
//
// Thread-safe.
class AuditLog {
 public:
  static core::Result<std::unique_ptr<AuditLog>> Open(const std::string& path, int64_t max_bytes,
                                                      int64_t keep);
  ~AuditLog();

  core::Status Append(const AuditEntry& entry);
  // Entries at or after `since` (an IsoTimeMs; "" for all), oldest first, from the rotated
  // files and the current one: the last `limit` of them, with "truncated" when more
  // matched. O(size of the log).
  Json Read(const std::string& since, int64_t limit);

 private:
  AuditLog(std::string path, int64_t max_bytes, int64_t keep)
      : path_(std::move(path)), max_bytes_(max_bytes), keep_(keep) {}
  // Writes and syncs `lines` (no lock held; only the flushing thread touches fd_).
  core::Status WriteOut(const std::string& lines);
  core::Status Rotate();

  const std::string path_;
  const int64_t max_bytes_, keep_;
  // Held by Read and Rotate: a reader never sees files shift under it.
  std::mutex files_mu_;
  int fd_ = -1;
  int64_t size_ = 0;  // of the current file; the flushing thread's

  std::mutex mu_;
  std::condition_variable cv_;
  std::string pending_;    // lines not yet written
  uint64_t appended_ = 0;  // lines appended so far
  uint64_t durable_ = 0;   // lines through which writing finished (well or not)
  bool flushing_ = false;
  // Ranges (first, last] of lines whose write failed, with why; kept short.
  std::vector<std::pair<std::pair<uint64_t, uint64_t>, std::string>> failed_;
};

}  // namespace gpuorch::server
