// `gpuorch submit -f FILE`: a spec file in YAML or JSON (the first input byte picks the
// name, so both readers and the content sniffing get inputs), then the request body the
// flags build over it. A spec that reads must also survive `-o yaml`: JsonToYaml's output
// reads back as the same JSON.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cli/client/submit_spec.h"
#include "cli/client/yaml_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string path = data[0] % 2 == 0 ? "spec.yaml" : "spec.json";
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  auto spec = gpuorch::cli::ParseSpecText(text, path);
  if (!spec.ok()) {
    if (spec.failure().exit_code != gpuorch::cli::kExitUsage) std::abort();
    return 0;
  }
  const std::string yaml = gpuorch::cli::JsonToYaml(spec.value());
  auto back = gpuorch::cli::ParseSpecText(yaml, "out.yaml");
  if (!back.ok() || back.value() != spec.value()) std::abort();

  gpuorch::cli::SubmitFlags flags;
  flags.tasks = 2;
  flags.env = {"A=1"};
  flags.models = {"H100"};
  flags.topology = "rack";
  flags.require_topology = true;
  auto body = gpuorch::cli::BuildSubmitBody(flags, spec.value());
  if (body.ok()) (void)body.value().dump();
  return 0;
}
