// POST /v1/workloads: the body as the server parses it (JSON, then ParseWorkload against a
// config with a parent and two leaf queues). A body that is accepted must be accepted again,
// unchanged, from its canonical form: that form is what the store keeps and what a
// restarted server parses (Controller::Load).
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>

#include "server/api_types.h"
#include "server/config.h"

namespace {

using gpuorch::server::ApiError;
using gpuorch::server::Json;
using gpuorch::server::ParsedWorkload;

struct Setup {
  gpuorch::server::ServerConfig config;
  std::map<std::string, gpuorch::core::QueueId> leaves;
  gpuorch::core::GpuModelRegistry models;
  Setup() {
    auto c = gpuorch::server::ParseConfig(
        "queues:\n"
        "  - {name: org}\n"
        "  - {name: team-a, parent: org}\n"
        "  - {name: team-b, parent: org}\n");
    if (!c.ok()) std::abort();
    config = *c;
    leaves = {{"team-a", gpuorch::core::QueueId(1)}, {"team-b", gpuorch::core::QueueId(2)}};
    (void)models.Intern("H100-80GB");
    (void)models.Intern("A100-40GB");
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Setup* setup = new Setup();
  const Json body = Json::parse(data, data + size, nullptr, false);
  if (body.is_discarded()) return 0;
  gpuorch::core::GpuModelRegistry models = setup->models;
  ParsedWorkload parsed;
  ApiError error;
  if (!ParseWorkload(body, setup->config, setup->leaves, models, parsed, error)) {
    // Every refusal names what is wrong.
    if (error.code != 400 || error.message.empty()) std::abort();
    return 0;
  }
  ParsedWorkload again;
  if (!ParseWorkload(parsed.CanonicalSpec(), setup->config, setup->leaves, models, again, error)) {
    std::abort();  // the stored form would fail the workload after a restart
  }
  if (again.canonical_json != parsed.canonical_json) std::abort();
  return 0;
}
