#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "core/status.h"

namespace gpuorch::agent {

// The Unix identity a task runs as (docs/agent.md, "Task isolation"). Resolved by the agent
// (NSS: getpwnam_r, getgrouplist) and handed to the shim as numbers, so the static shim
// never looks names up.
struct TaskUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups, the primary one included
  std::string home;
  std::string shell;
  // The agent's own identity: the shim changes nothing.
  bool same_as_agent = false;

  // "UID:GID:G1,G2,...", the shim's --user argument.
  std::string ShimArgument() const;
};

// Which users the agent lets the server name (`run_as` of a desired entry). Secure by
// default: an agent running as root runs tasks as `nobody` unless told otherwise, and never
// as root (uid 0) unless `allow_root` says so explicitly.
struct RunAsPolicy {
  // The user of tasks whose entry names none. Empty: "nobody" for an agent running as root,
  // the agent's own user otherwise.
  std::string default_user;
  // The users the server may name; empty: any user except root. The default user is always
  // allowed.
  std::vector<std::string> allowed;
  bool allow_root = false;
};

// Looks a user up by name, or by number ("1000"). NotFound when it does not exist.
core::Result<TaskUser> LookupUser(const std::string& name_or_uid);

// The identity of a task whose entry says `run_as` (empty: the policy's default), for an
// agent running as `agent_uid`. An agent that is not root runs tasks as itself only: it
// refuses any other user, with an error that says so. Thread-compatible (reads NSS).
core::Result<TaskUser> ResolveTaskUser(const std::string& run_as, const RunAsPolicy& policy,
                                       uid_t agent_uid);

// Checks a policy at agent start (its default user exists and may be used), so a bad flag
// stops the agent instead of failing every task.
core::Status CheckRunAsPolicy(const RunAsPolicy& policy, uid_t agent_uid);

}  // namespace gpuorch::agent
