#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "store/state_store.h"

namespace gpuorch::store {

// Group commit: many threads ask for their batch to be durable; one writer thread merges
// everything queued into one transaction (one fsync) and wakes them all. Throughput grows
// with concurrency instead of being capped by the disk's fsync rate.
//
// Contract: Persist() returns after the batch is durable (OK) or has failed (the error);
// thread-safe. Batches are committed in the order Persist() was called.
//
// A transaction that fails (a full disk, an I/O error, the database locked past SQLite's
// busy timeout) was rolled back by the store; the writer retries the same batch after
// kFirstRetryMs, doubling up to kMaxRetryMs, for as long as it takes, and later batches
// wait behind it: nothing is dropped and the order holds. Only once the committer is being
// destroyed does it give up, after kAttemptsAtStop more tries, and hand the error to the
// batch's waiters.
class GroupCommitter {
 public:
  static constexpr int64_t kFirstRetryMs = 10;
  static constexpr int64_t kMaxRetryMs = 1000;
  static constexpr int kAttemptsAtStop = 3;
  // `on_commit`, when given, hears how long each transaction took (seconds), on the writer
  // thread: for the server's commit-latency histogram. `on_failure` hears each failed
  // attempt (the error and the attempt number, from 1) before the retry waits.
  explicit GroupCommitter(StateStore* store, std::function<void(double)> on_commit = {},
                          std::function<void(const core::Status&, int attempt)> on_failure = {});
  ~GroupCommitter();
  core::Status Persist(Batch batch) { return Wait(Enqueue(std::move(batch))); }
  // Queues a batch without waiting; batches commit in Enqueue order. Callers that hold a
  // lock while taking a snapshot enqueue under that lock, so snapshots reach the disk in
  // the order they were taken, and wait after releasing it.
  uint64_t Enqueue(Batch batch);
  core::Status Wait(uint64_t ticket);
  // Enqueue, then `done` with the outcome once the batch is durable or has failed: nothing
  // waits meanwhile (an API answer held until its submission is durable costs no thread).
  // `done` runs on the writer thread, in Enqueue order, with no lock of this class held;
  // it must not call Wait() (the writer would wait for itself), and whatever is still
  // queued at destruction is committed and its `done` run before the destructor returns.
  void EnqueueThen(Batch batch, std::function<void(const core::Status&)> done);

 private:
  void Run();

  StateStore* store_;
  std::function<void(double)> on_commit_;
  std::function<void(const core::Status&, int)> on_failure_;
  std::mutex mu_;
  std::condition_variable queued_cv_, done_cv_;
  Batch queued_;
  uint64_t next_ticket_ = 1;        // ticket of the next Persist call
  uint64_t committed_through_ = 0;  // all tickets <= this are done
  core::Status last_error_;
  uint64_t error_from_ = 0, error_to_ = 0;  // tickets that failed with last_error_
  // EnqueueThen's callbacks by ticket, in ticket order.
  std::vector<std::pair<uint64_t, std::function<void(const core::Status&)>>> callbacks_;
  bool stop_ = false;
  std::thread writer_;
};

}  // namespace gpuorch::store
