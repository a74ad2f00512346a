#include "agent/telemetry.h"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

namespace gpuorch::agent {
namespace {

using core::Result;

// An integer env value of a task within [lo, hi]; `fallback` when absent or malformed.
int64_t EnvInt(const TaskOnNode& t, const char* name, int64_t lo, int64_t hi, int64_t fallback) {
  auto it = t.env.find(name);
  if (it == t.env.end()) return fallback;
  int64_t v = 0;
  const std::string& s = it->second;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return fallback;
  return std::clamp(v, lo, hi);
}

}  // namespace

EmulatedTelemetry::EmulatedTelemetry(std::vector<GpuInfo> gpus)
    : gpus_(std::move(gpus)), energy_mj_(gpus_.size(), 0), xid_(gpus_.size(), 0) {}

Result<Telemetry> EmulatedTelemetry::Sample(const std::vector<TaskOnNode>& tasks, int64_t now_ms) {
  const size_t n = gpus_.size();
  std::vector<double> util(n, 0);
  std::vector<int64_t> used(n, 0);
  Telemetry out;
  for (const TaskOnNode& t : tasks) {
    const int64_t task_util = EnvInt(t, "GPUORCH_EMULATE_GPU_UTIL", 0, 100, 90);
    const int64_t xid = EnvInt(t, "GPUORCH_EMULATE_XID", 0, 1 << 20, 0);
    const double share = std::clamp(t.gpu_milli, 0, 1000) / 1000.0;
    int64_t task_mem = 0;
    for (int32_t g : t.gpus) {
      if (g < 0 || static_cast<size_t>(g) >= n) continue;
      const auto j = static_cast<size_t>(g);
      const int64_t mem =
          EnvInt(t, "GPUORCH_EMULATE_GPU_MEMORY_MIB", 0, gpus_[j].memory_mib,
                 t.gpu_memory_mib > 0
                     ? std::min(t.gpu_memory_mib, gpus_[j].memory_mib)
                     : static_cast<int64_t>(share * static_cast<double>(gpus_[j].memory_mib)));
      util[j] += static_cast<double>(task_util) * share;
      used[j] += mem;
      task_mem += mem;
      if (xid > 0) xid_[j] = xid;
    }
    out.tasks.push_back(TaskUse{t.key, static_cast<double>(task_util), task_mem});
  }
  const int64_t dt = last_ms_ < 0 ? 0 : std::max<int64_t>(0, now_ms - last_ms_);
  last_ms_ = now_ms;
  for (size_t j = 0; j < n; ++j) {
    GpuSample s;
    s.index = gpus_[j].index;
    s.util_pct = std::min(100.0, util[j]);
    s.mem_copy_util_pct = s.util_pct / 2;
    s.fb_used_mib = std::min(used[j], gpus_[j].memory_mib);
    s.fb_free_mib = gpus_[j].memory_mib - s.fb_used_mib;
    s.power_w = kIdlePowerW + (kMaxPowerW - kIdlePowerW) * s.util_pct / 100.0;
    s.temp_c = 30 + static_cast<int64_t>(s.util_pct * 0.4);
    s.sm_clock_mhz = s.util_pct > 0 ? 1980 : 345;
    energy_mj_[j] += static_cast<int64_t>(s.power_w * static_cast<double>(dt));  // W x ms = mJ
    s.energy_mj = energy_mj_[j];
    s.last_xid = xid_[j];
    if (XidMarksUnhealthy(xid_[j])) s.unhealthy = "XID " + std::to_string(xid_[j]);
    out.gpus.push_back(std::move(s));
  }
  return out;
}

bool XidMarksUnhealthy(int64_t xid) {
  return xid > 0 && xid != 13 && xid != 31 && xid != 43 && xid != 45;
}

int32_t ParentPidFromProc(int32_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses; the last ')' ends it.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 1));
  std::string state;
  int32_t ppid = 0;
  rest >> state >> ppid;
  return rest ? ppid : 0;
}

std::map<int32_t, TaskKey> AttributePids(const std::vector<int32_t>& pids,
                                         const std::vector<TaskOnNode>& tasks,
                                         const std::function<int32_t(int32_t)>& parent_of) {
  std::map<int32_t, TaskKey> roots;
  for (const TaskOnNode& t : tasks) {
    if (t.pid > 0) roots[t.pid] = t.key;
  }
  std::map<int32_t, TaskKey> out;
  for (int32_t pid : pids) {
    // Up the tree to a task's root; pid 1 (or an unknown parent) ends the walk. The walk is
    // bounded in case /proc changes under it into a loop.
    int32_t p = pid;
    for (int depth = 0; p > 1 && depth < 256; ++depth) {
      if (auto it = roots.find(p); it != roots.end()) {
        out[pid] = it->second;
        break;
      }
      p = parent_of(p);
    }
  }
  return out;
}

std::vector<TaskUse> TaskUses(const std::vector<GpuSample>& gpus,
                              const std::vector<GpuProcess>& processes,
                              const std::vector<TaskOnNode>& tasks,
                              const std::function<int32_t(int32_t)>& parent_of) {
  std::vector<int32_t> pids;
  for (const GpuProcess& p : processes) pids.push_back(p.pid);
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  const std::map<int32_t, TaskKey> owner = AttributePids(pids, tasks, parent_of);
  std::map<TaskKey, int64_t> memory;
  for (const GpuProcess& p : processes) {
    if (auto it = owner.find(p.pid); it != owner.end()) memory[it->second] += p.used_mib;
  }
  std::vector<TaskUse> out;
  for (const TaskOnNode& t : tasks) {
    TaskUse u;
    u.key = t.key;
    double sum = 0;
    int counted = 0;
    for (int32_t g : t.gpus) {
      for (const GpuSample& s : gpus) {
        if (s.index == g && !(s.missing & kFieldUtil)) {
          sum += s.util_pct;
          ++counted;
        }
      }
    }
    u.util_pct = counted > 0 ? sum / counted : 0;
    if (auto it = memory.find(t.key); it != memory.end()) u.memory_used_mib = it->second;
    out.push_back(u);
  }
  return out;
}

namespace {

struct Field {
  const char* name;
  const char* help;
  uint32_t bit;  // 0: always present
  double (*value)(const GpuSample&);
};

const Field kFields[] = {
    {"DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", kFieldUtil,
     [](const GpuSample& s) { return s.util_pct; }},
    {"DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", kFieldMemCopyUtil,
     [](const GpuSample& s) { return s.mem_copy_util_pct; }},
    {"DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", kFieldFb,
     [](const GpuSample& s) { return static_cast<double>(s.fb_used_mib); }},
    {"DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", kFieldFb,
     [](const GpuSample& s) { return static_cast<double>(s.fb_free_mib); }},
    {"DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", kFieldPower,
     [](const GpuSample& s) { return s.power_w; }},
    {"DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", kFieldTemp,
     [](const GpuSample& s) { return static_cast<double>(s.temp_c); }},
    {"DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", kFieldSmClock,
     [](const GpuSample& s) { return static_cast<double>(s.sm_clock_mhz); }},
    {"DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", 0,
     [](const GpuSample& s) { return static_cast<double>(s.last_xid); }},
    {"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Total number of double-bit volatile ECC errors.", kFieldEcc,
     [](const GpuSample& s) { return static_cast<double>(s.ecc_dbe); }},
    {"DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Total number of single-bit volatile ECC errors.", kFieldEcc,
     [](const GpuSample& s) { return static_cast<double>(s.ecc_sbe); }},
    {"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since boot (in mJ).",
     kFieldEnergy, [](const GpuSample& s) { return static_cast<double>(s.energy_mj); }},
};

}  // namespace

std::string RenderDcgmExposition(const Telemetry& t, const std::vector<GpuInfo>& gpus,
                                 const std::vector<TaskOnNode>& tasks, const std::string& hostname,
                                 bool emulated) {
  const std::string suffix =
      emulated ? " [emulated GPU: derived from the tasks' GPUORCH_EMULATE_* settings]" : "";
  // The label sets of each GPU: one per task on it, or one without attribution.
  std::map<int32_t, std::vector<prometheus::ClientMetric::Label>> base;
  for (const GpuInfo& g : gpus) {
    base[g.index] = {
        {"gpu", std::to_string(g.index)}, {"UUID", g.uuid},
        {"pci_bus_id", g.pci_bus_id},     {"device", "nvidia" + std::to_string(g.index)},
        {"modelName", g.raw_name},        {"Hostname", hostname}};
    std::sort(base[g.index].begin(), base[g.index].end());
  }
  std::map<int32_t, std::vector<std::vector<prometheus::ClientMetric::Label>>> series;
  for (const TaskOnNode& task : tasks) {
    for (int32_t g : task.gpus) {
      auto b = base.find(g);
      if (b == base.end()) continue;
      auto labels = b->second;
      labels.push_back({"namespace", task.queue});
      labels.push_back({"pod", task.name + "-" + std::to_string(task.key.workload)});
      labels.push_back({"container", std::to_string(task.key.task)});
      std::sort(labels.begin(), labels.end());
      series[g].push_back(std::move(labels));
    }
  }
  for (auto& [g, labels] : base) {
    if (series[g].empty()) series[g].push_back(labels);
  }
  std::vector<prometheus::MetricFamily> families;
  for (const Field& f : kFields) {
    prometheus::MetricFamily fam;
    fam.name = f.name;
    fam.help = f.help + suffix;
    // All gauges: dcgm-exporter declares the ECC and energy totals counters, but their
    // names lack "_total", which promtool's lint refuses; PromQL reads them alike.
    fam.type = prometheus::MetricType::Gauge;
    for (const GpuSample& s : t.gpus) {
      if (f.bit != 0 && (s.missing & f.bit)) continue;
      for (const auto& labels : series[s.index]) {
        prometheus::ClientMetric m;
        m.label = labels;
        m.gauge.value = f.value(s);
        fam.metric.push_back(std::move(m));
      }
    }
    families.push_back(std::move(fam));
  }
  prometheus::MetricFamily healthy;
  healthy.name = "gpuorch_agent_gpu_healthy";
  healthy.help =
      "1 while the GPU may take new work; 0 after an XID or ECC double-bit error." + suffix;
  healthy.type = prometheus::MetricType::Gauge;
  for (const GpuSample& s : t.gpus) {
    prometheus::ClientMetric m;
    m.label = base[s.index];
    m.gauge.value = s.unhealthy.empty() ? 1 : 0;
    healthy.metric.push_back(std::move(m));
  }
  families.push_back(std::move(healthy));
  prometheus::MetricFamily emu;
  emu.name = "gpuorch_agent_telemetry_emulated";
  emu.help = "1 when this node's GPUs are emulated (no NVIDIA driver behind the numbers).";
  emu.type = prometheus::MetricType::Gauge;
  prometheus::ClientMetric m;
  m.label = {{"Hostname", hostname}};
  m.gauge.value = emulated ? 1 : 0;
  emu.metric.push_back(std::move(m));
  families.push_back(std::move(emu));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace gpuorch::agent
