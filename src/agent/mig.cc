#include "agent/mig.h"

#include <algorithm>
#include <utility>

namespace gpuorch::agent {

using core::MigLayout;
using core::MigModel;
using core::Result;
using core::Status;

// GpuBackend's default: no MIG.
Result<std::unique_ptr<MigDriver>> GpuBackend::OpenMig(const std::vector<GpuInfo>&) {
  return Status::NotFound("the " + std::string(Name()) + " backend has no MIG support");
}

Result<std::unique_ptr<MigDriver>> EmulatedGpuBackend::OpenMig(const std::vector<GpuInfo>& gpus) {
  if (!mig_) return Status::NotFound("no GPU in MIG mode (--emulate-mig not given)");
  return std::unique_ptr<MigDriver>(std::make_unique<EmulatedMigDriver>(node_, gpus));
}

namespace {

std::string Where(int32_t gpu, std::string_view profile, int32_t start) {
  return std::string(profile) + "@" + std::to_string(start) + " on GPU " + std::to_string(gpu);
}

// The layout of `devices`; devices of a profile the model's table lacks are left out and
// named in `unknown`.
MigLayout LayoutOf(const MigModel& m, const std::vector<MigDevice>& devices, std::string* unknown) {
  MigLayout l;
  for (const MigDevice& d : devices) {
    const int p = core::FindProfile(m, d.profile);
    if (p < 0 || !core::MigFitsAt(m, l, p, d.start)) {
      if (unknown != nullptr) {
        *unknown += (unknown->empty() ? "" : ", ") + d.profile + "@" + std::to_string(d.start);
      }
      continue;
    }
    core::MigAdd(l, p, d.start);
  }
  return l;
}

}  // namespace

EmulatedMigDriver::EmulatedMigDriver(std::string node, const std::vector<GpuInfo>& gpus)
    : node_(std::move(node)) {
  for (const GpuInfo& g : gpus) {
    if (g.mig) gpus_[g.index].model = core::FindMigModel(g.model);
  }
}

Result<std::vector<MigDevice>> EmulatedMigDriver::List(int32_t gpu) {
  auto it = gpus_.find(gpu);
  if (it == gpus_.end() || it->second.model == nullptr) {
    return Status::NotFound("GPU " + std::to_string(gpu) + " is not in MIG mode");
  }
  const Gpu& g = it->second;
  std::vector<MigDevice> out;
  for (const core::MigInstance& i : g.layout.view()) {
    MigDevice d;
    d.start = i.start;
    d.profile = std::string(g.model->profiles[static_cast<size_t>(i.profile)].name);
    d.uuid = "MIG-emulated-" + node_ + "-" + std::to_string(gpu) + "-" + std::to_string(i.start) +
             "-" + d.profile;
    d.gi_id = g.gi_ids.at(i.start);
    out.push_back(std::move(d));
  }
  return out;
}

Status EmulatedMigDriver::Create(int32_t gpu, const core::MigProfile& profile, int32_t start) {
  auto it = gpus_.find(gpu);
  if (it == gpus_.end() || it->second.model == nullptr) {
    return Status::NotFound("GPU " + std::to_string(gpu) + " is not in MIG mode");
  }
  Gpu& g = it->second;
  const int p = core::FindProfile(*g.model, profile.name);
  if (p < 0 || start < 0 || start >= core::kMigMemorySlices ||
      !core::MigFitsAt(*g.model, g.layout, p, start)) {
    return Status::Precondition("cannot create " + Where(gpu, profile.name, start) +
                                ": no room there");
  }
  core::MigAdd(g.layout, p, start);
  g.gi_ids[start] = g.next_gi_id++;
  return Status::Ok();
}

Status EmulatedMigDriver::Destroy(int32_t gpu, const MigDevice& device) {
  auto it = gpus_.find(gpu);
  if (it == gpus_.end() || !core::MigRemove(it->second.layout, static_cast<int>(device.start))) {
    return Status::NotFound("no instance at " + Where(gpu, device.profile, device.start));
  }
  it->second.gi_ids.erase(device.start);
  return Status::Ok();
}

Result<std::unique_ptr<MigManager>> MigManager::Open(std::unique_ptr<MigDriver> driver,
                                                     const std::vector<GpuInfo>& gpus, LogFn log) {
  std::unique_ptr<MigManager> m(new MigManager(std::move(driver), std::move(log)));
  for (const GpuInfo& g : gpus) {
    if (!g.mig) continue;
    Gpu gpu;
    gpu.model = core::FindMigModel(g.model);
    if (gpu.model == nullptr) {
      m->Log("GPU " + std::to_string(g.index) + " (" + g.model +
             ") is in MIG mode, but gpuorch has no MIG profile table for it: its instances "
             "are not managed");
      continue;
    }
    gpu.report.gpu = g.index;
    if (Status s = m->Refresh(g.index, gpu); !s.ok()) return s;
    m->gpus_[g.index] = std::move(gpu);
  }
  if (m->gpus_.empty()) return Status::NotFound("no GPU in MIG mode");
  return m;
}

Status MigManager::Refresh(int32_t index, Gpu& gpu) {
  Result<std::vector<MigDevice>> devices = driver_->List(index);
  if (!devices.ok()) return devices.status();
  std::string unknown;
  gpu.report.layout = core::FormatLayout(*gpu.model, LayoutOf(*gpu.model, *devices, &unknown));
  gpu.report.devices = std::move(devices).value();
  if (!unknown.empty())
    Log("GPU " + std::to_string(index) + ": MIG instances not used: " + unknown);
  return Status::Ok();
}

void MigManager::Fill(std::vector<GpuInfo>& gpus) const {
  for (GpuInfo& g : gpus) {
    auto it = gpus_.find(g.index);
    if (it == gpus_.end()) continue;
    g.mig_layout = it->second.report.layout;
    g.mig_devices = it->second.report.devices;
  }
}

void MigManager::SetDesired(const std::vector<MigDesired>& desired) {
  for (auto& [index, g] : gpus_) {
    const bool listed =
        std::any_of(desired.begin(), desired.end(),
                    [&, index = index](const MigDesired& d) { return d.gpu == index; });
    if (!listed && g.desired) g.desired.reset(), g.tried = false;
  }
  for (const MigDesired& d : desired) {
    auto it = gpus_.find(d.gpu);
    if (it == gpus_.end()) {
      Log("MIG layout for GPU " + std::to_string(d.gpu) + " ignored: not in MIG mode");
      continue;
    }
    Gpu& g = it->second;
    if (g.desired == d) continue;
    g.desired = d;
    g.tried = false;
  }
}

std::string MigManager::Apply(int32_t index, Gpu& gpu, const std::vector<int32_t>& busy) {
  const MigModel& m = *gpu.model;
  Result<MigLayout> target = core::ParseLayout(m, gpu.desired->layout);
  if (!target.ok()) {
    return "desired layout '" + gpu.desired->layout + "' not applied: " + target.status().message();
  }
  std::vector<std::string> errors;
  Result<std::vector<MigDevice>> now = driver_->List(index);
  if (!now.ok()) return now.status().message();
  MigLayout have = LayoutOf(m, *now, nullptr);
  // Destroy what the target does not list, unless a task runs on it.
  for (const MigDevice& d : *now) {
    const int p = core::FindProfile(m, d.profile);
    const auto& wanted = target->view();
    const bool listed = std::any_of(wanted.begin(), wanted.end(), [&](const core::MigInstance& i) {
      return i.profile == p && i.start == d.start;
    });
    if (listed) continue;
    if (std::find(busy.begin(), busy.end(), d.start) != busy.end()) {
      errors.push_back(d.profile + "@" + std::to_string(d.start) + " kept: a running task uses it");
      continue;
    }
    if (Status s = driver_->Destroy(index, d); !s.ok()) {
      errors.push_back(s.message());
      continue;
    }
    (void)core::MigRemove(have, d.start);
  }
  // Create what is missing, at its exact start.
  for (const core::MigInstance& i : target->view()) {
    const auto& present = have.view();
    if (std::find(present.begin(), present.end(), i) != present.end()) continue;
    const core::MigProfile& p = m.profiles[static_cast<size_t>(i.profile)];
    if (!core::MigFitsAt(m, have, i.profile, i.start)) {
      errors.push_back("cannot create " + std::string(p.name) + "@" + std::to_string(i.start) +
                       ": overlaps an instance kept");
      continue;
    }
    if (Status s = driver_->Create(index, p, i.start); !s.ok()) {
      errors.push_back(s.message());
      continue;
    }
    core::MigAdd(have, i.profile, i.start);
  }
  std::string out;
  for (const std::string& e : errors) out += (out.empty() ? "" : "; ") + e;
  return out;
}

bool MigManager::Reconcile(const std::vector<MigPlacement>& busy_tasks) {
  bool changed = false;
  for (auto& [index, gpu] : gpus_) {
    if (!gpu.desired) continue;
    std::vector<int32_t> busy;
    for (const MigPlacement& p : busy_tasks) {
      if (p.gpu == index) busy.push_back(p.start);
    }
    std::sort(busy.begin(), busy.end());
    const bool reached = gpu.report.layout == gpu.desired->layout && gpu.report.error.empty() &&
                         gpu.report.generation == gpu.desired->generation;
    if (reached || (gpu.tried && busy == gpu.tried_busy)) continue;
    gpu.tried = true;
    gpu.tried_busy = busy;
    const MigReport before = gpu.report;
    std::string error = gpu.report.layout == gpu.desired->layout ? "" : Apply(index, gpu, busy);
    if (Status s = Refresh(index, gpu); !s.ok()) {
      error += (error.empty() ? "" : "; ") + s.message();
    }
    gpu.report.generation = gpu.desired->generation;
    if (error.empty() && gpu.report.layout != gpu.desired->layout) {
      error = "layout is '" + gpu.report.layout + "' after applying '" + gpu.desired->layout + "'";
    }
    gpu.report.error = error;
    if (gpu.report == before) continue;
    changed = true;
    ++changes_;
    const std::string gen = " (generation " + std::to_string(gpu.desired->generation) + ")";
    if (error.empty()) {
      Log("GPU " + std::to_string(index) + ": MIG layout '" + gpu.report.layout + "' applied" +
          gen);
    } else if (error != before.error) {
      Log("GPU " + std::to_string(index) + ": MIG layout '" + gpu.desired->layout +
          "' not reached" + gen + ": " + error);
    }
  }
  return changed;
}

std::vector<MigReport> MigManager::Reports() const {
  std::vector<MigReport> out;
  for (const auto& [index, gpu] : gpus_) out.push_back(gpu.report);
  return out;
}

std::optional<std::string> MigManager::Uuid(int32_t gpu, int32_t start,
                                            std::string_view profile) const {
  auto it = gpus_.find(gpu);
  if (it == gpus_.end()) return std::nullopt;
  for (const MigDevice& d : it->second.report.devices) {
    if (d.start == start && d.profile == profile) return d.uuid;
  }
  return std::nullopt;
}

std::vector<MigDevice> MigManager::Devices(int32_t gpu) const {
  auto it = gpus_.find(gpu);
  return it == gpus_.end() ? std::vector<MigDevice>{} : it->second.report.devices;
}

}  // namespace gpuorch::agent
