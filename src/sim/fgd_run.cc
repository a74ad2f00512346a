#include "sim/fgd_run.h"

#include <algorithm>
#include <cmath>

#include "sched/policy/fragmentation.h"
#include "sim/engine.h"

namespace gpuorch::sim {

using core::NodeId;

namespace {

// The cluster fragmentation of §5.6 kept per node in integers: sum over typical pods of
// (pod count x frag) in milli-GPU; divided by the kept pod count it is F(n). Integers make
// the running total exact whatever the order of updates.
class FragMeter {
 public:
  FragMeter(std::vector<sched::TypicalTask> tasks, const TypicalPods& typical)
      : tasks_(std::move(tasks)) {
    for (const TypicalPod& p : typical.kept) counts_.push_back(p.pods);
  }
  int64_t Node(const sched::NodeState& n) const {
    int64_t f = 0;
    for (size_t i = 0; i < tasks_.size(); ++i) {
      f += counts_[i] * sched::TaskFragment(n, tasks_[i].task);
    }
    return f;
  }

 private:
  std::vector<sched::TypicalTask> tasks_;
  std::vector<int64_t> counts_;
};

// Per-bucket sums of the logged rows (§6).
struct BucketSums {
  std::array<int64_t, kBuckets + 2> rows{};
  std::array<int64_t, kBuckets + 2> alloc_centi{};
  std::array<double, kBuckets + 2> frag{};
  std::array<double, kBuckets + 2> ratio{};
};

}  // namespace

int64_t RoundHalfEven(int64_t num, int64_t den) {
  const int64_t q = num / den, r = num % den;
  if (2 * r > den || (2 * r == den && (q & 1))) return q + 1;
  return q;
}

FgdWorkload PrepareWorkload(std::string name, std::vector<OpenbNode> nodes,
                            std::vector<OpenbPod> pods) {
  FgdWorkload w;
  w.name = std::move(name);
  w.typical = ComputeTypicalPods(pods);
  std::stable_sort(nodes.begin(), nodes.end(),
                   [](const OpenbNode& a, const OpenbNode& b) { return a.sn < b.sn; });
  std::stable_sort(pods.begin(), pods.end(),
                   [](const OpenbPod& a, const OpenbPod& b) { return a.name < b.name; });
  for (const OpenbNode& n : nodes) w.capacity_milli += int64_t{n.gpu} * core::kMilliGpu;
  w.nodes = std::move(nodes);
  w.pods = std::move(pods);
  return w;
}

double EmptyClusterFragPct(const FgdWorkload& w) {
  ModelTable models(w.nodes);
  FragMeter meter(ToTypicalTasks(w.typical, models), w.typical);
  int64_t total = 0;
  for (const OpenbNode& on : w.nodes) {
    sched::NodeState n;
    n.model = models.Node(on.model);
    n.gpu_count = static_cast<int8_t>(on.gpu);
    n.cpu_free = on.cpu_milli;
    for (int j = 0; j < on.gpu; ++j) n.gpu_free[j] = core::kMilliGpu;
    total += meter.Node(n);
  }
  return 100.0 * static_cast<double>(total) / static_cast<double>(w.typical.kept_pods) /
         static_cast<double>(w.capacity_milli);
}

core::Result<FgdRunResult> RunFgd(const FgdWorkload& w, const std::string& policy, uint64_t seed) {
  core::Rng rng(seed);
  const Arrivals arrivals =
      MakeArrivals(w.pods, w.nodes.size(), w.capacity_milli, /*ratio_percent=*/130, rng);
  ModelTable models(w.nodes);
  std::vector<sched::TypicalTask> typical = ToTypicalTasks(w.typical, models);
  FragMeter meter(typical, w.typical);

  // The engine gets its own generator, seeded from the run's after the arrival sequence
  // and node ranks are drawn (FGD-PROTOCOL.md §2.1 order of use).
  auto created = SimEngine::Create(policy, rng.Next());
  if (!created.ok()) return created.status();
  SimEngine& engine = *created.value();
  engine.SetTypicalTasks(typical);
  for (size_t i = 0; i < w.nodes.size(); ++i) {
    const OpenbNode& on = w.nodes[i];
    core::NodeSpec spec;
    spec.name = on.sn;
    spec.gpu_count = on.gpu;
    spec.gpu_model = models.Node(on.model);
    spec.milli_cpu = on.cpu_milli;
    spec.memory_mib = on.memory_mib;
    // The node id is the rank, so the engine's lowest-id tie-break is the lowest rank.
    if (core::Status s = engine.AddNode(NodeId(arrivals.rank[i]), spec); !s.ok()) return s;
  }
  const sched::ClusterState& cluster = engine.cluster();
  std::vector<int64_t> node_frag(w.nodes.size());
  int64_t frag_total = 0;
  for (const sched::NodeState& n : cluster.nodes()) {
    node_frag[n.id.value()] = meter.Node(n);
    frag_total += node_frag[n.id.value()];
  }

  FgdRunResult r;
  r.total_gpus = w.capacity_milli / core::kMilliGpu;
  const double kept = static_cast<double>(w.typical.kept_pods);
  r.empty_frag_pct =
      100.0 * static_cast<double>(frag_total) / kept / static_cast<double>(w.capacity_milli);
  BucketSums sums;
  int64_t arrived = 0, used = 0;
  std::vector<sched::TaskRequest> tasks(w.pods.size());
  for (size_t i = 0; i < w.pods.size(); ++i) tasks[i] = ToTask(w.pods[i], models);
  for (uint32_t index : arrivals.sequence) {
    const sched::TaskRequest& t = tasks[index];
    arrived += t.total_milli_gpu();
    ++r.pods;
    if (auto node = engine.Place(t)) {
      used += t.total_milli_gpu();
      const int64_t f = meter.Node(cluster.node(*node));
      frag_total += f - node_frag[node->value()];
      node_frag[node->value()] = f;
    } else {
      ++r.failed;
    }
    const int64_t bucket =
        std::min<int64_t>(RoundHalfEven(arrived * 100, w.capacity_milli), kBuckets + 1);
    const int64_t idle = w.capacity_milli - used;
    const double phi = static_cast<double>(frag_total) / kept;
    sums.rows[bucket] += 1;
    sums.alloc_centi[bucket] += RoundHalfEven(used * 10000, w.capacity_milli);
    sums.frag[bucket] += phi;
    sums.ratio[bucket] += idle > 0 ? 100.0 * phi / static_cast<double>(idle) : 0.0;
  }
  r.final_alloc_milli = used;

  for (int k = 0; k < kBuckets; ++k) {
    int64_t rows = sums.rows[k], alloc = sums.alloc_centi[k];
    double frag = sums.frag[k], ratio = sums.ratio[k];
    if (rows == 0) {  // fall back to the neighbouring buckets (never needed in practice)
      for (int d : {-1, 1}) {
        if (k + d < 0) continue;
        rows += sums.rows[k + d];
        alloc += sums.alloc_centi[k + d];
        frag += sums.frag[k + d];
        ratio += sums.ratio[k + d];
      }
    }
    if (rows == 0) {
      r.alloc_centi[k] = -1;
      continue;
    }
    r.alloc_centi[k] = RoundHalfEven(alloc, rows);
    const double mean_phi = frag / static_cast<double>(rows);
    r.frag_pct[k] =
        std::nearbyint(100.0 * 100.0 * mean_phi / static_cast<double>(w.capacity_milli)) / 100.0;
    r.frag_ratio_pct[k] = ratio / static_cast<double>(rows);
  }
  return r;
}

}  // namespace gpuorch::sim
