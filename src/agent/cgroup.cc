#include "agent/cgroup.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "agent/fsutil.h"

namespace gpuorch::agent {

using core::Result;
using core::Status;

namespace {

// The kernel's default CFS period, in microseconds, and the smallest quota it accepts.
constexpr int64_t kCpuPeriodUs = 100000;
constexpr int64_t kMinCpuQuotaUs = 1000;

std::vector<std::string> Words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

bool Contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// One write(2) of `value`, as cgroup files want; the error names the file.
Status WriteValue(const std::string& path, const std::string& value) {
  std::ofstream out(path);
  if (!out) return Status::Precondition("cannot open " + path + ": " + std::strerror(errno));
  out << value;
  out.flush();
  if (!out)
    return Status::Precondition("writing '" + value + "' to " + path + ": " + std::strerror(errno));
  return Status::Ok();
}

Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST) return Status::Ok();
  return Status::Precondition("cannot create cgroup " + path + ": " + std::strerror(errno));
}

// Makes `dir` pass `controllers` to its children.
Status Delegate(const std::string& dir, const std::vector<std::string>& controllers) {
  const std::vector<std::string> enabled =
      Words(fs::ReadFile(dir + "/cgroup.subtree_control").value_or(""));
  const std::string available = fs::ReadFile(dir + "/cgroup.controllers").value_or("");
  for (const std::string& c : controllers) {
    if (Contains(enabled, c)) continue;
    if (!Contains(Words(available), c)) {
      std::string have = available;
      have.erase(std::remove(have.begin(), have.end(), '\n'), have.end());
      return Status::Precondition("cgroup v2: controller '" + c + "' is not available in " + dir +
                                  " (it has: " + (have.empty() ? "none" : have) +
                                  "; on a hybrid host it is bound to a cgroup v1 hierarchy)");
    }
    if (Status s = WriteValue(dir + "/cgroup.subtree_control", "+" + c); !s.ok()) {
      return Status::Precondition("cgroup v2: cannot enable '" + c + "' for the children of " +
                                  dir + " (" + s.message() + ")");
    }
  }
  return Status::Ok();
}

}  // namespace

std::string CpuMaxValue(int64_t cpu_milli) {
  if (cpu_milli <= 0) return "max " + std::to_string(kCpuPeriodUs);
  const int64_t quota = std::max(kMinCpuQuotaUs, cpu_milli * kCpuPeriodUs / 1000);
  return std::to_string(quota) + " " + std::to_string(kCpuPeriodUs);
}

int64_t StatField(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::istringstream l(line);
    std::string k;
    int64_t v = 0;
    if (l >> k >> v && k == key) return v;
  }
  return -1;
}

std::string Cgroups::FindMount() {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS"
    const size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    const std::vector<std::string> after = Words(line.substr(dash + 3));
    const std::vector<std::string> before = Words(line.substr(0, dash));
    if (!after.empty() && after[0] == "cgroup2" && before.size() >= 5) return before[4];
  }
  return "";
}

Result<std::unique_ptr<Cgroups>> Cgroups::Open(const std::string& parent_in,
                                               const std::vector<std::string>& required) {
  const std::string mount = FindMount();
  if (mount.empty()) return Status::Precondition("cgroup v2: no cgroup2 file system is mounted");
  std::string parent = parent_in;
  while (parent.size() > 1 && parent.back() == '/') parent.pop_back();
  if (parent.rfind(mount + "/", 0) != 0 || parent.find("/..") != std::string::npos) {
    return Status::Invalid("--cgroup-parent '" + parent_in + "': must be a directory under the " +
                           "cgroup2 mount " + mount);
  }
  // Every level from the mount down to the parent passes the controllers on.
  std::string dir = mount;
  size_t pos = mount.size();
  while (true) {
    if (Status s = Delegate(dir, required); !s.ok()) return s;
    if (dir == parent) break;
    pos = parent.find('/', pos + 1);
    dir = parent.substr(0, pos);
    if (Status s = MakeDir(dir); !s.ok()) return s;
  }
  std::unique_ptr<Cgroups> c(new Cgroups());
  c->parent_ = parent;
  c->controllers_ = required;
  return c;
}

bool Cgroups::Has(const std::string& controller) const {
  return Contains(controllers_, controller);
}

Result<std::string> Cgroups::Create(const std::string& name, const CgroupLimits& limits) const {
  const std::string path = PathOf(name);
  // Never one that exists: an attempt is launched once, so it would be another agent's
  // (two agents given the same parent).
  if (::mkdir(path.c_str(), 0755) != 0) {
    return Status::Precondition(
        "cannot create cgroup " + path + ": " + std::strerror(errno) +
        (errno == EEXIST ? " (another agent uses --cgroup-parent " + parent_ + "?)" : ""));
  }
  auto put = [&](const char* file, const std::string& value) {
    return WriteValue(path + "/" + file, value);
  };
  Status s = Status::Ok();
  if (Has("cpu")) s = put("cpu.max", CpuMaxValue(limits.cpu_milli));
  if (s.ok() && Has("memory")) {
    s = put("memory.max",
            limits.memory_mib > 0 ? std::to_string(limits.memory_mib * 1024 * 1024) : "max");
    // Without swap accounting (or swap) the file is absent: nothing to bound.
    if (s.ok() && limits.memory_mib > 0 && fs::Exists(path + "/memory.swap.max")) {
      s = put("memory.swap.max", "0");
    }
  }
  if (s.ok() && Has("pids")) {
    s = put("pids.max", limits.pids_max > 0 ? std::to_string(limits.pids_max) : "max");
  }
  if (!s.ok()) {
    ::rmdir(path.c_str());
    return s;
  }
  return path;
}

bool Cgroups::Exists(const std::string& path) const { return fs::Exists(path + "/cgroup.procs"); }

CgroupUsage Cgroups::Usage(const std::string& path) const {
  CgroupUsage u;
  const std::string cpu = fs::ReadFile(path + "/cpu.stat").value_or("");
  u.cpu_user_ms = std::max<int64_t>(StatField(cpu, "user_usec"), 0) / 1000;
  u.cpu_system_ms = std::max<int64_t>(StatField(cpu, "system_usec"), 0) / 1000;
  auto bytes = [&](const char* file) -> int64_t {
    const std::optional<std::string> t = fs::ReadFile(path + "/" + file);
    if (!t) return 0;
    try {
      return std::stoll(*t) / 1024;
    } catch (const std::exception&) {
      return 0;
    }
  };
  u.memory_current_kib = bytes("memory.current");
  u.memory_peak_kib = bytes("memory.peak");
  u.oom_kills = std::max<int64_t>(
      StatField(fs::ReadFile(path + "/memory.events").value_or(""), "oom_kill"), 0);
  return u;
}

bool Cgroups::Populated(const std::string& path) const {
  return StatField(fs::ReadFile(path + "/cgroup.events").value_or(""), "populated") == 1;
}

void Cgroups::Kill(const std::string& path) const {
  if (fs::Exists(path + "/cgroup.kill") && WriteValue(path + "/cgroup.kill", "1").ok()) return;
  std::istringstream procs(fs::ReadFile(path + "/cgroup.procs").value_or(""));
  for (pid_t pid; procs >> pid;) ::kill(pid, SIGKILL);
}

bool Cgroups::Remove(const std::string& path) const { return ::rmdir(path.c_str()) == 0; }

}  // namespace gpuorch::agent
