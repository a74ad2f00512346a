// The server's API as a sequence of requests against a controller (the JSON bodies of
// register, heartbeat and submit; cancel, drain, watch and the read views), with engine
// cycles in between, then a restart from what was stored. One request per line:
//   register JSON | heartbeat NODE JSON | watch NODE EPOCH AFTER | submit JSON | cancel ID
//   drain NODE | undrain NODE | get ID | step | list
// Whatever the requests, every refusal names its field, and the restarted controller loads
// the store (a server that cannot restart from its own data has lost it).
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

#include "fuzz/memory_store.h"
#include "server/config.h"
#include "server/controller.h"

namespace {

using gpuorch::server::ApiError;
using gpuorch::server::Controller;
using gpuorch::server::Json;

const gpuorch::server::ServerConfig& Config() {
  static const gpuorch::server::ServerConfig* config = [] {
    auto c = gpuorch::server::ParseConfig(
        "queues:\n"
        "  - {name: org, quota: [{model: H100, guaranteed: 8}]}\n"
        "  - {name: a, parent: org}\n"
        "  - {name: b, parent: org}\n");
    if (!c.ok()) std::abort();
    return new gpuorch::server::ServerConfig(*c);
  }();
  return *config;
}

void CheckError(const ApiError& e) {
  if (e.code < 400 || e.code > 599 || e.message.empty()) std::abort();
}

int64_t Int(std::istringstream& in) {
  int64_t v = 0;
  in >> v;
  return v;
}

void Apply(Controller& c, std::string_view line) {
  std::istringstream in{std::string(line)};
  std::string op, node;
  in >> op;
  Json out;
  ApiError e;
  auto body = [&in] {
    std::string rest;
    std::getline(in, rest);
    return Json::parse(rest, nullptr, false);
  };
  if (op == "register") {
    if (!c.Register(body(), out, e)) CheckError(e);
  } else if (op == "heartbeat") {
    in >> node;
    if (!c.Heartbeat(node, body(), out, e)) CheckError(e);
  } else if (op == "watch") {
    in >> node;
    const int64_t epoch = Int(in), after = Int(in);
    gpuorch::server::WatchTicket ticket;
    // wait_ms 0: answered at once, so no timer has to expire it.
    if (!c.WatchDesired(
            node, epoch, after, 0, [](Json) {}, ticket, e))
      CheckError(e);
  } else if (op == "submit") {
    if (!c.Submit(body(), out, e)) CheckError(e);
  } else if (op == "cancel") {
    if (!c.Cancel(Int(in), out, e)) CheckError(e);
  } else if (op == "drain" || op == "undrain") {
    in >> node;
    if (!c.SetDrain(node, op == "drain", out, e)) CheckError(e);
  } else if (op == "get") {
    if (!c.GetWorkload(Int(in), out, e)) CheckError(e);
  } else if (op == "step") {
    c.Step();
  } else if (op == "list") {
    (void)c.ListWorkloads("", "", "");
    (void)c.ListQueues();
    (void)c.ListNodes(2, "");
    (void)c.Metrics();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 8192) return 0;  // long inputs only repeat what short ones do, slower
  std::string_view text(reinterpret_cast<const char*>(data), size);
  gpuorch::fuzz::MemoryStore store;
  {
    auto c = Controller::Create(Config(), &store);
    if (!c.ok()) std::abort();
    int lines = 0;
    while (!text.empty() && lines++ < 64) {
      const size_t nl = text.find('\n');
      Apply(**c, text.substr(0, nl));
      text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    }
    (*c)->Step();
    (*c)->Flush();
    (*c)->Shutdown();
  }
  auto restarted = Controller::Create(Config(), &store);
  if (!restarted.ok()) std::abort();
  (*restarted)->Step();
  (*restarted)->Shutdown();
  return 0;
}
