#include "server/api_types.h"

#include <set>

#include "core/mig.h"
#include "server/json_fields.h"

namespace gpuorch::server {
namespace {

constexpr int64_t kMaxSeconds = 30LL * 24 * 3600;
constexpr int64_t kMaxAmount = 1'000'000'000;

using fields::Fail;

bool ValidName(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

// Top-level members (their path is their name).
bool Int(const Json& b, const char* key, int64_t lo, int64_t hi, int64_t& out, ApiError& e) {
  return fields::Int(b, key, "", lo, hi, out, e);
}
bool Str(const Json& b, const char* key, std::string& out, ApiError& e) {
  return fields::Str(b, key, "", out, e);
}

}  // namespace

core::ModelSet ResolveModels(const std::vector<std::string>& names,
                             const core::GpuModelRegistry& models,
                             std::vector<std::string>& unknown) {
  core::ModelSet set;
  unknown.clear();
  for (const std::string& name : names) {
    const core::GpuModelId id = models.Find(name);
    if (id.valid()) {
      set.Add(id);
    } else {
      unknown.push_back(name);
    }
  }
  // Only models nobody has: the workload waits (ModelUnavailable) until a node brings one.
  if (set.any() && !unknown.empty()) return core::ModelSet::None();
  return set;
}

namespace {

// How a task shares its GPU (docs/partitioning.md), from the request's `sharing` ("" when
// absent) and `mig` (a profile name, "" when absent), and the queue's default sharing for
// fractions. Sets the task's GPU request. A profile name stands for its size, compute slices
// and memory: on a model without that name the engine takes the smallest profile at least as
// large (gpu_models pins a model).
bool ParseSharingRequest(const std::string& sharing_name, const std::string& mig_name,
                         const std::string& queue_default, int64_t gpus, int64_t milli,
                         int64_t gmem, core::TaskRequest& t, ApiError& e) {
  core::Sharing sharing = core::Sharing::kTimeslice;
  if (!sharing_name.empty() && !core::ParseSharing(sharing_name, sharing)) {
    return Fail(e, "sharing", "must be timeslice, mps, mig or any");
  }
  t.gpu_count = static_cast<int32_t>(gpus);
  t.gpu_milli = static_cast<int32_t>(milli);
  t.gpu_memory_mib = gmem;
  if (!mig_name.empty()) {
    if (!sharing_name.empty() && sharing != core::Sharing::kMig) {
      return Fail(e, "mig", "a MIG profile runs with sharing mig, not " + sharing_name);
    }
    if (milli < 1000) return Fail(e, "mig", "give a MIG profile or gpu_milli, not both");
    if (gpus > 1) return Fail(e, "gpus", "a MIG instance is part of one GPU");
    int compute = 0;
    int64_t memory = INT64_MAX;
    for (const core::MigModel& m : core::MigModels()) {
      const int p = core::FindProfile(m, mig_name);
      if (p < 0) continue;
      compute = m.profiles[p].compute_slices;
      memory = std::min(memory, m.profiles[p].memory_mib);
    }
    if (compute == 0) {
      return Fail(e, "mig", "unknown MIG profile " + mig_name + " (e.g. 1g.10gb, 3g.40gb)");
    }
    if (gmem > memory) {
      return Fail(e, "gpu_memory_mib",
                  "more than the " + mig_name + " instance's " + std::to_string(memory) + " MiB");
    }
    t.gpu_count = 1;
    t.sharing = core::Sharing::kMig;
    t.mig_compute = static_cast<int8_t>(compute);
    t.gpu_milli = core::MigMilliForCompute(compute);
    t.gpu_memory_mib = memory;
    return true;
  }
  const bool fraction = gpus == 1 && milli < 1000;
  if (sharing_name.empty()) {
    if (!fraction) return true;
    (void)core::ParseSharing(queue_default, sharing);  // the config was checked at load
  } else if (sharing != core::Sharing::kTimeslice && gpus != 1) {
    return Fail(e, "sharing", "only a single-GPU task shares a GPU (gpus 1)");
  } else if (sharing == core::Sharing::kMps && !fraction) {
    return Fail(e, "sharing", "mps is for a fraction (gpu_milli below 1000)");
  }
  t.sharing = sharing;
  if (sharing == core::Sharing::kMig || sharing == core::Sharing::kAny) {
    // A fraction rounds up to whole compute slices (sevenths), wherever it then runs.
    const int compute = core::MigComputeForMilli(static_cast<int32_t>(milli));
    bool exists = false;
    for (const core::MigModel& m : core::MigModels())
      exists |= core::ProfileFor(m, compute, gmem) >= 0;
    if (!exists) {
      return Fail(e, "gpu_memory_mib",
                  "no MIG profile has " + std::to_string(compute) + " compute slices (gpu_milli " +
                      std::to_string(milli) + ") and " + std::to_string(gmem) +
                      " MiB or more: ask for more gpu_milli, or a profile by name (mig)");
    }
    t.mig_compute = static_cast<int8_t>(compute);
    t.gpu_milli = core::MigMilliForCompute(t.mig_compute);
  }
  return true;
}

}  // namespace

bool ParseWorkload(const Json& b, const ServerConfig& config,
                   const std::map<std::string, core::QueueId>& leaf_queues,
                   const core::GpuModelRegistry& models, ParsedWorkload& out, ApiError& e) {
  static const std::set<std::string> kFields = {"name",
                                                "queue",
                                                "kind",
                                                "priority",
                                                "preemptible",
                                                "tasks",
                                                "min_tasks",
                                                "max_tasks",
                                                "gpus",
                                                "gpu_milli",
                                                "gpu_memory_mib",
                                                "cpu_milli",
                                                "memory_mib",
                                                "gpu_models",
                                                "topology",
                                                "command",
                                                "env",
                                                "workdir",
                                                "runtime_estimate_s",
                                                "min_runtime_s",
                                                "grace_period_s",
                                                "replicas",
                                                "autoscale",
                                                "readiness",
                                                "drain_timeout_s",
                                                "sharing",
                                                "mig"};
  if (!b.is_object()) return Fail(e, "", "body must be a JSON object");
  if (!fields::Known(b, "", kFields, e)) return false;
  core::WorkloadSpec& s = out.spec;
  if (!b.contains("name")) return Fail(e, "name", "required");
  if (!Str(b, "name", s.name, e)) return false;
  if (!ValidName(s.name)) return Fail(e, "name", "must be 1-63 characters of [A-Za-z0-9._-]");
  if (!b.contains("queue")) return Fail(e, "queue", "required");
  if (!Str(b, "queue", out.queue_name, e)) return false;
  auto q = leaf_queues.find(out.queue_name);
  if (q == leaf_queues.end()) {
    return Fail(e, "queue",
                config.FindQueue(out.queue_name) ? "is not a leaf queue: " + out.queue_name
                                                 : "unknown queue " + out.queue_name);
  }
  s.queue = q->second;
  std::string kind = "experiment";
  if (!Str(b, "kind", kind, e)) return false;
  if (kind == "training")
    s.kind = core::WorkloadKind::kTraining;
  else if (kind == "inference")
    s.kind = core::WorkloadKind::kInference;
  else if (kind == "experiment")
    s.kind = core::WorkloadKind::kExperiment;
  else
    return Fail(e, "kind", "must be training, inference or experiment");
  out.priority_name = config.default_priority;
  if (!Str(b, "priority", out.priority_name, e)) return false;
  const PriorityClass* pc = config.FindPriority(out.priority_name);
  if (pc == nullptr) return Fail(e, "priority", "unknown priority class " + out.priority_name);
  s.priority = pc->value;
  s.preemptible = pc->preemptible;
  if (b.contains("preemptible")) {
    if (!b["preemptible"].is_boolean()) return Fail(e, "preemptible", "must be true or false");
    s.preemptible = b["preemptible"].get<bool>();
  }
  int64_t min_tasks = 1, max_tasks = 0, tasks = 0;
  if (!Int(b, "tasks", 1, 10000, tasks, e)) return false;
  if (tasks > 0) min_tasks = max_tasks = tasks;
  if (!Int(b, "min_tasks", 1, 10000, min_tasks, e)) return false;
  if (!Int(b, "max_tasks", 1, 10000, max_tasks, e)) return false;
  if (max_tasks == 0) max_tasks = min_tasks;
  if (max_tasks < min_tasks) return Fail(e, "max_tasks", "must be >= min_tasks");
  s.min_tasks = static_cast<int32_t>(min_tasks);
  s.max_tasks = static_cast<int32_t>(max_tasks);
  int64_t gpus = 0, milli = 1000, gmem = 0, cpu = 0, mem = 0;
  if (!Int(b, "gpus", 0, core::kMaxGpusPerNode, gpus, e)) return false;
  if (!Int(b, "gpu_milli", 1, 1000, milli, e)) return false;
  if (!Int(b, "gpu_memory_mib", 0, kMaxAmount, gmem, e)) return false;
  if (!Int(b, "cpu_milli", 0, kMaxAmount, cpu, e)) return false;
  if (!Int(b, "memory_mib", 0, kMaxAmount, mem, e)) return false;
  if (milli < 1000 && gpus == 0) gpus = 1;  // a fraction implies one GPU
  if (milli < 1000 && gpus != 1) return Fail(e, "gpu_milli", "a fraction needs gpus 1");
  std::string sharing_name, mig_name;
  if (!Str(b, "sharing", sharing_name, e) || !Str(b, "mig", mig_name, e)) return false;
  if (!ParseSharingRequest(b.contains("sharing") ? sharing_name : "", mig_name,
                           config.SharingOf(out.queue_name), gpus, milli, gmem, s.task, e)) {
    return false;
  }
  s.task.milli_cpu = cpu;
  s.task.memory_mib = mem;
  if (s.task.gpu_count == 0 && cpu == 0 && mem == 0) {
    return Fail(e, "gpus", "the task requests nothing (set gpus, cpu_milli or memory_mib)");
  }
  Json model_names = Json::array();
  if (b.contains("gpu_models")) {
    const Json& ms = b["gpu_models"];
    if (!ms.is_array()) return Fail(e, "gpu_models", "must be a list of strings");
    for (size_t i = 0; i < ms.size(); ++i) {
      std::string f = "gpu_models[" + std::to_string(i) + "]";
      if (!ms[i].is_string() || ms[i].get<std::string>().empty()) {
        return Fail(e, f, "must be a non-empty string");
      }
      model_names.push_back(ms[i]);
    }
    // Only nodes and the config name models: a request naming one nobody has must not take
    // a place in the bounded registry for good (64 new names would fill it).
    s.task.models =
        ResolveModels(model_names.get<std::vector<std::string>>(), models, out.unknown_models);
  }
  if (b.contains("topology")) {
    const Json& t = b["topology"];
    if (!t.is_object()) return Fail(e, "topology", "must be an object");
    for (const auto& [k, v] : t.items()) {
      if (k != "level" && k != "required") return Fail(e, "topology." + k, "unknown field");
    }
    if (!t.contains("level") || !t["level"].is_string()) {
      return Fail(e, "topology.level", "required: zone, rack, node or nvlink");
    }
    std::string level = t["level"].get<std::string>();
    if (level == "zone")
      s.topology.level = core::TopologyLevel::kZone;
    else if (level == "rack")
      s.topology.level = core::TopologyLevel::kRack;
    else if (level == "node")
      s.topology.level = core::TopologyLevel::kNode;
    else if (level == "nvlink")
      s.topology.level = core::TopologyLevel::kNvlink;
    else
      return Fail(e, "topology.level", "must be zone, rack, node or nvlink");
    if (t.contains("required")) {
      if (!t["required"].is_boolean()) return Fail(e, "topology.required", "must be a boolean");
      s.topology.required = t["required"].get<bool>();
    }
  }
  if (!b.contains("command")) return Fail(e, "command", "required");
  if (!b["command"].is_array() || b["command"].empty()) {
    return Fail(e, "command", "must be a non-empty list of strings");
  }
  for (size_t i = 0; i < b["command"].size(); ++i) {
    if (!b["command"][i].is_string()) {
      return Fail(e, "command[" + std::to_string(i) + "]", "must be a string");
    }
    out.command.push_back(b["command"][i].get<std::string>());
  }
  if (b.contains("env")) {
    if (!b["env"].is_object()) return Fail(e, "env", "must be an object of strings");
    for (const auto& [k, v] : b["env"].items()) {
      if (k.empty() || k.find('=') != std::string::npos) return Fail(e, "env", "bad name " + k);
      if (!v.is_string()) return Fail(e, "env." + k, "must be a string");
      out.env[k] = v.get<std::string>();
    }
  }
  if (!Str(b, "workdir", out.workdir, e)) return false;
  int64_t est = 0, minrt = 0, grace = 30;
  if (!Int(b, "runtime_estimate_s", 0, kMaxSeconds, est, e)) return false;
  if (!Int(b, "min_runtime_s", 0, kMaxSeconds, minrt, e)) return false;
  if (!Int(b, "grace_period_s", 0, kMaxSeconds, grace, e)) return false;
  s.runtime_estimate = est * core::kSecond;
  s.min_runtime = minrt * core::kSecond;
  s.grace_period = grace * core::kSecond;
  if (core::Status st = s.Validate(); !st.ok()) return Fail(e, "", st.message());
  Json canonical{{"name", s.name},
                 {"queue", out.queue_name},
                 {"kind", kind},
                 {"priority", out.priority_name},
                 {"preemptible", s.preemptible},
                 {"min_tasks", min_tasks},
                 {"max_tasks", max_tasks},
                 {"gpus", gpus},
                 {"gpu_milli", milli},
                 {"gpu_memory_mib", gmem},
                 {"cpu_milli", cpu},
                 {"memory_mib", mem},
                 {"gpu_models", model_names},
                 // Resolved (the queue's default included), so that a restart
                 // reads the request its running tasks were placed for.
                 {"sharing", core::ToString(s.task.sharing)},
                 {"mig", mig_name},
                 {"command", out.command},
                 {"env", out.env},
                 {"workdir", out.workdir},
                 {"runtime_estimate_s", est},
                 {"min_runtime_s", minrt},
                 {"grace_period_s", grace}};
  if (b.contains("topology")) canonical["topology"] = b["topology"];
  if (IsServiceSubmission(b)) {
    ServiceSpec service;
    if (!ParseService(b, service, e)) return false;
    service.Canonical(canonical);
    out.service = std::move(service);
  } else {
    for (const char* k : {"replicas", "autoscale", "readiness", "drain_timeout_s"}) {
      if (b.contains(k)) {
        return Fail(e, k,
                    kind == "inference" ? "only a service has it (give replicas)"
                                        : "only an inference service (kind inference) has it");
      }
    }
  }
  out.canonical_json = canonical.dump();
  return true;
}

bool CheckQueuePolicy(const ParsedWorkload& w, const ServerConfig& config, ApiError& e) {
  if (!config.AllowsPriority(w.queue_name, w.priority_name)) {
    e = ApiError{403, "priority",
                 "priority: queue " + w.queue_name + " may not submit priority class " +
                     w.priority_name + " (allowed: " + config.AllowedPriorities(w.queue_name) +
                     ")"};
    return false;
  }
  if (!w.spec.preemptible && !config.AllowsNonPreemptible(w.queue_name)) {
    e = ApiError{403, "preemptible",
                 "preemptible: queue " + w.queue_name +
                     " may not submit non-preemptible work (its allowed_priorities name no "
                     "non-preemptible class)"};
    return false;
  }
  return true;
}

}  // namespace gpuorch::server
