#include "server/route_policy.h"

namespace gpuorch::server {
namespace {

using Captures = std::vector<std::string>;

bool Anyone(const Principal&, const Captures&) { return true; }
bool Admin(const Principal& p, const Captures&) { return p.admin(); }
// Admins, operators, tenants and readers (what each sees is filtered by queue).
bool Readers(const Principal& p, const Captures&) { return p.ReadsCluster(); }
bool Submitters(const Principal& p, const Captures&) {
  return p.role == Role::kAdmin || p.role == Role::kTenant;
}
bool NodeManagers(const Principal& p, const Captures&) { return p.ManagesNodes(); }
bool Agents(const Principal& p, const Captures&) {
  return p.role == Role::kAdmin || p.role == Role::kAgent;
}
// The node named by the path's first "*".
bool ThisNode(const Principal& p, const Captures& c) { return !c.empty() && p.ActsAsNode(c[0]); }

}  // namespace

const std::vector<RoutePolicy>& RoutePolicies() {
  static const std::vector<RoutePolicy> kPolicies = {
      {"GET", "/healthz", "health", AuditMode::kNone, true, Anyone},
      {"GET", "/metrics", "metrics", AuditMode::kNone, false, NodeManagers},
      {"POST", "/v1/workloads", "submit", AuditMode::kAlways, false, Submitters},
      {"GET", "/v1/workloads", "list-workloads", AuditMode::kNone, false, Readers},
      {"GET", "/v1/workloads/*", "get-workload", AuditMode::kNone, false, Readers},
      {"POST", "/v1/workloads/*/cancel", "cancel", AuditMode::kAlways, false, Submitters},
      {"DELETE", "/v1/workloads/*", "cancel", AuditMode::kAlways, false, Submitters},
      {"GET", "/v1/workloads/*/logs", "logs", AuditMode::kNone, false, Readers},
      {"POST", "/v1/workloads/*/load", "load", AuditMode::kDenials, false, Submitters},
      {"POST", "/v1/workloads/*/scale", "scale", AuditMode::kAlways, false, Submitters},
      {"GET", "/v1/services", "list-services", AuditMode::kNone, false, Readers},
      {"GET", "/v1/queues", "list-queues", AuditMode::kNone, false, Readers},
      {"GET", "/v1/queues/*", "get-queue", AuditMode::kNone, false, Readers},
      {"GET", "/v1/usage", "usage", AuditMode::kNone, false, Readers},
      {"GET", "/v1/nodes", "list-nodes", AuditMode::kNone, false, Readers},
      {"POST", "/v1/nodes/*/drain", "drain", AuditMode::kAlways, false, NodeManagers},
      {"POST", "/v1/nodes/*/undrain", "undrain", AuditMode::kAlways, false, NodeManagers},
      {"POST", "/v1/agents/register", "register", AuditMode::kAlways, false, Agents},
      {"GET", "/v1/agents/*/desired", "watch", AuditMode::kNone, false, ThisNode},
      {"POST", "/v1/agents/*/heartbeat", "heartbeat", AuditMode::kDenials, false, ThisNode},
      {"GET", "/v1/tokens/self", "token-self", AuditMode::kNone, false, Anyone},
      {"GET", "/v1/tokens", "token-list", AuditMode::kNone, false, Admin},
      {"POST", "/v1/tokens", "token-create", AuditMode::kAlways, false, Admin},
      {"POST", "/v1/tokens/*/revoke", "token-revoke", AuditMode::kAlways, false, Admin},
      {"DELETE", "/v1/tokens/*", "token-revoke", AuditMode::kAlways, false, Admin},
      {"GET", "/v1/audit", "audit-read", AuditMode::kNone, false, Admin},
      // The dashboard's static files: public, they hold no data (the page asks the API
      // with the user's token); GET only.
      {"GET", "/ui", "ui", AuditMode::kNone, true, Anyone},
      {"GET", "/ui/**", "ui", AuditMode::kNone, true, Anyone},
  };
  return kPolicies;
}

const RoutePolicy* FindRoutePolicy(const std::string& method, const std::string& pattern) {
  for (const RoutePolicy& p : RoutePolicies()) {
    if (p.method == method && p.pattern == pattern) return &p;
  }
  return nullptr;
}

}  // namespace gpuorch::server
