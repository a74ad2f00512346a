// Control-plane throughput through the real API: a `gpuorch server` and 8 emulated agents of
// 8 GPUs (real processes on loopback, started from the built `gpuorch` binary), then 10,000
// one-task jobs running `/bin/true` submitted through `POST /v1/workloads` by a few client
// threads on keep-alive connections. Reported:
//   api_jobs_per_s  jobs / (last completion - first submit), completion seen on /metrics
//   api_p99_ms      p99 latency of the submissions (and p50, max)
//   api_*_cpu_ms_per_job  CPU per job of the server, the agents, their children (shims and
//                   tasks) and this client; api_exec_floor_ms the CPU of one spawn of
//                   /bin/true here, the floor under any design that runs a job as a process
//
// With --backlog N (scripts/bench runs it with 10,000) it measures the control plane under a
// standing backlog instead (RunBacklog below): half the agents are 8xH100 nodes that one
// long job each fills, the other half 8xA100; N workloads of distinct shapes pinned to H100
// (1-8 GPUs or a fraction, every CPU, memory, share and GPU memory drawn from a continuous
// range by core::Rng with a fixed seed) are submitted and stay pending. Then, one at a time,
// --probes single-GPU A100 workloads of a queue whose guarantee covers them are submitted:
//   api_backlog_submit_p99_ms  p99 latency of the probes' submissions (backlog standing)
//   api_bind_p99_ms            p99 of submit -> the workload no longer Pending (bound),
//                              polled every 5 ms (and p50, max)
//   api_backlog_fill_submit_p99_ms  p99 latency of the N backlog submissions themselves
//
// A plain program rather than Google Benchmark: one run is minutes of wall time across
// processes, not a loop to repeat. The last stdout line is one JSON object (scripts/bench
// merges it into its summary); progress goes to stderr.
//
//   api_bench [--jobs 10000] [--agents 8] [--clients 4] [--gpus 1]
//             [--heartbeat-ms 500] [--cycle-ms 50] [--timeout-s 600]
//             [--backlog 0] [--probes 200]
// The defaults are the server's and the agent's own: nothing is tuned for the benchmark.
#include <httplib.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cluster.h"
#include "core/rng.h"

extern char** environ;

namespace {

using gpuorch::cptest::Cluster;
using gpuorch::cptest::ClusterOptions;
using gpuorch::cptest::Json;
using Clock = std::chrono::steady_clock;

struct Options {
  int jobs = 10000, agents = 8, clients = 4, gpus = 1;
  int heartbeat_ms = 500, cycle_ms = 50, timeout_s = 600;
  int backlog = 0, probes = 200;
};

bool ParseArgs(int argc, char** argv, Options& o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    int v = std::atoi(argv[i + 1]);
    std::string f = argv[i];
    if (f == "--jobs")
      o.jobs = v;
    else if (f == "--agents")
      o.agents = v;
    else if (f == "--clients")
      o.clients = v;
    else if (f == "--gpus")
      o.gpus = v;
    else if (f == "--heartbeat-ms")
      o.heartbeat_ms = v;
    else if (f == "--cycle-ms")
      o.cycle_ms = v;
    else if (f == "--timeout-s")
      o.timeout_s = v;
    else if (f == "--backlog")
      o.backlog = v;
    else if (f == "--probes")
      o.probes = v;
    else
      return false;
  }
  return argc % 2 == 1 && o.jobs > 0 && o.agents > 0 && o.clients > 0 && o.backlog >= 0 &&
         o.probes > 0 && (o.backlog == 0 || o.agents >= 2);
}

// The value of `gpuorch_workloads{queue="QUEUE",state="STATE"}` in a scrape.
long Gauge(const std::string& metrics, const std::string& state,
           const std::string& queue = "default") {
  std::string key = "gpuorch_workloads{queue=\"" + queue + "\",state=\"" + state + "\"} ";
  size_t at = metrics.find(key);
  return at == std::string::npos ? 0 : std::atol(metrics.c_str() + at + key.size());
}

// CPU seconds of `pid` from /proc/PID/stat: its own (utime + stime), or its reaped
// children's (cutime + cstime: for an agent, the task shims and the tasks themselves).
double CpuSeconds(pid_t pid, bool children) {
  std::string stat = gpuorch::cptest::ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::vector<std::string> f;  // f[0] is field 3 (state)
  std::string rest = stat.substr(paren + 2);
  for (size_t at = 0, end; at < rest.size(); at = end + 1) {
    end = rest.find(' ', at);
    if (end == std::string::npos) end = rest.size();
    f.push_back(rest.substr(at, end - at));
  }
  if (f.size() < 15) return 0;
  size_t first = children ? 13 : 11;  // fields 16-17 or 14-15
  return static_cast<double>(std::stoll(f[first]) + std::stoll(f[first + 1])) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double RusageMs(int who) {
  rusage ru{};
  getrusage(who, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

// CPU milliseconds that one posix_spawn + wait of `command` costs on this machine: the
// floor under any orchestrator that runs each job as a process (measured, not assumed).
double ExecFloorMs(const char* command, int runs) {
  const double before = RusageMs(RUSAGE_CHILDREN);
  for (int i = 0; i < runs; ++i) {
    pid_t pid = 0;
    char* argv[] = {const_cast<char*>(command), nullptr};
    if (posix_spawn(&pid, command, nullptr, nullptr, argv, environ) != 0) return 0;
    int status = 0;
    waitpid(pid, &status, 0);
  }
  return (RusageMs(RUSAGE_CHILDREN) - before) / runs;
}

// A benchmark client as a long-lived API client would be: keep-alive, no Nagle delay.
void KeepAlive(httplib::Client& client) {
  client.set_keep_alive(true);
  client.set_tcp_nodelay(true);
  client.set_read_timeout(60, 0);
}

// The p-th quantile of `v` (sorted here), rounded to 0.01 ms; 0 when empty.
double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t at = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return std::round(v[at] * 100) / 100;
}

// Uniform in [lo, hi].
int64_t Between(gpuorch::core::Rng& rng, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(rng.Uniform(static_cast<uint64_t>(hi - lo + 1)));
}

// One backlog workload of queue `batch`, pinned to H100 (which is full): 1, 2, 4 or 8 GPUs
// with 0.5-7.5 cores and 1-32 GiB per GPU (an emulated node has 64 cores and 256 GiB), or in
// one case of ten a fraction of 100-900 milli-GPU with 1-40 GiB of GPU memory.
Json BacklogSpec(gpuorch::core::Rng& rng, int i) {
  static constexpr int kGpus[4] = {1, 2, 4, 8};
  Json spec{{"name", "backlog-" + std::to_string(i)},
            {"queue", "batch"},
            {"gpu_models", {"H100-80GB"}},
            {"command", {"/bin/true"}}};
  if (rng.Uniform(10) == 0) {
    const int64_t milli = Between(rng, 100, 900);
    spec["gpus"] = 1;
    spec["gpu_milli"] = milli;
    spec["gpu_memory_mib"] = Between(rng, 1024, 40960);
    spec["cpu_milli"] = std::max<int64_t>(100, Between(rng, 500, 7500) * milli / 1000);
    spec["memory_mib"] = std::max<int64_t>(256, Between(rng, 1024, 32768) * milli / 1000);
  } else {
    const int g = kGpus[rng.Uniform(4)];
    spec["gpus"] = g;
    spec["cpu_milli"] = Between(rng, 500 * g, 7500 * g);
    spec["memory_mib"] = Between(rng, 1024 * g, 32768 * g);
  }
  return spec;
}

// The standing-backlog scenario (see the file comment). Returns the exit status.
int RunBacklog(const Options& o) {
  const int h100 = o.agents / 2, a100 = o.agents - h100;
  ClusterOptions co;
  co.bin = GPUORCH_BIN;
  co.agent_heartbeat_ms = o.heartbeat_ms;
  co.config_yaml = "node_timeout_s: 30\nheartbeat_interval_ms: " + std::to_string(o.heartbeat_ms) +
                   "\ncycle_interval_ms: " + std::to_string(o.cycle_ms) +
                   "\nqueues:\n  - {name: team, quota: [{model: A100-80GB, guaranteed: " +
                   std::to_string(8 * a100) + "}]}\n  - {name: batch}\n";
  Cluster cluster(co);
  if (!cluster.StartServer()) {
    std::fprintf(stderr, "api_bench: the server did not start (see %s)\n", cluster.dir().c_str());
    return 1;
  }
  for (int i = 0; i < o.agents; ++i) {
    if (!cluster.StartAgent("emu-" + std::to_string(i), i < h100 ? "8xH100-80GB" : "8xA100-80GB")) {
      std::fprintf(stderr, "api_bench: agent %d did not register\n", i);
      return 1;
    }
  }
  // Fill every H100 node with one long job of 8 GPUs.
  std::vector<int64_t> fills;
  for (int i = 0; i < h100; ++i) {
    fills.push_back(cluster.Submit(Json{{"name", "fill-" + std::to_string(i)},
                                        {"queue", "batch"},
                                        {"gpus", 8},
                                        {"gpu_models", {"H100-80GB"}},
                                        {"command", {"/bin/sleep", "100000"}}}));
  }
  for (int64_t id : fills) {
    if (id < 0 || !cluster.WaitState(id, "Running", std::chrono::seconds(60))) {
      std::fprintf(stderr, "api_bench: a fill job did not start (see %s)\n", cluster.dir().c_str());
      return 1;
    }
  }
  std::fprintf(stderr,
               "api_bench: %d H100 nodes full, %d A100 nodes free (%s); submitting a "
               "backlog of %d from %d clients\n",
               h100, a100, cluster.dir().c_str(), o.backlog, o.clients);

  gpuorch::core::Rng rng(14);
  std::vector<std::string> bodies;
  for (int i = 0; i < o.backlog; ++i) bodies.push_back(BacklogSpec(rng, i).dump());
  std::vector<std::vector<double>> fill_latencies(o.clients);
  std::atomic<int> next{0}, failed_submits{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < o.clients; ++c) {
    clients.emplace_back([&, c] {
      httplib::Client client(cluster.url());
      client.set_bearer_token_auth(cluster.admin_token());
      KeepAlive(client);
      for (int i = next++; i < o.backlog; i = next++) {
        Clock::time_point t0 = Clock::now();
        auto r = client.Post("/v1/workloads", bodies[static_cast<size_t>(i)], "application/json");
        fill_latencies[c].push_back(Ms(Clock::now() - t0));
        if (!r || r->status != 201) ++failed_submits;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  std::vector<double> fill_all;
  for (const auto& l : fill_latencies) fill_all.insert(fill_all.end(), l.begin(), l.end());

  // The backlog stands once every accepted submission is Pending in `batch` (its fill jobs
  // are Running there).
  httplib::Client api(cluster.url());
  api.set_bearer_token_auth(cluster.admin_token());
  KeepAlive(api);
  long pending = 0;
  const bool standing = gpuorch::cptest::WaitFor(
      [&] {
        auto r = api.Get("/metrics");
        if (!r || r->status != 200) return false;
        pending = Gauge(r->body, "Pending", "batch");
        return pending >= o.backlog - failed_submits;
      },
      std::chrono::seconds(o.timeout_s), std::chrono::milliseconds(100));
  if (!standing) {
    std::fprintf(stderr, "api_bench: the backlog is not pending (%ld of %d)\n", pending, o.backlog);
    return 1;
  }
  std::fprintf(stderr, "api_bench: backlog of %ld pending; %d probes\n", pending, o.probes);

  const std::string probe = Json{{"name", "probe"},  {"queue", "team"},
                                 {"gpus", 1},        {"gpu_models", {"A100-80GB"}},
                                 {"cpu_milli", 100}, {"command", {"/bin/true"}}}
                                .dump();
  std::vector<double> submit_ms, bind_ms;
  int unbound = 0;
  const double server_cpu_before = CpuSeconds(cluster.server()->pid(), false);
  for (int i = 0; i < o.probes; ++i) {
    const Clock::time_point t0 = Clock::now();
    auto r = api.Post("/v1/workloads", probe, "application/json");
    submit_ms.push_back(Ms(Clock::now() - t0));
    const Json answer = r ? Json::parse(r->body, nullptr, false) : Json();
    if (!r || r->status != 201 || !answer.is_object() || !answer.contains("id")) {
      ++failed_submits;
      continue;
    }
    const std::string path = "/v1/workloads/" + std::to_string(answer["id"].get<int64_t>());
    std::string state = "Pending";
    const Clock::time_point deadline = t0 + std::chrono::seconds(60);
    while (state == "Pending" && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      auto w = api.Get(path);
      const Json j = w && w->status == 200 ? Json::parse(w->body, nullptr, false) : Json();
      if (j.is_object()) state = j.value("state", "");
    }
    if (state == "Pending") {
      ++unbound;
    } else {
      bind_ms.push_back(Ms(Clock::now() - t0));
    }
  }
  const double server_cpu_s = CpuSeconds(cluster.server()->pid(), false) - server_cpu_before;
  auto r = api.Get("/metrics");
  if (r && r->status == 200) pending = Gauge(r->body, "Pending", "batch");

  Json out{{"api_backlog_submit_p99_ms", Percentile(submit_ms, 0.99)},
           {"api_backlog_submit_p50_ms", Percentile(submit_ms, 0.50)},
           {"api_bind_p99_ms", Percentile(bind_ms, 0.99)},
           {"api_bind_p50_ms", Percentile(bind_ms, 0.50)},
           {"api_bind_max_ms", Percentile(bind_ms, 1.0)},
           {"api_bind_samples", bind_ms.size()},
           {"api_bind_unbound", unbound},
           {"api_backlog_fill_submit_p99_ms", Percentile(fill_all, 0.99)},
           {"api_backlog_fill_submit_p50_ms", Percentile(fill_all, 0.50)},
           {"api_backlog_pending", pending},
           {"api_backlog", o.backlog},
           {"api_backlog_failed_submits", failed_submits.load()},
           {"api_backlog_server_cpu_ms_per_probe", std::round(server_cpu_s * 1e4 / o.probes) / 10},
           {"api_agents", o.agents},
           {"api_heartbeat_ms", o.heartbeat_ms},
           {"api_cycle_ms", o.cycle_ms},
           {"cores", std::thread::hardware_concurrency()}};
  std::printf("%s\n", out.dump().c_str());
  return unbound == 0 && failed_submits == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!ParseArgs(argc, argv, o)) {
    std::fprintf(stderr,
                 "usage: api_bench [--jobs N] [--agents N] [--clients N] [--gpus N] "
                 "[--heartbeat-ms N] [--cycle-ms N] [--timeout-s N] [--backlog N] "
                 "[--probes N]\n");
    return 2;
  }
  if (o.backlog > 0) return RunBacklog(o);
  const double exec_floor_ms = ExecFloorMs("/bin/true", 500);
  ClusterOptions co;
  co.bin = GPUORCH_BIN;
  co.agent_heartbeat_ms = o.heartbeat_ms;
  // A node timeout far above the heartbeat, so a loaded machine never marks a node Down.
  co.config_yaml = "node_timeout_s: 30\nheartbeat_interval_ms: " + std::to_string(o.heartbeat_ms) +
                   "\ncycle_interval_ms: " + std::to_string(o.cycle_ms) +
                   "\nqueues: [{name: default}]\n";
  Cluster cluster(co);
  if (!cluster.StartServer()) {
    std::fprintf(stderr, "api_bench: the server did not start (see %s)\n", cluster.dir().c_str());
    return 1;
  }
  for (int i = 0; i < o.agents; ++i) {
    if (!cluster.StartAgent("emu-" + std::to_string(i))) {
      std::fprintf(stderr, "api_bench: agent %d did not register\n", i);
      return 1;
    }
  }
  std::fprintf(stderr,
               "api_bench: server and %d agents up (%s); submitting %d jobs from %d "
               "clients\n",
               o.agents, cluster.dir().c_str(), o.jobs, o.clients);

  const std::string body = Json{
      {"name", "true"},
      {"queue", "default"},
      {"gpus", o.gpus},
      {"cpu_milli", 100},
      {"command",
       {"/bin/true"}}}.dump();
  auto cpu = [&] {
    std::array<double, 3> out{CpuSeconds(cluster.server()->pid(), false), 0, 0};
    for (int i = 0; i < o.agents; ++i) {
      pid_t pid = cluster.agent("emu-" + std::to_string(i))->pid();
      out[1] += CpuSeconds(pid, false);
      out[2] += CpuSeconds(pid, true);
    }
    return out;
  };
  const std::array<double, 3> cpu_before = cpu();
  const double bench_cpu_before = RusageMs(RUSAGE_SELF);
  std::vector<std::vector<double>> latencies(o.clients);
  std::atomic<int> next{0}, failed_submits{0};
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < o.clients; ++c) {
    clients.emplace_back([&, c] {
      httplib::Client client(cluster.url());
      client.set_bearer_token_auth(cluster.admin_token());
      KeepAlive(client);
      for (int i = next++; i < o.jobs; i = next++) {
        Clock::time_point t0 = Clock::now();
        auto r = client.Post("/v1/workloads", body, "application/json");
        latencies[c].push_back(Ms(Clock::now() - t0));
        if (!r || r->status != 201) ++failed_submits;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  const Clock::time_point submitted = Clock::now();

  // Completion: the Succeeded (and Failed) gauges, scraped every 50 ms (a scrape walks every
  // workload under the controller lock, so scraping faster would slow what it measures).
  httplib::Client scraper(cluster.url());
  scraper.set_bearer_token_auth(cluster.admin_token());
  long succeeded = 0, failed = 0;
  Clock::time_point done = submitted;
  const Clock::time_point deadline = start + std::chrono::seconds(o.timeout_s);
  while (Clock::now() < deadline) {
    auto r = scraper.Get("/metrics");
    done = Clock::now();
    if (r && r->status == 200) {
      succeeded = Gauge(r->body, "Succeeded");
      failed = Gauge(r->body, "Failed");
      if (succeeded + failed >= o.jobs - failed_submits) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  const std::array<double, 3> cpu_after = cpu();
  const double bench_cpu_ms_per_job = (RusageMs(RUSAGE_SELF) - bench_cpu_before) / o.jobs;
  auto per_job_ms = [&](int i) {
    return std::round((cpu_after[i] - cpu_before[i]) * 1e4 / static_cast<double>(o.jobs)) / 10;
  };
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all.empty() ? 0.0
                       : all[std::min(all.size() - 1,
                                      static_cast<size_t>(p * static_cast<double>(all.size())))];
  };
  const double wall_s = Ms(done - start) / 1000.0;
  Json out{{"api_jobs_per_s", std::round(static_cast<double>(succeeded) / wall_s * 10) / 10},
           {"api_p99_ms", std::round(pct(0.99) * 100) / 100},
           {"api_p50_ms", std::round(pct(0.50) * 100) / 100},
           {"api_max_ms", std::round(all.empty() ? 0 : all.back() * 100) / 100},
           {"api_submits_per_s",
            std::round(static_cast<double>(o.jobs) / (Ms(submitted - start) / 1000.0) * 10) / 10},
           {"api_wall_s", std::round(wall_s * 100) / 100},
           {"api_jobs", o.jobs},
           {"api_server_cpu_ms_per_job", per_job_ms(0)},
           {"api_agent_cpu_ms_per_job", per_job_ms(1)},
           {"api_task_cpu_ms_per_job", per_job_ms(2)},
           {"api_client_cpu_ms_per_job", std::round(bench_cpu_ms_per_job * 10) / 10},
           {"api_exec_floor_ms", std::round(exec_floor_ms * 100) / 100},
           {"api_succeeded", succeeded},
           {"api_failed", failed + failed_submits},
           {"api_agents", o.agents},
           {"api_gpus_per_job", o.gpus},
           {"api_heartbeat_ms", o.heartbeat_ms},
           {"api_cycle_ms", o.cycle_ms},
           {"cores", std::thread::hardware_concurrency()}};
  std::printf("%s\n", out.dump().c_str());
  return succeeded == o.jobs ? 0 : 1;
}
