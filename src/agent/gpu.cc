#include "agent/gpu.h"

#include <cctype>
#include <charconv>
#include <cstdio>
#include <utility>

#include "agent/telemetry.h"
#include "core/mig.h"

namespace gpuorch::agent {
namespace {

using core::Result;
using core::Status;

// Memory of models whose names usually carry no size. Nominal sizes, as the product sheets
// state them; a spec that needs another size says so with a suffix ("V100-32GB").
struct KnownModel {
  std::string_view name;
  int64_t gb;
};
constexpr KnownModel kKnownModels[] = {
    {"T4", 16},   {"L4", 24},    {"A10", 24},   {"A10G", 24},  {"A30", 24},
    {"A40", 48},  {"L40", 48},   {"L40S", 48},  {"V100", 16},  {"A100", 40},
    {"H100", 80}, {"H200", 141}, {"B200", 180}, {"GH200", 96},
};

bool ParseInt(std::string_view s, int64_t& v) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// "80GB" -> 80; anything else -> 0.
int64_t SizeTokenGb(std::string_view token) {
  if (token.size() < 3 || token.substr(token.size() - 2) != "GB") return 0;
  int64_t gb = 0;
  return ParseInt(token.substr(0, token.size() - 2), gb) ? gb : 0;
}

bool IsModelChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
}

}  // namespace

Result<EmulatedSpec> ParseEmulatedSpec(std::string_view spec) {
  const std::string quoted = "--emulate-gpus '" + std::string(spec) + "': ";
  const size_t x = spec.find('x');
  if (x == std::string_view::npos || x == 0) {
    return Status::Invalid(quoted + "expected <count>x<model>, e.g. 8xH100-80GB");
  }
  EmulatedSpec out;
  int64_t count = 0;
  if (!ParseInt(spec.substr(0, x), count) || count < 1 || count > 16) {
    return Status::Invalid(quoted + "count must be an integer in 1..16");
  }
  out.count = static_cast<int32_t>(count);
  out.model = std::string(spec.substr(x + 1));
  if (out.model.empty()) return Status::Invalid(quoted + "missing model after 'x'");
  for (char c : out.model) {
    if (!IsModelChar(c))
      return Status::Invalid(quoted + "model has a character outside [A-Za-z0-9._-]");
  }
  const size_t dash = out.model.rfind('-');
  if (dash != std::string::npos) {
    const std::string_view suffix = std::string_view(out.model).substr(dash + 1);
    if (suffix.size() >= 2 && suffix.substr(suffix.size() - 2) == "GB") {
      const int64_t gb = SizeTokenGb(suffix);
      if (gb < 1 || gb > 4096) {
        return Status::Invalid(quoted + "memory suffix '" + std::string(suffix) +
                               "' must be <N>GB with N in 1..4096");
      }
      out.memory_mib = gb * 1024;
      return out;
    }
  }
  for (const KnownModel& m : kKnownModels) {
    if (m.name == out.model) {
      out.memory_mib = m.gb * 1024;
      return out;
    }
  }
  return Status::Invalid(quoted + "unknown model '" + out.model +
                         "'; give its memory as a suffix, e.g. " + out.model + "-24GB");
}

Result<std::vector<GpuInfo>> EmulatedGpuBackend::Discover() {
  if (mig_ && core::FindMigModel(spec_.model) == nullptr) {
    std::string known;
    for (const core::MigModel& m : core::MigModels()) {
      known += (known.empty() ? "" : ", ") + std::string(m.model);
    }
    return Status::Invalid("--emulate-mig: " + spec_.model +
                           " has no MIG profiles in gpuorch (models with MIG: " + known + ")");
  }
  std::vector<GpuInfo> gpus;
  for (int32_t i = 0; i < spec_.count; ++i) {
    GpuInfo g;
    g.index = i;
    g.uuid = "EMU-" + node_ + "-" + std::to_string(i);
    g.model = spec_.model;
    g.raw_name = "emulated " + spec_.model;
    g.memory_mib = spec_.memory_mib;
    char bus[32];
    std::snprintf(bus, sizeof(bus), "00000000:%02X:00.0", 0x10 + i);
    g.pci_bus_id = bus;
    g.mig = mig_;
    gpus.push_back(std::move(g));
  }
  return gpus;
}

Result<std::unique_ptr<TelemetrySource>> EmulatedGpuBackend::OpenTelemetry(
    const std::vector<GpuInfo>& gpus) {
  return std::unique_ptr<TelemetrySource>(std::make_unique<EmulatedTelemetry>(gpus));
}

std::string ModelNameFromProduct(std::string_view product) {
  std::vector<std::string> tokens;
  std::string cur;
  for (char c : product) {
    if (c == ' ' || c == '-' || c == '_') {
      if (!cur.empty()) tokens.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) tokens.push_back(std::move(cur));
  std::string family;
  int64_t gb = 0;
  for (const std::string& t : tokens) {
    if (t == "NVIDIA" || t == "Tesla" || t == "GeForce" || t == "Quadro") continue;
    if (const int64_t size = SizeTokenGb(t); size > 0) {
      if (gb == 0) gb = size;
      continue;
    }
    // A family token starts with a capital and holds a digit (H100, A10G, L40S). Consumer
    // names ("RTX 4090") match nothing and fall back to the flattened product name.
    const bool has_digit = t.find_first_of("0123456789") != std::string::npos;
    if (family.empty() && has_digit && std::isupper(static_cast<unsigned char>(t[0]))) {
      family = t;
    }
  }
  if (family.empty()) {
    std::string flat;
    for (char c : product) {
      if (IsModelChar(c)) flat.push_back(c);
    }
    return flat.empty() ? "unknown" : flat;
  }
  return gb > 0 ? family + "-" + std::to_string(gb) + "GB" : family;
}

}  // namespace gpuorch::agent
