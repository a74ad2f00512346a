// Stand-in for `gpuorch task-shim` in the agent's tests.
#include <string>
#include <vector>

#include "agent/shim.h"

int main(int argc, char** argv) {
  return gpuorch::agent::ShimMainFromArgs(std::vector<std::string>(argv + 1, argv + argc));
}
