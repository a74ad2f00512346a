#pragma once

#include <functional>
#include <string>
#include <vector>

#include "server/auth.h"

namespace gpuorch::server {

// Which audit entries a route writes.
enum class AuditMode : uint8_t {
  kNone,     // reads
  kAlways,   // every mutating request, allowed or denied
  kDenials,  // agents' heartbeats: their liveness, many a second at scale; denials only
};

// The authorization of one route, before its handler runs: who may call it at all. A
// handler narrows it further where the answer depends on the resource (a workload's queue,
// the node named in a body): see docs/security.md for the whole matrix.
struct RoutePolicy {
  std::string method;
  std::string pattern;  // as given to Server::Route
  std::string verb;     // what the audit log calls it
  AuditMode audit = AuditMode::kNone;
  bool public_route = false;  // no token needed (/healthz, /ui/; /metrics when metrics_public)
  // Whether the caller may use the route; `captures` are the path's "*" segments.
  std::function<bool(const Principal& caller, const std::vector<std::string>& captures)> allows;
};

// Every route of the server. A route without an entry here does not start (default deny).
const std::vector<RoutePolicy>& RoutePolicies();
const RoutePolicy* FindRoutePolicy(const std::string& method, const std::string& pattern);

}  // namespace gpuorch::server
