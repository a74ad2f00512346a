#pragma once

// The autoscaler of inference services: Knative's KPA algorithm (stable and panic windows
// over observed in-flight requests, rate limits, scale-down delay, scale to zero) over
// several signals combined by max. docs/autoscale.md states every equation.
//
// Pure: no I/O, no clock, no threads. Every time (milliseconds, the caller's clock) comes in
// as an argument, so the server and the platform simulator run the same code and the same
// inputs give the same decisions. Not thread-safe: one owner calls it.

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "autoscale/params.h"
#include "autoscale/window.h"
#include "core/ids.h"
#include "core/status.h"

namespace gpuorch::autoscale {

// Dense ids chosen by the caller: the autoscaler indexes a flat vector by them.
using ServiceId = core::Id<struct ServiceTag>;

// Where a sample comes from. The first three are in-flight request counts for the whole
// service; the last is a 0..1 utilization averaged over its replicas.
enum class Source : uint8_t {
  kReplicaInFlight,     // sum over replicas of the in-flight gauges (vLLM: running + waiting)
  kLoadBalancer,        // the load balancer's queue + current sessions for the service
  kPushedInFlight,      // `in_flight` pushed by an external gateway
  kKvCacheUtilization,  // mean over replicas of the KV-cache gauge (vLLM: gpu_cache_usage_perc)
};
inline constexpr int kSourceCount = 4;
const char* SourceName(Source source);

enum class Mode : uint8_t { kStable, kPanic, kPinned };
const char* ModeName(Mode mode);

// The last step that changed the recommendation, i.e. what the decision is bounded by.
enum class Bound : uint8_t {
  kNone,              // the window recommendation itself
  kScaleUpRate,       // ceil(max_scale_up_rate * ready)
  kScaleDownRate,     // floor(ready / max_scale_down_rate)
  kActivationScale,   // raised to activation_scale
  kPanicHold,         // panic mode holds its highest recommendation (no scale-down)
  kScaleDownDelay,    // the highest recommendation of the scale-down delay
  kScaleToZeroGrace,  // the last replica is kept until scale_to_zero_after_s without traffic
  kMinReplicas,
  kMaxReplicas,
};
const char* BoundName(Bound bound);

struct Decision {
  ServiceId service;
  int32_t desired = 0;
  Mode mode = Mode::kStable;
  Bound bound = Bound::kNone;
  // The signals behind it: in-flight (the max over the in-flight sources) and KV-cache
  // utilization, averaged over the stable and the panic window.
  double stable_in_flight = 0;
  double panic_in_flight = 0;
  double stable_kv_cache = 0;
  double panic_kv_cache = 0;
  // Replicas the windows ask for before any bound (Knative's dspc and dppc).
  int32_t stable_wanted = 0;
  int32_t panic_wanted = 0;
};

class Autoscaler {
 public:
  // Starts a service with `ready` replicas, counting `now` as its last traffic. Invalid
  // params (the error names the field) or a taken id are refused.
  core::Status AddService(ServiceId id, const ServiceParams& params, Time now, int32_t ready = 0);
  // New params; samples are kept unless the stable window changed, the delay window is
  // kept unless the delay changed.
  core::Status UpdateParams(ServiceId id, const ServiceParams& params);
  core::Status RemoveService(ServiceId id);
  bool Has(ServiceId id) const;
  const ServiceParams* Params(ServiceId id) const;

  // A sample of one source at `at`. In-flight values must be finite and >= 0, KV-cache
  // utilization in 0..1. An in-flight sample above 0 is traffic (scale to zero waits for
  // none). O(1).
  core::Status Observe(ServiceId id, Source source, double value, Time at);
  // The replicas now ready: the base of the rate limits, the panic ratio and the KV signal.
  core::Status SetReady(ServiceId id, int32_t ready);

  // Pins the service at `replicas` (in min..max): decisions say so and the algorithm is
  // off until Unpin, which restarts it out of panic with an empty delay window. Samples
  // are still recorded meanwhile.
  core::Status Pin(ServiceId id, int32_t replicas);
  core::Status Unpin(ServiceId id);

  // One decision for one service at `now`. It moves the panic state and the delay window,
  // so call it once per service per tick, with `now` not decreasing. O(stable window).
  core::Result<Decision> Decide(ServiceId id, Time now);
  // Decide for every service, in id order. The reference stays valid until the next Tick.
  const std::vector<Decision>& Tick(Time now);

 private:
  struct State {
    bool present = false;
    ServiceParams params;
    std::array<SignalWindow, kSourceCount> signals;
    int32_t ready = 0;
    std::optional<int32_t> pinned;
    std::optional<Time> panic_time;  // the last decision over the panic threshold
    int32_t max_panic = 0;           // the highest decision since panic began
    MaxWindow delay;
    Time last_traffic = 0;
  };
  State* Find(ServiceId id);
  const State* Find(ServiceId id) const;
  Decision DecideState(ServiceId id, State& s, Time now);

  std::vector<State> services_;
  std::vector<Decision> decisions_;
};

}  // namespace gpuorch::autoscale
