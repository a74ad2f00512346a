// The agent's per-task state file (DATA/tasks/*.state): any bytes, as a crash or a full disk
// may leave them. The parser must not crash, and a record it reads back must be the one
// that was written (ExitRecord round trip). The spec record goes on to ParseTaskSpec, as the
// runner's recovery does, and an accepted spec survives TaskSpecJson.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "agent/protocol.h"
#include "agent/task_state.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const gpuorch::agent::TaskStateFile s = gpuorch::agent::ParseTaskState(text);
  if (s.shim_pid < 0 || s.child_pid < 0) std::abort();
  if (s.exit) {
    const auto again = gpuorch::agent::ParseTaskState(gpuorch::agent::ExitRecord(*s.exit));
    if (!again.exit || again.exit->code != s.exit->code ||
        again.exit->cpu_user_ms != s.exit->cpu_user_ms ||
        again.exit->cpu_system_ms != s.exit->cpu_system_ms ||
        again.exit->max_rss_kib != s.exit->max_rss_kib) {
      std::abort();
    }
  }
  if (s.spec) {
    auto spec = gpuorch::agent::ParseTaskSpec(*s.spec);
    if (spec.ok()) {
      const std::string json = gpuorch::agent::TaskSpecJson(*spec);
      auto again = gpuorch::agent::ParseTaskSpec(json);
      if (!again.ok() || gpuorch::agent::TaskSpecJson(*again) != json) std::abort();
    }
  }
  return 0;
}
