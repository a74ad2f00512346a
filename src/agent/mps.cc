#include "agent/mps.h"

#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "agent/fsutil.h"

extern char** environ;

namespace gpuorch::agent {

std::string MpsPipeDir(const std::string& data_dir, int32_t gpu) {
  return data_dir + "/mps/gpu" + std::to_string(gpu) + "/pipe";
}

std::string MpsLogDir(const std::string& data_dir, int32_t gpu) {
  return data_dir + "/mps/gpu" + std::to_string(gpu) + "/log";
}

std::map<std::string, std::string> MpsEnvironment(const TaskSpec& spec,
                                                  const std::vector<std::string>& ids,
                                                  const std::string& pipe_dir) {
  std::map<std::string, std::string> env;
  env["CUDA_MPS_PIPE_DIRECTORY"] = pipe_dir;
  const int32_t pct = std::clamp<int32_t>((spec.gpu_milli + 9) / 10, 1, 100);
  env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = std::to_string(pct);
  if (spec.gpu_memory_mib > 0) {
    std::string limit;
    for (const std::string& id : ids) {
      limit += (limit.empty() ? "" : ",") + id + "=" + std::to_string(spec.gpu_memory_mib) + "M";
    }
    if (!limit.empty()) env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = limit;
  }
  return env;
}

MpsControl::MpsControl(std::string data_dir, std::vector<std::string> visible_ids, LogFn log,
                       std::string binary)
    : data_dir_(std::move(data_dir)),
      visible_ids_(std::move(visible_ids)),
      log_(std::move(log)),
      binary_(std::move(binary)) {}

std::string MpsControl::FindOnPath(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t from = 0;
  while (from <= dirs.size()) {
    size_t colon = dirs.find(':', from);
    if (colon == std::string::npos) colon = dirs.size();
    const std::string dir = dirs.substr(from, colon - from);
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    from = colon + 1;
  }
  return "";
}

bool MpsControl::Running(int32_t gpu) const {
  const std::optional<std::string> pid =
      fs::ReadFile(MpsPipeDir(data_dir_, gpu) + "/nvidia-cuda-mps-control.pid");
  if (!pid) return false;
  const long p = std::strtol(pid->c_str(), nullptr, 10);
  return p > 0 && ::kill(static_cast<pid_t>(p), 0) == 0;
}

std::string MpsControl::Ensure(int32_t gpu) {
  const std::string pipe = MpsPipeDir(data_dir_, gpu);
  if (started_[gpu]) return pipe;
  if (binary_.empty()) {
    if (!said_unavailable_) {
      Log(std::string("MPS unavailable: ") + kMpsControlBinary +
          " not found on PATH; MPS tasks get their MPS environment but share their GPU by "
          "time-slicing");
      said_unavailable_ = true;
    }
    return pipe;
  }
  const std::string log_dir = MpsLogDir(data_dir_, gpu);
  if (core::Status s = fs::MakeDirs(pipe); !s.ok()) {
    Log("MPS unavailable on GPU " + std::to_string(gpu) + ": " + s.message());
    return pipe;
  }
  (void)fs::MakeDirs(log_dir);
  // Clients may run as other users: they must reach the pipes.
  ::chmod(pipe.c_str(), 0755);
  if (Running(gpu)) {
    started_[gpu] = true;
    return pipe;
  }
  std::vector<std::string> env_lines;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "CUDA_", 5) != 0) env_lines.emplace_back(*e);
  }
  const std::string visible = gpu >= 0 && static_cast<size_t>(gpu) < visible_ids_.size()
                                  ? visible_ids_[gpu]
                                  : std::to_string(gpu);
  env_lines.push_back("CUDA_VISIBLE_DEVICES=" + visible);
  env_lines.push_back("CUDA_MPS_PIPE_DIRECTORY=" + pipe);
  env_lines.push_back("CUDA_MPS_LOG_DIRECTORY=" + log_dir);
  std::vector<std::string> args = {binary_, "-d"};
  std::vector<char*> argv, envp;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& l : env_lines) envp.push_back(l.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), envp.data());
  int status = 0;
  // `-d` forks the daemon and returns at once.
  if (rc == 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
      WEXITSTATUS(status) == 0) {
    started_[gpu] = true;
    Log("MPS control daemon started for GPU " + std::to_string(gpu) + " (pipes in " + pipe + ")");
    return pipe;
  }
  started_[gpu] = true;  // not tried again until the agent restarts: it said why
  const std::string why = rc != 0 ? std::strerror(rc) : "exit status " + std::to_string(status);
  if (!said_unavailable_) {
    Log("MPS unavailable: " + binary_ + " -d failed (" + why + ", logs in " + log_dir +
        "); MPS tasks share their GPU by time-slicing");
    said_unavailable_ = true;
  }
  return pipe;
}

}  // namespace gpuorch::agent
