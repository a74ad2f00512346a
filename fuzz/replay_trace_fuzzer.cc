// The replay's trace readers (the first input byte picks one): Philly's CSV (then the
// cluster derived from it against a VC table), a Pollux results summary and workload CSV
// (split at the first NUL byte), and the generic format as CSV and as JSON lines. An
// accepted trace must be normalised: sorted by arrival, the first at 0, every job sane.
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include "sim/replay/config.h"
#include "sim/replay/trace.h"

namespace {

using gpuorch::sim::Trace;

void Check(const Trace& t) {
  if (t.jobs.empty() || t.jobs.front().arrival != 0) std::abort();
  for (size_t i = 0; i < t.jobs.size(); ++i) {
    const gpuorch::sim::TraceJob& j = t.jobs[i];
    if (i > 0 && j.arrival < t.jobs[i - 1].arrival) std::abort();
    if (j.duration <= 0 || j.tasks < 1 || j.gpus_per_task < 1 || j.gpu_milli < 1 ||
        j.gpu_milli > 1000 || j.tenant >= t.tenants.size()) {
      std::abort();
    }
    if (j.model != UINT32_MAX && j.model >= t.models.size()) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0: {
      auto t = gpuorch::sim::ParsePhillyTrace(text, "philly.csv", 8);
      if (!t.ok()) return 0;
      Check(*t);
      auto setup =
          gpuorch::sim::DerivePhillySetupFromText(*t, "vc,node num\nvc1,4\n", "vc.csv", 100);
      (void)setup;
      return 0;
    }
    case 1: {
      const size_t nul = text.find('\0');
      if (nul == std::string_view::npos) return 0;
      std::map<std::string, int64_t> best;
      if (!gpuorch::sim::ParsePolluxJcts(text.substr(0, nul), "summary.json", "workload-1", best)
               .ok()) {
        return 0;
      }
      auto t = gpuorch::sim::ParsePolluxWorkload(text.substr(nul + 1), "workload-1.csv", "pollux",
                                                 best, 4);
      if (t.ok()) Check(*t);
      return 0;
    }
    default: {
      auto t = gpuorch::sim::ParseGenericTrace(text, data[0] % 4 == 2 ? "jobs.csv" : "jobs.jsonl");
      if (t.ok()) Check(*t);
      return 0;
    }
  }
}
