// Accounting (issue 12): allocated GPU-hours per queue, user and GPU model. A task holds
// gpus x gpu_milli milli-GPUs of its node's model from its bind until it releases them
// (exits, is lost with its node, or its workload ends or is requeued): the interval
// [bound, released) on the server's clock. Released intervals are written to the store's
// usage table in the same transaction as the record that released them, and outlive the
// workload's retention; running tasks count up to the time of a query.
#include <map>
#include <tuple>

#include "server/audit_log.h"
#include "server/controller.h"

namespace gpuorch::server {

namespace {

// Usage records of workloads submitted before accounting existed name no user.
const char kUnknownUser[] = "(unknown)";

int64_t HeldMilli(const TaskRecord& t) { return static_cast<int64_t>(t.gpus.size()) * t.gpu_milli; }

}  // namespace

void Controller::Release(const WorkloadRecord& w, TaskRecord& t) {
  if (t.released) return;
  t.released = true;
  dirty_.insert(w.id);
  const int64_t milli = HeldMilli(t);
  const int64_t end = Now();
  if (milli <= 0 || t.bound_ms <= 0 || end <= t.bound_ms) return;
  released_.push_back(store::UsageRecord{next_usage_id_++, w.id, w.attempt, t.task,
                                         w.parsed.queue_name, w.user, t.model, milli, t.bound_ms,
                                         end});
}

bool Controller::Usage(const UsageRequest& request, Json& out, ApiError& error,
                       const Access& access) {
  // (name, model) -> (milli-GPU-ms, intervals)
  std::map<std::pair<std::string, std::string>, std::pair<int64_t, int64_t>> sums;
  const bool by_user = request.by == "user";
  auto counts = [&](const std::string& queue) {
    return access.Reads(queue) && (request.queue.empty() || request.queue == queue);
  };
  auto add = [&](const std::string& queue, const std::string& user, const std::string& model,
                 int64_t milli_gpu_ms, int64_t intervals) {
    auto& s = sums[{by_user ? (user.empty() ? kUnknownUser : user) : queue, model}];
    s.first += milli_gpu_ms;
    s.second += intervals;
  };
  int64_t from = 0, to = 0, below = 0;
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t now = Now();
    to = request.to_ms.value_or(now);
    from = request.from_ms.value_or(StartOfMonthUtc(to - 1));
    if (from >= to) {
      error = ApiError{
          400, "from",
          "from: must be before to (from " + IsoTimeMs(from) + ", to " + IsoTimeMs(to) + ")"};
      return false;
    }
    // Tasks holding GPUs now, up to now.
    const int64_t until = std::min(to, now);
    for (const auto& [id, w] : workloads_) {
      if (w.tasks.empty() || !counts(w.parsed.queue_name)) continue;
      for (const TaskRecord& t : w.tasks) {
        const int64_t start = std::max(t.bound_ms, from);
        if (t.released || t.bound_ms <= 0 || HeldMilli(t) <= 0 || until <= start) continue;
        add(w.parsed.queue_name, w.user, t.model, HeldMilli(t) * (until - start), 1);
      }
    }
    // Released, not yet handed to the store: counted from here. Every record with a lower
    // id was handed to the committer before now, and the barrier below waits for it; every
    // record released after this section has a higher id and counted as running above.
    below = released_.empty() ? next_usage_id_ : released_.front().id;
    for (const store::UsageRecord& u : released_) {
      const int64_t start = std::max(u.start_ms, from), end = std::min(u.end_ms, to);
      if (end > start && counts(u.queue))
        add(u.queue, u.user, u.model, u.gpu_milli * (end - start), 1);
    }
    ticket = committer_->Enqueue(store::Batch{});
  }
  if (core::Status s = committer_->Wait(ticket); !s.ok()) {
    error = ApiError{500, "", "store: " + s.message()};
    return false;
  }
  auto stored = store_->SumUsage(from, to, below);
  if (!stored.ok()) {
    error = ApiError{500, "", stored.status().message()};
    return false;
  }
  for (const store::UsageTotal& t : *stored) {
    if (counts(t.queue)) add(t.queue, t.user, t.model, t.milli_gpu_ms, t.intervals);
  }
  Json rows = Json::array();
  for (const auto& [key, s] : sums) {
    constexpr int64_t kPerGpuSecond = 1'000'000;  // milli-GPU x ms
    rows.push_back(Json{{request.by, key.first},
                        {"model", key.second},
                        {"allocated_gpu_seconds", (s.first + kPerGpuSecond / 2) / kPerGpuSecond},
                        {"allocated_gpu_hours", static_cast<double>(s.first) / 3.6e9},
                        // Per-GPU telemetry does not exist yet (docs/api.md).
                        {"used_gpu_hours", nullptr},
                        {"tasks", s.second}});
  }
  out = Json{{"from", IsoTimeMs(from)}, {"to", IsoTimeMs(to)}, {"by", request.by}, {"rows", rows}};
  if (!request.queue.empty()) out["queue"] = request.queue;
  return true;
}

}  // namespace gpuorch::server
