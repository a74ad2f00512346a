#include "autoscale/autoscaler.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace gpuorch::autoscale {
namespace {

using core::Result;
using core::Status;

// Recommendations saturate here, far beyond any cluster, so that no double overflows an int.
constexpr double kMaxRecommendation = 1e9;

// ceil(x) for a non-negative ratio, tolerant of rounding: 140 / (100 * 0.7) is 2, not 3,
// although 100 * 0.7 is 70.00000000000001 in binary.
int32_t Ceil(double x) {
  if (!(x > 1e-9)) return 0;
  return static_cast<int32_t>(std::ceil(std::min(x, kMaxRecommendation) - 1e-9));
}

int32_t Floor(double x) {
  return static_cast<int32_t>(std::floor(std::min(x, kMaxRecommendation) + 1e-9));
}

Status NoService(ServiceId id) {
  return Status::NotFound("autoscale: no service " + std::to_string(id.value()));
}

}  // namespace

const char* SourceName(Source source) {
  switch (source) {
    case Source::kReplicaInFlight:
      return "replica_in_flight";
    case Source::kLoadBalancer:
      return "load_balancer";
    case Source::kPushedInFlight:
      return "pushed_in_flight";
    case Source::kKvCacheUtilization:
      return "kv_cache_utilization";
  }
  return "unknown";
}

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kStable:
      return "stable";
    case Mode::kPanic:
      return "panic";
    case Mode::kPinned:
      return "pinned";
  }
  return "unknown";
}

const char* BoundName(Bound bound) {
  switch (bound) {
    case Bound::kNone:
      return "none";
    case Bound::kScaleUpRate:
      return "scale_up_rate";
    case Bound::kScaleDownRate:
      return "scale_down_rate";
    case Bound::kActivationScale:
      return "activation_scale";
    case Bound::kPanicHold:
      return "panic_hold";
    case Bound::kScaleDownDelay:
      return "scale_down_delay";
    case Bound::kScaleToZeroGrace:
      return "scale_to_zero_grace";
    case Bound::kMinReplicas:
      return "min_replicas";
    case Bound::kMaxReplicas:
      return "max_replicas";
  }
  return "unknown";
}

Autoscaler::State* Autoscaler::Find(ServiceId id) {
  if (!id.valid() || id.value() >= services_.size()) return nullptr;
  State& s = services_[id.value()];
  return s.present ? &s : nullptr;
}

const Autoscaler::State* Autoscaler::Find(ServiceId id) const {
  return const_cast<Autoscaler*>(this)->Find(id);
}

bool Autoscaler::Has(ServiceId id) const { return Find(id) != nullptr; }

const ServiceParams* Autoscaler::Params(ServiceId id) const {
  const State* s = Find(id);
  return s ? &s->params : nullptr;
}

Status Autoscaler::AddService(ServiceId id, const ServiceParams& params, Time now, int32_t ready) {
  if (!id.valid()) return Status::Invalid("autoscale.service: invalid id");
  if (Has(id)) return Status::Exists("autoscale: service " + std::to_string(id.value()));
  if (ready < 0) return Status::Invalid("autoscale.ready: must be >= 0");
  if (Status st = params.Validate(); !st.ok()) return st;
  if (id.value() >= services_.size()) services_.resize(id.value() + 1);
  State& s = services_[id.value()];
  s = State{};
  s.present = true;
  s.params = params;
  for (SignalWindow& w : s.signals) w.Reset(params.stable_window_s);
  s.ready = ready;
  s.last_traffic = now;
  return Status::Ok();
}

Status Autoscaler::UpdateParams(ServiceId id, const ServiceParams& params) {
  State* s = Find(id);
  if (!s) return NoService(id);
  if (Status st = params.Validate(); !st.ok()) return st;
  if (s->pinned && (*s->pinned < params.min_replicas ||
                    (params.max_replicas > 0 && *s->pinned > params.max_replicas))) {
    return Status::Invalid("autoscale.min_replicas: the pinned size " + std::to_string(*s->pinned) +
                           " is outside the new bounds");
  }
  if (params.stable_window_s != s->params.stable_window_s) {
    for (SignalWindow& w : s->signals) w.Reset(params.stable_window_s);
  }
  if (params.scale_down_delay_s != s->params.scale_down_delay_s) s->delay.Reset();
  s->params = params;
  return Status::Ok();
}

Status Autoscaler::RemoveService(ServiceId id) {
  State* s = Find(id);
  if (!s) return NoService(id);
  *s = State{};
  return Status::Ok();
}

Status Autoscaler::Observe(ServiceId id, Source source, double value, Time at) {
  State* s = Find(id);
  if (!s) return NoService(id);
  const int index = static_cast<int>(source);
  if (index < 0 || index >= kSourceCount) return Status::Invalid("autoscale.source: unknown");
  if (!std::isfinite(value) || value < 0) {
    return Status::Invalid(std::string("autoscale.") + SourceName(source) +
                           ": must be finite and >= 0");
  }
  if (source == Source::kKvCacheUtilization) {
    if (value > 1) {
      return Status::Invalid("autoscale.kv_cache_utilization: must be in 0..1");
    }
  } else if (value > 0) {
    s->last_traffic = std::max(s->last_traffic, at);
  }
  s->signals[index].Add(at, value);
  return Status::Ok();
}

Status Autoscaler::SetReady(ServiceId id, int32_t ready) {
  State* s = Find(id);
  if (!s) return NoService(id);
  if (ready < 0) return Status::Invalid("autoscale.ready: must be >= 0");
  s->ready = ready;
  return Status::Ok();
}

Status Autoscaler::Pin(ServiceId id, int32_t replicas) {
  State* s = Find(id);
  if (!s) return NoService(id);
  const ServiceParams& p = s->params;
  if (replicas < p.min_replicas || (p.max_replicas > 0 && replicas > p.max_replicas)) {
    return Status::Invalid("autoscale.replicas: must be in min_replicas..max_replicas, got " +
                           std::to_string(replicas));
  }
  s->pinned = replicas;
  return Status::Ok();
}

Status Autoscaler::Unpin(ServiceId id) {
  State* s = Find(id);
  if (!s) return NoService(id);
  s->pinned.reset();
  s->panic_time.reset();
  s->max_panic = 0;
  s->delay.Reset();
  return Status::Ok();
}

Result<Decision> Autoscaler::Decide(ServiceId id, Time now) {
  State* s = Find(id);
  if (!s) return NoService(id);
  return DecideState(id, *s, now);
}

const std::vector<Decision>& Autoscaler::Tick(Time now) {
  decisions_.clear();
  for (uint32_t i = 0; i < services_.size(); ++i) {
    if (services_[i].present) decisions_.push_back(DecideState(ServiceId(i), services_[i], now));
  }
  return decisions_;
}

Decision Autoscaler::DecideState(ServiceId id, State& s, Time now) {
  const ServiceParams& p = s.params;
  Decision d;
  d.service = id;

  // Signals: the in-flight sources combined by max, per window.
  for (int i = 0; i < kSourceCount; ++i) {
    const SignalWindow::Averages a = s.signals[i].Average(now, p.panic_window_s);
    if (static_cast<Source>(i) == Source::kKvCacheUtilization) {
      d.stable_kv_cache = a.stable;
      d.panic_kv_cache = a.panic;
    } else {
      d.stable_in_flight = std::max(d.stable_in_flight, a.stable);
      d.panic_in_flight = std::max(d.panic_in_flight, a.panic);
    }
  }
  if (s.pinned) {
    d.mode = Mode::kPinned;
    d.desired = *s.pinned;
    return d;
  }

  // Window recommendations: desired = ceil(observed / target) for each signal, the max of
  // them. KV-cache utilization is per replica, so it scales the replicas ready now.
  const double target = p.TargetPerReplica();
  d.stable_wanted = std::max(Ceil(d.stable_in_flight / target),
                             Ceil(s.ready * d.stable_kv_cache / p.kv_cache_target));
  d.panic_wanted = std::max(Ceil(d.panic_in_flight / target),
                            Ceil(s.ready * d.panic_kv_cache / p.kv_cache_target));

  // Rate limits around the replicas ready now (at least one, as in Knative, so that a
  // service at zero can grow).
  const int32_t ready = std::max(1, s.ready);
  const int32_t max_up = Ceil(p.max_scale_up_rate * ready);
  const int32_t max_down = Floor(ready / p.max_scale_down_rate);
  auto bounded = [&](int32_t wanted, Bound* bound) {
    int32_t v = std::clamp(wanted, max_down, max_up);
    *bound = v > wanted ? Bound::kScaleDownRate : v < wanted ? Bound::kScaleUpRate : Bound::kNone;
    if (wanted > 0 && p.activation_scale > v) {
      v = p.activation_scale;
      *bound = Bound::kActivationScale;
    }
    return v;
  };
  Bound stable_bound, panic_bound;
  const int32_t stable = bounded(d.stable_wanted, &stable_bound);
  const int32_t panic = bounded(d.panic_wanted, &panic_bound);

  // Panic: entered when the panic window asks for panic_threshold times the ready replicas,
  // extended while it still does, left once a whole stable window has passed without.
  const bool over = static_cast<double>(d.panic_wanted) / ready >= p.panic_threshold;
  if (over) {
    s.panic_time = now;
  } else if (s.panic_time && *s.panic_time + p.stable_window_s * core::kSecond < now) {
    s.panic_time.reset();
    s.max_panic = 0;
  }

  int32_t desired = stable;
  d.bound = stable_bound;
  if (s.panic_time) {
    // Provision for the larger window, and never scale down while in panic.
    d.mode = Mode::kPanic;
    if (panic > desired) {
      desired = panic;
      d.bound = panic_bound;
    }
    if (desired >= s.max_panic) {
      s.max_panic = desired;
    } else {
      desired = s.max_panic;
      d.bound = Bound::kPanicHold;
    }
  }

  if (p.scale_down_delay_s > 0) {
    const int32_t held = s.delay.RecordAndMax(now, desired, p.scale_down_delay_s * core::kSecond);
    if (held != desired) {
      desired = held;
      d.bound = Bound::kScaleDownDelay;
    }
  }

  // Scale to zero: the last replica stays until scale_to_zero_after_s without traffic. A
  // service already at zero is not woken by this rule.
  if (desired == 0 && s.ready > 0 &&
      now - s.last_traffic < p.scale_to_zero_after_s * core::kSecond) {
    desired = 1;
    d.bound = Bound::kScaleToZeroGrace;
  }

  if (desired < p.min_replicas) {
    desired = p.min_replicas;
    d.bound = Bound::kMinReplicas;
  }
  if (p.max_replicas > 0 && desired > p.max_replicas) {
    desired = p.max_replicas;
    d.bound = Bound::kMaxReplicas;
  }
  d.desired = desired;
  return d;
}

}  // namespace gpuorch::autoscale
