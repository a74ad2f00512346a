#include "server/auth.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "server/audit_log.h"
#include "server/token.h"

namespace gpuorch::server {

using core::Result;
using core::Status;

namespace {

constexpr Role kRoles[] = {Role::kAdmin, Role::kOperator, Role::kTenant, Role::kReader,
                           Role::kAgent};

bool ValidTokenName(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

// Node names as agents send them, with '*' for a join token's pattern.
bool ValidNodePattern(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-' &&
        c != '*') {
      return false;
    }
  }
  return true;
}

Json StoredJson(const Principal& p) {
  return Json{{"name", p.name}, {"role", RoleName(p.role)},         {"queues", p.queues},
              {"node", p.node}, {"default_queue", p.default_queue}, {"created_ms", p.created_ms}};
}

Result<Principal> FromStored(const store::StoredToken& t) {
  Json j = Json::parse(t.json, nullptr, false);
  const std::string where = "token store: token " + t.accessor;
  if (!j.is_object()) return Status::Invalid(where + ": corrupt JSON");
  Principal p;
  p.accessor = t.accessor;
  p.revoked_ms = t.revoked_ms;
  try {
    p.name = j.at("name").get<std::string>();
    auto role = ParseRole(j.at("role").get<std::string>());
    if (!role.ok()) return Status::Invalid(where + ": " + role.status().message());
    p.role = *role;
    p.queues = j.value("queues", std::vector<std::string>{});
    p.node = j.value("node", "");
    p.default_queue = j.value("default_queue", "");
    p.created_ms = j.value("created_ms", int64_t{0});
  } catch (const Json::exception&) {
    return Status::Invalid(where + ": missing or mistyped field");
  }
  return p;
}

bool Fail(ApiError& e, int code, const std::string& field, const std::string& why) {
  e = ApiError{code, field, field.empty() ? why : field + ": " + why};
  return false;
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kAdmin:
      return "admin";
    case Role::kOperator:
      return "operator";
    case Role::kTenant:
      return "tenant";
    case Role::kReader:
      return "reader";
    case Role::kAgent:
      return "agent";
  }
  return "unknown";
}

Result<Role> ParseRole(std::string_view name) {
  for (Role r : kRoles) {
    if (RoleName(r) == name) return r;
  }
  return Status::Invalid("role: must be admin, operator, tenant, reader or agent");
}

bool NodeNameMatches(std::string_view pattern, std::string_view name) {
  // Iterative glob with one backtracking point: linear in practice, never exponential.
  size_t p = 0, n = 0, star = std::string_view::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (p < pattern.size() && pattern[p] == name[n]) {
      ++p;
      ++n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool Principal::HasQueue(const std::string& queue) const {
  return std::find(queues.begin(), queues.end(), queue) != queues.end();
}

bool Principal::ReadsQueue(const std::string& queue) const {
  switch (role) {
    case Role::kAdmin:
    case Role::kOperator:
      return true;
    case Role::kTenant:
    case Role::kReader:
      return HasQueue(queue);
    case Role::kAgent:
      return false;
  }
  return false;
}

bool Principal::WritesQueue(const std::string& queue) const {
  return role == Role::kAdmin || (role == Role::kTenant && HasQueue(queue));
}

bool Principal::SeesEnv(const std::string& queue) const { return WritesQueue(queue); }

bool Principal::ActsAsNode(const std::string& node_name) const {
  return role == Role::kAdmin || (role == Role::kAgent && NodeNameMatches(node, node_name));
}

std::string Principal::DefaultQueue(const ServerConfig& config) const {
  return default_queue.empty() ? config.default_queue : default_queue;
}

Json Principal::ToJson() const {
  Json j = StoredJson(*this);
  j.erase("created_ms");
  j["accessor"] = accessor;
  j["created"] = created_ms > 0 ? Json(IsoTimeMs(created_ms)) : Json(nullptr);
  j["revoked"] = revoked_ms > 0 ? Json(IsoTimeMs(revoked_ms)) : Json(nullptr);
  return j;
}

Principal InsecurePrincipal() {
  Principal p;
  p.name = "insecure-no-auth";
  p.role = Role::kAdmin;
  return p;
}

Result<std::unique_ptr<TokenRegistry>> TokenRegistry::Open(
    std::unique_ptr<store::TokenStore> store) {
  auto stored = store->Load();
  if (!stored.ok()) return stored.status();
  std::unique_ptr<TokenRegistry> r(new TokenRegistry(std::move(store)));
  for (const store::StoredToken& t : *stored) {
    auto p = FromStored(t);
    if (!p.ok()) return p.status();
    r->tokens_[t.accessor] = Entry{t.secret_hash, std::move(p).value()};
  }
  return r;
}

Result<Principal> TokenRegistry::Authenticate(std::string_view authorization) const {
  if (authorization.empty()) {
    return Status::Invalid("authorization: a token is required (Authorization: Bearer gpo_...)");
  }
  auto parts = ParseBearer(authorization);
  if (!parts.ok()) return parts.status();
  Entry entry;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tokens_.find(parts->accessor);
    if (it != tokens_.end()) entry = it->second;
  }
  // The same answer for an unknown accessor and a wrong secret: a guess learns nothing.
  if (entry.secret_hash.empty() || !SecretMatches(parts->secret, entry.secret_hash)) {
    return Status::Invalid("authorization: unknown token");
  }
  if (entry.principal.revoked_ms > 0) {
    return Status::Invalid("authorization: token " + parts->accessor + " was revoked");
  }
  return std::move(entry.principal);
}

Result<std::string> TokenRegistry::CreateToken(
    const Principal& p, int64_t now_ms,
    const std::function<Status(const std::string& token)>& before_store) {
  auto parts = GenerateToken();
  if (!parts.ok()) return parts.status();
  if (before_store) {
    if (Status s = before_store(FormatToken(*parts)); !s.ok()) return s;
  }
  Principal stored = p;
  stored.accessor = parts->accessor;
  stored.created_ms = now_ms;
  stored.revoked_ms = 0;
  const std::string hash = HashSecret(parts->secret);
  if (Status s = store_->Insert({parts->accessor, hash, StoredJson(stored).dump(), 0}); !s.ok()) {
    return s;
  }
  std::lock_guard<std::mutex> lock(mu_);
  tokens_[parts->accessor] = Entry{hash, std::move(stored)};
  return FormatToken(*parts);
}

bool TokenRegistry::Create(const Json& b, const ServerConfig& config, int64_t now_ms, Json& out,
                           ApiError& e) {
  if (!b.is_object()) return Fail(e, 400, "", "body must be a JSON object");
  static const std::set<std::string> kFields = {"name", "role", "queues", "node", "default_queue"};
  for (const auto& [k, v] : b.items()) {
    if (!kFields.count(k)) return Fail(e, 400, k, "unknown field");
  }
  auto str = [&](const char* k, std::string& v) {
    if (!b.contains(k)) return true;
    if (!b[k].is_string()) return Fail(e, 400, k, "must be a string");
    v = b[k].get<std::string>();
    return true;
  };
  Principal p;
  std::string role;
  if (!str("name", p.name) || !str("role", role) || !str("node", p.node) ||
      !str("default_queue", p.default_queue)) {
    return false;
  }
  if (!ValidTokenName(p.name)) {
    return Fail(e, 400, "name", "required, 1-63 characters of [A-Za-z0-9._-]");
  }
  auto r = ParseRole(role);
  if (!r.ok()) return Fail(e, 400, "role", "must be admin, operator, tenant, reader or agent");
  p.role = *r;
  const bool queued = p.role == Role::kTenant || p.role == Role::kReader;
  if (b.contains("queues")) {
    const Json& qs = b["queues"];
    if (!qs.is_array()) return Fail(e, 400, "queues", "must be a list of queue names");
    for (size_t i = 0; i < qs.size(); ++i) {
      const std::string f = "queues[" + std::to_string(i) + "]";
      if (!qs[i].is_string()) return Fail(e, 400, f, "must be a string");
      const std::string q = qs[i].get<std::string>();
      if (!config.IsLeafQueue(q)) return Fail(e, 400, f, "no leaf queue named " + q);
      if (!p.HasQueue(q)) p.queues.push_back(q);
    }
  }
  if (queued && p.queues.empty()) {
    return Fail(e, 400, "queues", "a " + std::string(RoleName(p.role)) + " needs a queue");
  }
  if (!queued && !p.queues.empty()) {
    return Fail(e, 400, "queues", "only tenant and reader tokens name queues");
  }
  if (p.role == Role::kAgent && !ValidNodePattern(p.node)) {
    return Fail(e, 400, "node",
                "an agent token needs a node name, or a pattern with '*' for a join token "
                "(characters of [A-Za-z0-9._*-])");
  }
  if (p.role != Role::kAgent && !p.node.empty()) {
    return Fail(e, 400, "node", "only agent tokens name a node");
  }
  if (!p.default_queue.empty()) {
    if (p.role == Role::kTenant ? !p.HasQueue(p.default_queue)
                                : p.role != Role::kAdmin || !config.IsLeafQueue(p.default_queue)) {
      return Fail(e, 400, "default_queue",
                  "must be one of the token's queues (a tenant) or a leaf queue (an admin)");
    }
  } else if (p.role == Role::kTenant && p.queues.size() == 1) {
    p.default_queue = p.queues.front();  // a tenant of one queue submits there
  }
  auto token = CreateToken(p, now_ms);
  if (!token.ok()) return Fail(e, 500, "", token.status().message());
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = tokens_.find(token->substr(kTokenPrefix.size(), kAccessorLength));
  out = it->second.principal.ToJson();
  out["token"] = *token;
  return true;
}

bool TokenRegistry::Revoke(const std::string& accessor, int64_t now_ms, Json& out, ApiError& e) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tokens_.find(accessor);
    if (it == tokens_.end()) return Fail(e, 404, "accessor", "no token " + accessor);
    if (it->second.principal.revoked_ms > 0) {
      out = it->second.principal.ToJson();
      return true;  // idempotent
    }
  }
  if (Status s = store_->Revoke(accessor, now_ms); !s.ok()) return Fail(e, 500, "", s.message());
  std::lock_guard<std::mutex> lock(mu_);
  Principal& p = tokens_.at(accessor).principal;
  p.revoked_ms = now_ms;
  out = p.ToJson();
  return true;
}

Json TokenRegistry::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  Json list = Json::array();
  for (const auto& [accessor, entry] : tokens_) list.push_back(entry.principal.ToJson());
  return Json{{"tokens", list}};
}

bool TokenRegistry::Valid(const std::string& accessor) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tokens_.find(accessor);
  return it != tokens_.end() && it->second.principal.revoked_ms == 0;
}

bool TokenRegistry::empty() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tokens_.empty();
}

}  // namespace gpuorch::server
