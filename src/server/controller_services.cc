// Inference services (docs/inference.md): a service record holds the spec and the
// autoscaler's slot; each replica is a workload of its own, created and stopped here the way
// a Kubernetes ReplicaSet creates and deletes pods, and placed by the engine like any other
// work (so a replica within its queue's guarantee reclaims it, and one beyond borrows).
//
// Each Step (before the engine's inbox is drained, so that a new replica is placed in the
// same cycle) ReconcileService:
//   1. forgets replicas that ended; one that ended on its own (not stopped by the service)
//      delays the next start by a backoff of 1 s doubling to 60 s, reset once a replica is
//      Ready (Kubernetes' CrashLoopBackOff runs 10 s to 5 min; a replica of an inference
//      server that dies at once is as often a bad flag as a bad node);
//   2. feeds the autoscaler the replicas' gauges (their sum for in-flight, their mean for KV
//      cache) when a fresh scrape came since the last decision;
//   3. decides once per kTickMs (or at once when a load report reaches a service at zero);
//   4. makes the replicas match the decision: a draining replica is taken back first, then
//      new replicas are created (not before the backoff); on scale-down, pending replicas
//      go first, then replicas not Ready, then the newest Ready ones, which drain;
//   5. stops a draining replica once it serves nothing: a gateway report made since the
//      drain began counts it drained (HAProxy sent it no new request: its server was in
//      drain, maintenance or gone when its sessions were read) with no session, or, with no
//      gateway reporting, its in-flight gauges read 0 in a scrape after the drain began (at
//      once when it has none); in any case after drain_timeout_s.
#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "log/logging.h"
#include "server/controller.h"

namespace gpuorch::server {

using core::Status;

namespace {

constexpr int64_t kTickMs = 1000;
constexpr int64_t kBackoffBaseMs = 1000;
constexpr int64_t kBackoffMaxMs = 60000;
// A gateway that listed replica sessions this recently routes the service.
constexpr int64_t kGatewayFreshMs = 10000;
// Replica gauges older than this are stale (a replica whose scrapes stopped).
constexpr int64_t kGaugeStaleMs = 30000;

}  // namespace

void Controller::StartService(WorkloadRecord& w) {
  ServiceState st;
  uint32_t slot = next_service_slot_;
  if (!free_service_slots_.empty()) {
    slot = free_service_slots_.back();
    free_service_slots_.pop_back();
  } else {
    ++next_service_slot_;
  }
  st.slot = autoscale::ServiceId(slot);
  service_names_.insert(w.parsed.spec.name);
  // ParseWorkload validated the params; the slot is free.
  if (Status s = autoscaler_.AddService(st.slot, w.parsed.service->autoscale, Now(), 0); !s.ok()) {
    log::Error("service_start_failed", {{"workload", w.id}, {"why", s.message()}});
  }
  services_.emplace(w.id, std::move(st));
}

bool Controller::ReplicaReady(const WorkloadRecord& r) const {
  if (r.state != "Running" || r.draining_since_ms > 0 || r.cancel_requested) return false;
  const TaskRecord* t = r.primary();
  return t != nullptr && !t->stopping && t->state == "running" && t->ready;
}

void Controller::ReconcileServices(int64_t now) {
  std::vector<int64_t> ids;
  ids.reserve(services_.size());
  for (const auto& [id, st] : services_) ids.push_back(id);
  for (int64_t id : ids) ReconcileService(workloads_.at(id), now);
}

void Controller::ReconcileService(WorkloadRecord& svc, int64_t now) {
  ServiceState& st = services_.at(svc.id);
  const ServiceSpec& spec = *svc.parsed.service;
  const autoscale::ServiceParams& params = spec.autoscale;

  // 1. Replicas that ended.
  std::vector<WorkloadRecord*> live, draining;
  int32_t ready = 0;
  for (auto it = st.replicas.begin(); it != st.replicas.end();) {
    auto w = workloads_.find(*it);
    if (w == workloads_.end()) {
      it = st.replicas.erase(it);
      continue;
    }
    WorkloadRecord& r = w->second;
    if (r.terminal()) {
      if (!r.cancel_requested) {
        ++st.failures;
        st.reset_from = st.next_replica;  // only a replica started after this one resets
        const int64_t backoff =
            std::min(kBackoffMaxMs, kBackoffBaseMs << std::min(st.failures - 1, 16));
        st.next_start_ms = now + backoff;
        Event(svc, "ReplicaEnded",
              "replica " + std::to_string(r.parsed.replica) + " (workload " + std::to_string(r.id) +
                  ") ended " + r.state + "; the next starts in " + std::to_string(backoff / 1000) +
                  "s");
      }
      it = st.replicas.erase(it);
      continue;
    }
    ++it;
    if (r.cancel_requested) continue;  // stopping
    if (r.draining_since_ms > 0) {
      draining.push_back(&r);
      continue;
    }
    live.push_back(&r);
    if (ReplicaReady(r)) {
      ++ready;
      if (r.parsed.replica >= st.reset_from) st.failures = 0;
    }
  }

  // After a restart: nothing is decided until every running replica has reported (its
  // readiness is known again) or kRestartHoldMs passed.
  if (st.hold_until_ms > 0) {
    // Reported, and the panic window has had time to fill with fresh samples.
    bool reported = now >= st.hold_until_ms - kRestartHoldMs + params.panic_window_s * 1000;
    for (const WorkloadRecord* r : live) {
      const TaskRecord* t = r->primary();
      reported &= r->state != "Running" || (t != nullptr && t->service_reported);
    }
    if (!reported && now < st.hold_until_ms) return;
    st.hold_until_ms = 0;
  }

  // 2. The replicas' gauges, when a scrape came since the last decision.
  double in_flight = 0, kv = 0;
  int kv_n = 0;
  bool fresh = false, any = false;
  for (const auto* group : {&live, &draining}) {
    for (const WorkloadRecord* r : *group) {
      const TaskRecord* t = r->primary();
      if (t == nullptr || t->gauges_ms == 0 || now - t->gauges_ms > kGaugeStaleMs) continue;
      fresh |= t->gauges_ms > st.last_tick_ms;
      for (const std::string& g : params.in_flight_gauges) {
        if (auto v = t->gauges.find(g); v != t->gauges.end()) {
          in_flight += v->second;
          any = true;
        }
      }
      if (auto v = t->gauges.find(params.kv_cache_gauge);
          !params.kv_cache_gauge.empty() && v != t->gauges.end()) {
        kv += v->second;
        ++kv_n;
      }
    }
  }

  // 3. Decide.
  if (now - st.last_tick_ms >= kTickMs || st.tick_now) {
    if (fresh && any) {
      (void)autoscaler_.Observe(st.slot, autoscale::Source::kReplicaInFlight, in_flight, now);
    }
    if (fresh && kv_n > 0) {
      (void)autoscaler_.Observe(st.slot, autoscale::Source::kKvCacheUtilization,
                                std::clamp(kv / kv_n, 0.0, 1.0), now);
    }
    (void)autoscaler_.SetReady(st.slot, ready);
    if (auto d = autoscaler_.Decide(st.slot, now); d.ok()) {
      st.last = *d;
      if (d->desired != st.desired) {
        Event(svc, "Scaled",
              std::to_string(st.desired) + " -> " + std::to_string(d->desired) +
                  " replicas (mode " + autoscale::ModeName(d->mode) + ", bound " +
                  autoscale::BoundName(d->bound) + ", in-flight " +
                  std::to_string(std::lround(d->stable_in_flight)) + ")");
        log::Info("scale", {{"service", svc.id},
                            {"from", st.desired},
                            {"to", d->desired},
                            {"mode", autoscale::ModeName(d->mode)},
                            {"bound", autoscale::BoundName(d->bound)},
                            {"in_flight_stable", d->stable_in_flight},
                            {"in_flight_panic", d->panic_in_flight},
                            {"ready", ready}});
        st.desired = d->desired;
      }
    }
    st.last_tick_ms = now;
    st.tick_now = false;
  }

  // 4. Replicas to match the decision.
  auto n = static_cast<int32_t>(live.size());
  // A draining replica is still warm: take the newest back before starting a new one.
  std::sort(draining.begin(), draining.end(), [](const WorkloadRecord* a, const WorkloadRecord* b) {
    return a->parsed.replica > b->parsed.replica;
  });
  for (auto it = draining.begin(); n < st.desired && it != draining.end();) {
    WorkloadRecord& r = **it;
    r.draining_since_ms = 0;
    Event(r, "Undrained", "its service scaled up again");
    live.push_back(&r);
    it = draining.erase(it);
    ++n;
  }
  if (n < st.desired && now >= st.next_start_ms) {
    for (; n < st.desired; ++n) NewReplica(svc, now);
  }
  if (n > st.desired) {
    // Pending first, then not Ready, then the newest Ready.
    auto rank = [this](const WorkloadRecord* r) {
      return r->state == "Pending" ? 0 : ReplicaReady(*r) ? 2 : 1;
    };
    std::sort(live.begin(), live.end(), [&](const WorkloadRecord* a, const WorkloadRecord* b) {
      if (rank(a) != rank(b)) return rank(a) < rank(b);
      return a->parsed.replica > b->parsed.replica;
    });
    for (WorkloadRecord* r : live) {
      if (n <= st.desired) break;
      --n;
      if (ReplicaReady(*r)) {
        r->draining_since_ms = now;
        Event(*r, "Draining", "its service scaled down: no new requests, stopped once idle");
        Dirty(*r);
        // Judged below like any draining replica (no gateway and no gauges: stopped now).
        draining.push_back(r);
      } else {
        CancelLocked(*r, "its service scaled down");
      }
    }
  }

  // 5. Draining replicas that serve nothing any more.
  const bool gateway = st.gateway_ms > 0 && now - st.gateway_ms <= kGatewayFreshMs;
  for (WorkloadRecord* r : draining) {
    bool done = now - r->draining_since_ms >= spec.drain_timeout_s * 1000;
    std::string why = "drain timeout";
    if (!done && gateway) {
      // HAProxy sent it no new request and it had no session, in a report made since the
      // drain began (the gateway read its server's state before its sessions).
      done =
          r->gateway_ms >= r->draining_since_ms && r->gateway_drained && r->gateway_sessions == 0;
      why = "the gateway reports it drained, with no session";
    } else if (!done && params.in_flight_gauges.empty()) {
      done = true;
      why = "no gateway and no in-flight gauge to wait for";
    } else if (!done) {
      const TaskRecord* t = r->primary();
      if (t == nullptr) {
        done = true;
        why = "not running";
      } else if (t->gauges_ms > r->draining_since_ms) {
        double busy = 0;
        for (const std::string& g : params.in_flight_gauges) {
          if (auto v = t->gauges.find(g); v != t->gauges.end()) busy += v->second;
        }
        done = busy == 0;
        why = "its in-flight gauges read 0";
      }
    }
    if (done) CancelLocked(*r, "scaled down, drained: " + why);
  }
}

void Controller::NewReplica(WorkloadRecord& svc, int64_t now) {
  ServiceState& st = services_.at(svc.id);
  WorkloadRecord r;
  r.id = next_id_++;
  r.user = svc.user;
  r.parsed = svc.parsed;
  r.parsed.service.reset();
  r.parsed.service_of = svc.id;
  r.parsed.replica = st.next_replica++;
  Json canonical = svc.parsed.CanonicalSpec();
  for (const char* k : {"replicas", "autoscale", "readiness", "drain_timeout_s"}) {
    canonical.erase(k);
  }
  canonical["service"] = svc.id;
  canonical["replica"] = r.parsed.replica;
  r.parsed.canonical_json = canonical.dump();
  r.submitted_ms = r.queued_since_ms = now;
  r.parsed.spec.submit_time = now;
  r.events.push_back(WorkloadEvent{
      now, "Submitted",
      "replica " + std::to_string(r.parsed.replica) + " of service " + std::to_string(svc.id)});
  // Durable in this Step's batch; a bind in this Step's cycle is published only after it
  // (Step's `published` rule), so no agent runs a replica the store does not know.
  Enqueue(EngineEvent::Workload(EngineEvent::Kind::kSubmit, r.id));
  task_mix_.Submitted(r.parsed.spec.task, r.parsed.spec.min_tasks);
  if (!r.parsed.unknown_models.empty()) unknown_models_.insert(r.id);
  log::Info("replica_start", {{"service", svc.id},
                              {"workload", r.id},
                              {"replica", r.parsed.replica},
                              {"queue", r.parsed.queue_name}});
  st.replicas.insert(r.id);
  WorkloadRecord& stored = workloads_.emplace(r.id, std::move(r)).first->second;
  Dirty(stored);
}

void Controller::IngestServiceReport(WorkloadRecord& w, TaskRecord& t, const Json& report) {
  if (!report.is_object()) return;
  const bool was_ready = t.ready;
  t.service_reported = true;
  if (auto p = report.find("port"); p != report.end() && p->is_number_integer() &&
                                    p->get<int64_t>() >= 0 && p->get<int64_t>() <= 65535) {
    t.port = p->get<int32_t>();
  }
  if (auto r = report.find("ready"); r != report.end() && r->is_boolean()) t.ready = r->get<bool>();
  if (auto g = report.find("gauges"); g != report.end() && g->is_object()) {
    t.gauges.clear();
    for (const auto& [name, v] : g->items()) {
      if (v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() >= 0 &&
          t.gauges.size() < 64) {
        t.gauges[name] = v.get<double>();
      }
    }
    t.gauges_ms = Now();
  }
  if (t.ready != was_ready) {
    Event(w, t.ready ? "Ready" : "NotReady", "task " + std::to_string(t.task));
    Kick();
  }
}

}  // namespace gpuorch::server
