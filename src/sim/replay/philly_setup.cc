// The Philly replay's cluster and quotas, derived from its virtual clusters (VCs).
//
// Sizes come from the Helios artifact's Philly VC table (node counts, 8 GPUs per node, as
// the Helios simulator assumes). Four VCs of the trace are missing there; each gets enough
// nodes for its mean GPU demand over the trace (GPU-seconds / trace span, rounded up to
// whole nodes), and at least enough for its largest job. Every VC owns its nodes under
// `static` and is guaranteed exactly their GPUs under `gpuorch`: the two policies share
// one capacity and one entitlement, and differ only in whether idle GPUs may be lent.
#include <algorithm>
#include <map>

#include "sim/replay/config.h"

namespace gpuorch::sim {

using core::Result;
using core::Status;

Result<DerivedSetup> DerivePhillySetup(const Trace& trace, const std::string& vc_nodes_csv,
                                       int scale_percent) {
  auto text = ReadWholeFile(vc_nodes_csv);
  if (!text.ok()) return text.status();
  return DerivePhillySetupFromText(trace, *text, vc_nodes_csv, scale_percent);
}

Result<DerivedSetup> DerivePhillySetupFromText(const Trace& trace, std::string_view text,
                                               const std::string& vc_nodes_csv, int scale_percent) {
  if (scale_percent < 1 || scale_percent > 10000) {
    return Status::Invalid("--scale: must be in 1..10000 percent");
  }
  constexpr int32_t kNodeGpus = 8;
  std::map<std::string, int64_t> listed;
  std::string_view rest = text;
  int line_no = 0;
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    ++line_no;
    auto f = SplitCsv(line);
    if (line_no == 1 || (f.size() == 1 && f[0].empty())) continue;  // header, blank lines
    int64_t n = 0;
    if (f.size() < 2 || f[0].empty() || !ParseInt(f[1], n) || n < 1 || n > 100000) {
      return Status::Invalid(vc_nodes_csv + ":" + std::to_string(line_no) +
                             ": node num: expected vc,<nodes in 1..100000>");
    }
    listed[std::string(f[0])] = n;
  }
  // Demand per VC: GPU-seconds, largest job and the trace span.
  std::vector<int64_t> gpu_ms(trace.tenants.size(), 0), largest(trace.tenants.size(), 0);
  core::Time span = 1;
  for (const TraceJob& j : trace.jobs) {
    const int64_t gpus = int64_t{j.tasks} * j.gpus_per_task;
    // Saturates: each term is at most 1e5 GPUs x 1e12 ms, but a trace may hold many.
    gpu_ms[j.tenant] =
        std::min(gpu_ms[j.tenant], INT64_MAX / 4 - gpus * j.duration) + gpus * j.duration;
    largest[j.tenant] = std::max(largest[j.tenant], gpus);
    span = std::max(span, j.arrival);
  }
  DerivedSetup d;
  d.cluster.rack_size = 8;
  // VCs in a stable order: by name.
  std::vector<uint32_t> order(trace.tenants.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return trace.tenants[a] < trace.tenants[b]; });
  for (uint32_t t : order) {
    const std::string& vc = trace.tenants[t];
    int64_t nodes = 0;
    if (auto it = listed.find(vc); it != listed.end()) {
      nodes = it->second;
      d.notes.push_back(vc + ": " + std::to_string(nodes) + " nodes (Helios artifact)");
    } else {
      const int64_t mean_demand = (gpu_ms[t] + span - 1) / span;  // GPUs, rounded up
      nodes = std::max((mean_demand + kNodeGpus - 1) / kNodeGpus,
                       (largest[t] + kNodeGpus - 1) / kNodeGpus);
      nodes = std::max<int64_t>(nodes, 1);
      d.notes.push_back(vc + ": " + std::to_string(nodes) +
                        " nodes (not in the Helios table: mean demand " +
                        std::to_string(mean_demand) + " GPUs, largest job " +
                        std::to_string(largest[t]) + " GPUs)");
    }
    nodes = std::min<int64_t>(nodes, 100'000'000);  // scaled below without overflow
    if (scale_percent != 100) nodes = std::max<int64_t>(1, (nodes * scale_percent + 50) / 100);
    if (nodes > 100000) {
      return Status::Invalid(vc + ": needs " + std::to_string(nodes) +
                             " nodes, more than the 100000 a replay cluster may have");
    }
    NodeGroup g;
    g.name = "vc-" + vc;
    g.count = static_cast<int32_t>(nodes);
    g.gpus = kNodeGpus;
    g.model = "gpu";
    g.owner = vc;
    d.cluster.groups.push_back(g);
    TenantQueue q;
    q.name = vc;
    q.guarantee_milli = nodes * kNodeGpus * 1000;
    d.queues.queues.push_back(q);
  }
  for (const auto& [vc, n] : listed) {
    if (std::find(trace.tenants.begin(), trace.tenants.end(), vc) == trace.tenants.end()) {
      d.notes.push_back(vc + ": listed with " + std::to_string(n) +
                        " nodes but has no jobs; left out");
    }
  }
  if (Status s = d.cluster.Expand(); !s.ok()) return s;
  return d;
}

}  // namespace gpuorch::sim
