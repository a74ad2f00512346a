#include "cli/client/app.h"

#include <memory>

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
  logs->callback([lcommon, largs, &io, &exit_code] {
    exit_code = RunLogs(*lcommon, largs->id, largs->task, largs->stream, io);
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

}  // namespace

void AddClientCommands(CLI::App& app, const Io& io, int& exit_code) {
  AddSubmit(app, io, exit_code);
  AddGetAndDescribe(app, io, exit_code);
  AddCancelAndLogs(app, io, exit_code);
  AddClusterCommands(app, io, exit_code);
}

}  // namespace gpuorch::cli
