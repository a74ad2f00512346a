#include "sim/mig/run.h"

#include <algorithm>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "sched/scheduler.h"

namespace gpuorch::sim::mig {
namespace {

using core::Status;
using core::Time;
using sched::Plan;

enum class EventType : uint8_t { kWindow, kNotebookStart, kNotebookEnd, kReconfigDone };

struct Event {
  Time at = 0;
  uint64_t seq = 0;
  EventType type = EventType::kWindow;
  size_t ref = 0;
  bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
};

enum class ReqState : uint8_t { kPending, kRunning, kDone };

struct Request {
  int cls = 0;
  Time submit = 0;
  ReqState state = ReqState::kPending;
  std::vector<int32_t> gpus;  // global GPU indices while running
};

Status Annotate(const Status& s, const std::string& what) {
  return s.ok() ? s : Status::Invalid(what + ": " + s.message());
}

class Runner {
 public:
  Runner(const Workload& w, const MigConfig& cfg, Policy policy, int32_t pool_gpus)
      : w_(w), cfg_(cfg), policy_(policy), pool_(pool_gpus) {
    r_.policy = policy;
    r_.pool_gpus = pool_gpus;
  }

  core::Result<RunResult> Run() {
    if (Status s = Setup(); !s.ok()) return s;
    for (size_t i = 0; i < w_.wanted[k7b].size(); ++i) {
      Push(static_cast<Time>(i) * w_.window_s * core::kSecond, EventType::kWindow, i);
    }
    for (size_t i = 0; i < w_.notebooks.size(); ++i) {
      Push(w_.notebooks[i].start_s * core::kSecond, EventType::kNotebookStart, i);
    }
    const Time horizon = w_.horizon_s * core::kSecond;
    Time last = 0;
    while (!events_.empty() && events_.top().at < horizon) {
      const Time now = events_.top().at;
      Account(last, now);
      last = now;
      while (!events_.empty() && events_.top().at == now) {
        const Event e = events_.top();
        events_.pop();
        if (Status s = Handle(e, now); !s.ok()) return s;
      }
      if (Status s = CycleAt(now); !s.ok()) return s;
    }
    Account(last, horizon);
    Finish(horizon);
    return r_;
  }

 private:
  void Push(Time at, EventType type, size_t ref) { events_.push({at, seq_++, type, ref}); }

  Status Setup() {
    sched::SchedulerConfig sc;
    sc.seed = cfg_.seed;
    sc.explain_pending = false;
    sc.preemption = false;  // one queue, one priority: nothing to preempt for
    sc.mig_reconfigure = policy_ == Policy::kDynamicMig;
    auto engine = sched::Scheduler::Create(sc);
    if (!engine.ok()) return engine.status();
    engine_ = std::move(engine).value();
    const core::MigModel* model = core::FindMigModel(kGpuModel);
    core::MigLayout balanced;
    if (policy_ == Policy::kStaticMig) {
      auto l = core::ParseLayout(*model, kAllBalanced);
      if (!l.ok()) return l.status();
      balanced = *l;
    }
    const bool mig = policy_ == Policy::kStaticMig || policy_ == Policy::kDynamicMig;
    // Static MIG leaves the first GPUs whole for the classes all-balanced cannot hold.
    const int32_t whole = policy_ != Policy::kStaticMig ? 0
                          : cfg_.static_whole_gpus >= 0 ? cfg_.static_whole_gpus
                                                        : cfg_.peak[k70b];
    const int32_t per = cfg_.gpus_per_node;
    for (int32_t first = 0, n = 0; first < pool_; first += per, ++n) {
      core::NodeSpec spec;
      spec.name = "n" + std::to_string(n);
      spec.gpu_model = core::GpuModelId(0);
      spec.gpu_count = std::min(per, pool_ - first);
      spec.gpu_memory_mib = kGpuMemoryMib;
      spec.mig_capable = true;
      spec.milli_cpu = int64_t{spec.gpu_count} * 7 * 2000 + 16000;
      spec.memory_mib = int64_t{spec.gpu_count} * 7 * 16 * 1024 + 64 * 1024;
      if (mig) {
        spec.mig_model = model;
        for (int j = 0; j < spec.gpu_count; ++j) {
          if (first + j < whole) continue;
          spec.mig_gpus = static_cast<uint16_t>(spec.mig_gpus | (1u << j));
          spec.mig_layouts[j] = balanced;
        }
      }
      if (Status s = engine_->AddNode(core::NodeId(static_cast<uint32_t>(n)), spec); !s.ok()) {
        return Annotate(s, "node " + spec.name);
      }
      node_first_.push_back(first);
    }
    core::QueueSpec q;
    q.name = "inference";
    q.quotas.push_back(
        core::QuotaEntry{core::GpuModelId(), int64_t{pool_} * core::kMilliGpu, core::kUnlimited});
    if (Status s = engine_->AddQueue(core::QueueId(0), q); !s.ok()) return Annotate(s, "queue");
    std::vector<sched::TypicalTask> typical;
    double total = cfg_.notebooks_peak;
    for (int k = 0; k < 3; ++k) total += cfg_.peak[static_cast<size_t>(k)];
    for (int k = 0; k < kClasses; ++k) {
      const double weight =
          k == kNotebook ? cfg_.notebooks_peak : cfg_.peak[static_cast<size_t>(k)];
      if (weight > 0) {
        typical.push_back({TaskFor(Classes()[static_cast<size_t>(k)], policy_), weight / total});
      }
    }
    engine_->SetTypicalTasks(std::move(typical));
    gpu_tasks_.assign(static_cast<size_t>(pool_), 0);
    return Status::Ok();
  }

  Status Submit(int cls, Time now) {
    const size_t idx = requests_.size();
    requests_.push_back({cls, now, ReqState::kPending, {}});
    ++r_.requests[static_cast<size_t>(cls)];
    core::WorkloadSpec spec;
    const ModelClass& c = Classes()[static_cast<size_t>(cls)];
    spec.name = std::string(c.name) + "-" + std::to_string(idx);
    spec.kind = cls == kNotebook ? core::WorkloadKind::kExperiment : core::WorkloadKind::kInference;
    spec.queue = core::QueueId(0);
    spec.task = TaskFor(c, policy_);
    spec.submit_time = now;
    if (cls != kNotebook) live_[static_cast<size_t>(cls)].push_back(idx);
    dirty_ = true;
    return Annotate(engine_->Submit(Id(idx), spec), "submit " + spec.name);
  }

  static core::WorkloadId Id(size_t idx) {
    return core::WorkloadId(static_cast<uint32_t>(idx + 1));
  }

  // Ends request idx at `now`: withdraws it when pending, stops it when running.
  Status End(size_t idx, Time now) {
    Request& q = requests_[idx];
    dirty_ = true;
    if (q.state == ReqState::kPending) {
      q.state = ReqState::kDone;
      Unplaced(q, now);
      return Annotate(engine_->Cancel(Id(idx)), "cancel");
    }
    if (q.state == ReqState::kRunning) {
      q.state = ReqState::kDone;
      for (int32_t g : q.gpus) --gpu_tasks_[static_cast<size_t>(g)];
      busy_dirty_ = true;
      return Annotate(engine_->WorkloadFinished(Id(idx)), "finish");
    }
    return Status::Ok();
  }

  void Unplaced(const Request& q, Time now) {
    ++r_.unplaced[static_cast<size_t>(q.cls)];
    if (now - q.submit > int64_t{cfg_.wait_bound_s} * core::kSecond) ++r_.late;
  }

  Status Handle(const Event& e, Time now) {
    switch (e.type) {
      case EventType::kWindow:
        for (int k = 0; k < 3; ++k) {
          const int32_t want = w_.wanted[static_cast<size_t>(k)][e.ref];
          std::vector<size_t>& live = live_[static_cast<size_t>(k)];
          while (static_cast<int32_t>(live.size()) < want) {
            if (Status s = Submit(k, now); !s.ok()) return s;
          }
          // Withdraw pending replicas first (newest first), then stop the newest running.
          while (static_cast<int32_t>(live.size()) > want) {
            auto it = std::find_if(live.rbegin(), live.rend(), [&](size_t i) {
              return requests_[i].state == ReqState::kPending;
            });
            const size_t victim = it != live.rend() ? *it : live.back();
            live.erase(std::find(live.begin(), live.end(), victim));
            if (Status s = End(victim, now); !s.ok()) return s;
          }
        }
        return Status::Ok();
      case EventType::kNotebookStart: {
        const size_t idx = requests_.size();
        if (Status s = Submit(kNotebook, now); !s.ok()) return s;
        Push(w_.notebooks[e.ref].end_s * core::kSecond, EventType::kNotebookEnd, idx);
        return Status::Ok();
      }
      case EventType::kNotebookEnd:
        return End(e.ref, now);
      case EventType::kReconfigDone: {
        const sched::MigReconfig& rc = reconfigs_[e.ref];
        ++r_.reconfigs;
        dirty_ = true;
        return Annotate(engine_->MigLayoutApplied(rc.node, rc.gpu, rc.layout), "layout applied");
      }
    }
    return Status::Ok();
  }

  Status CycleAt(Time now) {
    if (!dirty_) return Status::Ok();
    dirty_ = false;
    Plan plan = engine_->Cycle(now);
    ++r_.cycles;
    if (!plan.evictions.empty() || !plan.resizes.empty()) {
      return Status::Invalid("the engine evicted work with preemption off (engine bug)");
    }
    for (const sched::Bind& b : plan.binds) {
      const size_t idx = b.workload.value() - 1;
      Request& q = requests_[idx];
      q.state = ReqState::kRunning;
      const Time wait = now - q.submit;
      waits_.push_back(wait);
      if (wait > int64_t{cfg_.wait_bound_s} * core::kSecond) ++r_.late;
      for (const sched::TaskBinding& t : b.tasks) {
        if (t.mig_start >= 0) ++r_.mig_binds;
        for (int j = 0; j < core::kMaxGpusPerNode; ++j) {
          if (!((t.gpus >> j) & 1u)) continue;
          const int32_t g = node_first_[t.node.value()] + j;
          q.gpus.push_back(g);
          int32_t& n = gpu_tasks_[static_cast<size_t>(g)];
          ++n;
          r_.max_tasks_per_gpu = std::max(r_.max_tasks_per_gpu, n);
        }
      }
      busy_dirty_ = true;
    }
    for (sched::MigReconfig& rc : plan.reconfigs) {
      reconfigs_.push_back(std::move(rc));
      Push(now + int64_t{cfg_.reconfig_delay_s} * core::kSecond, EventType::kReconfigDone,
           reconfigs_.size() - 1);
    }
    if (busy_dirty_) {
      busy_dirty_ = false;
      busy_ = static_cast<int32_t>(
          std::count_if(gpu_tasks_.begin(), gpu_tasks_.end(), [](int32_t n) { return n > 0; }));
      r_.peak_gpus_busy = std::max(r_.peak_gpus_busy, busy_);
    }
    return Status::Ok();
  }

  void Account(Time from, Time to) {
    busy_time_ += static_cast<double>(busy_) * static_cast<double>(to - from);
  }

  void Finish(Time horizon) {
    for (Request& q : requests_) {
      if (q.state == ReqState::kPending) Unplaced(q, horizon);
    }
    const int64_t n = r_.total_requests();
    r_.late_fraction = n > 0 ? static_cast<double>(r_.late) / static_cast<double>(n) : 0;
    const double hours = static_cast<double>(w_.horizon_s) / 3600;
    r_.reconfigs_per_hour = static_cast<double>(r_.reconfigs) / hours;
    r_.mean_gpus_busy = busy_time_ / static_cast<double>(horizon);
    auto pct = [&](double p) {
      if (waits_.empty()) return 0.0;
      const auto k = static_cast<size_t>(p * static_cast<double>(waits_.size() - 1));
      std::nth_element(waits_.begin(), waits_.begin() + static_cast<ptrdiff_t>(k), waits_.end());
      return static_cast<double>(waits_[k]) / core::kSecond;
    };
    r_.wait_p50_s = pct(0.5);
    r_.wait_p99_s = pct(0.99);
  }

  const Workload& w_;
  const MigConfig& cfg_;
  Policy policy_;
  int32_t pool_;
  RunResult r_;
  std::unique_ptr<sched::Scheduler> engine_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  uint64_t seq_ = 0;
  std::vector<Request> requests_;
  std::array<std::vector<size_t>, kClasses> live_;
  std::vector<sched::MigReconfig> reconfigs_;
  std::vector<int32_t> node_first_;
  std::vector<int32_t> gpu_tasks_;
  std::vector<Time> waits_;
  int32_t busy_ = 0;
  bool busy_dirty_ = false;
  bool dirty_ = false;
  double busy_time_ = 0;
};

}  // namespace

int64_t RunResult::total_requests() const {
  int64_t n = 0;
  for (int64_t v : requests) n += v;
  return n;
}

int64_t RunResult::total_unplaced() const {
  int64_t n = 0;
  for (int64_t v : unplaced) n += v;
  return n;
}

core::Result<RunResult> RunPolicy(const Workload& w, const MigConfig& cfg, Policy policy,
                                  int32_t pool_gpus) {
  if (pool_gpus < 1) return Status::Invalid("pool_gpus: must be >= 1");
  Runner r(w, cfg, policy, pool_gpus);
  return r.Run();
}

core::Result<Needed> SearchGpusNeeded(const Workload& w, const MigConfig& cfg, Policy policy) {
  Needed out;
  int32_t lo = 1, hi = std::max(1, w.peak_whole_gpus + cfg.gpus_per_node);
  auto top = RunPolicy(w, cfg, policy, hi);
  ++out.probes;
  if (!top.ok()) return top.status();
  out.run = *top;
  if (!top->meets(cfg)) return out;
  while (lo < hi) {
    const int32_t mid = lo + (hi - lo) / 2;
    auto r = RunPolicy(w, cfg, policy, mid);
    ++out.probes;
    if (!r.ok()) return r.status();
    if (r->meets(cfg)) {
      hi = mid;
      out.run = *r;
    } else {
      lo = mid + 1;
    }
  }
  out.gpus = hi;
  return out;
}

}  // namespace gpuorch::sim::mig
