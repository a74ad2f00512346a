// `gpuorch agent`: the node agent (docs/agent.md), and `gpuorch task-shim`, the process it
// puts between itself and each task so that tasks survive an agent restart.
#include <pthread.h>
#include <signal.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/agent.h"
#include "agent/gpu.h"
#include "agent/hollow.h"
#include "agent/nvml.h"
#include "agent/shim.h"
#include "cli/client/credentials.h"
#include "cli/commands.h"

namespace gpuorch::cli {
namespace {

struct AgentFlags {
  agent::AgentOptions options;
  std::string emulate;
  bool emulate_mig = false;
  bool probe = false;
  LogFlags log;
  // Hollow nodes (--emulate-nodes N): N emulated agents in this process.
  agent::HollowOptions hollow;
  std::string token_file;
  double telemetry_interval_s = 10;
  std::string service_ports = "20000-29999";
};

// "LO-HI" of --service-ports, within 1-65535.
bool ParsePortRange(const std::string& text, std::pair<int32_t, int32_t>& out) {
  int lo = 0, hi = 0;
  char dash = 0, extra = 0;
  if (std::sscanf(text.c_str(), "%d%c%d%c", &lo, &dash, &hi, &extra) != 3 || dash != '-' ||
      lo < 1 || hi > 65535 || lo > hi) {
    return false;
  }
  out = {lo, hi};
  return true;
}

int RunProbe() {
  const agent::ProbeReport report = agent::ProbeNvml();
  std::printf("%s\n", report.json.c_str());
  return report.ok ? 0 : 1;
}

// SIGINT/SIGTERM are blocked before any thread starts (threads inherit the mask) and taken
// by one thread with sigwait, which calls `stop`: no work in a handler.
sigset_t BlockStopSignals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  return stop_signals;
}

int RunAgent(AgentFlags flags) {
  // Resolved here rather than in Agent::Create because emulated GPU uuids carry the name.
  if (flags.options.name.empty()) flags.options.name = agent::HostName();
  flags.options.telemetry_interval_ms =
      static_cast<int64_t>(std::llround(flags.telemetry_interval_s * 1000));
  // Prefer the small gpuorch-shim installed beside this binary (cheap to exec per task).
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::filesystem::path shim = self.parent_path() / "gpuorch-shim";
  if (!ec && std::filesystem::exists(shim, ec)) flags.options.shim_command = {shim.string()};
  std::unique_ptr<agent::GpuBackend> gpus;
  if (flags.emulate.empty()) {
    if (flags.emulate_mig) {
      std::fprintf(stderr, "error: --emulate-mig needs --emulate-gpus (e.g. 8xH100-80GB)\n");
      return 2;
    }
    gpus = std::make_unique<agent::NvmlBackend>();
  } else {
    core::Result<agent::EmulatedSpec> spec = agent::ParseEmulatedSpec(flags.emulate);
    if (!spec.ok()) {
      std::fprintf(stderr, "error: %s\n", spec.status().message().c_str());
      return 2;
    }
    gpus =
        std::make_unique<agent::EmulatedGpuBackend>(*spec, flags.options.name, flags.emulate_mig);
  }
  const sigset_t stop_signals = BlockStopSignals();
  core::Result<std::unique_ptr<agent::Agent>> created =
      agent::Agent::Create(flags.options, std::move(gpus));
  if (!created.ok()) {
    std::fprintf(stderr, "error: %s\n", created.status().message().c_str());
    return 1;
  }
  agent::Agent& a = **created;
  std::thread waiter([&a, stop_signals] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::fprintf(stderr, "gpuorch agent: %s received, stopping (tasks keep running)\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    a.Shutdown();
  });
  a.Run();
  waiter.join();
  return 0;
}

int RunHollow(AgentFlags flags) {
  agent::HollowOptions& h = flags.hollow;
  if (flags.emulate.empty()) {
    std::fprintf(stderr, "error: --emulate-nodes needs --emulate-gpus (e.g. 8xH100-80GB)\n");
    return 2;
  }
  if (!flags.options.name.empty()) {
    std::fprintf(stderr, "error: --name: hollow nodes are named by --name-prefix\n");
    return 2;
  }
  if (!flags.options.ca_file.empty() || !flags.options.tls_cert_file.empty()) {
    std::fprintf(stderr, "error: --ca, --tls-cert: hollow nodes speak plain HTTP only\n");
    return 2;
  }
  core::Result<agent::EmulatedSpec> spec = agent::ParseEmulatedSpec(flags.emulate);
  if (!spec.ok()) {
    std::fprintf(stderr, "error: %s\n", spec.status().message().c_str());
    return 2;
  }
  h.gpus = *spec;
  h.mig = flags.emulate_mig;
  h.server_url = flags.options.server_url;
  h.token = flags.options.token;
  h.zone = flags.options.zone;
  h.rack = flags.options.rack;
  h.cpu_milli = flags.options.cpu_milli;
  h.memory_mib = flags.options.memory_mib;
  h.heartbeat_ms = flags.options.heartbeat_ms;
  h.listen = flags.options.listen;
  const sigset_t stop_signals = BlockStopSignals();
  core::Result<std::unique_ptr<agent::HollowFleet>> created = agent::HollowFleet::Create(h);
  if (!created.ok()) {
    std::fprintf(stderr, "error: %s\n", created.status().message().c_str());
    return 2;
  }
  agent::HollowFleet& fleet = **created;
  std::thread waiter([&fleet, stop_signals] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::fprintf(stderr, "gpuorch agent (hollow): %s received, stopping\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    fleet.Shutdown();
  });
  fleet.Run();
  waiter.join();
  return 0;
}

void RegisterAgent(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<AgentFlags>();
  agent::AgentOptions& o = flags->options;
  o.data_dir = "/var/lib/gpuorch/agent";
  CLI::App* cmd = app.add_subcommand(
      "agent",
      "Run the node agent: register this machine's GPUs with the server and run the tasks it "
      "places here (docs/agent.md)");
  cmd->add_option("--server", o.server_url, "Control-plane URL")->capture_default_str();
  cmd->add_option("--name", o.name, "Node name (default: the host name)");
  cmd->add_option("--token-file", flags->token_file,
                  "File holding the node's token (gpuorch token create --role agent --node N; "
                  "hollow nodes: a join token for PREFIX-*); default: $GPUORCH_TOKEN");
  cmd->add_option("--ca", o.ca_file,
                  "CA certificate (PEM) to verify an https:// server with (gpuorch certs init's "
                  "ca.pem; default: the system's CAs)")
      ->envname("GPUORCH_CA");
  cmd->add_option("--tls-cert", o.tls_cert_file,
                  "Client certificate (PEM) for mutual TLS: agent-NODE.pem of gpuorch certs init");
  cmd->add_option("--tls-key", o.tls_key_file, "The key of --tls-cert (PEM)");
  cmd->add_option("--emulate-gpus", flags->emulate,
                  "Run without NVIDIA GPUs, pretending to have e.g. 8xH100-80GB, 4xA100-40GB, "
                  "2xT4");
  cmd->add_flag("--emulate-mig", flags->emulate_mig,
                "With --emulate-gpus: every GPU in MIG mode with no instances; layouts the "
                "server asks for are applied to emulated instances (models with MIG profiles: "
                "A100-40GB, A100-80GB, H100-80GB, H200-141GB)");
  cmd->add_option("--data", o.data_dir, "Data directory: task state and logs")
      ->capture_default_str();
  cmd->add_option("--listen", o.listen, "host:port for the log endpoint (port 0: any)")
      ->capture_default_str();
  cmd->add_option("--zone", o.zone, "Topology zone of this node");
  cmd->add_option("--rack", o.rack, "Topology rack (or NVL72 block) of this node");
  cmd->add_option("--cpu-milli", o.cpu_milli, "Allocatable CPU in milli-CPU (default: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--memory-mib", o.memory_mib, "Allocatable memory in MiB (default: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--heartbeat-ms", o.heartbeat_ms, "Heartbeat interval in milliseconds")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{10}, int64_t{60000}));
  o.metrics_listen = "127.0.0.1:9400";  // dcgm-exporter's port
  cmd->add_option("--metrics-listen", o.metrics_listen,
                  "host:port of the GPU telemetry endpoint (/metrics under dcgm-exporter's "
                  "names; port 0: any; off: none)")
      ->capture_default_str();
  cmd->add_option("--telemetry-interval-s", flags->telemetry_interval_s,
                  "Seconds between two samplings of the GPUs")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  cmd->add_option("--service-ports", flags->service_ports,
                  "LO-HI: the TCP ports given to service tasks (inference replicas, env PORT)")
      ->capture_default_str();
  cmd->add_option("--service-scrape-interval-ms", o.service_scrape_interval_ms,
                  "How often service tasks' /metrics gauges are scraped (0: every readiness "
                  "period)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{3600000}));
  cmd->add_option("--emulate-nodes", flags->hollow.count,
                  "Run N hollow nodes in this process instead of one agent: emulated agents "
                  "<prefix>-00001.. with --emulate-gpus each, whose tasks run no process "
                  "(docs/operations.md, hollow nodes)")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--name-prefix", flags->hollow.name_prefix, "Hollow node names' prefix")
      ->capture_default_str();
  cmd->add_option("--emulate-threads", flags->hollow.threads,
                  "Threads carrying the hollow nodes' connections")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option("--register-rate", flags->hollow.register_per_s,
                  "Hollow nodes registered per second at start (staggered)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--task-user", o.run_as.default_user,
                  "User of tasks whose queue names none (default: nobody when the agent runs as "
                  "root, else the agent's own user)");
  cmd->add_option("--run-as-allow", o.run_as.allowed,
                  "Users the server may name for tasks (queue run_as), comma separated "
                  "(default: any user but root)")
      ->delimiter(',');
  cmd->add_flag("--allow-root-tasks", o.run_as.allow_root,
                "Let tasks run as root (uid 0); never without this flag");
  cmd->add_option("--env-allow", o.env_allow,
                  "Variables of the agent's environment that tasks inherit, comma separated")
      ->delimiter(',')
      ->default_str("PATH,LANG,LC_ALL,TZ");
  cmd->add_option("--cgroup-parent", o.cgroup_parent,
                  "Task cgroups: auto (<cgroup2 mount>/gpuorch when usable), off, or a directory "
                  "under the cgroup2 mount")
      ->capture_default_str();
  cmd->add_option("--task-pids-max", o.pids_max,
                  "pids.max of each task's cgroup (processes and threads; 0: no limit)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--task-retention-s", o.task_retention_s,
                  "Remove a finished task's files (logs, workdir) this long after the server "
                  "stopped listing it")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  AddLogFlags(cmd, flags->log);
  cmd->add_flag("--probe", flags->probe,
                "Print what NVML finds on this machine as JSON and exit (1 when NVML fails)");
  cmd->callback([flags, &exit_code] {
    if (flags->probe) {
      exit_code = RunProbe();
      return;
    }
    if (flags->options.server_url.empty()) {
      std::fprintf(stderr, "error: --server is required\n");
      exit_code = 2;
      return;
    }
    if (!ParsePortRange(flags->service_ports, flags->options.service_ports)) {
      std::fprintf(stderr, "error: --service-ports '%s': expected LO-HI within 1-65535\n",
                   flags->service_ports.c_str());
      exit_code = 2;
      return;
    }
    if (!SetupLogging(flags->log, "agent")) {
      exit_code = 2;
      return;
    }
    auto token = LoadToken(flags->token_file, /*use_config_file=*/false);
    if (!token.ok()) {
      std::fprintf(stderr, "error: %s\n", token.failure().message.c_str());
      exit_code = 2;
      return;
    }
    flags->options.token = token.value();
    if (flags->options.token.empty()) {
      std::fprintf(stderr,
                   "gpuorch agent: no token (--token-file or GPUORCH_TOKEN): the server will "
                   "refuse this agent unless it runs with --insecure-no-auth\n");
    }
    exit_code = flags->hollow.count > 0 ? RunHollow(*flags) : RunAgent(*flags);
  });
}

void RegisterTaskShim(CLI::App& app, int& exit_code) {
  struct ShimFlags {
    std::string state, cgroup, user, chdir;
    std::vector<std::string> command;
  };
  auto flags = std::make_shared<ShimFlags>();
  CLI::App* cmd = app.add_subcommand(
      "task-shim", "Internal: run one task for the agent and record its exit code");
  cmd->group("");  // Hidden from the top-level help: users never run it themselves.
  cmd->add_option("--state", flags->state, "The task's state file")->required();
  cmd->add_option("--cgroup", flags->cgroup, "The task's cgroup directory");
  cmd->add_option("--user", flags->user, "UID:GID[:GROUPS] to run the command as");
  cmd->add_option("--chdir", flags->chdir, "The command's working directory");
  cmd->add_option("command", flags->command, "The command, after --")->required();
  cmd->callback([flags, &exit_code] {
    std::vector<std::string> args = {"task-shim", "--state", flags->state};
    for (auto [name, value] : {std::pair<const char*, std::string*>{"--cgroup", &flags->cgroup},
                               {"--user", &flags->user},
                               {"--chdir", &flags->chdir}}) {
      if (!value->empty()) args.insert(args.end(), {name, *value});
    }
    args.push_back("--");
    args.insert(args.end(), flags->command.begin(), flags->command.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    exit_code = gpuorch_shim_main(static_cast<int>(args.size()), argv.data());
  });
}

}  // namespace

void RegisterAgentCommands(CLI::App& app, int& exit_code) {
  RegisterAgent(app, exit_code);
  RegisterTaskShim(app, exit_code);
}

}  // namespace gpuorch::cli
