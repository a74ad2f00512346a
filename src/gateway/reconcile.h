#pragma once

// What HAProxy must be told so that each service's backend matches its replicas. Pure: the
// desired services and HAProxy's observed state in, runtime API commands out.
//
// Routing (docs/inference.md, "Serving path (HAProxy)"): the configuration declares a fixed
// pool of empty backends svc_0..svc_{N-1} (HAProxy 2.6 cannot create backends at run time)
// and a map file whose entries "/svc/<name>/ svc_K" route a path prefix to a backend. A
// service gets the lowest free slot through `add map`; a slot is free when no map entry
// points at it and it holds no server.
//
// Servers are named "w<workload>_<host>_<port>", so a replica that moves (a new attempt on
// another port or node) is a new server and the old one is drained and deleted.
// Per replica listed for the service:
//   ready, not draining -> present and ready (`add server` + `set server ... state ready`)
//   draining            -> `state drain` when present (no new requests); never added
//   not ready           -> `state maint` when present; never added
// A server whose replica is no longer listed is put in drain, and once its current sessions
// are known to be 0 it goes to maint and is deleted (`del server` needs maint and no
// connections). Unknown sessions (no exporter sample) never delete.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "gateway/runtime_api.h"

namespace gpuorch::gateway {

struct Replica {
  int64_t workload = 0;
  std::string address;  // "host:port"
  bool ready = false;
  bool draining = false;
};

struct Service {
  int64_t id = 0;
  std::string name;
  std::vector<Replica> replicas;
};

struct Observed {
  std::vector<std::string> slots;    // the svc_K backends, in order
  std::vector<MapEntry> routes;      // the map file's entries
  std::vector<ServerState> servers;  // `show servers state` of the slots
  // haproxy_server_current_sessions per (backend, server); absent = unknown.
  std::map<std::pair<std::string, std::string>, int64_t> sessions;
};

struct Plan {
  std::vector<std::string> commands;          // in order
  std::map<int64_t, std::string> backend_of;  // service id -> its slot (routed services)
  std::vector<std::string> problems;          // services that could not be routed, and why
};

// "/svc/<name>/".
std::string RouteKey(const std::string& service_name);
// "w<workload>_<host>_<port>" with characters HAProxy refuses replaced by '-'.
std::string ServerName(const Replica& r);
// The workload of a server named by ServerName; -1 for any other name.
int64_t WorkloadOfServer(const std::string& server_name);
// Whether a service name can be routed: [A-Za-z0-9._-]+.
bool RoutableName(const std::string& name);

// The commands, in a safe order: routes first, then per backend adds before drains and
// deletes. `map_file` is the routes map's file as `show map` lists it.
Plan Reconcile(const std::vector<Service>& desired, const Observed& observed,
               const std::string& map_file);

}  // namespace gpuorch::gateway
