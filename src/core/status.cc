#include "core/status.h"

#include <cstdio>

namespace gpuorch::core {

void CheckFailed(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "gpuorch: invariant violated: %s at %s:%d\n", cond, file, line);
  std::abort();
}

}  // namespace gpuorch::core
