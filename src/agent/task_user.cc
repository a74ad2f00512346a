#include "agent/task_user.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace gpuorch::agent {

using core::Result;
using core::Status;

namespace {

constexpr const char* kNobody = "nobody";

bool AllDigits(const std::string& s) {
  return !s.empty() && s.size() <= 9 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

std::string TaskUser::ShimArgument() const {
  std::string s = std::to_string(uid) + ":" + std::to_string(gid) + ":";
  for (size_t i = 0; i < groups.size(); ++i) {
    s += (i > 0 ? "," : "") + std::to_string(groups[i]);
  }
  if (groups.empty()) s.pop_back();
  return s;
}

Result<TaskUser> LookupUser(const std::string& name_or_uid) {
  if (name_or_uid.empty()) return Status::Invalid("run_as: empty user name");
  std::vector<char> buf(16384);
  passwd pw;
  passwd* found = nullptr;
  int rc = 0;
  while (true) {
    rc = AllDigits(name_or_uid)
             ? ::getpwuid_r(static_cast<uid_t>(std::stoul(name_or_uid)), &pw, buf.data(),
                            buf.size(), &found)
             : ::getpwnam_r(name_or_uid.c_str(), &pw, buf.data(), buf.size(), &found);
    if (rc != ERANGE || buf.size() > (1u << 20)) break;
    buf.resize(buf.size() * 4);
  }
  if (rc != 0) {
    return Status::Precondition("run_as '" + name_or_uid +
                                "': user lookup failed: " + std::strerror(rc));
  }
  if (found == nullptr) {
    return Status::NotFound("run_as '" + name_or_uid + "': no such user on this node");
  }
  TaskUser u;
  u.name = pw.pw_name;
  u.uid = pw.pw_uid;
  u.gid = pw.pw_gid;
  u.home = pw.pw_dir != nullptr ? pw.pw_dir : "/";
  u.shell = pw.pw_shell != nullptr ? pw.pw_shell : "";
  int n = 64;
  while (true) {
    u.groups.resize(static_cast<size_t>(n));
    int got = n;
    if (::getgrouplist(u.name.c_str(), u.gid, u.groups.data(), &got) >= 0) {
      u.groups.resize(static_cast<size_t>(got));
      break;
    }
    if (got <= n || got > 65536) {  // the list could not be read: the primary group only
      u.groups = {u.gid};
      break;
    }
    n = got;
  }
  return u;
}

Result<TaskUser> ResolveTaskUser(const std::string& run_as, const RunAsPolicy& policy,
                                 uid_t agent_uid) {
  const bool from_server = !run_as.empty();
  std::string name = run_as;
  if (name.empty()) name = policy.default_user;
  if (name.empty() && agent_uid == 0) name = kNobody;
  if (name.empty()) {
    Result<TaskUser> self = LookupUser(std::to_string(agent_uid));
    TaskUser u;
    if (self.ok()) u = *self;
    u.uid = agent_uid;
    u.gid = ::getgid();
    u.same_as_agent = true;
    return u;
  }
  Result<TaskUser> found = LookupUser(name);
  if (!found.ok()) return found.status();
  TaskUser* u = &found.value();
  if (from_server && name != policy.default_user && !policy.allowed.empty() &&
      std::find(policy.allowed.begin(), policy.allowed.end(), u->name) == policy.allowed.end()) {
    return Status::Precondition("run_as '" + name +
                                "': not among the users this agent allows (--run-as-allow)");
  }
  if (u->uid == 0 && !policy.allow_root) {
    return Status::Precondition("run_as '" + name +
                                "': tasks never run as root unless the agent is started "
                                "with --allow-root-tasks");
  }
  if (agent_uid != 0) {
    if (u->uid != agent_uid) {
      return Status::Precondition("run_as '" + name + "': the agent runs as uid " +
                                  std::to_string(agent_uid) +
                                  ", not root, and can run tasks only as itself");
    }
    u->same_as_agent = true;
  } else if (u->uid == 0) {
    u->same_as_agent = true;  // allowed root: nothing to drop
  }
  return found;
}

Status CheckRunAsPolicy(const RunAsPolicy& policy, uid_t agent_uid) {
  Result<TaskUser> u = ResolveTaskUser("", policy, agent_uid);
  if (!u.ok()) return Status::Invalid("--task-user: " + u.status().message());
  for (const std::string& a : policy.allowed) {
    if (Result<TaskUser> x = LookupUser(a); !x.ok()) {
      return Status::Invalid("--run-as-allow: " + x.status().message());
    }
  }
  return Status::Ok();
}

}  // namespace gpuorch::agent
