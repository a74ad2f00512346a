#include "sched/mig_placer.h"

#include <algorithm>
#include <bit>
#include <tuple>

namespace gpuorch::sched {

using core::MigLayout;
using core::MigModel;

void MigMix::Add(const TaskRequest& t, int sign) {
  if (!t.mig()) return;
  const auto key = std::make_pair(int{t.mig_compute}, t.gpu_memory_mib);
  int64_t& n = shapes_[key];
  n += sign;
  if (n <= 0) shapes_.erase(key);
  ++version_;
}

const std::array<int64_t, 8>& MigMix::WeightsFor(const MigModel& m) {
  for (Resolved& r : resolved_) {
    if (r.model != &m) continue;
    if (r.version != version_) {
      r.weights.fill(0);
      for (const auto& [shape, count] : shapes_) {
        const int p = core::ProfileFor(m, shape.first, shape.second);
        if (p >= 0) r.weights[p] += count;
      }
      r.version = version_;
    }
    return r.weights;
  }
  resolved_.push_back(Resolved{&m, version_ - 1, {}});
  return WeightsFor(m);
}

namespace {

// One candidate, ordered by Rank(): class, fragmentation increase, then the busier GPU.
struct Candidate {
  int cls = 0;
  int64_t score = 0;
  int pack = 0;  // compute slices held by tasks on the GPU (more is better)
  int gpu = 0;
  int start = 0;
  MigLayout target;

  auto Rank() const { return std::make_tuple(cls, score, -pack); }
};

int BusyCompute(const MigModel& m, const MigLayout& l, uint8_t busy) {
  int c = 0;
  for (const core::MigInstance& i : l.view()) {
    if ((busy >> i.start) & 1u) c += m.profiles[i.profile].compute_slices;
  }
  return c;
}

// The best candidate on one GPU, or nothing.
std::optional<Candidate> OnGpu(const MigModel& m, const MigLayout& l, uint8_t busy, int p, int gpu,
                               bool reconfigure, std::span<const int64_t> weights) {
  const int pack = BusyCompute(m, l, busy);
  for (const core::MigInstance& i : l.view()) {
    if (i.profile == p && !((busy >> i.start) & 1u)) {
      return Candidate{0, 0, pack, gpu, i.start, l};
    }
  }
  if (!reconfigure) return std::nullopt;
  const int64_t before = core::MigFragmentation(m, l, weights);
  std::optional<Candidate> best;
  auto consider = [&](int cls, const MigLayout& target, int start) {
    Candidate c{cls, core::MigFragmentation(m, target, weights) - before, pack, gpu, start, target};
    if (!best || c.Rank() < best->Rank()) best = c;
  };
  // The second class: a new instance beside the ones that are there.
  for (uint8_t starts = core::MigFreeStarts(m, l, p); starts != 0; starts &= starts - 1) {
    MigLayout target = l;
    core::MigAdd(target, p, std::countr_zero(starts));
    consider(1, target, std::countr_zero(starts));
  }
  if (best) return best;
  // The third: only the instances holding tasks stay; idle ones are kept where they still fit.
  MigLayout kept;
  for (const core::MigInstance& i : l.view()) {
    if ((busy >> i.start) & 1u) core::MigAdd(kept, i.profile, i.start);
  }
  for (uint8_t starts = core::MigFreeStarts(m, kept, p); starts != 0; starts &= starts - 1) {
    const int s = std::countr_zero(starts);
    MigLayout target = kept;
    core::MigAdd(target, p, s);
    for (const core::MigInstance& i : l.view()) {
      if (!((busy >> i.start) & 1u) && core::MigFitsAt(m, target, i.profile, i.start)) {
        core::MigAdd(target, i.profile, i.start);
      }
    }
    consider(2, target, s);
  }
  return best;
}

}  // namespace

std::optional<MigChoice> ChooseMig(const ClusterState& cluster, const TaskRequest& t, WorkloadId as,
                                   ReservationAccess access, MigMix& mix, bool reconfigure,
                                   bool* profile_exists) {
  std::optional<Candidate> best;
  NodeId best_node;
  cluster.ForEachGroup([&](const ClusterState::Group& g, const NodeState& rep) {
    if (g.mig_gpus == 0 || !t.models.Accepts(g.model)) return;
    const MigNodeState& ms = cluster.mig(rep.id);
    if (ms.model == nullptr) return;
    const int p = core::ProfileFor(*ms.model, t.mig_compute, t.gpu_memory_mib);
    if (p < 0) return;
    if (profile_exists != nullptr) *profile_exists = true;
    if (g.max_cpu_free() < t.milli_cpu || g.max_memory_free() < t.memory_mib) return;
    const GpuMask usable = MigUsableGpus(rep, as, access);
    if (usable == 0) return;
    const auto& weights = mix.WeightsFor(*ms.model);
    std::optional<Candidate> in_group;
    for (int j = 0; j < rep.gpu_count; ++j) {
      if (!((usable >> j) & 1u)) continue;
      // A GPU in the same state as an earlier usable one offers the same, at a higher index.
      bool seen = false;
      for (int k = 0; k < j && !seen; ++k) {
        seen = ((usable >> k) & 1u) && ms.layout[k] == ms.layout[j] && ms.busy[k] == ms.busy[j];
      }
      if (seen) continue;
      auto c = OnGpu(*ms.model, ms.layout[j], ms.busy[j], p, j, reconfigure, weights);
      if (c && (!in_group || c->Rank() < in_group->Rank())) in_group = c;
    }
    if (!in_group) return;
    if (best && best->Rank() < in_group->Rank()) return;
    const NodeId node = cluster.LowestFitting(g, t.milli_cpu, t.memory_mib);
    if (!node.valid()) return;
    if (!best || in_group->Rank() < best->Rank() || node < best_node) {
      best = in_group;
      best_node = node;
    }
  });
  if (!best) return std::nullopt;
  MigChoice choice;
  choice.node = best_node;
  choice.gpu = best->gpu;
  choice.start = best->start;
  choice.reconfigure = best->cls > 0;
  choice.target = best->target;
  return choice;
}

}  // namespace gpuorch::sched
