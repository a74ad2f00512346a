// platform.yaml (docs/platform.md). Errors name the file, the line and the field; unknown
// keys are errors, so that a typo does not silently become a default.
#include "sim/platform/config.h"

#include <filesystem>
#include <set>

#include "sim/replay/trace.h"
#include "sim/replay/yaml_fields.h"

namespace gpuorch::sim::platform {

using core::Result;
using core::Status;

PlatformConfig DefaultPlatformConfig() {
  PlatformConfig c;
  NodeGroup g;
  g.name = "h100";
  g.count = 64;
  g.gpus = 8;
  g.model = "H100-80GB";
  g.gpu_memory_mib = 80 * 1024;
  g.milli_cpu = 224 * 1000;
  g.memory_mib = 2048 * 1024;
  c.cluster.rack_size = 8;
  c.cluster.groups.push_back(g);
  const Status expanded = c.cluster.Expand();
  GPUORCH_CHECK(expanded.ok());
  (void)expanded;

  // Llama-3.3-70B (FP8) on 4 x H100-80GB, throughput-bound (demand.h gives the source).
  // The warm-up day is a Sunday, so that the measured week runs Monday to Sunday.
  c.inference.envelope.start_weekday = 6;
  const CapacityProfile cap = DefaultLlama70bCapacity();
  c.inference.services = {
      {"chat", "azure-llm-2023/AzureLLMInferenceTrace_conv.csv", 60.0, cap, {}},
      {"code", "azure-llm-2023/AzureLLMInferenceTrace_code.csv", 25.0, cap, {}},
  };
  autoscale::ServiceParams& a = c.inference.autoscale;
  a.target = 10;
  a.target_utilization = 0.9;
  // A 70B replica takes minutes to start: panic mode (made for containers that start in
  // seconds) would chase bursts that are over before the replicas are Ready.
  a.panic_threshold = 10;
  a.scale_down_delay_s = 600;
  a.min_replicas = 1;
  a.scale_to_zero_after_s = 0;
  // The code service's demand is bursty from minute to minute (long prompts, few of them):
  // it keeps more headroom.
  c.inference.services[1].autoscale.target_utilization = 0.7;
  c.training.teams = {{"team-a", 0.55}, {"team-b", 0.45}};
  return c;
}

autoscale::ServiceParams AutoscaleOverride::Apply(autoscale::ServiceParams p) const {
  auto set = [](const auto& from, auto& to) {
    if (from) to = *from;
  };
  set(target, p.target);
  set(target_utilization, p.target_utilization);
  set(panic_threshold, p.panic_threshold);
  set(max_scale_up_rate, p.max_scale_up_rate);
  set(max_scale_down_rate, p.max_scale_down_rate);
  set(stable_window_s, p.stable_window_s);
  set(panic_window_s, p.panic_window_s);
  set(scale_down_delay_s, p.scale_down_delay_s);
  set(min_replicas, p.min_replicas);
  set(max_replicas, p.max_replicas);
  return p;
}

autoscale::ServiceParams ServiceConfig::Autoscale(const InferenceConfig& in) const {
  return autoscale.Apply(in.autoscale);
}

Status PlatformConfig::Validate() const {
  auto bad = [](const std::string& field, const std::string& what) {
    return Status::Invalid(field + ": " + what);
  };
  if (days < 1 || days > 366) return bad("days", "must be in 1..366");
  if (warmup_days < 0 || warmup_days > 30) return bad("warmup_days", "must be in 0..30");
  if (total_days() > kMaxDemandDays) {
    return bad("days", "days + warmup_days must be at most " + std::to_string(kMaxDemandDays));
  }
  if (scheduling_period_s < 1 || scheduling_period_s > 3600) {
    return bad("scheduling_period_s", "must be in 1..3600");
  }
  if (cluster.nodes.empty()) return bad("cluster", "no nodes");
  if (grace_period_s < 0 || grace_period_s > 86400)
    return bad("grace_period_s", "must be in 0..86400");
  if (idle_reclaim_after_s < 0) return bad("idle_reclaim_after_s", "must be >= 0");
  const InferenceConfig& in = inference;
  if (Status s = in.envelope.Validate(); !s.ok()) return s;
  if (Status s = in.autoscale.Validate(); !s.ok()) return s;
  if (in.autoscale.min_replicas < 1) {
    return bad("inference.autoscale.min_replicas",
               "must be >= 1 (a service never goes to zero here)");
  }
  if (in.startup_s < 0) return bad("inference.startup_s", "must be >= 0");
  if (in.drain_s < 0) return bad("inference.drain_s", "must be >= 0");
  std::set<std::string> names;
  for (size_t i = 0; i < in.services.size(); ++i) {
    const ServiceConfig& s = in.services[i];
    const std::string where = "inference.services[" + std::to_string(i) + "]";
    if (s.name.empty() || !names.insert(s.name).second) {
      return bad(where + ".name", "must be non-empty and unique");
    }
    if (s.trace.empty()) return bad(where + ".trace", "required");
    if (!(s.rate_scale > 0)) return bad(where + ".rate_scale", "must be > 0");
    if (Status st = s.capacity.Validate(); !st.ok()) return bad(where, st.message());
    if (Status st = s.Autoscale(in).Validate(); !st.ok()) return bad(where, st.message());
    if (s.capacity.gpus_per_replica > cluster.max_node_gpus()) {
      return bad(where + ".capacity.gpus_per_replica", "more than a node's GPUs");
    }
  }
  if (training.teams.empty()) return bad("training.teams", "at least one team");
  for (size_t i = 0; i < training.teams.size(); ++i) {
    const TeamConfig& t = training.teams[i];
    const std::string where = "training.teams[" + std::to_string(i) + "]";
    if (t.name.empty() || !names.insert(t.name).second || t.name == "experiments") {
      return bad(where + ".name", "must be non-empty and unique among services and teams");
    }
    if (!(t.share > 0)) return bad(where + ".share", "must be > 0");
  }
  if (!(training.load > 0) || training.load > 4) return bad("training.load", "must be in (0, 4]");
  if (training.max_duration_h < 1) return bad("training.max_duration_h", "must be >= 1");
  if (training.min_gpus < 1) return bad("training.min_gpus", "must be >= 1");
  if (training.trace_start_day < 0) return bad("training.trace_start_day", "must be >= 0");
  const ExperimentsConfig& e = experiments;
  if (e.nodes < 0) return bad("experiments.nodes", "must be >= 0");
  if (!(e.offered_gpus > 0)) return bad("experiments.offered_gpus", "must be > 0");
  if (e.fractional_share < 0 || e.fractional_share > 1) {
    return bad("experiments.fractional_share", "must be in 0..1");
  }
  if (e.fraction_milli < 1 || e.fraction_milli > 999) {
    return bad("experiments.fraction_milli", "must be in 1..999");
  }
  if (e.max_duration_h < 1) return bad("experiments.max_duration_h", "must be >= 1");
  if (!(e.max_wait_h > 0)) return bad("experiments.max_wait_h", "must be > 0");
  if (e.idle_tail_share < 0 || e.idle_tail_share > 1) {
    return bad("experiments.idle_tail_share", "must be in 0..1");
  }
  if (!(e.idle_tail_mean_h > 0)) return bad("experiments.idle_tail_mean_h", "must be > 0");
  return Status::Ok();
}

namespace {

using yaml::At;
using yaml::CheckKeys;

// One YAML mapping's optional fields, read into their targets; the first error sticks.
class Fields {
 public:
  Fields(const std::string& file, const YAML::Node& map, std::string where)
      : file_(file), map_(map), where_(std::move(where)) {}
  Fields& Keys(const std::set<std::string>& known) {
    if (s_.ok()) s_ = CheckKeys(file_, map_, where_, known);
    return *this;
  }
  template <typename T>
  Fields& Int(const char* key, int64_t lo, int64_t hi, T& out) {
    if (!s_.ok() || !map_[key]) return *this;
    int64_t v = 0;
    s_ = yaml::Int(file_, map_[key], Name(key), lo, hi, v);
    if (s_.ok()) out = static_cast<T>(v);
    return *this;
  }
  Fields& Num(const char* key, double lo, double hi, double& out) {
    if (s_.ok() && map_[key]) s_ = yaml::Double(file_, map_[key], Name(key), lo, hi, out);
    return *this;
  }
  template <typename T>
  Fields& Value(const char* key, T& out) {
    if (s_.ok() && map_[key]) s_ = yaml::Scalar(file_, map_[key], Name(key), out);
    return *this;
  }
  std::string Name(const char* key) const { return where_.empty() ? key : where_ + "." + key; }
  const Status& status() const { return s_; }

 private:
  const std::string& file_;
  YAML::Node map_;
  std::string where_;
  Status s_;
};

Status ReadCapacity(const std::string& file, const YAML::Node& n, const std::string& where,
                    CapacityProfile& c) {
  Fields f(file, n, where);
  f.Keys({"gpus_per_replica", "prefill_tokens_per_s", "decode_tokens_per_s", "ttft_slo_s",
          "itl_slo_s", "max_utilization"})
      .Int("gpus_per_replica", 1, core::kMaxGpusPerNode, c.gpus_per_replica)
      .Num("prefill_tokens_per_s", 1e-6, 1e12, c.prefill_tokens_per_s)
      .Num("decode_tokens_per_s", 1e-6, 1e12, c.decode_tokens_per_s)
      .Num("ttft_slo_s", 1e-6, 3600, c.ttft_slo_s)
      .Num("itl_slo_s", 1e-6, 3600, c.itl_slo_s)
      .Num("max_utilization", 0.01, 1, c.max_utilization);
  return f.status();
}

Status ReadAutoscale(const std::string& file, const YAML::Node& a, const std::string& where,
                     autoscale::ServiceParams& p) {
  Fields fa(file, a, where);
  fa.Keys({"target", "target_utilization", "stable_window_s", "panic_window_s", "panic_threshold",
           "max_scale_up_rate", "max_scale_down_rate", "scale_down_delay_s", "min_replicas",
           "max_replicas"})
      .Num("target", 1e-3, 1e9, p.target)
      .Num("target_utilization", 0.01, 1, p.target_utilization)
      .Int("stable_window_s", 1, 3600, p.stable_window_s)
      .Int("panic_window_s", 1, 3600, p.panic_window_s)
      .Num("panic_threshold", 1, 1000, p.panic_threshold)
      .Num("max_scale_up_rate", 1, 1e6, p.max_scale_up_rate)
      .Num("max_scale_down_rate", 1, 1e6, p.max_scale_down_rate)
      .Int("scale_down_delay_s", 0, 86400, p.scale_down_delay_s)
      .Int("min_replicas", 1, 100000, p.min_replicas)
      .Int("max_replicas", 0, 100000, p.max_replicas);
  return fa.status();
}

Status ReadInference(const std::string& file, const YAML::Node& n, InferenceConfig& in) {
  Fields f(file, n, "inference");
  f.Keys({"services", "envelope", "priority", "startup_s", "drain_s", "autoscale"})
      .Int("priority", -1000000, 1000000, in.priority)
      .Int("startup_s", 0, 86400, in.startup_s)
      .Int("drain_s", 0, 86400, in.drain_s);
  if (!f.status().ok()) return f.status();
  if (const YAML::Node e = n["envelope"]) {
    Fields fe(file, e, "inference.envelope");
    fe.Keys({"peak_trough_ratio", "weekend_factor", "peak_hour", "start_weekday"})
        .Num("peak_trough_ratio", 1, 1000, in.envelope.peak_trough_ratio)
        .Num("weekend_factor", 1e-3, 1, in.envelope.weekend_factor)
        .Num("peak_hour", 0, 23.999, in.envelope.peak_hour)
        .Int("start_weekday", 0, 6, in.envelope.start_weekday);
    if (!fe.status().ok()) return fe.status();
  }
  if (const YAML::Node a = n["autoscale"]) {
    if (Status st = ReadAutoscale(file, a, "inference.autoscale", in.autoscale); !st.ok())
      return st;
  }
  if (const YAML::Node list = n["services"]) {
    if (!list.IsSequence() || list.size() == 0) {
      return At(file, list, "inference.services", "expected a non-empty list");
    }
    const CapacityProfile base = in.services.empty() ? CapacityProfile{} : in.services[0].capacity;
    in.services.clear();
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string where = "inference.services[" + std::to_string(i) + "]";
      ServiceConfig s;
      s.capacity = base;
      Fields fs(file, list[i], where);
      fs.Keys({"name", "trace", "rate_scale", "capacity", "autoscale"})
          .Value("name", s.name)
          .Value("trace", s.trace)
          .Num("rate_scale", 1e-6, kMaxRateScale, s.rate_scale);
      if (!fs.status().ok()) return fs.status();
      if (!list[i]["name"]) return At(file, list[i], where + ".name", "required");
      if (!list[i]["trace"]) return At(file, list[i], where + ".trace", "required");
      if (const YAML::Node c = list[i]["capacity"]) {
        if (Status st = ReadCapacity(file, c, where + ".capacity", s.capacity); !st.ok()) return st;
      }
      if (const YAML::Node a = list[i]["autoscale"]) {
        // Read over the inference-wide knobs; keep only the keys given.
        autoscale::ServiceParams p = in.autoscale;
        if (Status st = ReadAutoscale(file, a, where + ".autoscale", p); !st.ok()) return st;
        AutoscaleOverride& o = s.autoscale;
        auto take = [&](const char* key, auto value, auto& field) {
          if (a[key]) field = value;
        };
        take("target", p.target, o.target);
        take("target_utilization", p.target_utilization, o.target_utilization);
        take("panic_threshold", p.panic_threshold, o.panic_threshold);
        take("max_scale_up_rate", p.max_scale_up_rate, o.max_scale_up_rate);
        take("max_scale_down_rate", p.max_scale_down_rate, o.max_scale_down_rate);
        take("stable_window_s", p.stable_window_s, o.stable_window_s);
        take("panic_window_s", p.panic_window_s, o.panic_window_s);
        take("scale_down_delay_s", p.scale_down_delay_s, o.scale_down_delay_s);
        take("min_replicas", p.min_replicas, o.min_replicas);
        take("max_replicas", p.max_replicas, o.max_replicas);
      }
      in.services.push_back(std::move(s));
    }
  }
  return Status::Ok();
}

Status ReadTraining(const std::string& file, const YAML::Node& n, TrainingConfig& t) {
  Fields f(file, n, "training");
  f.Keys({"trace", "trace_start_day", "load", "max_duration_h", "min_gpus", "priority", "teams"})
      .Value("trace", t.trace)
      .Int("trace_start_day", 0, 100000, t.trace_start_day)
      .Num("load", 1e-3, 4, t.load)
      .Int("max_duration_h", 1, 100000, t.max_duration_h)
      .Int("min_gpus", 1, 1000000, t.min_gpus)
      .Int("priority", -1000000, 1000000, t.priority);
  if (!f.status().ok()) return f.status();
  if (const YAML::Node list = n["teams"]) {
    if (!list.IsSequence() || list.size() == 0) {
      return At(file, list, "training.teams", "expected a non-empty list");
    }
    t.teams.clear();
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string where = "training.teams[" + std::to_string(i) + "]";
      TeamConfig team;
      Fields ft(file, list[i], where);
      ft.Keys({"name", "share"}).Value("name", team.name).Num("share", 1e-6, 1e6, team.share);
      if (!ft.status().ok()) return ft.status();
      if (!list[i]["name"]) return At(file, list[i], where + ".name", "required");
      t.teams.push_back(std::move(team));
    }
  }
  return Status::Ok();
}

Status ReadExperiments(const std::string& file, const YAML::Node& n, ExperimentsConfig& e) {
  Fields f(file, n, "experiments");
  f.Keys({"nodes", "offered_gpus", "fractional_share", "fraction_milli", "max_duration_h",
          "max_wait_h", "idle_tail_share", "idle_tail_mean_h", "priority"})
      .Int("nodes", 0, 1000000, e.nodes)
      .Num("offered_gpus", 1e-3, 1e7, e.offered_gpus)
      .Num("fractional_share", 0, 1, e.fractional_share)
      .Int("fraction_milli", 1, 999, e.fraction_milli)
      .Int("max_duration_h", 1, 100000, e.max_duration_h)
      .Num("max_wait_h", 1e-3, 1e5, e.max_wait_h)
      .Num("idle_tail_share", 0, 1, e.idle_tail_share)
      .Num("idle_tail_mean_h", 1e-3, 1e4, e.idle_tail_mean_h)
      .Int("priority", -1000000, 1000000, e.priority);
  return f.status();
}

}  // namespace

Result<PlatformConfig> ParsePlatformConfig(const std::string& text, const std::string& file,
                                           const std::string& base_dir) {
  PlatformConfig c = DefaultPlatformConfig();
  c.source = file;
  auto root = yaml::Parse(text, file);
  if (!root.ok()) return root.status();
  const YAML::Node& r = *root;
  if (!r.IsNull()) {
    Fields f(file, r, "");
    std::string cluster;
    f.Keys({"days", "warmup_days", "seed", "cluster", "grace_period_s", "scheduling_period_s",
            "checkpoint_on_sigterm", "idle_reclaim_after_s", "inference", "training",
            "experiments"})
        .Int("days", 1, 366, c.days)
        .Int("warmup_days", 0, 30, c.warmup_days)
        .Int("scheduling_period_s", 1, 3600, c.scheduling_period_s)
        .Value("seed", c.seed)
        .Value("cluster", cluster)
        .Int("grace_period_s", 0, 86400, c.grace_period_s)
        .Value("checkpoint_on_sigterm", c.checkpoint_on_sigterm)
        .Int("idle_reclaim_after_s", 0, 30 * 86400, c.idle_reclaim_after_s);
    if (!f.status().ok()) return f.status();
    if (!cluster.empty()) {
      std::filesystem::path p(cluster);
      if (p.is_relative() && !base_dir.empty()) p = std::filesystem::path(base_dir) / p;
      auto cl = LoadClusterYaml(p.string());
      if (!cl.ok()) return Status::Invalid(file + ": cluster: " + cl.status().message());
      c.cluster = std::move(cl).value();
    }
    if (r["inference"]) {
      if (Status s = ReadInference(file, r["inference"], c.inference); !s.ok()) return s;
    }
    if (r["training"]) {
      if (Status s = ReadTraining(file, r["training"], c.training); !s.ok()) return s;
    }
    if (r["experiments"]) {
      if (Status s = ReadExperiments(file, r["experiments"], c.experiments); !s.ok()) return s;
    }
  }
  if (Status s = c.Validate(); !s.ok()) return Status::Invalid(file + ": " + s.message());
  return c;
}

Result<PlatformConfig> LoadPlatformConfig(const std::string& path) {
  auto text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  return ParsePlatformConfig(*text, path, std::filesystem::path(path).parent_path().string());
}

}  // namespace gpuorch::sim::platform
