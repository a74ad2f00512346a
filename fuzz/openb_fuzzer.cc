// The FGD experiment's inputs: the openb node and pod CSVs (the first byte picks which),
// then what the experiment derives from pods (typical pods, model table, engine requests).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/rng.h"
#include "sim/fgd_input.h"
#include "sim/openb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view csv(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 0) {
    auto nodes = gpuorch::sim::ParseOpenbNodes(csv, "nodes.csv");
    if (!nodes.ok()) return 0;
    gpuorch::sim::ModelTable models(*nodes);
    for (const auto& n : *nodes) {
      if (n.gpu > 0 && !models.Node(n.model).valid()) std::abort();
    }
    return 0;
  }
  auto pods = gpuorch::sim::ParseOpenbPods(csv, "pods.csv");
  if (!pods.ok()) return 0;
  const gpuorch::sim::TypicalPods typical = gpuorch::sim::ComputeTypicalPods(*pods);
  if (typical.kept_pods > typical.total_pods) std::abort();
  gpuorch::sim::ModelTable models({});
  for (const auto& p : *pods) (void)gpuorch::sim::ToTask(p, models);
  (void)gpuorch::sim::ToTypicalTasks(typical, models);
  gpuorch::core::Rng rng(42);
  (void)gpuorch::sim::MakeArrivals(*pods, 4, 4 * 8000, 90, rng);
  return 0;
}
