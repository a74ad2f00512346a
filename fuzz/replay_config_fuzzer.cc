// The replay's CLUSTER.yaml and QUEUES.yaml (the first input byte picks which), and the
// YAML a config is written back as: an accepted config reads back from its own output.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "sim/replay/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 0) {
    auto c = gpuorch::sim::ParseClusterYaml(text, "cluster.yaml");
    if (!c.ok()) return 0;
    auto again = gpuorch::sim::ParseClusterYaml(gpuorch::sim::ClusterToYaml(*c), "out.yaml");
    if (!again.ok() || again->nodes.size() != c->nodes.size()) std::abort();
    for (size_t i = 0; i < c->groups.size(); ++i) {
      if (again->groups[i].name != c->groups[i].name) std::abort();
    }
    return 0;
  }
  auto q = gpuorch::sim::ParseQueuesYaml(text, "queues.yaml");
  if (!q.ok()) return 0;
  auto again = gpuorch::sim::ParseQueuesYaml(gpuorch::sim::QueuesToYaml(*q), "out.yaml");
  if (!again.ok() || again->queues.size() != q->queues.size()) std::abort();
  for (size_t i = 0; i < q->queues.size(); ++i) {
    if (again->queues[i].name != q->queues[i].name ||
        again->queues[i].parent != q->queues[i].parent) {
      std::abort();
    }
  }
  return 0;
}
