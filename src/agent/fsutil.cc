#include "agent/fsutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

namespace gpuorch::agent::fs {

using core::Status;

Status WriteFileAtomic(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Precondition("open " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Status::Precondition("write " + tmp + ": " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  // Durable before visible: a `started` marker that could vanish in a power cut would let
  // the agent start an attempt twice.
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::Precondition("rename " + tmp + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

Status MakeDirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return Status::Precondition("mkdir " + path + ": " + ec.message());
  return Status::Ok();
}

namespace {

// Removes the directory `name` of `parent_fd` and everything in it.
bool RemoveAt(int parent_fd, const char* name, int depth) {
  if (depth > 256) return false;  // deeper than anything we create: refuse rather than recurse
  const int fd = ::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ::unlinkat(parent_fd, name, 0) == 0 || errno == ENOENT;
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return false;
  }
  bool ok = true;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    if (::unlinkat(fd, e->d_name, 0) == 0 || errno == ENOENT) continue;
    ok = RemoveAt(fd, e->d_name, depth + 1) && ok;  // a directory (EISDIR, or EPERM on Linux)
  }
  ::closedir(d);
  return ::unlinkat(parent_fd, name, AT_REMOVEDIR) == 0 && ok;
}

}  // namespace

bool RemoveTree(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string parent = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") return false;
  const int pfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (pfd < 0) return errno == ENOENT;
  const bool ok = RemoveAt(pfd, name.c_str(), 0);
  ::close(pfd);
  return ok || !Exists(path);
}

}  // namespace gpuorch::agent::fs
