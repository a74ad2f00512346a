#include "cli/client/app.h"

#include <memory>

#include "cli/client/admin_commands.h"
#include "cli/client/usage_command.h"

namespace gpuorch::cli {
namespace {

constexpr const char* kDefaultServer = "http://127.0.0.1:7480";

// Options that must tell "not given" from any value, so a spec file's value survives.
template <typename T>
CLI::Option* AddOptional(CLI::App* cmd, const std::string& name, std::optional<T>& target,
                         const std::string& help) {
  return cmd->add_option_function<T>(
      name, [&target](const T& v) { target = v; }, help);
}

// Repeatable one-value options: `--model A --model B`, never `--model A B` (which would
// swallow the command's first word).
CLI::Option* AddRepeated(CLI::App* cmd, const std::string& name, std::vector<std::string>& target,
                         const std::string& help) {
  return cmd->add_option(name, target, help)->allow_extra_args(false);
}

void AddServer(CLI::App* cmd, CommonArgs& common) {
  common.server = kDefaultServer;
  cmd->add_option("--server", common.server, "gpuorch server URL")
      ->envname("GPUORCH_SERVER")
      ->capture_default_str();
  cmd->add_option("--token-file", common.token_file,
                  "File holding the API token (default: $GPUORCH_TOKEN, then "
                  "~/.config/gpuorch/token)");
  cmd->add_option("--ca", common.ca_file,
                  "CA certificate (PEM) to verify an https:// server with, e.g. the ca.pem of "
                  "gpuorch certs init (default: the system's CAs)")
      ->envname("GPUORCH_CA");
}

void AddOutput(CLI::App* cmd, CommonArgs& common) {
  cmd->add_option("-o,--output", common.output, "Output format: table, json or yaml")
      ->check(CLI::IsMember({"table", "json", "yaml"}))
      ->capture_default_str();
}

void AddSubmit(CLI::App& app, const Io& io, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "submit", "Submit a workload; prints its id (usage: submit [flags] -- CMD ARGS...)");
  auto common = std::make_shared<CommonArgs>();
  auto f = std::make_shared<SubmitFlags>();
  AddServer(cmd, *common);
  AddOptional(cmd, "-f,--file", f->spec_file, "YAML or JSON spec file; flags override it");
  AddOptional(cmd, "--name", f->name, "Workload name (default: the command's basename)");
  AddOptional(cmd, "-q,--queue", f->queue, "Leaf queue to submit to");
  AddOptional(cmd, "--kind", f->kind, "training, inference or experiment")
      ->check(CLI::IsMember({"training", "inference", "experiment"}));
  AddOptional(cmd, "--priority", f->priority, "Priority class");
  cmd->add_flag("--non-preemptible", f->non_preemptible, "Never preempt this workload");
  AddOptional(cmd, "--tasks", f->tasks, "Gang size (sets min and max tasks)");
  AddOptional(cmd, "--max-tasks", f->max_tasks, "Elastic upper bound on tasks");
  AddOptional(cmd, "--gpus", f->gpus, "Whole GPUs per task");
  AddOptional(cmd, "--gpu-milli", f->gpu_milli, "Fraction of one GPU in 1/1000 (needs --gpus 1)");
  AddOptional(cmd, "--gpu-memory-mib", f->gpu_memory_mib, "GPU memory per GPU or fraction");
  AddOptional(cmd, "--mig", f->mig, "Run on a MIG instance of this profile, e.g. 1g.10gb, 3g.40gb");
  AddOptional(cmd, "--sharing", f->sharing,
              "How a fraction shares its GPU: timeslice, mps, mig or any (default: the queue's)")
      ->check(CLI::IsMember({"timeslice", "mps", "mig", "any"}));
  AddOptional(cmd, "--cpu-milli", f->cpu_milli, "CPU per task in 1/1000 cores");
  AddOptional(cmd, "--memory-mib", f->memory_mib, "Memory per task in MiB");
  AddRepeated(cmd, "--model", f->models, "Acceptable GPU model (repeatable)");
  AddOptional(cmd, "--topology", f->topology, "Pack tasks within a rack, zone, node or nvlink")
      ->check(CLI::IsMember({"rack", "zone", "node", "nvlink"}));
  cmd->add_flag("--require-topology", f->require_topology,
                "Wait rather than run outside the --topology level");
  AddRepeated(cmd, "--env", f->env, "Environment variable KEY=VALUE (repeatable)");
  AddOptional(cmd, "--workdir", f->workdir, "Working directory of the tasks");
  AddOptional(cmd, "--estimate-s", f->estimate_s, "Runtime estimate in seconds");
  AddOptional(cmd, "--min-runtime-s", f->min_runtime_s, "Seconds before it may be preempted");
  AddOptional(cmd, "--grace-s", f->grace_s, "Seconds between SIGTERM and SIGKILL");
  AddOptional(cmd, "--replicas", f->replicas,
              "An inference service of MIN:MAX replicas, scaled with its load (implies --kind "
              "inference)");
  AddOptional(cmd, "--autoscale-target", f->autoscale_target,
              "In-flight requests per replica the service is sized for (default 100)");
  AddOptional(cmd, "--autoscale-metric", f->autoscale_metric,
              "in_flight (default), queue (the load balancer's only) or a replica gauge name");
  AddOptional(cmd, "--scale-to-zero-after-s", f->scale_to_zero_after_s,
              "Seconds without traffic before the last replica stops (default 300)");
  AddOptional(cmd, "--port-readiness", f->readiness_path,
              "HTTP path on $PORT a replica must answer 2xx before it gets traffic");
  cmd->add_option("command", f->command, "The command and its arguments, after --");
  cmd->callback([common, f, &io, &exit_code] { exit_code = RunSubmit(*common, *f, io); });
}

void AddGetAndDescribe(CLI::App& app, const Io& io, int& exit_code) {
  auto* get = app.add_subcommand("get", "List workloads, or show one");
  auto common = std::make_shared<CommonArgs>();
  auto args = std::make_shared<GetArgs>();
  AddServer(get, *common);
  AddOutput(get, *common);
  AddOptional(get, "id", args->id, "Workload id (omit to list)");
  get->add_option("-q,--queue", args->queue, "Only workloads of this queue");
  get->add_option("--state", args->state, "Only workloads in this state (e.g. Pending)");
  get->add_option("--kind", args->kind, "Only workloads of this kind");
  get->callback([common, args, &io, &exit_code] { exit_code = RunGet(*common, *args, io); });

  auto* describe = app.add_subcommand("describe", "Show a workload in detail");
  auto dcommon = std::make_shared<CommonArgs>();
  auto id = std::make_shared<int64_t>(0);
  AddServer(describe, *dcommon);
  describe->add_option("id", *id, "Workload id")->required();
  describe->callback(
      [dcommon, id, &io, &exit_code] { exit_code = RunDescribe(*dcommon, *id, io); });
}

void AddCancelAndLogs(CLI::App& app, const Io& io, int& exit_code) {
  auto* cancel = app.add_subcommand("cancel", "Cancel workloads");
  auto common = std::make_shared<CommonArgs>();
  auto ids = std::make_shared<std::vector<int64_t>>();
  AddServer(cancel, *common);
  cancel->add_option("ids", *ids, "Workload ids")->required();
  cancel->callback([common, ids, &io, &exit_code] { exit_code = RunCancel(*common, *ids, io); });

  struct LogsArgs {
    int64_t id = 0;
    int64_t task = 0;
    std::string stream = "stdout";
    int64_t offset = -1;
    int64_t tail = -1;
  };
  auto* logs = app.add_subcommand("logs", "Print a task's log");
  auto lcommon = std::make_shared<CommonArgs>();
  auto largs = std::make_shared<LogsArgs>();
  AddServer(logs, *lcommon);
  logs->add_option("id", largs->id, "Workload id")->required();
  logs->add_option("--task", largs->task, "Task index")->capture_default_str();
  logs->add_option("--stream", largs->stream, "stdout or stderr")
      ->check(CLI::IsMember({"stdout", "stderr"}))
      ->capture_default_str();
  auto* offset = logs->add_option("--offset", largs->offset, "Start at this byte of the log")
                     ->check(CLI::NonNegativeNumber);
  logs->add_option("--tail-bytes", largs->tail, "Only the last N bytes of the log")
      ->check(CLI::NonNegativeNumber)
      ->excludes(offset);
  logs->callback([lcommon, largs, &io, &exit_code] {
    exit_code =
        RunLogs(*lcommon, largs->id, largs->task, largs->stream, largs->offset, largs->tail, io);
  });
}

void AddServiceCommands(CLI::App& app, const Io& io, int& exit_code) {
  struct ScaleArgs {
    int64_t id = 0;
    std::optional<int64_t> replicas;
    bool automatic = false;
  };
  auto* scale = app.add_subcommand(
      "scale", "Pin an inference service at N replicas (autoscaling off), or --auto");
  auto common = std::make_shared<CommonArgs>();
  auto args = std::make_shared<ScaleArgs>();
  AddServer(scale, *common);
  scale->add_option("id", args->id, "Service id")->required();
  auto* n = AddOptional(scale, "replicas", args->replicas, "Replicas to pin it at");
  scale->add_flag("--auto", args->automatic, "Unpin: the autoscaler decides again")->excludes(n);
  scale->callback([common, args, &io, &exit_code] {
    if (!args->replicas && !args->automatic) {
      io.err << "error: give a replica count or --auto\n";
      exit_code = kExitUsage;
      return;
    }
    exit_code = RunScale(*common, args->id, args->replicas, io);
  });

  auto* load = app.add_subcommand(
      "load", "Report an inference service's in-flight requests (an external gateway's signal)");
  auto lcommon = std::make_shared<CommonArgs>();
  auto id = std::make_shared<int64_t>(0);
  auto in_flight = std::make_shared<double>(0);
  AddServer(load, *lcommon);
  load->add_option("id", *id, "Service id")->required();
  load->add_option("--in-flight", *in_flight, "Requests queued or being served")
      ->required()
      ->check(CLI::NonNegativeNumber);
  load->callback([lcommon, id, in_flight, &io, &exit_code] {
    exit_code = RunLoad(*lcommon, *id, *in_flight, io);
  });
}

void AddClusterCommands(CLI::App& app, const Io& io, int& exit_code) {
  auto* queues = app.add_subcommand("queues", "Show queues: GPU usage against quota per model");
  auto qcommon = std::make_shared<CommonArgs>();
  auto name = std::make_shared<std::string>();
  AddServer(queues, *qcommon);
  AddOutput(queues, *qcommon);
  queues->add_option("name", *name, "Only this queue");
  queues->callback(
      [qcommon, name, &io, &exit_code] { exit_code = RunQueues(*qcommon, *name, io); });

  auto* nodes = app.add_subcommand("nodes", "Show nodes and their GPUs");
  auto ncommon = std::make_shared<CommonArgs>();
  AddServer(nodes, *ncommon);
  AddOutput(nodes, *ncommon);
  auto npage = std::make_shared<NodesArgs>();
  nodes->add_option("--limit", npage->limit, "Nodes per page (0: all nodes, one answer)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{10000}));
  nodes->add_option("--after", npage->after,
                    "Start after this node name (the `continue` of the previous page)");
  nodes->add_flag("--gpus", npage->gpus,
                  "One row per GPU: utilization, memory, health and the workload on it");
  nodes->callback(
      [ncommon, npage, &io, &exit_code] { exit_code = RunNodes(*ncommon, *npage, io); });

  auto* targets = app.add_subcommand(
      "prometheus-targets",
      "Print the nodes' GPU telemetry exporters as Prometheus file_sd targets (JSON)");
  auto tcommon = std::make_shared<CommonArgs>();
  AddServer(targets, *tcommon);
  auto port = std::make_shared<int>(9400);
  targets->add_option("--port", *port, "Exporter port for nodes that report no metrics_url")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  targets->callback(
      [tcommon, port, &io, &exit_code] { exit_code = RunPrometheusTargets(*tcommon, *port, io); });

  for (bool drain : {true, false}) {
    auto* cmd = app.add_subcommand(drain ? "drain" : "undrain",
                                   drain ? "Stop placing new work on a node (running work stays)"
                                         : "Let a drained node take new work again");
    auto common = std::make_shared<CommonArgs>();
    auto node = std::make_shared<std::string>();
    AddServer(cmd, *common);
    cmd->add_option("node", *node, "Node name")->required();
    cmd->callback([common, node, drain, &io, &exit_code] {
      exit_code = RunDrain(*common, *node, drain, io);
    });
  }
}

void AddAdminCommands(CLI::App& app, const Io& io, int& exit_code) {
  auto* token = app.add_subcommand("token", "Create, list and revoke API tokens (admin)");
  token->require_subcommand(1);
  auto* create = token->add_subcommand("create", "Create a token; prints it once");
  auto ccommon = std::make_shared<CommonArgs>();
  auto cargs = std::make_shared<TokenCreateArgs>();
  AddServer(create, *ccommon);
  AddOutput(create, *ccommon);
  create->add_option("--name", cargs->name, "A name for the token (who or what uses it)")
      ->required();
  create->add_option("--role", cargs->role, "admin, operator, tenant, reader or agent")
      ->required()
      ->check(CLI::IsMember({"admin", "operator", "tenant", "reader", "agent"}));
  AddRepeated(create, "--queue", cargs->queues, "Queue of a tenant or reader (repeatable)");
  create->add_option("--node", cargs->node,
                     "Node of an agent; a pattern with '*' makes a join token (hollow-*)");
  create->add_option("--default-queue", cargs->default_queue,
                     "Queue of submissions that name none (default: a tenant's only queue)");
  create->callback(
      [ccommon, cargs, &io, &exit_code] { exit_code = RunTokenCreate(*ccommon, *cargs, io); });

  auto* list = token->add_subcommand("list", "List tokens (never their secrets)");
  auto lcommon = std::make_shared<CommonArgs>();
  AddServer(list, *lcommon);
  AddOutput(list, *lcommon);
  list->callback([lcommon, &io, &exit_code] { exit_code = RunTokenList(*lcommon, io); });

  auto* revoke = token->add_subcommand("revoke", "Revoke a token by its accessor");
  auto rcommon = std::make_shared<CommonArgs>();
  auto accessor = std::make_shared<std::string>();
  AddServer(revoke, *rcommon);
  revoke->add_option("accessor", *accessor, "The token's accessor (gpuorch token list)")
      ->required();
  revoke->callback([rcommon, accessor, &io, &exit_code] {
    exit_code = RunTokenRevoke(*rcommon, *accessor, io);
  });

  auto* audit = app.add_subcommand("audit", "Show the audit log of mutating requests (admin)");
  auto acommon = std::make_shared<CommonArgs>();
  auto since = std::make_shared<std::string>();
  auto limit = std::make_shared<int64_t>(1000);
  AddServer(audit, *acommon);
  AddOutput(audit, *acommon);
  audit->add_option(
      "--since", *since,
      "Entries from this time on: 2026-12-02T13:00:00Z, or back from now: 30m, 2h, 7d");
  audit->add_option("--limit", *limit, "At most this many (the newest)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  audit->callback([acommon, since, limit, &io, &exit_code] {
    exit_code = RunAudit(*acommon, *since, *limit, io);
  });
}

void AddUsage(CLI::App& app, const Io& io, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "usage", "Allocated GPU-hours per queue or user and GPU model, like Slurm's sreport");
  auto common = std::make_shared<CommonArgs>();
  auto args = std::make_shared<UsageArgs>();
  AddServer(cmd, *common);
  AddOutput(cmd, *common);
  cmd->add_option("--from", args->from,
                  "Start (included): 2026-03-01 (00:00 UTC) or 2026-03-01T12:00:00Z; default: "
                  "the start of --to's month");
  cmd->add_option("--to", args->to, "End (excluded), in the same forms; default: now");
  cmd->add_option("--by", args->by, "Rows per queue or per user")
      ->check(CLI::IsMember({"queue", "user"}))
      ->capture_default_str();
  cmd->add_option("-q,--queue", args->queue, "Only this queue");
  cmd->add_flag("--csv", args->csv, "CSV with a header instead of a table");
  cmd->callback([common, args, &io, &exit_code] { exit_code = RunUsage(*common, *args, io); });
}

}  // namespace

void AddClientCommands(CLI::App& app, const Io& io, int& exit_code) {
  AddSubmit(app, io, exit_code);
  AddGetAndDescribe(app, io, exit_code);
  AddCancelAndLogs(app, io, exit_code);
  AddServiceCommands(app, io, exit_code);
  AddClusterCommands(app, io, exit_code);
  AddAdminCommands(app, io, exit_code);
  AddUsage(app, io, exit_code);
}

}  // namespace gpuorch::cli
