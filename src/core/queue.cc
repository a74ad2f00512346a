#include "core/queue.h"

namespace gpuorch::core {

const QuotaEntry* QueueSpec::QuotaFor(GpuModelId model) const {
  const QuotaEntry* fallback = nullptr;
  for (const QuotaEntry& q : quotas) {
    if (q.model == model) return &q;
    if (!q.model.valid()) fallback = &q;
  }
  return fallback;
}

namespace {

// Upper bound on any quota: 2^48 milli-GPU, milli-CPU or MiB is far beyond any cluster and
// keeps sums over a queue tree within int64.
constexpr int64_t kMaxQuota = int64_t{1} << 48;

Status ValidateHost(const HostQuota& q, const char* field) {
  const std::string f = std::string("queue.") + field;
  if (q.has_guarantee() && (q.guaranteed < 0 || q.guaranteed > kMaxQuota)) {
    return Status::Invalid(f + ".guaranteed: must be in 0..2^48 or unset");
  }
  if (q.limit != kUnlimited && (q.limit < 0 || q.limit < q.guaranteed || q.limit > kMaxQuota)) {
    return Status::Invalid(f + ".limit: must be in guaranteed..2^48 or unlimited");
  }
  return Status::Ok();
}

}  // namespace

Status QueueSpec::Validate() const {
  if (name.empty()) return Status::Invalid("queue.name: must not be empty");
  if (weight < 1 || weight > kMaxQueueWeight) {
    return Status::Invalid("queue.weight: must be in 1..1e6");
  }
  for (const QuotaEntry& q : quotas) {
    if (q.guaranteed < 0 || q.guaranteed > kMaxQuota) {
      return Status::Invalid("queue.quota.guaranteed: must be in 0..2^48 milli-GPU");
    }
    if (q.limit != kUnlimited && q.limit < q.guaranteed) {
      return Status::Invalid("queue.quota.limit: must be >= guaranteed or unlimited");
    }
  }
  if (Status s = ValidateHost(cpu_quota, "cpu_quota"); !s.ok()) return s;
  return ValidateHost(memory_quota, "memory_quota");
}

}  // namespace gpuorch::core
