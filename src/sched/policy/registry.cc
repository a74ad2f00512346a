// PolicyNames() and MakePolicy(): the one place that knows every placement policy.
#include <memory>

#include "sched/policy.h"
#include "sched/policy/bestfit_policy.h"
#include "sched/policy/dotprod_policy.h"
#include "sched/policy/fgd_policy.h"
#include "sched/policy/gpuclustering_policy.h"
#include "sched/policy/gpuorch_policy.h"
#include "sched/policy/gpupacking_policy.h"
#include "sched/policy/random_policy.h"

namespace gpuorch::sched {

const std::vector<std::string>& PolicyNames() {
  static const std::vector<std::string> kNames = {
      "random", "dotprod", "gpuclustering", "gpupacking", "bestfit", "fgd", "gpuorch"};
  return kNames;
}

core::Result<PolicySetup> MakePolicy(std::string_view name, core::Rng* rng) {
  std::unique_ptr<PlacementPolicy> p;
  NodeChoice choice = NodeChoice::kBestScore;
  if (name == "random") {
    if (rng == nullptr) return core::Status::Invalid("policy random: needs a generator");
    p = std::make_unique<RandomPolicy>(rng);
    choice = NodeChoice::kUniform;
  } else if (name == "dotprod") {
    p = std::make_unique<DotProdPolicy>();
  } else if (name == "gpuclustering") {
    p = std::make_unique<GpuClusteringPolicy>();
  } else if (name == "gpupacking") {
    p = std::make_unique<GpuPackingPolicy>();
  } else if (name == "bestfit") {
    p = std::make_unique<BestFitPolicy>();
  } else if (name == "fgd") {
    p = std::make_unique<FgdPolicy>();
  } else if (name == "gpuorch") {
    p = std::make_unique<GpuorchPolicy>();
  } else {
    std::string known;
    for (const std::string& n : PolicyNames()) known += (known.empty() ? "" : ", ") + n;
    return core::Status::Invalid("policy: unknown name '" + std::string(name) +
                                 "' (known: " + known + ")");
  }
  return PolicySetup{std::move(p), choice};
}

}  // namespace gpuorch::sched
