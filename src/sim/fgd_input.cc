#include "sim/fgd_input.h"

#include <algorithm>
#include <map>
#include <tuple>

namespace gpuorch::sim {

TypicalPods ComputeTypicalPods(const std::vector<OpenbPod>& pods) {
  using Key = std::tuple<int64_t, int32_t, int32_t, std::string>;
  std::map<Key, int64_t> counts;
  for (const OpenbPod& p : pods) {
    const bool gpu = p.num_gpu > 0 && p.gpu_milli > 0;
    ++counts[Key{p.cpu_milli, gpu ? p.gpu_milli : 0, gpu ? p.num_gpu : 0,
                 gpu ? p.gpu_spec : std::string()}];
  }
  std::vector<std::pair<Key, int64_t>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    if (a.second != b.second) return a.second > b.second;
    return a.first > b.first;
  });
  TypicalPods out;
  out.distinct_keys = sorted.size();
  out.total_pods = static_cast<int64_t>(pods.size());
  for (const auto& [key, count] : sorted) {
    if (out.kept_pods * 100 >= out.total_pods * 95) break;
    const auto& [cpu, u, k, spec] = key;
    out.kept.push_back(TypicalPod{cpu, u, k, spec, count});
    out.kept_pods += count;
  }
  return out;
}

ModelTable::ModelTable(const std::vector<OpenbNode>& nodes) {
  std::vector<std::string> names;
  for (const OpenbNode& n : nodes) {
    if (!n.model.empty()) names.push_back(n.model);
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  for (const std::string& m : names) (void)registry_.Intern(m);
}

core::ModelSet ModelTable::Spec(const std::string& spec) {
  core::ModelSet set;
  size_t start = 0;
  while (start <= spec.size()) {
    size_t bar = spec.find('|', start);
    if (bar == std::string::npos) bar = spec.size();
    if (bar > start) {
      auto id = registry_.Intern(spec.substr(start, bar - start));
      if (id.ok()) set.Add(*id);
    }
    start = bar + 1;
  }
  return set;
}

sched::TaskRequest ToTask(const OpenbPod& p, ModelTable& models) {
  sched::TaskRequest t;
  t.milli_cpu = p.cpu_milli;
  t.memory_mib = p.memory_mib;
  if (p.num_gpu > 0 && p.gpu_milli > 0) {
    t.gpu_count = p.num_gpu;
    t.gpu_milli = p.gpu_milli;
    t.models = models.Spec(p.gpu_spec);
  } else {
    t.gpu_count = 0;
  }
  return t;
}

std::vector<sched::TypicalTask> ToTypicalTasks(const TypicalPods& typical, ModelTable& models) {
  std::vector<sched::TypicalTask> out;
  for (const TypicalPod& tp : typical.kept) {
    OpenbPod p;
    p.cpu_milli = tp.cpu_milli;
    p.num_gpu = tp.num_gpu;
    p.gpu_milli = tp.gpu_milli;
    p.gpu_spec = tp.gpu_spec;
    out.push_back(
        {ToTask(p, models), static_cast<double>(tp.pods) / static_cast<double>(typical.kept_pods)});
  }
  return out;
}

Arrivals MakeArrivals(const std::vector<OpenbPod>& sorted_pods, size_t node_count,
                      int64_t capacity_milli, int64_t ratio_percent, core::Rng& rng) {
  Arrivals a;
  (void)rng.Next();  // the authors' generator makes one throw-away draw first
  const size_t n = sorted_pods.size();
  a.sequence.resize(n);
  for (size_t i = 0; i < n; ++i) a.sequence[i] = static_cast<uint32_t>(i);
  for (size_t i = n; i-- > 1;) std::swap(a.sequence[i], a.sequence[rng.Uniform(i + 1)]);

  int64_t total = 0;
  for (const OpenbPod& p : sorted_pods) total += p.total_milli();
  const int64_t target = capacity_milli * ratio_percent / 100;
  // Tuning up ends at the first draw of a GPU pod that would pass the target: with no pod
  // asking for any GPU (a CPU-only list) it would never end, so the sequence stays as is.
  const bool any_gpu = std::any_of(sorted_pods.begin(), sorted_pods.end(), [](const OpenbPod& p) {
    return p.num_gpu > 0 && p.gpu_milli > 0;
  });
  if (total < target && any_gpu) {
    while (true) {
      const uint32_t pick = static_cast<uint32_t>(rng.Uniform(n));
      const OpenbPod& p = sorted_pods[pick];
      // The authors test the per-GPU amount, not the pod's total (protocol §8.2).
      if (total + p.gpu_milli * (p.num_gpu > 0 ? 1 : 0) > target) break;
      a.sequence.push_back(pick);
      total += p.total_milli();
    }
  } else {
    while (total > target && !a.sequence.empty()) {
      const size_t pos = rng.Uniform(a.sequence.size());
      total -= sorted_pods[a.sequence[pos]].total_milli();
      a.sequence.erase(a.sequence.begin() + static_cast<std::ptrdiff_t>(pos));
    }
  }
  a.arriving_milli = total;

  // rand.Perm's inside-out shuffle: rank[i] is the rank of the i-th node by name.
  a.rank.resize(node_count);
  for (size_t i = 0; i < node_count; ++i) {
    const size_t j = rng.Uniform(i + 1);
    a.rank[i] = a.rank[j];
    a.rank[j] = static_cast<uint32_t>(i);
  }
  return a;
}

}  // namespace gpuorch::sim
