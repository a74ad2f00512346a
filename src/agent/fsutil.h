#pragma once

#include <optional>
#include <string>

#include "core/status.h"

// Small file helpers for the agent's data directory, where files are the agent's memory
// across restarts and must never be seen half written.
namespace gpuorch::agent::fs {

// Writes `content` to `path` through a temporary file, fsync and rename, so a reader (or a
// crash) sees the old file or the new one, never a prefix.
core::Status WriteFileAtomic(const std::string& path, const std::string& content);
// The whole file, or nullopt if it cannot be read.
std::optional<std::string> ReadFile(const std::string& path);
bool Exists(const std::string& path);
// mkdir -p.
core::Status MakeDirs(const std::string& path);
// rm -rf that never follows a symbolic link, even one swapped in while it runs (every step
// is relative to a directory descriptor opened with O_NOFOLLOW): safe on a directory that a
// task's leftover process may still be changing. True when `path` is gone.
bool RemoveTree(const std::string& path);

}  // namespace gpuorch::agent::fs
