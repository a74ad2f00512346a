#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "agent/task.h"

// CUDA MPS for tasks that share a GPU as MPS clients (docs/agent.md, "MIG and MPS"): one MPS
// control daemon per GPU, its pipe and log directories under the agent's data dir, and the
// environment that makes a task its client with its share of the GPU.
namespace gpuorch::agent {

inline constexpr const char* kMpsControlBinary = "nvidia-cuda-mps-control";

// DATA/mps/gpu<N>/pipe and DATA/mps/gpu<N>/log.
std::string MpsPipeDir(const std::string& data_dir, int32_t gpu);
std::string MpsLogDir(const std::string& data_dir, int32_t gpu);

// The MPS variables of a task with `sharing: "mps"`, beside CUDA_VISIBLE_DEVICES:
// CUDA_MPS_PIPE_DIRECTORY (`pipe_dir`, its first GPU's daemon), CUDA_MPS_ACTIVE_THREAD_PERCENTAGE
// = ceil(gpu_milli / 10) within 1..100, and, when it gave its GPU memory,
// CUDA_MPS_PINNED_DEVICE_MEM_LIMIT = "<id>=<gpu_memory_mib>M" for each of its GPUs (`ids`:
// their CUDA_VISIBLE_DEVICES values).
std::map<std::string, std::string> MpsEnvironment(const TaskSpec& spec,
                                                  const std::vector<std::string>& ids,
                                                  const std::string& pipe_dir);

// Starts the MPS control daemons, one per GPU, when a task first needs one: `<binary> -d`
// with CUDA_VISIBLE_DEVICES = that GPU and the pipe and log directories above. A daemon
// whose pid file (in its pipe dir) names a live process is left alone, so a restarted agent
// does not start a second one. Without the binary (not on PATH), or when it fails, the task
// still gets its MPS environment (and runs time-sliced if no daemon answers) and the agent
// logs once that MPS is unavailable. Not thread-safe: the runner's thread calls it.
class MpsControl {
 public:
  using LogFn = std::function<void(const std::string&)>;
  // `visible_ids`: CUDA_VISIBLE_DEVICES per GPU index. `binary`: a path, or a name found on
  // PATH (empty when it is not found).
  MpsControl(std::string data_dir, std::vector<std::string> visible_ids, LogFn log,
             std::string binary = FindOnPath(kMpsControlBinary));
  // The pipe directory of GPU `gpu`, its daemon started if it is not running.
  std::string Ensure(int32_t gpu);
  bool available() const { return !binary_.empty(); }

  // The path of `name` on $PATH, or "" when not found (or not executable).
  static std::string FindOnPath(const std::string& name);

 private:
  bool Running(int32_t gpu) const;
  void Log(const std::string& line) const {
    if (log_) log_(line);
  }

  std::string data_dir_;
  std::vector<std::string> visible_ids_;
  LogFn log_;
  std::string binary_;
  bool said_unavailable_ = false;
  std::map<int32_t, bool> started_;  // GPUs whose daemon this agent started (or found)
};

}  // namespace gpuorch::agent
