// Inference services end to end (issue 10's goals; docs/inference.md): a `gpuorch server`,
// one emulated agent of 8 GPUs, llm-emulator replicas (real processes, real readiness
// probes), Debian's haproxy and `gpuorch gateway`. Three measures:
//
//   scale_up_p99_s   load crossing the target -> a new replica Ready (emulated, 0 s model
//                    load, no victim): a service at 1 Ready replica (target 2 in flight) is
//                    told 10 in flight (POST /load), and the time until it has 2 Ready
//                    replicas is taken by polling GET /v1/workloads/{id} every 10 ms; one
//                    fresh service per trial (--trials), and p50, max
//   from_zero_s      scale from zero: a service at 0 replicas whose replica takes 2 s to
//                    become ready (--load-s 2); the first request through HAProxy, from sent
//                    to answered (per trial, and the max)
//   step_slo_miss    a 4x step load through HAProxy: --base-rps for 15 s, then 4x for 35 s,
//                    open-loop arrivals (llm-loadgen replaying a generated trace); the share
//                    of requests that waited more than 1 s (latency minus the replica's own
//                    service time), with p50 and p99 latency. The service: replicas 1:8,
//                    target 4 in flight, each replica running at most 4 requests at once.
//
// A plain program rather than Google Benchmark: one run is minutes across processes. The
// last stdout line is one JSON object (scripts/record keeps it); progress goes to stderr.
//
//   inference_bench [--trials 20] [--zero-trials 5] [--base-rps 6] [--timeout-s 900]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "cluster.h"

namespace {

using gpuorch::cptest::Api;
using gpuorch::cptest::Cluster;
using gpuorch::cptest::ClusterOptions;
using gpuorch::cptest::Json;
using gpuorch::cptest::RunCli;
using gpuorch::cptest::ServingPath;
using gpuorch::cptest::WaitFor;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Options {
  int trials = 20, zero_trials = 5;
  double base_rps = 6;
};

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

Json ServiceSpec(const std::string& name, const std::string& replicas, double target,
                 const std::vector<std::string>& emulator_args) {
  std::vector<std::string> command = {LLM_EMULATOR_BIN, "--threads", "128"};
  command.insert(command.end(), emulator_args.begin(), emulator_args.end());
  return Json{{"name", name},
              {"queue", "serving"},
              {"kind", "inference"},
              {"gpus", 1},
              {"command", command},
              {"replicas", replicas},
              {"autoscale",
               {{"target", target}, {"target_utilization", 1}, {"scale_to_zero_after_s", 600}}},
              {"readiness", {{"http_path", "/health"}, {"period_s", 1}}},
              {"grace_period_s", 2}};
}

int Ready(const Cluster& c, int64_t id) {
  const Json w = c.Workload(id);
  if (!w.is_object() || !w.contains("service")) return -1;
  return w["service"].value("ready", 0);
}

// Cancels the service and waits until its replicas are gone (their GPUs free again).
bool Remove(const Cluster& c, int64_t id) {
  if (c.api().Post("/v1/workloads/" + std::to_string(id) + "/cancel", Json::object()).status !=
      200) {
    return false;
  }
  return WaitFor(
      [&] {
        const Json l = c.api().Get("/v1/workloads?state=Running&kind=inference").json;
        return l.is_object() && l["workloads"].empty();
      },
      60s);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const double v = std::atof(argv[i + 1]);
    if (k == "--trials") {
      o.trials = static_cast<int>(v);
    } else if (k == "--zero-trials") {
      o.zero_trials = static_cast<int>(v);
    } else if (k == "--base-rps") {
      o.base_rps = v;
    } else if (k != "--timeout-s") {
      std::fprintf(stderr, "inference_bench: unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  if (!ServingPath::HaproxyInstalled()) {
    std::fprintf(stderr, "inference_bench: %s is not installed (scripts/lib.sh installs it)\n",
                 ServingPath::kHaproxy);
    return 1;
  }
  Cluster cluster(ClusterOptions{GPUORCH_BIN, "queues: [{name: serving}]\n"});
  if (!cluster.StartServer() || !cluster.StartAgent("n1", "8xH100-80GB")) {
    std::fprintf(stderr, "inference_bench: the cluster did not start (see %s)\n",
                 cluster.dir().c_str());
    return 1;
  }
  ServingPath serving;
  std::string error;
  if (!serving.Start(cluster, 8, 200, error)) {
    std::fprintf(stderr, "inference_bench: %s\n", error.c_str());
    return 1;
  }
  Json out;

  // 1. Load crossing the target -> a new replica Ready.
  std::vector<double> up;
  for (int t = 0; t < o.trials; ++t) {
    const int64_t id = cluster.Submit(ServiceSpec("up" + std::to_string(t), "1:2", 2, {}));
    if (id < 0 || !WaitFor([&] { return Ready(cluster, id) == 1; }, 60s, 10ms)) {
      std::fprintf(stderr, "inference_bench: trial %d: the first replica never got ready\n", t);
      return 1;
    }
    const auto t0 = Clock::now();
    const auto pushed = cluster.api().Post("/v1/workloads/" + std::to_string(id) + "/load",
                                           Json{{"in_flight", 10}, {"source", "pushed"}});
    if (pushed.status != 200) {
      std::fprintf(stderr, "inference_bench: POST /load: %d %s\n", pushed.status,
                   pushed.body.c_str());
      return 1;
    }
    if (!WaitFor([&] { return Ready(cluster, id) == 2; }, 60s, 10ms)) {
      std::fprintf(stderr, "inference_bench: trial %d: no second replica in 60 s: %s\n", t,
                   cluster.Workload(id).dump().c_str());
      return 1;
    }
    up.push_back(Seconds(t0, Clock::now()));
    std::fprintf(stderr, "scale-up trial %d: %.3f s\n", t, up.back());
    if (!Remove(cluster, id)) return 1;
  }
  out["scale_up_trials"] = up.size();
  out["scale_up_p50_s"] = Quantile(up, 0.5);
  out["scale_up_p99_s"] = Quantile(up, 0.99);
  out["scale_up_max_s"] = Quantile(up, 1.0);

  // 2. Scale from zero, a replica that takes 2 s to load.
  std::vector<double> zero;
  for (int t = 0; t < o.zero_trials; ++t) {
    const std::string name = "zero" + std::to_string(t);
    const int64_t id = cluster.Submit(ServiceSpec(name, "0:1", 2, {"--load-s", "2"}));
    if (id < 0 || !WaitFor([&] { return serving.Routes(name); }, 30s)) return 1;
    const auto t0 = Clock::now();
    const int status = Api(serving.front_url())
                           .Post("/svc/" + name + "/v1/completions",
                                 Json{{"prompt_tokens", 16}, {"max_tokens", 4}})
                           .status;
    zero.push_back(Seconds(t0, Clock::now()));
    std::fprintf(stderr, "from-zero trial %d: %d in %.3f s\n", t, status, zero.back());
    if (status != 200 || !Remove(cluster, id)) return 1;
  }
  out["from_zero_s"] = zero;
  out["from_zero_max_s"] = Quantile(zero, 1.0);

  // 3. A 4x step: base_rps for 15 s, then 4x for 35 s, as a generated trace (llm-loadgen
  // runs under RunCli's 60 s limit).
  const int64_t id = cluster.Submit(ServiceSpec(
      "step", "1:8", 4,
      {"--max-num-seqs", "4", "--decode-ms-per-token", "10", "--prefill-tokens-per-s", "20000"}));
  if (id < 0 || !WaitFor([&] { return Ready(cluster, id) == 1 && serving.Routes("step"); }, 60s)) {
    return 1;
  }
  const std::string trace = cluster.dir() + "/step.csv";
  {
    std::ofstream f(trace);
    f << "TIMESTAMP,ContextTokens,GeneratedTokens\n";
    double at = 0;
    auto emit = [&](double rps, double until) {
      for (; at < until; at += 1.0 / rps) {
        char ts[64];
        std::snprintf(ts, sizeof(ts), "2023-11-16 18:%02d:%010.7f", static_cast<int>(at) / 60,
                      std::fmod(at, 60.0));
        f << ts << ",512,20\n";
      }
    };
    emit(o.base_rps, 15);
    emit(4 * o.base_rps, 50);
  }
  const std::string results = cluster.dir() + "/step-results.json";
  const auto step =
      RunCli(LLM_LOADGEN_BIN,
             {"--trace", trace, "--target", serving.front_url() + "/svc/step", "--speedup", "1",
              "--duration-s", "50", "--timeout-s", "8", "--out", results});
  const Json s = Json::parse(step.out, nullptr, false);
  if (!s.is_object()) {
    std::fprintf(stderr, "inference_bench: llm-loadgen: %s %s\n", step.out.c_str(),
                 step.err.c_str());
    return 1;
  }
  const Json w = cluster.Workload(id);
  int max_desired = 0;
  for (const Json& e : w["events"]) {
    const std::string m = e.value("message", "");
    const size_t arrow = m.find(" -> ");
    if (e.value("type", "") == "Scaled" && arrow != std::string::npos) {
      max_desired = std::max(max_desired, std::atoi(m.c_str() + arrow + 4));
    }
  }
  const int count = s.value("count", 0);
  out["step_base_rps"] = o.base_rps;
  out["step_requests"] = count;
  out["step_failures"] = s.value("failures", -1);
  out["step_waited_over_1s"] = s.value("waited_over_1s", -1);
  out["step_slo_miss"] = count > 0 ? s.value("waited_over_1s", 0) / static_cast<double>(count) : -1;
  out["step_p50_s"] = s.value("p50_s", -1.0);
  out["step_p99_s"] = s.value("p99_s", -1.0);
  out["step_max_desired"] = max_desired;
  out["nproc"] = std::thread::hardware_concurrency();
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
