#include "store/group_commit.h"

#include <algorithm>
#include <chrono>
#include <iterator>

namespace gpuorch::store {

GroupCommitter::GroupCommitter(StateStore* store, std::function<void(double)> on_commit,
                               std::function<void(const core::Status&, int)> on_failure)
    : store_(store),
      on_commit_(std::move(on_commit)),
      on_failure_(std::move(on_failure)),
      writer_([this] { Run(); }) {}

GroupCommitter::~GroupCommitter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  queued_cv_.notify_all();
  writer_.join();
}

uint64_t GroupCommitter::Enqueue(Batch batch) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t ticket = next_ticket_++;
  std::move(batch.workloads.begin(), batch.workloads.end(), std::back_inserter(queued_.workloads));
  std::move(batch.nodes.begin(), batch.nodes.end(), std::back_inserter(queued_.nodes));
  // A workload is deleted only once nothing writes it any more, so deletions may follow
  // every upsert of the merged batch.
  queued_.deleted_workloads.insert(queued_.deleted_workloads.end(), batch.deleted_workloads.begin(),
                                   batch.deleted_workloads.end());
  std::move(batch.usage.begin(), batch.usage.end(), std::back_inserter(queued_.usage));
  queued_cv_.notify_one();
  return ticket;
}

void GroupCommitter::EnqueueThen(Batch batch, std::function<void(const core::Status&)> done) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t ticket = next_ticket_++;
  std::move(batch.workloads.begin(), batch.workloads.end(), std::back_inserter(queued_.workloads));
  std::move(batch.nodes.begin(), batch.nodes.end(), std::back_inserter(queued_.nodes));
  queued_.deleted_workloads.insert(queued_.deleted_workloads.end(), batch.deleted_workloads.begin(),
                                   batch.deleted_workloads.end());
  std::move(batch.usage.begin(), batch.usage.end(), std::back_inserter(queued_.usage));
  callbacks_.emplace_back(ticket, std::move(done));
  queued_cv_.notify_one();
}

core::Status GroupCommitter::Wait(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return committed_through_ >= ticket; });
  if (ticket >= error_from_ && ticket <= error_to_) return last_error_;
  return core::Status::Ok();
}

void GroupCommitter::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    queued_cv_.wait(lock, [&] { return stop_ || next_ticket_ - 1 > committed_through_; });
    if (next_ticket_ - 1 == committed_through_ && stop_) return;
    Batch batch;
    std::swap(batch, queued_);
    uint64_t through = next_ticket_ - 1;
    std::vector<std::pair<uint64_t, std::function<void(const core::Status&)>>> callbacks;
    std::swap(callbacks, callbacks_);  // every one of them has a ticket <= through
    lock.unlock();
    core::Status s;
    int64_t backoff_ms = kFirstRetryMs;
    for (int attempt = 1, at_stop = 0;; ++attempt) {
      const auto start = std::chrono::steady_clock::now();
      s = store_->Commit(batch);
      if (on_commit_) {
        on_commit_(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      if (s.ok()) break;
      if (on_failure_) on_failure_(s, attempt);
      lock.lock();
      // Wakes early only to count down the tries left once the destructor asked to stop.
      queued_cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return stop_; });
      const bool give_up = stop_ && ++at_stop > kAttemptsAtStop;
      lock.unlock();
      if (give_up) break;
      backoff_ms = std::min(backoff_ms * 2, kMaxRetryMs);
    }
    for (auto& [ticket, done] : callbacks) done(s);
    callbacks.clear();  // destroyed before the lock is taken again
    lock.lock();
    if (!s.ok()) {
      last_error_ = s;
      error_from_ = committed_through_ + 1;
      error_to_ = through;
    }
    committed_through_ = through;
    done_cv_.notify_all();
  }
}

}  // namespace gpuorch::store
