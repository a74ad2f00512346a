#include "server/config.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "core/text.h"
#include "core/workload.h"

namespace gpuorch::server {

using core::Result;
using core::Status;

const PriorityClass* ServerConfig::FindPriority(const std::string& name) const {
  for (const PriorityClass& p : priority_classes) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

const QueueConfig* ServerConfig::FindQueue(const std::string& name) const {
  for (const QueueConfig& q : queues) {
    if (q.name == name) return &q;
  }
  return nullptr;
}

bool ServerConfig::IsLeafQueue(const std::string& name) const {
  if (FindQueue(name) == nullptr) return false;
  for (const QueueConfig& q : queues) {
    if (q.parent == name) return false;
  }
  return true;
}

bool ServerConfig::AllowsPriority(const std::string& queue, const std::string& priority) const {
  const QueueConfig* q = FindQueue(queue);
  const PriorityClass* pc = FindPriority(priority);
  if (q == nullptr || pc == nullptr) return false;
  if (q->allowed_priorities.empty()) return pc->preemptible;
  for (const std::string& p : q->allowed_priorities) {
    if (p == priority) return true;
  }
  return false;
}

namespace {

// `queue` itself or its nearest ancestor for which `has` holds; null when none does (the
// walk stops after as many steps as there are queues, whatever the parents say).
template <typename Has>
const QueueConfig* NearestWith(const ServerConfig& c, const std::string& queue, Has has) {
  const QueueConfig* q = c.FindQueue(queue);
  for (size_t depth = 0; q != nullptr && depth <= c.queues.size(); ++depth) {
    if (has(*q)) return q;
    q = q->parent.empty() ? nullptr : c.FindQueue(q->parent);
  }
  return nullptr;
}

}  // namespace

std::string ServerConfig::RunAsOf(const std::string& queue) const {
  const QueueConfig* q =
      NearestWith(*this, queue, [](const QueueConfig& c) { return !c.run_as.empty(); });
  return q != nullptr ? q->run_as : "";
}

std::string ServerConfig::SharingOf(const std::string& queue) const {
  const QueueConfig* q =
      NearestWith(*this, queue, [](const QueueConfig& c) { return !c.sharing.empty(); });
  return q != nullptr ? q->sharing : "timeslice";
}

const QueueConfig::IdleReclaim* ServerConfig::IdleReclaimOf(const std::string& queue) const {
  const QueueConfig* q =
      NearestWith(*this, queue, [](const QueueConfig& c) { return c.idle_reclaim.after_s > 0; });
  return q != nullptr ? &q->idle_reclaim : nullptr;
}

bool ServerConfig::AgentHostAllowed(const std::string& host) const {
  for (const std::string& a : agent_hosts) {
    if (a == host) return true;
    if (a.size() > 2 && a.compare(0, 2, "*.") == 0 && host.size() > a.size() - 1 &&
        host.compare(host.size() - (a.size() - 1), a.size() - 1, a, 1) == 0) {
      return true;
    }
  }
  return false;
}

bool ServerConfig::AllowsNonPreemptible(const std::string& queue) const {
  for (const PriorityClass& pc : priority_classes) {
    if (!pc.preemptible && AllowsPriority(queue, pc.name)) return true;
  }
  return false;
}

std::string ServerConfig::AllowedPriorities(const std::string& queue) const {
  std::string out;
  for (const PriorityClass& pc : priority_classes) {
    if (!AllowsPriority(queue, pc.name)) continue;
    out += (out.empty() ? "" : ", ") + pc.name;
  }
  return out.empty() ? "none" : out;
}

namespace {

// A Unix user name as useradd accepts it, or a numeric uid.
bool ValidUserName(const std::string& s) {
  if (s.empty() || s.size() > 32 || s[0] == '-') return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

// Reads typed values and refuses unknown keys, naming the path of whatever is wrong.
class Reader {
 public:
  Status Keys(const YAML::Node& n, const std::string& path, std::set<std::string> allowed) {
    if (!n.IsMap()) return Status::Invalid(path + ": must be a mapping");
    for (const auto& kv : n) {
      // A key that is itself a list or a mapping would throw in as<std::string>().
      if (!kv.first.IsScalar()) return Status::Invalid(path + ": keys must be field names");
      std::string k = kv.first.as<std::string>();
      if (!allowed.count(k)) return Status::Invalid(Join(path, k) + ": unknown field");
    }
    return Status::Ok();
  }
  template <typename T>
  Status Get(const YAML::Node& n, const std::string& key, const std::string& path, T& out) {
    if (!n[key]) return Status::Ok();
    try {
      out = n[key].as<T>();
    } catch (const YAML::Exception&) {
      return Status::Invalid(Join(path, key) + ": wrong type");
    }
    return Status::Ok();
  }
  // GPUs as a decimal number (0.5 = 500 milli-GPU).
  Status Gpus(const YAML::Node& n, const std::string& key, const std::string& path,
              int64_t& milli) {
    if (!n[key]) return Status::Ok();
    double v = 0;
    try {
      v = n[key].as<double>();
    } catch (const YAML::Exception&) {
      return Status::Invalid(Join(path, key) + ": must be a number of GPUs");
    }
    if (!std::isfinite(v) || v < 0 || v > 1e7) {
      return Status::Invalid(Join(path, key) + ": must be in 0..1e7 GPUs");
    }
    milli = std::llround(v * 1000);
    return Status::Ok();
  }
  static std::string Join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }
};

// A duration: a whole number of seconds, or one with a unit (90s, 15m, 12h, 7d).
Status Duration(const YAML::Node& n, const std::string& key, int64_t& seconds) {
  if (!n[key]) return Status::Ok();
  const std::string bad = key + ": must be a duration such as 7d, 12h, 30m, 90s or seconds";
  if (!n[key].IsScalar()) return Status::Invalid(bad);
  const std::string s = n[key].Scalar();
  size_t digits = 0;
  while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits]))) ++digits;
  if (digits == 0 || digits > 9 || s.size() - digits > 1) return Status::Invalid(bad);
  int64_t unit = 1;
  if (digits < s.size()) {
    switch (s.back()) {
      case 's':
        unit = 1;
        break;
      case 'm':
        unit = 60;
        break;
      case 'h':
        unit = 3600;
        break;
      case 'd':
        unit = 86'400;
        break;
      default:
        return Status::Invalid(bad);
    }
  }
  seconds = std::stoll(s.substr(0, digits)) * unit;
  if (seconds > 3650LL * 86'400) return Status::Invalid(key + ": at most 3650d");
  return Status::Ok();
}

#define GPUORCH_TRY(expr)              \
  do {                                 \
    ::gpuorch::core::Status s_ = expr; \
    if (!s_.ok()) return s_;           \
  } while (0)

// cpu_quota: {guaranteed_milli, limit_milli} or memory_quota: {guaranteed_mib, limit_mib};
// both parts optional, integers in 0..2^48.
Status ParseHostQuota(Reader& r, const YAML::Node& n, const std::string& key,
                      const std::string& unit, const std::string& path, HostQuotaConfig& q) {
  if (!n[key]) return Status::Ok();
  const std::string p = path + "." + key;
  const std::string g = "guaranteed" + unit, l = "limit" + unit;
  GPUORCH_TRY(r.Keys(n[key], p, {g, l}));
  GPUORCH_TRY(r.Get(n[key], g, p, q.guaranteed));
  GPUORCH_TRY(r.Get(n[key], l, p, q.limit));
  constexpr int64_t kMax = int64_t{1} << 48;
  if (n[key][g] && (q.guaranteed < 0 || q.guaranteed > kMax)) {
    return Status::Invalid(p + "." + g + ": must be in 0..2^48");
  }
  if (n[key][l] && (q.limit < 0 || q.limit > kMax)) {
    return Status::Invalid(p + "." + l + ": must be in 0..2^48");
  }
  if (n[key][l] && q.limit < q.guaranteed) {
    return Status::Invalid(p + "." + l + ": must be >= " + g);
  }
  return Status::Ok();
}

Status ParseQueue(Reader& r, const YAML::Node& n, const std::string& path, QueueConfig& q) {
  GPUORCH_TRY(r.Keys(n, path,
                     {"name", "parent", "weight", "can_borrow", "can_lend", "quota", "cpu_quota",
                      "memory_quota", "allowed_priorities", "run_as", "idle_reclaim", "sharing"}));
  GPUORCH_TRY(r.Get(n, "sharing", path, q.sharing));
  if (core::Sharing s; n["sharing"] && !core::ParseSharing(q.sharing, s)) {
    return Status::Invalid(path + ".sharing: must be timeslice, mps, mig or any");
  }
  if (n["idle_reclaim"]) {
    const std::string p = path + ".idle_reclaim";
    const YAML::Node ir = n["idle_reclaim"];
    if (!ir.IsMap()) return Status::Invalid(p + ": must be a mapping {after_s, kinds, action}");
    GPUORCH_TRY(r.Keys(ir, p, {"after_s", "kinds", "action"}));
    if (!ir["after_s"]) return Status::Invalid(p + ".after_s: required");
    GPUORCH_TRY(r.Get(ir, "after_s", p, q.idle_reclaim.after_s));
    if (q.idle_reclaim.after_s < 1 || q.idle_reclaim.after_s > 30 * 86'400) {
      return Status::Invalid(p + ".after_s: must be in 1..2592000");
    }
    GPUORCH_TRY(r.Get(ir, "kinds", p, q.idle_reclaim.kinds));
    for (const std::string& k : q.idle_reclaim.kinds) {
      if (k != "training" && k != "inference" && k != "experiment") {
        return Status::Invalid(p + ".kinds: " + k + " is not training, inference or experiment");
      }
    }
    if (!ir["kinds"]) q.idle_reclaim.kinds = {"experiment"};
    std::string action = "report";
    GPUORCH_TRY(r.Get(ir, "action", p, action));
    if (action != "evict" && action != "report") {
      return Status::Invalid(p + ".action: must be evict or report");
    }
    q.idle_reclaim.evict = action == "evict";
  }
  if (n["allowed_priorities"]) {
    GPUORCH_TRY(r.Get(n, "allowed_priorities", path, q.allowed_priorities));
    if (q.allowed_priorities.empty()) {
      return Status::Invalid(path + ".allowed_priorities: must be a non-empty list");
    }
  }
  GPUORCH_TRY(r.Get(n, "name", path, q.name));
  GPUORCH_TRY(r.Get(n, "run_as", path, q.run_as));
  if (n["run_as"] && !ValidUserName(q.run_as)) {
    return Status::Invalid(path + ".run_as: must be a user name or uid (letters, digits, _ - .)");
  }
  GPUORCH_TRY(r.Get(n, "parent", path, q.parent));
  GPUORCH_TRY(r.Get(n, "weight", path, q.weight));
  GPUORCH_TRY(r.Get(n, "can_borrow", path, q.can_borrow));
  GPUORCH_TRY(r.Get(n, "can_lend", path, q.can_lend));
  if (q.name.empty()) return Status::Invalid(path + ".name: required");
  if (q.weight < 1 || q.weight > 1000000)
    return Status::Invalid(path + ".weight: must be in 1..1e6");
  if (n["quota"]) {
    if (!n["quota"].IsSequence()) return Status::Invalid(path + ".quota: must be a list");
    for (size_t i = 0; i < n["quota"].size(); ++i) {
      std::string qp = path + ".quota[" + std::to_string(i) + "]";
      const YAML::Node e = n["quota"][i];
      QuotaConfig c;
      GPUORCH_TRY(r.Keys(e, qp, {"model", "guaranteed", "limit"}));
      GPUORCH_TRY(r.Get(e, "model", qp, c.model));
      if (c.model.empty()) c.model = "*";
      GPUORCH_TRY(r.Gpus(e, "guaranteed", qp, c.guaranteed_milli));
      if (e["limit"]) {
        GPUORCH_TRY(r.Gpus(e, "limit", qp, c.limit_milli));
        if (c.limit_milli < c.guaranteed_milli) {
          return Status::Invalid(qp + ".limit: must be >= guaranteed");
        }
      }
      q.quota.push_back(c);
    }
  }
  GPUORCH_TRY(ParseHostQuota(r, n, "cpu_quota", "_milli", path, q.cpu_quota));
  GPUORCH_TRY(ParseHostQuota(r, n, "memory_quota", "_mib", path, q.memory_quota));
  return Status::Ok();
}

}  // namespace

Result<ServerConfig> ParseConfig(const std::string& text) {
  ServerConfig c;
  // Names from the config reach JSON answers, which cannot hold bytes that are not UTF-8.
  if (size_t at = 0; !core::IsValidUtf8(text, &at)) {
    return Status::Invalid("config: not UTF-8 text (a bad byte at offset " + std::to_string(at) +
                           ")");
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Status::Invalid("config: not valid YAML: " + std::string(e.what()));
  }
  if (root.IsNull()) return c;
  Reader r;
  GPUORCH_TRY(r.Keys(root, "",
                     {"listen",
                      "data",
                      "policy",
                      "mig_reconfigure",
                      "node_timeout_s",
                      "heartbeat_interval_ms",
                      "max_heartbeats_per_second",
                      "cycle_interval_ms",
                      "http_threads",
                      "io_threads",
                      "worker_threads",
                      "max_connections",
                      "idle_timeout_s",
                      "fair_share_half_life_s",
                      "max_body_bytes",
                      "finished_retention",
                      "gpu_idle_util_pct",
                      "gpu_idle_after",
                      "default_priority",
                      "priority_classes",
                      "queues",
                      "default_queue",
                      "metrics_public",
                      "audit_max_bytes",
                      "audit_keep",
                      "max_log_bytes",
                      "agent_hosts",
                      "rate_limit_per_s",
                      "rate_limit_burst",
                      "rate_limit_exempt_roles",
                      "tls"}));
  GPUORCH_TRY(r.Get(root, "listen", "", c.listen));
  GPUORCH_TRY(r.Get(root, "data", "", c.data));
  GPUORCH_TRY(r.Get(root, "policy", "", c.policy));
  GPUORCH_TRY(r.Get(root, "mig_reconfigure", "", c.mig_reconfigure));
  double timeout_s = static_cast<double>(c.node_timeout_ms) / 1000.0;
  GPUORCH_TRY(r.Get(root, "node_timeout_s", "", timeout_s));
  if (!(timeout_s >= 0.5 && timeout_s <= 3600)) {
    return Status::Invalid("node_timeout_s: must be in 0.5..3600");
  }
  c.node_timeout_ms = std::llround(timeout_s * 1000);
  GPUORCH_TRY(r.Get(root, "heartbeat_interval_ms", "", c.heartbeat_interval_ms));
  if (c.heartbeat_interval_ms < 10 || c.heartbeat_interval_ms * 2 > c.node_timeout_ms) {
    return Status::Invalid("heartbeat_interval_ms: must be >= 10 and at most half the timeout");
  }
  GPUORCH_TRY(r.Get(root, "max_heartbeats_per_second", "", c.max_heartbeats_per_second));
  if (c.max_heartbeats_per_second < 1 || c.max_heartbeats_per_second > 100'000) {
    return Status::Invalid("max_heartbeats_per_second: must be in 1..100000");
  }
  if (root["http_threads"]) {
    return Status::Invalid(
        "http_threads: no longer used: connections no longer take a thread each; set "
        "io_threads (event loop) and worker_threads (request handlers) instead");
  }
  GPUORCH_TRY(r.Get(root, "io_threads", "", c.io_threads));
  if (c.io_threads < 1 || c.io_threads > 64) return Status::Invalid("io_threads: must be in 1..64");
  GPUORCH_TRY(r.Get(root, "worker_threads", "", c.worker_threads));
  if (c.worker_threads < 1 || c.worker_threads > 256) {
    return Status::Invalid("worker_threads: must be in 1..256");
  }
  GPUORCH_TRY(r.Get(root, "max_connections", "", c.max_connections));
  if (c.max_connections < 1 || c.max_connections > 1'000'000) {
    return Status::Invalid("max_connections: must be in 1..1000000");
  }
  GPUORCH_TRY(r.Get(root, "idle_timeout_s", "", c.idle_timeout_s));
  if (c.idle_timeout_s < 1 || c.idle_timeout_s > 86'400) {
    return Status::Invalid("idle_timeout_s: must be in 1..86400");
  }
  GPUORCH_TRY(r.Get(root, "cycle_interval_ms", "", c.cycle_interval_ms));
  if (c.cycle_interval_ms < 1 || c.cycle_interval_ms > 60000) {
    return Status::Invalid("cycle_interval_ms: must be in 1..60000");
  }
  GPUORCH_TRY(r.Get(root, "fair_share_half_life_s", "", c.fair_share_half_life_s));
  if (c.fair_share_half_life_s < 1) return Status::Invalid("fair_share_half_life_s: must be >= 1");
  GPUORCH_TRY(r.Get(root, "max_body_bytes", "", c.max_body_bytes));
  if (c.max_body_bytes < 1024) return Status::Invalid("max_body_bytes: must be >= 1024");
  GPUORCH_TRY(r.Get(root, "max_log_bytes", "", c.max_log_bytes));
  if (c.max_log_bytes < 1024 || c.max_log_bytes > (int64_t{1} << 30)) {
    return Status::Invalid("max_log_bytes: must be in 1024..2^30");
  }
  GPUORCH_TRY(r.Get(root, "agent_hosts", "", c.agent_hosts));
  for (size_t i = 0; i < c.agent_hosts.size(); ++i) {
    const std::string& h = c.agent_hosts[i];
    if (h.empty() || h == "*." || h.find_first_of(" /:@?#") != std::string::npos ||
        (h.find('*') != std::string::npos && h.rfind("*.", 0) != 0) ||
        h.find('*', 1) != std::string::npos) {
      return Status::Invalid("agent_hosts[" + std::to_string(i) +
                             "]: must be a host name or *.domain");
    }
  }
  if (root["tls"]) {
    GPUORCH_TRY(r.Keys(root["tls"], "tls", {"cert", "key", "client_ca"}));
    GPUORCH_TRY(r.Get(root["tls"], "cert", "tls", c.tls.cert));
    GPUORCH_TRY(r.Get(root["tls"], "key", "tls", c.tls.key));
    GPUORCH_TRY(r.Get(root["tls"], "client_ca", "tls", c.tls.client_ca));
  }
  GPUORCH_TRY(CheckTls(c.tls));
  GPUORCH_TRY(Duration(root, "finished_retention", c.finished_retention_s));
  GPUORCH_TRY(Duration(root, "gpu_idle_after", c.gpu_idle_after_s));
  if (c.gpu_idle_after_s < 1) return Status::Invalid("gpu_idle_after: must be at least 1s");
  GPUORCH_TRY(r.Get(root, "gpu_idle_util_pct", "", c.gpu_idle_util_pct));
  if (!(c.gpu_idle_util_pct >= 0 && c.gpu_idle_util_pct <= 100)) {
    return Status::Invalid("gpu_idle_util_pct: must be in 0..100");
  }
  GPUORCH_TRY(r.Get(root, "default_priority", "", c.default_priority));
  if (root["priority_classes"]) {
    const YAML::Node pcs = root["priority_classes"];
    if (!pcs.IsSequence() || pcs.size() == 0) {
      return Status::Invalid("priority_classes: must be a non-empty list");
    }
    c.priority_classes.clear();
    for (size_t i = 0; i < pcs.size(); ++i) {
      std::string p = "priority_classes[" + std::to_string(i) + "]";
      PriorityClass pc;
      GPUORCH_TRY(r.Keys(pcs[i], p, {"name", "value", "preemptible"}));
      GPUORCH_TRY(r.Get(pcs[i], "name", p, pc.name));
      GPUORCH_TRY(r.Get(pcs[i], "value", p, pc.value));
      GPUORCH_TRY(r.Get(pcs[i], "preemptible", p, pc.preemptible));
      if (pc.name.empty()) return Status::Invalid(p + ".name: required");
      if (c.FindPriority(pc.name)) return Status::Invalid(p + ".name: duplicate " + pc.name);
      c.priority_classes.push_back(pc);
    }
  }
  if (!c.FindPriority(c.default_priority)) {
    return Status::Invalid("default_priority: no priority class named " + c.default_priority);
  }
  if (root["queues"]) {
    const YAML::Node qs = root["queues"];
    if (!qs.IsSequence() || qs.size() == 0)
      return Status::Invalid("queues: must be a non-empty list");
    c.queues.clear();
    for (size_t i = 0; i < qs.size(); ++i) {
      std::string p = "queues[" + std::to_string(i) + "]";
      QueueConfig q;
      GPUORCH_TRY(ParseQueue(r, qs[i], p, q));
      if (c.FindQueue(q.name)) return Status::Invalid(p + ".name: duplicate " + q.name);
      if (!q.parent.empty() && !c.FindQueue(q.parent)) {
        return Status::Invalid(p + ".parent: unknown queue " + q.parent + " (parents come first)");
      }
      c.queues.push_back(q);
    }
  }
  for (size_t i = 0; i < c.queues.size(); ++i) {
    const std::string p = "queues[" + std::to_string(i) + "].allowed_priorities";
    for (const std::string& name : c.queues[i].allowed_priorities) {
      if (!c.FindPriority(name)) return Status::Invalid(p + ": no priority class named " + name);
    }
  }
  if (root["default_queue"]) {
    GPUORCH_TRY(r.Get(root, "default_queue", "", c.default_queue));
    if (!c.default_queue.empty() && !c.IsLeafQueue(c.default_queue)) {
      return Status::Invalid("default_queue: no leaf queue named " + c.default_queue);
    }
  } else if (!c.IsLeafQueue(c.default_queue)) {
    c.default_queue.clear();  // no queue is called "default": a queue is required
  }
  GPUORCH_TRY(r.Get(root, "metrics_public", "", c.metrics_public));
  GPUORCH_TRY(r.Get(root, "audit_max_bytes", "", c.audit_max_bytes));
  if (c.audit_max_bytes < 4096) return Status::Invalid("audit_max_bytes: must be >= 4096");
  GPUORCH_TRY(r.Get(root, "rate_limit_per_s", "", c.rate_limit_per_s));
  if (!(c.rate_limit_per_s >= 0 && c.rate_limit_per_s <= 1e6)) {
    return Status::Invalid("rate_limit_per_s: must be in 0..1000000 (0: no limit)");
  }
  GPUORCH_TRY(r.Get(root, "rate_limit_burst", "", c.rate_limit_burst));
  if (!(c.rate_limit_burst >= 1 && c.rate_limit_burst <= 1e6)) {
    return Status::Invalid("rate_limit_burst: must be in 1..1000000");
  }
  GPUORCH_TRY(r.Get(root, "rate_limit_exempt_roles", "", c.rate_limit_exempt_roles));
  for (size_t i = 0; i < c.rate_limit_exempt_roles.size(); ++i) {
    const std::string& role = c.rate_limit_exempt_roles[i];
    if (role != "admin" && role != "operator" && role != "tenant" && role != "reader" &&
        role != "agent") {
      return Status::Invalid("rate_limit_exempt_roles[" + std::to_string(i) + "]: unknown role " +
                             role + " (admin, operator, tenant, reader, agent)");
    }
  }
  GPUORCH_TRY(r.Get(root, "audit_keep", "", c.audit_keep));
  if (c.audit_keep < 1 || c.audit_keep > 1000) {
    return Status::Invalid("audit_keep: must be in 1..1000");
  }
  return c;
}

Status CheckTls(const ServerConfig::Tls& tls) {
  if (tls.cert.empty() != tls.key.empty()) {
    return Status::Invalid(tls.cert.empty() ? "tls.cert: required with tls.key"
                                            : "tls.key: required with tls.cert");
  }
  if (!tls.client_ca.empty() && tls.cert.empty()) {
    return Status::Invalid("tls.client_ca: needs tls.cert and tls.key (mutual TLS is TLS)");
  }
  return Status::Ok();
}

Result<ServerConfig> LoadConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::Invalid("config: cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto c = ParseConfig(ss.str());
  if (!c.ok()) return Status::Invalid(path + ": " + c.status().message());
  return c;
}

}  // namespace gpuorch::server
