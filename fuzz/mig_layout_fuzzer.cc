// MIG layout text ("1g.10gb@0,3g.40gb@4"), as agents register and report it and the server
// stores it. The first input byte picks the model's profile table. A layout that parses is
// valid, prints back to text that parses to the same layout, and the placement helpers
// agree with validation on it: every start MigFreeStarts offers keeps it valid.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/mig.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace gpuorch::core;
  if (size == 0) return 0;
  const auto models = MigModels();
  const MigModel& m = models[data[0] % models.size()];
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  auto l = ParseLayout(m, text);
  if (!l.ok()) {
    if (l.status().message().empty()) std::abort();
    return 0;
  }
  if (!ValidateLayout(m, *l).ok()) std::abort();
  auto again = ParseLayout(m, FormatLayout(m, *l));
  if (!again.ok() || !(*again == *l)) std::abort();
  for (size_t p = 0; p < m.profiles.size(); ++p) {
    const uint8_t starts = MigFreeStarts(m, *l, static_cast<int>(p));
    for (int s = 0; s < kMigMemorySlices; ++s) {
      if (!((starts >> s) & 1u)) continue;
      MigLayout more = *l;
      MigAdd(more, static_cast<int>(p), s);
      if (!ValidateLayout(m, more).ok()) std::abort();
    }
  }
  const int64_t weights[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  if (MigFragmentation(m, *l, weights) < 0) std::abort();
  return 0;
}
