#include "agent/emulated_executor.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

namespace gpuorch::agent {
namespace {

using core::Status;

// Reads the emulated run of `spec` from its env into `exit_at_ms` / `exit_code`.
Status ParseEmulation(const TaskSpec& spec, int64_t now_ms, int64_t& exit_at_ms,
                      int32_t& exit_code) {
  exit_at_ms = -1;
  exit_code = 0;
  if (auto it = spec.env.find(kEmulateRuntimeEnv); it != spec.env.end()) {
    const std::string& v = it->second;
    char* end = nullptr;
    errno = 0;
    const double s = std::strtod(v.c_str(), &end);
    // At most ten years: beyond that "until stopped" is what is meant anyway.
    if (v.empty() || end != v.c_str() + v.size() || errno != 0 || !std::isfinite(s) || s < 0 ||
        s > 315360000.0) {
      return Status::Invalid(std::string("env ") + kEmulateRuntimeEnv + ": expected seconds (a " +
                             "number >= 0), got '" + v + "'");
    }
    exit_at_ms = now_ms + static_cast<int64_t>(std::llround(s * 1000.0));
  }
  if (auto it = spec.env.find(kEmulateExitCodeEnv); it != spec.env.end()) {
    const std::string& v = it->second;
    int32_t code = 0;
    auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), code);
    if (v.empty() || ec != std::errc() || ptr != v.data() + v.size() || code < 0 || code > 255) {
      return Status::Invalid(std::string("env ") + kEmulateExitCodeEnv +
                             ": expected an exit code 0..255, got '" + v + "'");
    }
    exit_code = code;
  }
  return Status::Ok();
}

}  // namespace

std::vector<Status> EmulatedExecutor::StartAll(const std::vector<const TaskSpec*>& specs) {
  std::vector<Status> out;
  out.reserve(specs.size());
  const int64_t now = now_ms_();
  for (const TaskSpec* spec : specs) {
    if (EverStarted(spec->key)) {
      out.push_back(Status::Exists("task " + spec->key.DirName() + " was started before"));
      continue;
    }
    Entry& e = tasks_[spec->key];
    e.status.key = spec->key;
    Status parsed = ParseEmulation(*spec, now, e.exit_at_ms, e.exit_code);
    if (!parsed.ok()) {
      e.status.state = TaskState::kExited;
      e.status.exit.code = kLostExitCode;
      out.push_back(std::move(parsed));
      continue;
    }
    e.status.state = TaskState::kRunning;
    e.status.mig = spec->mig;
    if (spec->service) {
      e.status.service = ServiceReport{};  // port 0: nothing listens
      e.ready_at_ms = now + spec->service->initial_delay_ms();
    }
    ++running_;
    ++started_total_;
    out.push_back(Status::Ok());
  }
  return out;
}

void EmulatedExecutor::Exit(Entry& e, int32_t code) {
  e.status.state = TaskState::kExited;
  e.status.exit = TaskExit{};
  e.status.exit.code = code;
  e.exit_at_ms = -1;
  e.ready_at_ms = -1;
  e.status.service.reset();
  e.status.mig.reset();
  --running_;
  ++exited_total_;
}

bool EmulatedExecutor::Stop(const TaskKey& key, std::optional<int64_t> /*grace_ms*/) {
  auto it = tasks_.find(key);
  if (it == tasks_.end() || it->second.status.state != TaskState::kRunning) return false;
  Exit(it->second, kEmulatedStopExitCode);
  return true;
}

bool EmulatedExecutor::Poll() {
  if (running_ == 0) return false;
  const int64_t now = now_ms_();
  bool news = false;
  for (auto& [key, e] : tasks_) {
    if (e.status.state != TaskState::kRunning) continue;
    if (e.exit_at_ms >= 0 && e.exit_at_ms <= now) {
      Exit(e, e.exit_code);
      news = true;
    } else if (e.ready_at_ms >= 0 && e.ready_at_ms <= now) {
      e.status.service->ready = true;
      e.ready_at_ms = -1;
      news = true;
    }
  }
  return news;
}

void EmulatedExecutor::Forget(const TaskKey& key) {
  auto it = tasks_.find(key);
  if (it != tasks_.end() && it->second.status.state == TaskState::kExited) {
    tasks_.erase(it);
    forgotten_.insert(key);
  }
}

std::vector<TaskStatus> EmulatedExecutor::Tasks() const {
  std::vector<TaskStatus> out;
  out.reserve(tasks_.size());
  for (const auto& [key, e] : tasks_) out.push_back(e.status);
  return out;
}

std::optional<int64_t> EmulatedExecutor::NextEventMs() const {
  std::optional<int64_t> next;
  if (running_ == 0) return next;
  for (const auto& [key, e] : tasks_) {
    if (e.status.state != TaskState::kRunning) continue;
    for (const int64_t at : {e.exit_at_ms, e.ready_at_ms}) {
      if (at >= 0 && (!next || at < *next)) next = at;
    }
  }
  return next;
}

}  // namespace gpuorch::agent
