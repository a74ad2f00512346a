#include "server/service_spec.h"

#include <cmath>
#include <set>

#include "server/api_types.h"
#include "server/json_fields.h"

namespace gpuorch::server {
namespace {

using fields::Fail;
using fields::Int32;
using fields::Known;
using fields::Number;

// "MIN:MAX", "N" (both N), or {"min": MIN, "max": MAX}.
bool Replicas(const Json& r, autoscale::ServiceParams& p, ApiError& e) {
  int64_t min = 1, max = 0;
  if (r.is_string()) {
    const std::string s = r.get<std::string>();
    const size_t colon = s.find(':');
    auto num = [](const std::string& t, int64_t& v) {
      if (t.empty() || t.size() > 6 || t.find_first_not_of("0123456789") != std::string::npos) {
        return false;
      }
      v = std::stoll(t);
      return true;
    };
    if (colon == std::string::npos
            ? !num(s, min) || !num(s, max)
            : !num(s.substr(0, colon), min) || !num(s.substr(colon + 1), max)) {
      return Fail(e, "replicas", "must be MIN:MAX (e.g. 0:4), N, or {\"min\", \"max\"}");
    }
  } else if (r.is_number_integer()) {
    min = max = r.get<int64_t>();
    if (min < 1) return Fail(e, "replicas", "must be at least 1 (0:N scales from zero)");
  } else if (r.is_object()) {
    if (!Known(r, "replicas", {"min", "max"}, e)) return false;
    if (!r.contains("max")) return Fail(e, "replicas.max", "required");
    if (!fields::Int(r, "min", "replicas", 0, 1000, min, e)) return false;
    if (!fields::Int(r, "max", "replicas", 1, 1000, max, e)) return false;
  } else {
    return Fail(e, "replicas", "must be MIN:MAX (e.g. 0:4), N, or {\"min\", \"max\"}");
  }
  if (max < 1 || max > 1000) return Fail(e, "replicas.max", "must be in 1..1000");
  if (min > max) return Fail(e, "replicas.min", "must be <= replicas.max");
  p.min_replicas = static_cast<int32_t>(min);
  p.max_replicas = static_cast<int32_t>(max);
  return true;
}

bool Names(const Json& v, const std::string& field, std::vector<std::string>& out, ApiError& e) {
  if (!v.is_array()) return Fail(e, field, "must be a list of gauge names");
  out.clear();
  for (const Json& n : v) {
    if (!n.is_string() || n.get<std::string>().empty() || n.get<std::string>().size() > 200) {
      return Fail(e, field, "must be a list of non-empty gauge names");
    }
    out.push_back(n.get<std::string>());
  }
  return true;
}

}  // namespace

Json ServiceSpec::Gauges() const {
  Json g = Json::array();
  for (const std::string& n : autoscale.in_flight_gauges) g.push_back(n);
  if (!autoscale.kv_cache_gauge.empty()) g.push_back(autoscale.kv_cache_gauge);
  return g;
}

Json ServiceSpec::AgentJson() const {
  Json j = Json{{"gauges", Gauges()}};
  if (has_readiness) {
    j["readiness"] = Json{{"http_path", readiness_path},
                          {"initial_delay_s", initial_delay_s},
                          {"period_s", period_s}};
  }
  return j;
}

void ServiceSpec::Canonical(Json& out) const {
  const autoscale::ServiceParams& p = autoscale;
  out["replicas"] = Json{{"min", p.min_replicas}, {"max", p.max_replicas}};
  out["autoscale"] = Json{{"metric", metric},
                          {"target", p.target},
                          {"target_utilization", p.target_utilization},
                          {"kv_cache_target", p.kv_cache_target},
                          {"stable_window_s", p.stable_window_s},
                          {"panic_window_s", p.panic_window_s},
                          {"panic_threshold", p.panic_threshold},
                          {"max_scale_up_rate", p.max_scale_up_rate},
                          {"max_scale_down_rate", p.max_scale_down_rate},
                          {"scale_down_delay_s", p.scale_down_delay_s},
                          {"activation_scale", p.activation_scale},
                          {"scale_to_zero_after_s", p.scale_to_zero_after_s},
                          {"in_flight_gauges", p.in_flight_gauges},
                          {"kv_cache_gauge", p.kv_cache_gauge}};
  if (has_readiness) {
    out["readiness"] = Json{{"http_path", readiness_path},
                            {"initial_delay_s", initial_delay_s},
                            {"period_s", period_s}};
  }
  out["drain_timeout_s"] = drain_timeout_s;
}

bool IsServiceSubmission(const Json& body) {
  return body.is_object() && body.contains("replicas") && body.value("kind", "") == "inference";
}

bool ParseService(const Json& b, ServiceSpec& out, ApiError& e) {
  autoscale::ServiceParams& p = out.autoscale;
  if (b.value("kind", "") != "inference") {
    return Fail(e, "replicas", "only an inference workload (kind inference) has replicas");
  }
  if (!Replicas(b["replicas"], p, e)) return false;
  if (b.contains("autoscale")) {
    const Json& a = b["autoscale"];
    if (!a.is_object()) return Fail(e, "autoscale", "must be an object");
    if (!Known(a, "autoscale",
               {"metric", "target", "target_utilization", "kv_cache_target", "stable_window_s",
                "panic_window_s", "panic_threshold", "max_scale_up_rate", "max_scale_down_rate",
                "scale_down_delay_s", "activation_scale", "scale_to_zero_after_s",
                "in_flight_gauges", "kv_cache_gauge"},
               e)) {
      return false;
    }
    const std::string path = "autoscale";
    if (!Number(a, "target", path, p.target, e) ||
        !Number(a, "target_utilization", path, p.target_utilization, e) ||
        !Number(a, "kv_cache_target", path, p.kv_cache_target, e) ||
        !Number(a, "panic_threshold", path, p.panic_threshold, e) ||
        !Number(a, "max_scale_up_rate", path, p.max_scale_up_rate, e) ||
        !Number(a, "max_scale_down_rate", path, p.max_scale_down_rate, e) ||
        !Int32(a, "stable_window_s", path, 0, 1 << 30, p.stable_window_s, e) ||
        !Int32(a, "panic_window_s", path, 0, 1 << 30, p.panic_window_s, e) ||
        !Int32(a, "scale_down_delay_s", path, 0, 1 << 30, p.scale_down_delay_s, e) ||
        !Int32(a, "activation_scale", path, 0, 1 << 30, p.activation_scale, e) ||
        !Int32(a, "scale_to_zero_after_s", path, 0, 1 << 30, p.scale_to_zero_after_s, e)) {
      return false;
    }
    if (a.contains("in_flight_gauges") &&
        !Names(a["in_flight_gauges"], "autoscale.in_flight_gauges", p.in_flight_gauges, e)) {
      return false;
    }
    if (a.contains("kv_cache_gauge")) {
      if (!a["kv_cache_gauge"].is_string() || a["kv_cache_gauge"].get<std::string>().size() > 200)
        return Fail(e, "autoscale.kv_cache_gauge", "must be a gauge name (\"\": none)");
      p.kv_cache_gauge = a["kv_cache_gauge"].get<std::string>();
    }
    if (a.contains("metric")) {
      if (!a["metric"].is_string() || a["metric"].get<std::string>().empty() ||
          a["metric"].get<std::string>().size() > 200) {
        return Fail(e, "autoscale.metric", "must be in_flight, queue or a replica gauge name");
      }
      out.metric = a["metric"].get<std::string>();
    }
  }
  // A named gauge is the replicas' in-flight signal; `queue` reads the load balancer only.
  if (out.metric == "queue") {
    p.in_flight_gauges.clear();
  } else if (out.metric != "in_flight") {
    p.in_flight_gauges = {out.metric};
  }
  // The activation scale may not exceed max_replicas: a service capped below the default
  // of 1 does not exist (max >= 1), so only an explicit value can be refused here.
  if (core::Status s = p.Validate(); !s.ok()) {
    const std::string& m = s.message();
    return Fail(e, m.substr(0, m.find(':')), m.substr(m.find(':') + 2));
  }
  if (b.contains("readiness")) {
    const Json& r = b["readiness"];
    if (!r.is_object()) return Fail(e, "readiness", "must be an object");
    if (!Known(r, "readiness", {"http_path", "initial_delay_s", "period_s"}, e)) return false;
    out.has_readiness = true;
    if (r.contains("http_path")) {
      const Json& h = r["http_path"];
      if (!h.is_string() || h.get<std::string>().empty() || h.get<std::string>()[0] != '/' ||
          h.get<std::string>().size() > 200 ||
          h.get<std::string>().find_first_of(" \r\n\t") != std::string::npos) {
        return Fail(e, "readiness.http_path", "must be a path starting with / (no spaces)");
      }
      out.readiness_path = h.get<std::string>();
    }
    if (!Int32(r, "initial_delay_s", "readiness", 0, 3600, out.initial_delay_s, e) ||
        !Int32(r, "period_s", "readiness", 1, 300, out.period_s, e)) {
      return false;
    }
  }
  if (b.contains("drain_timeout_s")) {
    const Json& d = b["drain_timeout_s"];
    if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > 3600) {
      return Fail(e, "drain_timeout_s", "must be an integer in 0..3600");
    }
    out.drain_timeout_s = d.get<int64_t>();
  }
  return true;
}

}  // namespace gpuorch::server
