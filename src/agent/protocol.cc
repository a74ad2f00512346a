#include "agent/protocol.h"

#include <algorithm>
#include <cctype>
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

// Bounds of the `service` member (docs/api.md, "Agent protocol").
constexpr size_t kMaxHttpPathBytes = 2048;
constexpr size_t kMaxMetricNameBytes = 256;
constexpr size_t kMaxServiceGauges = 64;
constexpr int64_t kMaxServiceSeconds = 86400;
constexpr int64_t kMinServicePeriodMs = 100;

json ServiceToJson(const ServiceSpec& s) {
  json j = {{"gauges", s.gauges}};
  if (s.readiness) {
    j["readiness"] = {
        {"http_path", s.readiness->http_path},
        {"initial_delay_s", static_cast<double>(s.readiness->initial_delay_ms) / 1000},
        {"period_s", static_cast<double>(s.readiness->period_ms) / 1000}};
  }
  if (s.port > 0) j["port"] = s.port;
  return j;
}

json SpecToJson(const TaskSpec& s) {
  json j = {{"workload", s.key.workload},
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
  if (s.service) j["service"] = ServiceToJson(*s.service);
  if (s.mig) j["mig"] = {{"gpu", s.mig->gpu}, {"start", s.mig->start}, {"profile", s.mig->profile}};
  if (!s.sharing.empty()) j["sharing"] = s.sharing;
  return j;
}

json MigDevicesJson(const std::vector<MigDevice>& devices) {
  json out = json::array();
  for (const MigDevice& d : devices) {
    out.push_back({{"start", d.start}, {"profile", d.profile}, {"uuid", d.uuid}});
  }
  return out;
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

// Seconds (a finite number, fractions allowed) as milliseconds within [lo_ms, hi_ms].
std::optional<int64_t> SecondsMs(const json& v, int64_t lo_ms, int64_t hi_ms) {
  if (!v.is_number()) return std::nullopt;
  const double ms = v.get<double>() * 1000;
  if (!std::isfinite(ms) || ms < static_cast<double>(lo_ms) || ms > static_cast<double>(hi_ms)) {
    return std::nullopt;
  }
  return static_cast<int64_t>(std::llround(ms));
}

// A path for an HTTP request line: "/" then visible ASCII, nothing that could break the line.
bool GoodHttpPath(const std::string& p) {
  if (p.empty() || p[0] != '/' || p.size() > kMaxHttpPathBytes) return false;
  return std::all_of(p.begin(), p.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// A Prometheus metric name: [a-zA-Z_:][a-zA-Z0-9_:]*.
bool GoodMetricName(const std::string& n) {
  if (n.empty() || n.size() > kMaxMetricNameBytes) return false;
  auto head = [](char c) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
  };
  return head(n[0]) && std::all_of(n.begin() + 1, n.end(), [&](char c) {
           return head(c) || std::isdigit(static_cast<unsigned char>(c));
         });
}

// The `readiness` member, or why it is ignored.
Result<ReadinessSpec> ReadinessFromJson(const json& j) {
  if (!j.is_object()) return Status::Invalid("not an object");
  ReadinessSpec r;
  if (!j.contains("http_path") || !j.at("http_path").is_string() ||
      !GoodHttpPath(j.at("http_path").get<std::string>())) {
    return Status::Invalid("http_path must be a path starting with '/' (visible ASCII)");
  }
  r.http_path = j.at("http_path").get<std::string>();
  if (j.contains("initial_delay_s")) {
    std::optional<int64_t> ms = SecondsMs(j.at("initial_delay_s"), 0, kMaxServiceSeconds * 1000);
    if (!ms) return Status::Invalid("initial_delay_s must be seconds in 0..86400");
    r.initial_delay_ms = *ms;
  }
  if (j.contains("period_s")) {
    std::optional<int64_t> ms =
        SecondsMs(j.at("period_s"), kMinServicePeriodMs, kMaxServiceSeconds * 1000);
    if (!ms) return Status::Invalid("period_s must be seconds in 0.1..86400");
    r.period_ms = *ms;
  }
  return r;
}

// The `service` member: nullopt when it is not an object. A bad `readiness` or `gauges`
// (or gauge name) is left out and said in `warnings`, never fatal to the entry: the task
// still runs, and is still a service. `port` is read only from the agent's own state file.
std::optional<ServiceSpec> ServiceFromJson(const json& j, const TaskKey& key, bool keep_port,
                                           std::vector<std::string>* warnings) {
  const std::string who = "task " + key.DirName() + ": service";
  auto warn = [&](const std::string& what) {
    if (warnings != nullptr) warnings->push_back(who + what);
  };
  if (!j.is_object()) {
    warn(" ignored: not an object");
    return std::nullopt;
  }
  ServiceSpec s;
  if (j.contains("readiness") && !j.at("readiness").is_null()) {
    Result<ReadinessSpec> r = ReadinessFromJson(j.at("readiness"));
    if (r.ok()) {
      s.readiness = *r;
    } else {
      warn(".readiness ignored (" + r.status().message() +
           "): ready once its port accepts a connection");
    }
  }
  if (j.contains("gauges")) {
    const json& g = j.at("gauges");
    if (!g.is_array()) {
      warn(".gauges ignored: not a list");
    } else {
      for (const json& n : g) {
        const std::string name = n.is_string() ? n.get<std::string>() : std::string();
        if (!GoodMetricName(name)) {
          warn(".gauges: ignored " + n.dump().substr(0, 80) + " (not a Prometheus metric name)");
        } else if (s.gauges.size() >= kMaxServiceGauges) {
          warn(".gauges: ignored " + name + " (more than " + std::to_string(kMaxServiceGauges) +
               " names)");
        } else if (std::find(s.gauges.begin(), s.gauges.end(), name) == s.gauges.end()) {
          s.gauges.push_back(name);
        }
      }
    }
  }
  if (keep_port && j.contains("port") && j.at("port").is_number_integer()) {
    const int64_t p = j.at("port").get<int64_t>();
    if (p > 0 && p <= 65535) s.port = static_cast<int32_t>(p);
  }
  return s;
}

// A string member; the error names it.
std::string Str(const json& v, const char* field) {
  if (!v.is_string())
    throw json::type_error::create(302, std::string(field) + ": must be a string", &v);
  return v.get<std::string>();
}

// The entry's `mig` member: {"gpu": N, "start": S, "profile": "3g.40gb"}.
MigPlacement MigPlacementFromJson(const json& j) {
  if (!j.is_object()) throw json::type_error::create(302, "mig: must be an object", &j);
  for (const char* f : {"gpu", "start", "profile"}) {
    if (!j.contains(f)) {
      throw json::out_of_range::create(403, std::string("mig.") + f + ": missing", &j);
    }
  }
  MigPlacement m;
  m.gpu = Int<int32_t>(j.at("gpu"), "mig.gpu");
  m.start = Int<int32_t>(j.at("start"), "mig.start");
  m.profile = Str(j.at("profile"), "mig.profile");
  if (m.gpu < 0 || m.start < 0 || m.start >= core::kMigMemorySlices) {
    throw json::out_of_range::create(401, "mig: gpu must be >= 0 and start in 0..7", &j);
  }
  return m;
}

// Throws nlohmann::json exceptions on missing or mistyped fields; callers catch them.
// `from_state_file`: the agent's own record (which keeps the port it picked).
TaskSpec SpecFromJson(const json& j, bool from_state_file, std::vector<std::string>* warnings) {
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
  if (j.contains("service") && !j.at("service").is_null()) {
    s.service = ServiceFromJson(j.at("service"), s.key, from_state_file, warnings);
  }
  if (j.contains("mig") && !j.at("mig").is_null()) s.mig = MigPlacementFromJson(j.at("mig"));
  if (j.contains("sharing") && !j.at("sharing").is_null()) {
    s.sharing = Str(j.at("sharing"), "sharing");
  }
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
    if (g.mig) {
      gpus.back()["mig_layout"] = g.mig_layout;
      gpus.back()["mig_devices"] = MigDevicesJson(g.mig_devices);
    }
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

std::string HeartbeatRequestJson(const std::vector<TaskStatus>& tasks, const Telemetry* telemetry,
                                 const std::vector<MigReport>* mig) {
  json list = json::array();
  for (const TaskStatus& t : tasks) {
    json j = {{"workload", t.key.workload}, {"task", t.key.task}, {"attempt", t.key.attempt}};
    if (t.state == TaskState::kRunning) {
      j["state"] = "running";
      j["pid"] = t.pid;
      if (t.service) {
        j["service"] = {{"port", t.service->port}, {"ready", t.service->ready}};
        if (t.service->scrape > 0) j["service"]["gauges"] = t.service->gauges;
      }
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
  if (mig != nullptr) {
    json gpus = json::array();
    for (const MigReport& r : *mig) {
      gpus.push_back({{"gpu", r.gpu},
                      {"layout", r.layout},
                      {"generation", r.generation},
                      {"devices", MigDevicesJson(r.devices)}});
      if (!r.error.empty()) gpus.back()["error"] = r.error;
    }
    body["mig"] = std::move(gpus);
  }
  return body.dump();
}

bool ReportTracker::Acked::Same(const TaskStatus& t) const {
  if (pid != t.pid || service.has_value() != t.service.has_value()) return false;
  return !service || (service->port == t.service->port && service->ready == t.service->ready &&
                      service->scrape == t.service->scrape);
}

std::vector<TaskStatus> ReportTracker::ToReport(const std::vector<TaskStatus>& tasks) const {
  std::vector<TaskStatus> out;
  for (const TaskStatus& t : tasks) {
    auto acked = running_.find(t.key);
    if (t.state == TaskState::kRunning && acked != running_.end() && acked->second.Same(t)) {
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
      Acked& a = running_[t.key];
      a.pid = t.pid;
      a.service = t.service;
      if (a.service) a.service->gauges.clear();  // only the scrape number is compared
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
    for (const json& d : j.at("desired")) {
      out.tasks.push_back(SpecFromJson(d, /*from_state_file=*/false, &out.warnings));
    }
    if (j.contains("mig_layouts") && !j.at("mig_layouts").is_null()) {
      const json& l = j.at("mig_layouts");
      if (!l.is_array()) throw json::type_error::create(302, "mig_layouts: must be a list", &l);
      for (const json& e : l) {
        if (!e.is_object()) {
          throw json::type_error::create(302, "mig_layouts[]: must be an object", &e);
        }
        for (const char* f : {"gpu", "layout"}) {
          if (!e.contains(f)) {
            throw json::out_of_range::create(403, std::string("mig_layouts[].") + f + ": missing",
                                             &e);
          }
        }
        MigDesired d;
        d.gpu = Int<int32_t>(e.at("gpu"), "mig_layouts[].gpu");
        d.layout = Str(e.at("layout"), "mig_layouts[].layout");
        if (e.contains("generation")) {
          d.generation = Int<int64_t>(e.at("generation"), "mig_layouts[].generation");
        }
        out.mig_layouts.push_back(std::move(d));
      }
    }
    return out;
  } catch (const json::exception& e) {
    return Status::Invalid(std::string("heartbeat answer: ") + e.what());
  }
}

std::string TaskSpecJson(const TaskSpec& spec) { return SpecToJson(spec).dump(); }

Result<TaskSpec> ParseTaskSpec(const std::string& body) {
  try {
    return SpecFromJson(json::parse(body), /*from_state_file=*/true, nullptr);
  } catch (const json::exception& e) {
    return Status::Invalid(std::string("task spec: ") + e.what());
  }
}

}  // namespace gpuorch::agent
