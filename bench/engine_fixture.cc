#include "engine_fixture.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <new>
#include <sstream>

namespace gpuorch::sched::bench {

using core::QueueId;
using core::TopologyLevel;
using testing::NodeBuilder;
using testing::QueueBuilder;
using testing::WorkloadBuilder;

namespace {

// Distinct shapes' ranges. Per GPU a task asks 1-15 cores and 1-128 GiB, so that eight
// whole-GPU tasks always fit a node's 128 cores and 1 TiB: GPUs stay the scarce resource,
// as in the regular shapes, and the scenarios' batches still fit. The means (8 cores, 64
// GiB per GPU) match the regular shapes' CPU.
constexpr int64_t kCpuPerGpuMin = 1'000, kCpuPerGpuMax = 15'000;   // milli-CPU
constexpr int64_t kMemPerGpuMin = 1'024, kMemPerGpuMax = 131'072;  // MiB
constexpr int kFractionMin = 100, kFractionMax = 900;              // milli-GPU
constexpr int64_t kGpuMemMin = 1'024, kGpuMemMax = 40'960;         // MiB

// Uniform in [lo, hi].
int64_t Between(core::Rng& rng, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(rng.Uniform(static_cast<uint64_t>(hi - lo + 1)));
}

// Sets the CPU and memory of `w`'s tasks for `gpus` whole GPUs: drawn in distinct shapes,
// `regular_cpu` and the builder's 1 GiB otherwise (no draw, so the regular scenarios see the
// same random sequence as before distinct shapes existed).
void Size(core::WorkloadSpec& w, core::Rng& rng, Shapes shapes, int gpus, int64_t regular_cpu) {
  if (shapes == Shapes::kRegular) {
    w.task.milli_cpu = regular_cpu;
    return;
  }
  w.task.milli_cpu = Between(rng, kCpuPerGpuMin * gpus, kCpuPerGpuMax * gpus);
  w.task.memory_mib = Between(rng, kMemPerGpuMin * gpus, kMemPerGpuMax * gpus);
}

}  // namespace

const char* Suffix(Shapes shapes) { return shapes == Shapes::kRegular ? "_regular" : ""; }

uint32_t RackModel(int rack) {
  static constexpr uint32_t kPattern[10] = {0, 1, 0, 2, 1, 0, 3, 1, 0, 2};
  return kPattern[rack % 10];
}

int64_t ModelGpus(uint32_t m, int nodes) {
  int64_t gpus = 0;
  for (int first = 0; first < nodes; first += kRackNodes) {
    if (RackModel(first / kRackNodes) == m) {
      gpus += int64_t{std::min(kRackNodes, nodes - first)} * kGpusPerNode;
    }
  }
  return gpus;
}

uint32_t ModelByCapacity(core::Rng& rng) { return RackModel(static_cast<int>(rng.Uniform(10))); }

void Must(const core::Status& s) {
  if (s.ok()) return;
  std::fprintf(stderr, "engine_bench: %s\n", s.message().c_str());
  std::abort();
}

double CpuNow() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double ProcMib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0)
      return std::strtod(line.c_str() + field.size() + 1, nullptr) / 1024;
  }
  return 0;
}

namespace {

void LimitAddressSpace(int64_t limit_mib) {
  const rlim_t bytes = static_cast<rlim_t>(limit_mib) << 20;
  rlimit limit{bytes, bytes};
  if (setrlimit(RLIMIT_AS, &limit) != 0) {
    std::fprintf(stderr, "engine_bench: setrlimit(RLIMIT_AS): %s\n", std::strerror(errno));
  }
}

}  // namespace

int BenchMain(int argc, char** argv) {
  LimitAddressSpace(kProcessLimitMib);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

void RunIsolated(benchmark::State& state, int64_t limit_mib,
                 const std::function<void(Counters&)>& measure) {
  int fds[2];
  if (pipe(fds) != 0) {
    state.SkipWithError("pipe failed");
    return;
  }
  std::fflush(nullptr);  // or the child's exit would write the parent's buffers twice
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    state.SkipWithError("fork failed");
    return;
  }
  if (pid == 0) {
    close(fds[0]);
    LimitAddressSpace(limit_mib);
    int code = 0;
    std::ostringstream out;
    try {
      Counters counters;
      measure(counters);
      for (const auto& [key, value] : counters) out << key << ' ' << value << '\n';
    } catch (const std::bad_alloc&) {
      code = 3;
    }
    const std::string text = out.str();
    for (size_t at = 0; at < text.size();) {
      const ssize_t n = write(fds[1], text.data() + at, text.size() - at);
      if (n <= 0) break;
      at += static_cast<size_t>(n);
    }
    _exit(code);  // no destructors or atexit handlers of the parent's state
  }
  close(fds[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;)
    text.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const std::string error =
        WIFEXITED(status) && WEXITSTATUS(status) == 3
            ? "the engine needed more than the " + std::to_string(limit_mib) +
                  " MiB address-space cap (std::bad_alloc)"
            : "the measuring process failed (status " + std::to_string(status) + ")";
    state.SkipWithError(error.c_str());
    return;
  }
  std::istringstream in(text);
  std::string key;
  for (double value; in >> key >> value;) state.counters[key] = value;
}

std::unique_ptr<Scheduler> MakeEngine(const std::string& policy) {
  SchedulerConfig config;
  config.policy = policy;
  config.seed = 42;
  auto s = Scheduler::Create(config);
  if (!s.ok()) Must(s.status());
  return std::move(s).value();
}

void AddCluster(Scheduler& s, int nodes) {
  const int racks = (nodes + kRackNodes - 1) / kRackNodes;
  for (int i = 0; i < nodes; ++i) {
    const int rack = i / kRackNodes;
    const uint32_t m = RackModel(rack);
    Must(s.AddNode(NodeId(static_cast<uint32_t>(i)),
                   NodeBuilder("node-" + std::to_string(i))
                       .Gpus(kGpusPerNode, m, kGpuMemoryMib[m])
                       .Nvlink(8)
                       .Rack("rack-" + std::to_string(rack))
                       .Zone("zone-" + std::to_string(rack * kZones / racks))));
  }
}

core::WorkloadSpec OneGpu(core::Rng& rng, Shapes shapes, uint32_t queue, Time now) {
  static constexpr int64_t kCpu[3] = {4000, 8000, 16000};
  core::WorkloadSpec w = WorkloadBuilder("job", queue).Gpus(1).Submitted(now);
  if (shapes == Shapes::kRegular) {
    w.task.milli_cpu = kCpu[rng.Uniform(3)];
  } else {
    Size(w, rng, shapes, 1, 0);
  }
  if (rng.Uniform(10) < 3)
    w.task.models.Add(core::GpuModelId(static_cast<uint32_t>(rng.Uniform(kModels))));
  return w;
}

core::WorkloadSpec Mixed(core::Rng& rng, Shapes shapes, uint32_t queue, Time now, int model) {
  static constexpr int kGpus[9] = {1, 1, 1, 1, 2, 2, 4, 4, 8};
  const int g = kGpus[rng.Uniform(9)];
  WorkloadBuilder b("job", queue);
  b.Gpus(g).Submitted(now);
  if (model >= 0) b.Model(static_cast<uint32_t>(model));
  core::WorkloadSpec w = b;
  Size(w, rng, shapes, g, 8000 * g);
  w.runtime_estimate = static_cast<Duration>(1 + rng.Uniform(24 * 60)) * core::kMinute;
  return w;
}

core::WorkloadSpec Gang8x8(core::Rng& rng, Shapes shapes, uint32_t queue, Time now) {
  core::WorkloadSpec w =
      WorkloadBuilder("gang", queue).Gpus(8).Tasks(8).Require(TopologyLevel::kRack).Submitted(now);
  Size(w, rng, shapes, 8, 64000);
  if (rng.Uniform(4) == 0)
    w.task.models.Add(core::GpuModelId(static_cast<uint32_t>(rng.Uniform(kModels))));
  w.runtime_estimate = static_cast<Duration>(1 + rng.Uniform(48)) * core::kHour;
  return w;
}

core::WorkloadSpec Fraction(core::Rng& rng, uint32_t queue, Time now, uint32_t model) {
  const int milli = static_cast<int>(Between(rng, kFractionMin, kFractionMax));
  const int64_t gpu_mem = Between(rng, kGpuMemMin, std::min(kGpuMemMax, kGpuMemoryMib[model]));
  core::WorkloadSpec w =
      WorkloadBuilder("fraction", queue).Fraction(milli, gpu_mem).Model(model).Submitted(now);
  w.task.milli_cpu =
      std::max<int64_t>(100, Between(rng, kCpuPerGpuMin, kCpuPerGpuMax) * milli / 1000);
  w.task.memory_mib =
      std::max<int64_t>(256, Between(rng, kMemPerGpuMin, kMemPerGpuMax) * milli / 1000);
  return w;
}

core::WorkloadSpec Background(core::Rng& rng, Shapes shapes, uint32_t queue, Time now,
                              int64_t& milli) {
  static constexpr int kGpus[4] = {1, 1, 2, 4};
  if (shapes == Shapes::kDistinct && rng.Uniform(8) == 0) {
    core::WorkloadSpec w = Fraction(rng, queue, now, ModelByCapacity(rng));
    milli += w.task.gpu_milli;
    return w;
  }
  const int g = kGpus[rng.Uniform(4)];
  core::WorkloadSpec w =
      WorkloadBuilder("bg", queue).Gpus(g).Model(ModelByCapacity(rng)).Submitted(now);
  Size(w, rng, shapes, g, 8000 * g);
  milli += int64_t{g} * 1000;
  return w;
}

uint32_t FillBackground(Scheduler& s, Shapes shapes, uint32_t queue, int64_t gpus, uint32_t first,
                        Time now, core::Rng& rng) {
  uint32_t id = first;
  for (int64_t milli = 0; milli < gpus * 1000; ++id) {
    Must(s.Submit(WorkloadId(id), Background(rng, shapes, queue, now, milli)));
  }
  Plan plan = s.Cycle(now);
  for (const PendingExplanation& p : plan.pending) Must(s.Cancel(p.workload));
  return id;
}

void StatsCounter::Add(const CycleStats& stats) {
  ++cycles_;
  node_groups_ = stats.node_groups;
  attempts_ += stats.attempts;
  shape_cache_hits_ += stats.shape_cache_hits;
  placements_tried_ += stats.placements_tried;
}

void StatsCounter::Report(Counters& counters) const {
  const double cycles = static_cast<double>(std::max<int64_t>(1, cycles_));
  counters["node_groups"] = static_cast<double>(node_groups_);
  counters["attempts"] = static_cast<double>(attempts_) / cycles;
  counters["shape_cache_hits"] = static_cast<double>(shape_cache_hits_) / cycles;
  counters["placements_tried"] = static_cast<double>(placements_tried_) / cycles;
}

void StatsCounter::Report(benchmark::State& state) const {
  Counters counters;
  Report(counters);
  for (const auto& [key, value] : counters) state.counters[key] = value;
}

Packer::Packer(int nodes) : free_(static_cast<size_t>(nodes)) {
  for (int i = 0; i < nodes; ++i) {
    FreeNode& f = free_[static_cast<size_t>(i)];
    f.cpu = 128000;
    f.memory = int64_t{1} << 20;
    const uint32_t m = RackModel(i / kRackNodes);
    f.milli.fill(1000);
    f.gpu_mem.fill(kGpuMemoryMib[m]);
    by_model_[m].push_back(i);
  }
}

bool Packer::Place(const core::WorkloadSpec& w, uint32_t model, std::vector<TaskBinding>& tasks) {
  static constexpr size_t kOpen = 16;
  std::vector<int>& open = open_[model];
  auto take = [&](int n, GpuMask mask) {
    Take(free_[static_cast<size_t>(n)], w.task, mask);
    tasks = {TaskBinding{0, NodeId(static_cast<uint32_t>(n)), mask, w.task.gpu_milli}};
  };
  for (size_t k = 0; k < open.size(); ++k) {
    GpuMask mask = 0;
    if (!Fits(free_[static_cast<size_t>(open[k])], w.task, mask)) continue;
    take(open[k], mask);
    if (Full(free_[static_cast<size_t>(open[k])])) open.erase(open.begin() + static_cast<long>(k));
    return true;
  }
  // No open node holds it: open the model's next empty node (closing the oldest open one
  // when there are kOpen).
  std::vector<int>& nodes = by_model_[model];
  size_t& next = next_[model];
  GpuMask mask = 0;
  if (next == nodes.size() || !Fits(free_[static_cast<size_t>(nodes[next])], w.task, mask)) {
    return false;
  }
  const int n = nodes[next++];
  take(n, mask);
  if (!Full(free_[static_cast<size_t>(n)])) {
    if (open.size() == kOpen) open.erase(open.begin());
    open.push_back(n);
  }
  return true;
}

bool Packer::Fits(const FreeNode& f, const core::TaskRequest& t, GpuMask& mask) {
  if (f.cpu < t.milli_cpu || f.memory < t.memory_mib) return false;
  int found = 0;
  for (int j = 0; j < kGpusPerNode && found < t.gpu_count; ++j) {
    if (f.milli[j] < t.gpu_milli) continue;
    if (t.fractional() && f.gpu_mem[j] < t.gpu_memory_mib) continue;
    mask |= static_cast<GpuMask>(1u << j);
    ++found;
  }
  return found == t.gpu_count;
}

void Packer::Take(FreeNode& f, const core::TaskRequest& t, GpuMask mask) {
  f.cpu -= t.milli_cpu;
  f.memory -= t.memory_mib;
  for (int j = 0; j < kGpusPerNode; ++j) {
    if (!((mask >> j) & 1u)) continue;
    f.milli[j] -= t.gpu_milli;
    if (t.fractional()) f.gpu_mem[j] -= t.gpu_memory_mib;
  }
}

bool Packer::Full(const FreeNode& f) {
  return std::all_of(f.milli.begin(), f.milli.end(), [](int32_t m) { return m < 100; });
}

Backlog BuildBacklog(const BacklogConfig& config) {
  constexpr int kQueues = 50, kGuaranteed = 25;
  const int nodes = config.nodes;
  const Shapes shapes = config.shapes;
  Backlog b{MakeEngine("gpuorch"), 10 * core::kMinute, nodes, static_cast<uint32_t>(kQueues)};
  Scheduler& s = *b.engine;
  AddCluster(s, nodes);
  int per_model[kModels] = {};
  for (int q = 0; q < kGuaranteed; ++q) ++per_model[q % kModels];
  std::vector<int64_t> guarantee(kGuaranteed);
  for (int q = 0; q < kQueues; ++q) {
    QueueBuilder spec("queue-" + std::to_string(q));
    if (q < kGuaranteed) {
      const int m = q % static_cast<int>(kModels);
      guarantee[q] = ModelGpus(static_cast<uint32_t>(m), nodes) / 2 / per_model[m];
      spec.Guarantee(guarantee[q], -1, m);
    } else {
      spec.Weight(1 + q % 3);
    }
    Must(s.AddQueue(QueueId(static_cast<uint32_t>(q)), spec));
  }
  core::Rng rng(3);
  uint32_t id = 0;
  int64_t milli = 0;
  std::vector<std::pair<core::WorkloadSpec, uint32_t>> fill;  // spec, model to place on
  for (int q = 0; q < kGuaranteed; ++q) {
    for (int64_t used = 0; used < guarantee[q] * 3 / 10;) {
      const int m = q % static_cast<int>(kModels);
      core::WorkloadSpec w = Mixed(rng, shapes, static_cast<uint32_t>(q), 0, m);
      used += w.task.gpu_count;
      milli += w.task.total_milli_gpu();
      fill.emplace_back(std::move(w), static_cast<uint32_t>(m));
    }
  }
  const int64_t target = int64_t{nodes} * kGpusPerNode * 97 / 100 * 1000;
  while (milli < target) {
    const uint32_t q = kGuaranteed + static_cast<uint32_t>(rng.Uniform(kGuaranteed));
    // In distinct shapes one borrower task in ten is a fraction.
    if (shapes == Shapes::kDistinct && rng.Uniform(10) == 0) {
      const uint32_t m = ModelByCapacity(rng);
      core::WorkloadSpec w = Fraction(rng, q, 0, m);
      milli += w.task.gpu_milli;
      fill.emplace_back(std::move(w), m);
      continue;
    }
    core::WorkloadSpec w = Mixed(rng, shapes, q, 0);
    milli += w.task.total_milli_gpu();
    // Unpinned: the adopt fill places it on a model drawn by capacity.
    fill.emplace_back(std::move(w), config.adopt_fill ? ModelByCapacity(rng) : 0);
  }
  if (config.adopt_fill) {
    Packer packer(nodes);
    std::vector<TaskBinding> tasks;
    for (auto& [w, m] : fill) {
      if (packer.Place(w, m, tasks)) Must(s.Adopt(WorkloadId(id++), w, tasks, 0));
    }
  } else {
    for (auto& [w, m] : fill) Must(s.Submit(WorkloadId(id++), w));
    Plan plan = s.Cycle(0);
    for (const PendingExplanation& p : plan.pending) Must(s.Cancel(p.workload));
  }

  for (int i = 0; i < config.pending; ++i, ++id) {
    core::WorkloadSpec w;
    if (i < config.in_quota) {
      const int q = i % kGuaranteed;
      w = Mixed(rng, shapes, static_cast<uint32_t>(q), b.now, q % static_cast<int>(kModels));
    } else if (i < config.in_quota + config.gangs) {
      w = Gang8x8(rng, shapes, kGuaranteed + static_cast<uint32_t>(rng.Uniform(kGuaranteed)),
                  b.now);
    } else {
      w = Mixed(rng, shapes, kGuaranteed + static_cast<uint32_t>(rng.Uniform(kGuaranteed)), b.now);
    }
    Must(s.Submit(WorkloadId(id), w));
  }
  return b;
}

double TimedBacklogCycle(benchmark::State& state, Backlog& backlog, StatsCounter& stats) {
  // How full the fill left the cluster (milli-GPU in use over all queues and models).
  int64_t used = 0;
  const Scheduler& s = *backlog.engine;
  for (uint32_t q = 0; q < backlog.queues; ++q) {
    for (uint32_t m = 0; m < kModels; ++m) used += s.QueueUsage(QueueId(q), core::GpuModelId(m));
  }
  state.counters["fill_percent"] =
      100.0 * static_cast<double>(used) /
      static_cast<double>(int64_t{backlog.nodes} * kGpusPerNode * 1000);
  const double start = CpuNow();
  Plan plan = backlog.engine->Cycle(backlog.now);
  const double seconds = CpuNow() - start;
  int64_t preempting = 0, reserved = 0, estimated = 0;
  for (const PendingExplanation& p : plan.pending) {
    preempting += p.reason == PendingReason::kPreempting;
    reserved += p.reason == PendingReason::kReserved;
    estimated += p.estimated_start >= 0;
  }
  state.counters["evictions"] = static_cast<double>(plan.evictions.size() + plan.resizes.size());
  state.counters["binds"] = static_cast<double>(plan.binds.size());
  state.counters["mig_reconfigs"] = static_cast<double>(plan.reconfigs.size());
  state.counters["preempting"] = static_cast<double>(preempting);
  state.counters["reserved"] = static_cast<double>(reserved);
  state.counters["estimated_starts"] = static_cast<double>(estimated);
  stats.Add(plan.stats);
  return seconds;
}

double BacklogCycleMs(benchmark::State& state, const BacklogConfig& config, StatsCounter& stats,
                      const std::function<void(Backlog&)>& extend) {
  double seconds = 0;
  int64_t cycles = 0;
  for (auto _ : state) {
    state.PauseTiming();
    Backlog b = BuildBacklog(config);
    if (extend) extend(b);
    state.ResumeTiming();
    seconds += TimedBacklogCycle(state, b, stats);
    state.PauseTiming();
    ++cycles;
    b = Backlog{};
    state.ResumeTiming();
  }
  return seconds * 1e3 / static_cast<double>(cycles);
}

}  // namespace gpuorch::sched::bench
