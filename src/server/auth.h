#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "server/api_types.h"
#include "server/config.h"
#include "store/token_store.h"

// Who is calling, and what they may do (docs/security.md). Default-deny: a role may do only
// what its methods below say.
//   admin          everything
//   operator       read everything (workload environments excepted), drain and undrain
//   tenant of Q..  submit to, read, cancel and fetch logs of its queues' workloads; read
//                  those queues and the nodes; nothing of any other queue, not even ids
//   reader of Q..  what a tenant reads, nothing it changes; no environments
//   agent of N     register, heartbeat and watch as node N (N may be a pattern: a join token)
namespace gpuorch::server {

enum class Role : uint8_t { kAdmin, kOperator, kTenant, kReader, kAgent };
std::string_view RoleName(Role role);
core::Result<Role> ParseRole(std::string_view name);

// Whether `name` matches `pattern`, in which each '*' stands for any run of characters
// (none included) and every other character for itself.
bool NodeNameMatches(std::string_view pattern, std::string_view name);

struct Principal {
  std::string accessor;  // "" only in --insecure-no-auth mode
  std::string name;
  Role role = Role::kReader;
  std::vector<std::string> queues;  // tenant, reader
  std::string node;                 // agent: a name, or a pattern with '*' (join token)
  std::string default_queue;        // "" = the server's
  int64_t created_ms = 0;
  int64_t revoked_ms = 0;

  bool admin() const { return role == Role::kAdmin; }
  bool HasQueue(const std::string& queue) const;
  // Sees the queue and its workloads (commands, states, logs).
  bool ReadsQueue(const std::string& queue) const;
  // Submits to and cancels in the queue.
  bool WritesQueue(const std::string& queue) const;
  // Sees the values of its workloads' environment (they may hold secrets).
  bool SeesEnv(const std::string& queue) const;
  // Reads the node list and the queue list (filtered by ReadsQueue).
  bool ReadsCluster() const { return role != Role::kAgent; }
  bool ManagesNodes() const { return role == Role::kAdmin || role == Role::kOperator; }
  bool ActsAsNode(const std::string& node_name) const;
  // The queue of a submission that names none ("" when neither the token nor the server
  // has one).
  std::string DefaultQueue(const ServerConfig& config) const;
  Json ToJson() const;  // never the secret
};

// The principal of --insecure-no-auth.
Principal InsecurePrincipal();

// Every token of the server, in memory (for authentication without a store read) and in
// the store (durable). Thread-safe.
class TokenRegistry {
 public:
  static core::Result<std::unique_ptr<TokenRegistry>> Open(
      std::unique_ptr<store::TokenStore> store);

  // The caller of a request with this Authorization header value. Errors (all are HTTP 401)
  // say what is wrong: missing, malformed, unknown, wrong secret or revoked.
  core::Result<Principal> Authenticate(std::string_view authorization) const;
  // Creates a token from an API request body ({name, role, queues, node, default_queue});
  // `out` gets the token (its only appearance) and its description.
  bool Create(const Json& body, const ServerConfig& config, int64_t now_ms, Json& out,
              ApiError& error);
  // Creates a token without a request (the bootstrap administrator). `before_store`, when
  // given, sees the token first; its error cancels the creation.
  core::Result<std::string> CreateToken(
      const Principal& p, int64_t now_ms,
      const std::function<core::Status(const std::string& token)>& before_store = {});
  bool Revoke(const std::string& accessor, int64_t now_ms, Json& out, ApiError& error);
  Json List() const;
  // Whether the accessor names a token that is not revoked.
  bool Valid(const std::string& accessor) const;
  bool empty() const;

 private:
  explicit TokenRegistry(std::unique_ptr<store::TokenStore> store) : store_(std::move(store)) {}

  struct Entry {
    std::string secret_hash;
    Principal principal;
  };
  std::unique_ptr<store::TokenStore> store_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> tokens_;  // by accessor
};

}  // namespace gpuorch::server
