#include "server/audit_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <regex>

namespace gpuorch::server {

using core::Result;
using core::Status;

std::string IsoTimeMs(int64_t ms) {
  const time_t secs = static_cast<time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

bool IsIsoTimeMs(const std::string& s) {
  static const std::regex kIso(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$)");
  return std::regex_match(s, kIso);
}

Json AuditEntry::ToJson() const {
  return Json{{"time", IsoTimeMs(time_ms)},
              {"accessor", accessor},
              {"role", role},
              {"verb", verb},
              {"resource", resource},
              {"queue", queue},
              {"decision", allowed ? "allow" : "deny"},
              {"status", status},
              {"request_id", request_id},
              {"source", source}};
}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path, int64_t max_bytes,
                                                 int64_t keep) {
  std::unique_ptr<AuditLog> log(new AuditLog(path, max_bytes, keep));
  log->fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log->fd_ < 0) {
    return Status::Invalid("audit log: cannot open " + path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(log->fd_, &st) == 0) log->size_ = st.st_size;
  return log;
}

AuditLog::~AuditLog() {
  if (fd_ >= 0) ::close(fd_);
}

Status AuditLog::Append(const AuditEntry& entry) {
  std::unique_lock<std::mutex> lock(mu_);
  pending_ += entry.ToJson().dump() + "\n";
  const uint64_t mine = ++appended_;
  while (durable_ < mine) {
    if (flushing_) {
      cv_.wait(lock);
      continue;
    }
    // This thread writes every line pending now, its own among them.
    flushing_ = true;
    std::string lines;
    lines.swap(pending_);
    const uint64_t first = durable_, last = appended_;
    lock.unlock();
    Status s = WriteOut(lines);
    lock.lock();
    if (!s.ok()) {
      failed_.push_back({{first, last}, s.message()});
      if (failed_.size() > 64) failed_.erase(failed_.begin());
    }
    durable_ = last;
    flushing_ = false;
    cv_.notify_all();
  }
  for (const auto& [range, why] : failed_) {
    if (mine > range.first && mine <= range.second) return Status::Precondition(why);
  }
  return Status::Ok();
}

Status AuditLog::WriteOut(const std::string& lines) {
  if (size_ > 0 && size_ + static_cast<int64_t>(lines.size()) > max_bytes_) {
    if (Status s = Rotate(); !s.ok()) return s;
  }
  size_t done = 0;
  while (done < lines.size()) {
    const ssize_t n = ::write(fd_, lines.data() + done, lines.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return Status::Precondition(std::string("audit log: write: ") + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  size_ += static_cast<int64_t>(lines.size());
  if (::fdatasync(fd_) != 0) {
    return Status::Precondition(std::string("audit log: fdatasync: ") + std::strerror(errno));
  }
  return Status::Ok();
}

Status AuditLog::Rotate() {
  std::lock_guard<std::mutex> files(files_mu_);
  // audit.log.(keep-1) -> .keep, ..., audit.log -> .1; rename() replaces the oldest.
  for (int64_t i = keep_ - 1; i >= 1; --i) {
    const std::string from = path_ + "." + std::to_string(i);
    (void)::rename(from.c_str(), (path_ + "." + std::to_string(i + 1)).c_str());
  }
  if (::rename(path_.c_str(), (path_ + ".1").c_str()) != 0) {
    return Status::Precondition(std::string("audit log: rotate: ") + std::strerror(errno));
  }
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0)
    return Status::Precondition(std::string("audit log: reopen: ") + std::strerror(errno));
  ::close(fd_);
  fd_ = fd;
  size_ = 0;
  return Status::Ok();
}

Json AuditLog::Read(const std::string& since, int64_t limit) {
  std::deque<Json> kept;
  bool truncated = false;
  auto scan = [&](const std::string& path) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      Json j = Json::parse(line, nullptr, false);
      if (!j.is_object()) continue;  // a line cut short by a crash mid-write
      if (!since.empty() && j.value("time", "") < since) continue;
      kept.push_back(std::move(j));
      if (static_cast<int64_t>(kept.size()) > limit) {
        kept.pop_front();
        truncated = true;
      }
    }
  };
  std::lock_guard<std::mutex> files(files_mu_);
  for (int64_t i = keep_; i >= 1; --i) scan(path_ + "." + std::to_string(i));
  scan(path_);
  Json entries = Json::array();
  for (Json& j : kept) entries.push_back(std::move(j));
  return Json{{"entries", entries}, {"truncated", truncated}};
}

}  // namespace gpuorch::server
