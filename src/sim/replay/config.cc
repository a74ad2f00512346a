// CLUSTER.yaml and QUEUES.yaml (docs/simulator.md). Errors name the file, the line and the
// field; unknown keys are errors too, so that a typo does not silently become a default.
#include "sim/replay/config.h"

#include <algorithm>
#include <set>
#include <type_traits>

#include "sim/replay/yaml_fields.h"

namespace gpuorch::sim {

using core::Result;
using core::Status;

int32_t ClusterConfig::max_node_gpus() const {
  int32_t m = 0;
  for (const core::NodeSpec& n : nodes) m = std::max(m, n.gpu_count);
  return m;
}

int64_t ClusterConfig::total_gpus() const {
  int64_t t = 0;
  for (const core::NodeSpec& n : nodes) t += n.gpu_count;
  return t;
}

Status ClusterConfig::Expand() {
  nodes.clear();
  owners.clear();
  int32_t in_rack = 0, rack_no = 0;
  for (const NodeGroup& g : groups) {
    auto model = models.Intern(g.model);
    if (!model.ok())
      return Status::Invalid("node_groups." + g.name + ".model: " + model.status().message());
    for (int32_t k = 0; k < g.count; ++k) {
      core::NodeSpec n;
      n.name = g.name + "-" + std::to_string(k);
      n.gpu_model = *model;
      n.gpu_count = g.gpus;
      n.gpu_memory_mib = g.gpu_memory_mib;
      n.milli_cpu = g.milli_cpu;
      n.memory_mib = g.memory_mib;
      n.zone = g.zone;
      if (!g.rack.empty()) {
        n.rack = g.rack;
      } else if (rack_size > 0) {
        n.rack = "rack-" + std::to_string(rack_no);
        if (++in_rack == rack_size) in_rack = 0, ++rack_no;
      }
      if (Status s = n.Validate(); !s.ok()) return Status::Invalid(g.name + ": " + s.message());
      nodes.push_back(std::move(n));
      owners.push_back(g.owner);
    }
  }
  if (nodes.empty()) return Status::Invalid("node_groups: no nodes");
  return Status::Ok();
}

int QueuesConfig::Find(const std::string& name) const {
  for (size_t i = 0; i < queues.size(); ++i) {
    if (queues[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

bool QueuesConfig::IsLeaf(size_t q) const {
  return std::none_of(queues.begin(), queues.end(),
                      [&](const TenantQueue& t) { return t.parent == queues[q].name; });
}

using yaml::At;
using yaml::CheckKeys;
using yaml::Int;
using yaml::Parse;
using yaml::Scalar;

Result<ClusterConfig> ParseClusterYaml(const std::string& text, const std::string& file) {
  auto root = Parse(text, file);
  if (!root.ok()) return root.status();
  const YAML::Node& r = *root;
  if (Status s = CheckKeys(file, r, "cluster", {"rack_size", "node_groups"}); !s.ok()) return s;
  ClusterConfig c;
  int64_t v = 0;
  if (r["rack_size"]) {
    if (Status s = Int(file, r["rack_size"], "rack_size", 1, 100000, v); !s.ok()) return s;
    c.rack_size = static_cast<int32_t>(v);
  }
  const YAML::Node groups = r["node_groups"];
  if (!groups || !groups.IsSequence() || groups.size() == 0) {
    return At(file, groups ? groups : r, "node_groups", "expected a non-empty list");
  }
  std::set<std::string> names;
  for (size_t i = 0; i < groups.size(); ++i) {
    const YAML::Node g = groups[i];
    const std::string where = "node_groups[" + std::to_string(i) + "]";
    if (Status s = CheckKeys(file, g, where,
                             {"name", "count", "gpus", "model", "gpu_memory_gib", "cpus",
                              "memory_gib", "owner", "rack", "zone"});
        !s.ok()) {
      return s;
    }
    NodeGroup ng;
    if (!g["name"]) return At(file, g, where + ".name", "required");
    if (Status s = Scalar(file, g["name"], where + ".name", ng.name); !s.ok()) return s;
    if (ng.name.empty() || !names.insert(ng.name).second) {
      return At(file, g["name"], where + ".name", "must be non-empty and unique");
    }
    auto opt_int = [&](const char* key, int64_t lo, int64_t hi, auto& field) -> Status {
      if (!g[key]) return Status::Ok();
      if (Status s = Int(file, g[key], where + "." + key, lo, hi, v); !s.ok()) return s;
      field = static_cast<std::remove_reference_t<decltype(field)>>(v);
      return Status::Ok();
    };
    int64_t mem_gib = 16, cpus = 64, host_gib = 512;
    for (Status s : {opt_int("count", 1, 1000000, ng.count), opt_int("gpus", 0, 16, ng.gpus),
                     opt_int("gpu_memory_gib", 1, 4096, mem_gib), opt_int("cpus", 0, 100000, cpus),
                     opt_int("memory_gib", 0, 1 << 20, host_gib)}) {
      if (!s.ok()) return s;
    }
    ng.gpu_memory_mib = mem_gib * 1024;
    ng.milli_cpu = cpus * 1000;
    ng.memory_mib = host_gib * 1024;
    for (auto [key, field] : {std::pair{"model", &ng.model}, std::pair{"owner", &ng.owner},
                              std::pair{"rack", &ng.rack}, std::pair{"zone", &ng.zone}}) {
      if (!g[key]) continue;
      if (Status s = Scalar(file, g[key], where + "." + key, *field); !s.ok()) return s;
    }
    if (ng.model.empty()) return At(file, g, where + ".model", "must not be empty");
    c.groups.push_back(std::move(ng));
  }
  if (Status s = c.Expand(); !s.ok()) return Status::Invalid(file + ": " + s.message());
  return c;
}

Result<QueuesConfig> ParseQueuesYaml(const std::string& text, const std::string& file) {
  auto root = Parse(text, file);
  if (!root.ok()) return root.status();
  const YAML::Node& r = *root;
  if (Status s = CheckKeys(file, r, "queues", {"queues"}); !s.ok()) return s;
  const YAML::Node qs = r["queues"];
  if (!qs || !qs.IsSequence() || qs.size() == 0) {
    return At(file, qs ? qs : r, "queues", "expected a non-empty list");
  }
  QueuesConfig c;
  for (size_t i = 0; i < qs.size(); ++i) {
    const YAML::Node q = qs[i];
    const std::string where = "queues[" + std::to_string(i) + "]";
    if (Status s =
            CheckKeys(file, q, where,
                      {"name", "parent", "guarantee", "limit", "weight", "can_borrow", "can_lend"});
        !s.ok()) {
      return s;
    }
    TenantQueue t;
    if (!q["name"]) return At(file, q, where + ".name", "required");
    if (Status s = Scalar(file, q["name"], where + ".name", t.name); !s.ok()) return s;
    if (t.name.empty() || c.Find(t.name) >= 0) {
      return At(file, q["name"], where + ".name", "must be non-empty and unique");
    }
    if (q["parent"]) {
      if (Status s = Scalar(file, q["parent"], where + ".parent", t.parent); !s.ok()) return s;
      if (c.Find(t.parent) < 0) {
        return At(file, q["parent"], where + ".parent", "must name an earlier queue");
      }
    }
    int64_t v = 0;
    if (q["guarantee"]) {
      if (Status s = Int(file, q["guarantee"], where + ".guarantee", 0, 10000000, v); !s.ok()) {
        return s;
      }
      t.guarantee_milli = v * 1000;
    }
    if (q["limit"] && !(q["limit"].IsScalar() && q["limit"].Scalar() == "unlimited")) {
      if (Status s = Int(file, q["limit"], where + ".limit", 0, 10000000, v); !s.ok()) return s;
      t.limit_milli = v * 1000;
      if (t.limit_milli < t.guarantee_milli) {
        return At(file, q["limit"], where + ".limit", "must be >= guarantee");
      }
    }
    if (q["weight"]) {
      if (Status s = Int(file, q["weight"], where + ".weight", 1, 1000000, v); !s.ok()) return s;
      t.weight = static_cast<int32_t>(v);
    }
    for (auto [key, field] :
         {std::pair{"can_borrow", &t.can_borrow}, std::pair{"can_lend", &t.can_lend}}) {
      if (!q[key]) continue;
      if (Status s = Scalar(file, q[key], where + "." + key, *field); !s.ok()) return s;
    }
    c.queues.push_back(std::move(t));
  }
  return c;
}

Result<ClusterConfig> LoadClusterYaml(const std::string& path) {
  auto text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  return ParseClusterYaml(*text, path);
}

Result<QueuesConfig> LoadQueuesYaml(const std::string& path) {
  auto text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  return ParseQueuesYaml(*text, path);
}

namespace {

// A string as a double-quoted YAML scalar, escaped (quotes, backslashes, control and
// non-ASCII bytes), so that any accepted name reads back as itself.
std::string Quoted(const std::string& s) {
  YAML::Emitter e;
  e.SetOutputCharset(YAML::EscapeNonAscii);
  e << YAML::DoubleQuoted << s;
  return std::string(e.c_str(), e.size());
}

}  // namespace

std::string ClusterToYaml(const ClusterConfig& c) {
  std::string y;
  if (c.rack_size > 0) y += "rack_size: " + std::to_string(c.rack_size) + "\n";
  y += "node_groups:\n";
  for (const NodeGroup& g : c.groups) {
    y += "  - {name: " + Quoted(g.name) + ", count: " + std::to_string(g.count) +
         ", gpus: " + std::to_string(g.gpus) + ", model: " + Quoted(g.model) +
         ", gpu_memory_gib: " + std::to_string(g.gpu_memory_mib / 1024) +
         ", cpus: " + std::to_string(g.milli_cpu / 1000) +
         ", memory_gib: " + std::to_string(g.memory_mib / 1024);
    if (!g.owner.empty()) y += ", owner: " + Quoted(g.owner);
    if (!g.rack.empty()) y += ", rack: " + Quoted(g.rack);
    if (!g.zone.empty()) y += ", zone: " + Quoted(g.zone);
    y += "}\n";
  }
  return y;
}

std::string QueuesToYaml(const QueuesConfig& q) {
  std::string y = "queues:\n";
  for (const TenantQueue& t : q.queues) {
    y += "  - {name: " + Quoted(t.name);
    if (!t.parent.empty()) y += ", parent: " + Quoted(t.parent);
    y += ", guarantee: " + std::to_string(t.guarantee_milli / 1000);
    if (t.limit_milli >= 0) y += ", limit: " + std::to_string(t.limit_milli / 1000);
    y += ", weight: " + std::to_string(t.weight);
    y += std::string(", can_borrow: ") + (t.can_borrow ? "true" : "false");
    y += std::string(", can_lend: ") + (t.can_lend ? "true" : "false") + "}\n";
  }
  return y;
}

}  // namespace gpuorch::sim
