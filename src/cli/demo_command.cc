// `gpuorch demo`: an engine scenario on a small emulated cluster, in simulated time. It
// prints every decision the engine makes (what it placed where, whom it evicted for whom,
// and why each pending workload waits), so a newcomer sees gangs, quotas, borrowing,
// preemption with a grace period, reservations and elastic inference at work.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/gpu_model.h"
#include "sched/scheduler.h"
#include "sched/testing.h"

namespace gpuorch::cli {
namespace {

using core::kSecond;
using core::QueueId;
using core::Time;
using core::TopologyLevel;
using core::WorkloadId;
using core::WorkloadKind;
using sched::testing::NodeBuilder;
using sched::testing::QueueBuilder;
using sched::testing::WorkloadBuilder;

struct Arrival {
  Time at;
  std::string name;
  core::WorkloadSpec spec;
  core::Duration runtime;
};

class Demo {
 public:
  explicit Demo(std::unique_ptr<sched::Scheduler> s) : s_(std::move(s)) {}

  int Run() {
    auto h100 = models_.Intern("H100-80GB");
    auto a100 = models_.Intern("A100-40GB");
    if (!h100.ok() || !a100.ok()) return 1;
    const char* queue_names[] = {"production", "research", "experiments"};
    std::vector<core::QueueSpec> queues = {
        QueueBuilder("production").Guarantee(16, -1, 0).Weight(2),
        QueueBuilder("research").Guarantee(8, -1, 0).Guarantee(4, -1, 1),
        QueueBuilder("experiments").Guarantee(0, 24)};
    for (uint32_t q = 0; q < queues.size(); ++q) Check(s_->AddQueue(QueueId(q), queues[q]));
    for (uint32_t n = 0; n < 4; ++n) {
      Check(s_->AddNode(core::NodeId(n), NodeBuilder("h100-" + std::to_string(n))
                                             .Gpus(8, 0)
                                             .Rack(n < 2 ? "rack-a" : "rack-b")
                                             .Nvlink(8)));
    }
    Check(s_->AddNode(core::NodeId(4), NodeBuilder("a100-0").Gpus(4, 1, 40960).Rack("rack-c")));
    std::printf("cluster: 4 nodes x 8 H100-80GB (rack-a, rack-b) + 1 node x 4 A100-40GB\n");
    std::printf(
        "queues:  production (16 H100 guaranteed), research (8 H100 + 4 A100),\n"
        "         experiments (nothing guaranteed, limit 24 GPUs, borrows idle GPUs)\n\n");
    (void)queue_names;

    auto at = [](int s) { return static_cast<Time>(s) * kSecond; };
    std::vector<Arrival> arrivals = {
        {at(0), "research/llm-pretrain (2x8 H100 gang, rack)",
         WorkloadBuilder("pretrain", 1)
             .Gpus(8)
             .Tasks(2)
             .Model(0)
             .Require(TopologyLevel::kRack)
             .Kind(WorkloadKind::kTraining)
             .Priority(50),
         at(600)},
        {at(0), "experiments/sweep-0 (1 GPU, preemptible)",
         WorkloadBuilder("sweep-0", 2).Gpus(1).Kind(WorkloadKind::kExperiment).Grace(20 * kSecond),
         at(400)},
        {at(0), "experiments/sweep-1 (4 GPUs, preemptible)",
         WorkloadBuilder("sweep-1", 2).Gpus(4).Kind(WorkloadKind::kExperiment).Grace(20 * kSecond),
         at(400)},
        {at(0), "experiments/sweep-2 (8 GPUs, preemptible)",
         WorkloadBuilder("sweep-2", 2).Gpus(8).Kind(WorkloadKind::kExperiment).Grace(20 * kSecond),
         at(400)},
        {at(10), "experiments/notebook (0.3 GPU, 10 GiB)",
         WorkloadBuilder("notebook", 2).Fraction(300, 10240).Kind(WorkloadKind::kExperiment),
         at(900)},
        {at(10), "research/eval (2 A100)",
         WorkloadBuilder("eval", 1).Gpus(2).Model(1).Kind(WorkloadKind::kExperiment), at(120)},
        {at(20), "production/chat-inference (1 GPU replicas, 2..6)",
         WorkloadBuilder("chat", 0)
             .Gpus(1)
             .Tasks(2, 6)
             .Model(0)
             .Kind(WorkloadKind::kInference)
             .Priority(100)
             .NonPreemptible(),
         at(3600)},
        {at(60), "production/finetune (2x4 H100 gang, node)",
         WorkloadBuilder("finetune", 0)
             .Gpus(4)
             .Tasks(2)
             .Model(0)
             .Require(TopologyLevel::kNode)
             .Kind(WorkloadKind::kTraining)
             .Priority(100),
         at(300)},
        {at(90), "experiments/big-sweep (3x8 GPUs gang)",
         WorkloadBuilder("big-sweep", 2)
             .Gpus(8)
             .Tasks(3)
             .Model(0)
             .Kind(WorkloadKind::kTraining)
             .Estimate(200 * kSecond),
         at(200)},
        {at(420), "production/batch-embed (8 H100, node)",
         WorkloadBuilder("embed", 0).Gpus(8).Model(0).Kind(WorkloadKind::kInference).Priority(100),
         at(300)},
    };
    for (uint32_t i = 0; i < arrivals.size(); ++i) {
      arrivals[i].spec.submit_time = arrivals[i].at;
      names_[WorkloadId(i)] = arrivals[i].name;
      runtime_[WorkloadId(i)] = arrivals[i].runtime;
    }
    size_t next = 0;
    for (Time now = 0; now <= at(1200); now += 10 * kSecond) {
      Complete(now);
      while (next < arrivals.size() && arrivals[next].at <= now) {
        std::printf("t=%4llds  submit  %s\n", static_cast<long long>(now / kSecond),
                    arrivals[next].name.c_str());
        Check(s_->Submit(WorkloadId(static_cast<uint32_t>(next)), arrivals[next].spec));
        ++next;
      }
      Print(s_->Cycle(now));
    }
    std::printf(
        "\nend: %d binds, %d evictions, %d resizes; every pending workload was explained.\n",
        binds_, evictions_, resizes_);
    return 0;
  }

 private:
  void Check(const core::Status& s) {
    if (!s.ok()) std::fprintf(stderr, "demo: %s\n", s.message().c_str());
  }

  void Complete(Time now) {
    for (auto it = due_.begin(); it != due_.end() && it->first <= now;) {
      auto [what, id] = it->second.first;
      if (it->second.second != generation_[id]) {  // from an earlier run of the workload
        it = due_.erase(it);
        continue;
      }
      if (what == 'e' && s_->state(id) == sched::WorkloadState::kEvicting) {
        Check(s_->EvictionCompleted(id));
        std::printf("t=%4llds  stopped %s (requeued)\n", static_cast<long long>(now / kSecond),
                    names_[id].c_str());
      } else if (what == 'f' && s_->state(id) == sched::WorkloadState::kRunning) {
        Check(s_->WorkloadFinished(id));
        std::printf("t=%4llds  done    %s\n", static_cast<long long>(now / kSecond),
                    names_[id].c_str());
      }
      it = due_.erase(it);
    }
    for (auto it = shrink_.begin(); it != shrink_.end() && it->first <= now;) {
      Check(s_->TaskFinished(it->second.first, it->second.second));
      it = shrink_.erase(it);
    }
  }

  void Print(const sched::Plan& p) {
    long long t = static_cast<long long>(p.now / kSecond);
    for (const sched::Bind& b : p.binds) {
      ++binds_;
      std::string where;
      for (const sched::TaskBinding& tb : b.tasks) {
        const auto& node = s_->cluster().node(tb.node);
        where += " " + std::to_string(tb.node.value()) + ":" + models_.Name(node.model) + "[";
        bool first = true;
        for (int j = 0; j < 16; ++j) {
          if (!((tb.gpus >> j) & 1u)) continue;
          where += (first ? "" : ",") + std::to_string(j);
          first = false;
        }
        where += tb.gpu_milli < 1000 ? "@" + std::to_string(tb.gpu_milli) + "m]" : "]";
      }
      std::printf("t=%4llds  %s %s ->%s\n", t, b.elastic ? "grow   " : "bind   ",
                  names_[b.workload].c_str(), where.c_str());
      if (!b.elastic) {
        due_.emplace(p.now + runtime_[b.workload],
                     std::make_pair(std::make_pair('f', b.workload), ++generation_[b.workload]));
      }
    }
    for (const sched::Eviction& e : p.evictions) {
      ++evictions_;
      std::printf("t=%4llds  evict   %s: %s, for %s, grace %llds\n", t, names_[e.workload].c_str(),
                  sched::ToString(e.reason),
                  e.preemptor.valid() ? names_[e.preemptor].c_str() : "-",
                  static_cast<long long>(e.grace_period / kSecond));
      due_.emplace(p.now + e.grace_period,
                   std::make_pair(std::make_pair('e', e.workload), generation_[e.workload]));
    }
    for (const sched::Resize& r : p.resizes) {
      ++resizes_;
      std::printf("t=%4llds  shrink  %s by %zu task(s): %s, for %s\n", t,
                  names_[r.workload].c_str(), r.tasks.size(), sched::ToString(r.reason),
                  names_[r.preemptor].c_str());
      for (int32_t task : r.tasks)
        shrink_.emplace(p.now + r.grace_period, std::make_pair(r.workload, task));
    }
    for (const sched::PendingExplanation& e : p.pending) {
      auto& last = last_reason_[e.workload];
      if (last == static_cast<int>(e.reason)) continue;  // print changes only
      last = static_cast<int>(e.reason);
      std::printf("t=%4llds  pending %s: %s\n", t, names_[e.workload].c_str(),
                  sched::ToString(e.reason));
    }
  }

  std::unique_ptr<sched::Scheduler> s_;
  core::GpuModelRegistry models_;
  std::map<WorkloadId, std::string> names_;
  std::map<WorkloadId, core::Duration> runtime_;
  std::multimap<Time, std::pair<std::pair<char, WorkloadId>, int>> due_;
  std::map<WorkloadId, int> generation_;
  std::multimap<Time, std::pair<WorkloadId, int32_t>> shrink_;
  std::map<WorkloadId, int> last_reason_;
  int binds_ = 0, evictions_ = 0, resizes_ = 0;
};

}  // namespace

void RegisterDemoCommand(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "demo", "Run an engine scenario on an emulated cluster and print every decision");
  static std::string policy = "gpuorch";
  cmd->add_option("--policy", policy, "Placement policy")->capture_default_str();
  cmd->callback([&exit_code] {
    auto s = sched::Scheduler::Create(sched::SchedulerConfig{.policy = policy});
    if (!s.ok()) {
      std::fprintf(stderr, "gpuorch demo: %s\n", s.status().message().c_str());
      exit_code = 2;
      return;
    }
    exit_code = Demo(std::move(s).value()).Run();
  });
}

}  // namespace gpuorch::cli
