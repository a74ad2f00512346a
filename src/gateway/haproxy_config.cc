#include "gateway/haproxy_config.h"

#include <sstream>

namespace gpuorch::gateway {

std::string HaproxyConfig(const HaproxyConfigOptions& o) {
  const std::string socket = o.socket.empty() ? o.dir + "/haproxy.sock" : o.socket;
  std::ostringstream c;
  c << "# Written by `gpuorch gateway --write-config` (docs/inference.md). The gateway keeps the\n"
       "# backends' servers and the routes map in step with the services at run time.\n"
       "global\n"
       "  stats socket "
    << socket
    << " mode 600 level admin\n"
       "  lua-load "
    << o.dir << "/" << kLuaFile
    << "\n\n"
       "defaults\n"
       "  mode http\n"
       "  timeout connect 5s\n"
       "  timeout client "
    << o.server_timeout_s
    << "s\n"
       "  timeout server "
    << o.server_timeout_s
    << "s\n"
       "  timeout http-request 30s\n"
       "  # Requests queued behind servers at their maxconn wait as long as a held one.\n"
       "  timeout queue "
    << o.hold_timeout_s
    << "s\n"
       "  # A replica that refuses a connection (it just exited) costs a retry elsewhere.\n"
       "  retries 2\n"
       "  option redispatch 1\n\n"
       "frontend gpuorch_stats\n"
       "  bind "
    << o.stats_bind
    << "\n"
       "  http-request use-service prometheus-exporter if { path /metrics }\n"
       "  http-request use-service lua.gpuorch_waiting if { path /gpuorch/waiting }\n"
       "  http-request return status 404 content-type text/plain string \"not found\\n\"\n\n"
       "# Routing: /svc/<name>/REST is sent to the service's backend as /REST.\n"
       "frontend gpuorch_services\n"
       "  bind "
    << o.bind
    << "\n"
       "  http-request set-var(txn.gpuorch_be) path,map_beg("
    << o.dir << "/" << kRoutesMapName
    << ")\n"
       "  http-request return status 404 content-type text/plain string \"no such service\\n\" "
       "unless { var(txn.gpuorch_be) -m found }\n"
       "  # Scale from zero: hold the request while the backend has no ready server.\n"
       "  http-request lua.gpuorch_hold "
    << o.hold_timeout_s * 1000
    << "\n"
       "  http-request set-path %[path,regsub(^/svc/[^/]+/?,/)]\n"
       "  use_backend %[var(txn.gpuorch_be)]\n";
  for (int i = 0; i < o.slots; ++i) {
    c << "\nbackend svc_" << i << "\n  balance leastconn\n";
  }
  return c.str();
}

std::string HoldLuaScript() {
  return R"(-- Written by `gpuorch gateway --write-config` (docs/inference.md, "Scale from zero").
-- gpuorch_hold: while the request's backend has no active server, sleep and poll, up to
-- the timeout (ms) given as the action's argument; then let HAProxy route it (a backend still
-- empty answers 503). gpuorch_waiting: the held requests per backend, Prometheus text.
-- One Lua state shared by all threads (lua-load), so the table needs no lock. Each hold is
-- an entry with its deadline, so one whose stream is aborted mid-sleep stops counting at
-- its deadline at the latest.
local held = {}
local seq = 0

local function now_ms()
  local t = core.now()
  return t.sec * 1000 + t.usec / 1000
end

local function active(be)
  return tonumber(be:get_stats()["act"]) or 0
end

core.register_action("gpuorch_hold", {"http-req"}, function(txn, timeout_ms)
  local name = txn:get_var("txn.gpuorch_be")
  if name == nil then return end
  local be = core.backends[name]
  if be == nil or active(be) > 0 then return end
  seq = seq + 1
  local id = seq
  local deadline = now_ms() + tonumber(timeout_ms)
  held[id] = {backend = name, deadline = deadline}
  while now_ms() < deadline and active(be) == 0 do
    core.msleep(50)
  end
  held[id] = nil
end, 1)

core.register_service("gpuorch_waiting", "http", function(applet)
  local counts = {}
  local now = now_ms()
  for id, h in pairs(held) do
    if h.deadline < now then
      held[id] = nil
    else
      counts[h.backend] = (counts[h.backend] or 0) + 1
    end
  end
  local body = "# HELP gpuorch_haproxy_waiting_requests Requests held until their service has a ready server.\n" ..
               "# TYPE gpuorch_haproxy_waiting_requests gauge\n"
  for name, _ in pairs(core.backends) do
    if string.match(name, "^svc_%d+$") then
      body = body .. "gpuorch_haproxy_waiting_requests{proxy=\"" .. name .. "\"} " ..
             tostring(counts[name] or 0) .. "\n"
    end
  end
  applet:set_status(200)
  applet:add_header("content-type", "text/plain; version=0.0.4")
  applet:add_header("content-length", tostring(string.len(body)))
  applet:start_response()
  applet:send(body)
end)
)";
}

}  // namespace gpuorch::gateway
