#include "agent/protocol.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <type_traits>

namespace gpuorch::agent {
namespace {

using core::Result;
using core::Status;
using nlohmann::json;

json SpecToJson(const TaskSpec& s) {
  return {{"workload", s.key.workload},
          {"task", s.key.task},
          {"attempt", s.key.attempt},
          {"command", s.command},
          {"env", s.env},
          {"workdir", s.workdir},
          {"gpus", s.gpus},
          {"gpu_milli", s.gpu_milli},
          {"grace_period_ms", s.grace_period_ms},
          {"run_as", s.run_as},
          {"cpu_milli", s.cpu_milli},
          {"memory_mib", s.memory_mib},
          {"gpu_memory_mib", s.gpu_memory_mib},
          {"name", s.name},
          {"queue", s.queue}};
}

// An integer of type T. nlohmann's get<T>() converts a float or an integer out of T's
// range with undefined behaviour (the task_state fuzzer found 4.4e27 as a grace period):
// anything but an integer that fits is a type error, which callers catch.
template <typename T>
T Int(const json& v, const char* field) {
  static_assert(std::is_signed_v<T>);
  bool fits = false;
  if (v.is_number_unsigned()) {
    fits = v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max());
  } else if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    fits = i >= std::numeric_limits<T>::min() && i <= std::numeric_limits<T>::max();
  }
  if (!fits) {
    throw json::type_error::create(302, std::string(field) + ": must be an integer in range", &v);
  }
  return v.is_number_unsigned() ? static_cast<T>(v.get<uint64_t>())
                                : static_cast<T>(v.get<int64_t>());
}

// Throws nlohmann::json exceptions on missing or mistyped fields; callers catch them.
TaskSpec SpecFromJson(const json& j) {
  TaskSpec s;
  s.key.workload = Int<int64_t>(j.at("workload"), "workload");
  s.key.task = Int<int32_t>(j.at("task"), "task");
  s.key.attempt = Int<int32_t>(j.at("attempt"), "attempt");
  s.command = j.at("command").get<std::vector<std::string>>();
  if (j.contains("env")) s.env = j.at("env").get<std::map<std::string, std::string>>();
  if (j.contains("workdir")) s.workdir = j.at("workdir").get<std::string>();
  if (j.contains("gpus")) {
    if (!j.at("gpus").is_array()) throw json::type_error::create(302, "gpus: must be a list", &j);
    for (const json& g : j.at("gpus")) s.gpus.push_back(Int<int32_t>(g, "gpus[]"));
  }
  if (j.contains("gpu_milli")) s.gpu_milli = Int<int32_t>(j.at("gpu_milli"), "gpu_milli");
  if (j.contains("grace_period_ms")) {
    s.grace_period_ms = Int<int64_t>(j.at("grace_period_ms"), "grace_period_ms");
  }
  if (j.contains("run_as")) s.run_as = j.at("run_as").get<std::string>();
  if (j.contains("cpu_milli")) s.cpu_milli = Int<int64_t>(j.at("cpu_milli"), "cpu_milli");
  if (j.contains("memory_mib")) s.memory_mib = Int<int64_t>(j.at("memory_mib"), "memory_mib");
  if (j.contains("gpu_memory_mib")) {
    s.gpu_memory_mib = Int<int64_t>(j.at("gpu_memory_mib"), "gpu_memory_mib");
  }
  if (j.contains("name")) s.name = j.at("name").get<std::string>();
  if (j.contains("queue")) s.queue = j.at("queue").get<std::string>();
  return s;
}

}  // namespace

std::string AuthorizationHeader(const std::string& token) {
  return token.empty() ? std::string() : "Bearer " + token;
}

std::string RegisterRequestJson(const Registration& r) {
  json gpus = json::array();
  for (const GpuInfo& g : r.gpus) {
    gpus.push_back({{"index", g.index},
                    {"uuid", g.uuid},
                    {"model", g.model},
                    {"memory_mib", g.memory_mib},
                    {"mig", g.mig}});
    if (!g.pci_bus_id.empty()) gpus.back()["pci_bus_id"] = g.pci_bus_id;
  }
  json j = {{"name", r.name},           {"address", r.address},
            {"zone", r.zone},           {"rack", r.rack},
            {"cpu_milli", r.cpu_milli}, {"memory_mib", r.memory_mib},
            {"backend", r.backend},     {"nvlink_domain_gpus", r.nvlink_domain_gpus},
            {"gpus", std::move(gpus)}};
  if (!r.log_secret.empty()) j["log_secret"] = r.log_secret;
  if (!r.metrics_address.empty()) j["metrics_address"] = r.metrics_address;
  if (!r.telemetry.empty()) j["telemetry"] = r.telemetry;
  return j.dump();
}

Result<int64_t> ParseRegisterResponse(const std::string& body) {
  try {
    const json j = json::parse(body);
    return j.contains("heartbeat_interval_ms")
               ? Int<int64_t>(j.at("heartbeat_interval_ms"), "heartbeat_interval_ms")
               : int64_t{0};
  } catch (const json::exception& e) {
    return Status::Invalid(std::string("register answer: ") + e.what());
  }
}

namespace {

// One decimal: what a dashboard shows, and a shorter heartbeat.
double Tenth(double v) { return std::round(v * 10) / 10; }

json TelemetrySummary(const Telemetry& t) {
  json gpus = json::array();
  for (const GpuSample& g : t.gpus) {
    json j = {{"index", g.index}, {"healthy", g.unhealthy.empty()}};
    if (!(g.missing & kFieldUtil)) j["util"] = Tenth(g.util_pct);
    if (!(g.missing & kFieldFb)) j["mem_used_mib"] = g.fb_used_mib;
    if (!g.unhealthy.empty()) j["health"] = g.unhealthy;
    gpus.push_back(std::move(j));
  }
  json tasks = json::array();
  for (const TaskUse& u : t.tasks) {
    tasks.push_back({{"workload", u.key.workload},
                     {"task", u.key.task},
                     {"attempt", u.key.attempt},
                     {"util", Tenth(u.util_pct)},
                     {"mem_used_mib", u.memory_used_mib}});
  }
  return json{{"gpus", std::move(gpus)}, {"tasks", std::move(tasks)}};
}

}  // namespace

std::string HeartbeatRequestJson(const std::vector<TaskStatus>& tasks, const Telemetry* telemetry) {
  json list = json::array();
  for (const TaskStatus& t : tasks) {
    json j = {{"workload", t.key.workload}, {"task", t.key.task}, {"attempt", t.key.attempt}};
    if (t.state == TaskState::kRunning) {
      j["state"] = "running";
      j["pid"] = t.pid;
    } else {
      j["state"] = "exited";
      j["exit_code"] = t.exit.code;
      j["cpu_user_ms"] = t.exit.cpu_user_ms;
      j["cpu_system_ms"] = t.exit.cpu_system_ms;
      j["max_rss_kib"] = t.exit.max_rss_kib;
      if (t.exit.memory_peak_kib > 0) j["memory_peak_kib"] = t.exit.memory_peak_kib;
    }
    list.push_back(std::move(j));
  }
  json body = {{"tasks", std::move(list)}};
  if (telemetry != nullptr) body["telemetry"] = TelemetrySummary(*telemetry);
  return body.dump();
}

std::vector<TaskStatus> ReportTracker::ToReport(const std::vector<TaskStatus>& tasks) const {
  std::vector<TaskStatus> out;
  for (const TaskStatus& t : tasks) {
    auto acked = running_.find(t.key);
    if (t.state == TaskState::kRunning && acked != running_.end() && acked->second == t.pid) {
      continue;
    }
    out.push_back(t);
  }
  return out;
}

bool ReportTracker::Acknowledge(int64_t epoch, const std::vector<TaskStatus>& sent) {
  if (epoch != epoch_) {
    const bool complete = running_.empty();  // then `sent` held every running task
    running_.clear();
    epoch_ = epoch;
    if (!complete) return false;
  }
  for (const TaskStatus& t : sent) {
    if (t.state == TaskState::kRunning) {
      running_[t.key] = t.pid;
    } else {
      running_.erase(t.key);
    }
  }
  return true;
}

void ReportTracker::Reset() {
  running_.clear();
  epoch_ = 0;
}

Result<DesiredList> ParseHeartbeatResponse(const std::string& body) {
  try {
    const json j = json::parse(body);
    DesiredList out;
    out.epoch = j.value("epoch", int64_t{0});
    out.version = j.value("version", int64_t{0});
    out.heartbeat_interval_ms = j.value("heartbeat_interval_ms", int64_t{0});
    for (const json& d : j.at("desired")) out.tasks.push_back(SpecFromJson(d));
    return out;
  } catch (const json::exception& e) {
    return Status::Invalid(std::string("heartbeat answer: ") + e.what());
  }
}

std::string TaskSpecJson(const TaskSpec& spec) { return SpecToJson(spec).dump(); }

Result<TaskSpec> ParseTaskSpec(const std::string& body) {
  try {
    return SpecFromJson(json::parse(body));
  } catch (const json::exception& e) {
    return Status::Invalid(std::string("task spec: ") + e.what());
  }
}

}  // namespace gpuorch::agent
