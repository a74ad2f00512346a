#pragma once

// The haproxy.cfg, routes map and Lua script that `gpuorch gateway --write-config DIR`
// writes (docs/inference.md, "Serving path (HAProxy)" and "Scale from zero").
//
// Scale from zero, found with Debian's HAProxy 2.6.12: a backend with no usable server
// answers 503 at once, whether it is empty or keeps a server in maintenance with a maxconn
// (queueing only happens behind servers that are up and full; `timeout queue` never
// applies), so HAProxy's queue cannot hold the first request. A Lua action can: it
// runs before the backend is chosen, and while the routed backend has no active server it
// sleeps (core.msleep, which yields and does not count toward tune.lua.session-timeout) and
// polls the backend's `act` count from Proxy:get_stats(), up to the hold timeout. Lua's
// `core.backends[b].servers` does not see servers added at run time in 2.6, but the backend's
// counters do. Held requests are counted per backend in a Lua table that a Lua service
// publishes on the stats frontend (`/gpuorch/waiting`, Prometheus text,
// gpuorch_haproxy_waiting_requests{proxy="svc_K"}), so the gateway can report them as load.
#include <string>

namespace gpuorch::gateway {

struct HaproxyConfigOptions {
  std::string dir;                            // where the three files go (absolute)
  std::string bind = "127.0.0.1:8080";        // the services' frontend
  std::string stats_bind = "127.0.0.1:8405";  // /metrics and /gpuorch/waiting
  std::string socket;                         // runtime API; default DIR/haproxy.sock
  int slots = 16;                             // backends svc_0..svc_{slots-1}
  int hold_timeout_s = 60;                    // scale from zero: how long a request waits
  int server_timeout_s = 600;                 // a completion may take long
};

// File names inside `dir`.
inline constexpr const char* kConfigFile = "haproxy.cfg";
inline constexpr const char* kRoutesMapName = "gpuorch-routes.map";
inline constexpr const char* kLuaFile = "gpuorch-hold.lua";

std::string HaproxyConfig(const HaproxyConfigOptions& o);
std::string HoldLuaScript();

}  // namespace gpuorch::gateway
