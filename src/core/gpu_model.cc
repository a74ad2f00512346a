#include "core/gpu_model.h"

namespace gpuorch::core {

Result<GpuModelId> GpuModelRegistry::Intern(std::string_view name) {
  if (name.empty()) return Status::Invalid("gpu model: name is empty");
  if (auto it = ids_.find(std::string(name)); it != ids_.end()) return it->second;
  if (names_.size() >= kMaxNamedGpuModels) {
    return Status::Invalid("gpu model: more than " + std::to_string(kMaxNamedGpuModels) +
                           " distinct models in one cluster");
  }
  GpuModelId id(static_cast<uint32_t>(names_.size()));
  names_.emplace_back(name);
  ids_.emplace(std::string(name), id);
  return id;
}

GpuModelId GpuModelRegistry::Find(std::string_view name) const {
  auto it = ids_.find(std::string(name));
  return it == ids_.end() ? GpuModelId() : it->second;
}

}  // namespace gpuorch::core
