// `gpuorch-shim`: the task shim as a small executable of its own. The agent starts one per
// task; exec'ing the full gpuorch binary (tens of MB, many shared libraries) for that costs
// several milliseconds of CPU per task, this costs a fraction of one. Same code and
// arguments as `gpuorch task-shim`, which stays as the fallback.
#include <string>
#include <vector>

#include "agent/shim.h"

int main(int argc, char** argv) {
  return gpuorch::agent::ShimMainFromArgs(std::vector<std::string>(argv + 1, argv + argc));
}
