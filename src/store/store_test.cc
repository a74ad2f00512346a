#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "store/group_commit.h"
#include "store/state_store.h"

namespace gpuorch::store {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("gpuorch-store-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "state.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<StateStore> Open() {
    auto s = OpenSqliteStore(path_);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return std::move(s).value();
  }

  std::filesystem::path dir_;
  std::string path_;
};

StoredWorkload W(int64_t id, const std::string& state) {
  return StoredWorkload{id, state, "{\"name\":\"w" + std::to_string(id) + "\"}", "{}"};
}

TEST_F(StoreTest, CommitsSurviveReopen) {
  {
    auto s = Open();
    ASSERT_TRUE(s->Commit(Batch{{W(1, "Pending"), W(2, "Pending")}, {{"n1", "{}"}}}).ok());
    ASSERT_TRUE(s->Commit(Batch{{W(1, "Running")}, {}}).ok());
  }
  auto s = Open();
  auto ws = s->LoadWorkloads();
  ASSERT_TRUE(ws.ok());
  ASSERT_EQ(ws->size(), 2u);
  EXPECT_EQ((*ws)[0].state, "Running");
  EXPECT_EQ((*ws)[0].spec_json, "{\"name\":\"w1\"}") << "the spec is immutable";
  EXPECT_EQ((*ws)[1].state, "Pending");
  auto ns = s->LoadNodes();
  ASSERT_TRUE(ns.ok());
  ASSERT_EQ(ns->size(), 1u);
  EXPECT_EQ((*ns)[0].name, "n1");
}

TEST_F(StoreTest, UsesWriteAheadLogging) {
  auto s = Open();
  ASSERT_TRUE(s->Commit(Batch{{W(1, "Pending")}, {}}).ok());
  EXPECT_TRUE(std::filesystem::exists(path_ + "-wal"));
}

TEST_F(StoreTest, UnwritableLocationIsAClearError) {
  auto s = OpenSqliteStore((dir_ / "missing" / "state.db").string());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("cannot open"), std::string::npos);
}

// A transaction SQLite refuses (here: another connection holds the write lock past the busy
// timeout) is rolled back and retried, not dropped; the batches behind it wait, in order.
TEST_F(StoreTest, AFailedCommitIsRolledBackAndRetriedNeverDropped) {
  auto s = Open();
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE;", nullptr, nullptr, nullptr), SQLITE_OK);
  std::mutex mu;
  std::condition_variable cv;
  int failures = 0;
  std::string error;
  GroupCommitter gc(s.get(), {}, [&](const core::Status& st, int attempt) {
    std::lock_guard<std::mutex> lock(mu);
    failures = attempt;
    error = st.message();
    cv.notify_all();
  });
  std::vector<int> order;
  gc.EnqueueThen(Batch{{W(1, "Pending")}, {}}, [&](const core::Status& st) {
    EXPECT_TRUE(st.ok()) << st.message();
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(1);
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return failures >= 1; });  // after SQLite's 5 s busy timeout
    EXPECT_NE(error.find("locked"), std::string::npos) << error;
    EXPECT_TRUE(order.empty()) << "nothing is acknowledged while it fails";
  }
  const uint64_t second = gc.Enqueue(Batch{{W(2, "Pending")}, {}});
  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK;", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  EXPECT_TRUE(gc.Wait(second).ok());
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(order, std::vector<int>{1});
  }
  auto ws = Open()->LoadWorkloads();
  ASSERT_TRUE(ws.ok());
  ASSERT_EQ(ws->size(), 2u) << "the failed batch and the one behind it are both on disk";
  EXPECT_EQ((*ws)[0].id, 1);
  EXPECT_EQ((*ws)[1].id, 2);
}

TEST_F(StoreTest, GroupCommitPersistsEveryConcurrentBatch) {
  auto s = Open();
  {
    GroupCommitter gc(s.get());
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&gc, t] {
        for (int i = 0; i < 50; ++i) {
          ASSERT_TRUE(gc.Persist(Batch{{W(t * 1000 + i, "Pending")}, {}}).ok());
        }
      });
    }
    for (auto& th : threads) th.join();
  }
  auto ws = Open()->LoadWorkloads();
  ASSERT_TRUE(ws.ok());
  EXPECT_EQ(ws->size(), 400u);
}

// EnqueueThen's callbacks run once their batch is in the store, in Enqueue order, and at
// destruction nothing queued is dropped.
TEST_F(StoreTest, GroupCommitCallbacksRunInOrderOnceDurable) {
  auto s = Open();
  std::mutex mu;
  std::vector<int64_t> order;
  std::vector<bool> durable;
  {
    GroupCommitter gc(s.get());
    for (int64_t i = 1; i <= 300; ++i) {
      gc.EnqueueThen(Batch{{W(i, "Pending")}, {}}, [&, i](const core::Status& st) {
        ASSERT_TRUE(st.ok());
        // Read back through a second connection: the batch is committed, not just queued.
        auto ws = Open()->LoadWorkloads();
        std::lock_guard lock(mu);
        order.push_back(i);
        durable.push_back(ws.ok() && static_cast<int64_t>(ws->size()) >= i);
      });
    }
  }
  ASSERT_EQ(order.size(), 300u);
  for (size_t i = 0; i < order.size(); ++i) {
    EXPECT_EQ(order[i], static_cast<int64_t>(i) + 1);
    EXPECT_TRUE(durable[i]) << "callback " << i + 1 << " ran before its batch was durable";
  }
}

// A process killed right after Persist() returned loses nothing it was told was durable.
TEST_F(StoreTest, AcknowledgedCommitsSurviveSigkill) {
  int ack[2];
  ASSERT_EQ(pipe(ack), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ack[0]);
    auto s = OpenSqliteStore(path_);
    if (!s.ok()) _exit(1);
    GroupCommitter gc(s->get());
    for (int64_t i = 1;; ++i) {
      if (!gc.Persist(Batch{{W(i, "Pending")}, {}}).ok()) _exit(2);
      if (write(ack[1], &i, sizeof(i)) != sizeof(i)) _exit(3);
    }
  }
  close(ack[1]);
  int64_t acked = 0, got = 0;
  while (acked < 200 && read(ack[0], &got, sizeof(got)) == sizeof(got)) acked = got;
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  while (read(ack[0], &got, sizeof(got)) == sizeof(got)) acked = got;  // acks in flight
  close(ack[0]);
  ASSERT_GE(acked, 200);
  auto ws = Open()->LoadWorkloads();
  ASSERT_TRUE(ws.ok());
  EXPECT_GE(static_cast<int64_t>(ws->size()), acked);
  for (int64_t i = 0; i < acked; ++i) EXPECT_EQ((*ws)[static_cast<size_t>(i)].id, i + 1);
}

UsageRecord U(int64_t id, const std::string& queue, const std::string& user, int64_t milli,
              int64_t start_ms, int64_t end_ms) {
  return UsageRecord{id, 100 + id, 0, 0, queue, user, "H100", milli, start_ms, end_ms};
}

// Accounting intervals are summed by (queue, user, model), clipped to the asked range; they
// survive a reopen and the deletion of the workloads they came from.
TEST_F(StoreTest, UsageIsSummedClippedToTheRangeAndOutlivesItsWorkloads) {
  constexpr int64_t kHour = 3'600'000;
  {
    auto s = Open();
    Batch b;
    b.workloads = {W(101, "Succeeded")};
    b.usage = {U(1, "a", "alice", 1000, 0, 2 * kHour), U(2, "a", "alice", 500, kHour, 3 * kHour),
               U(3, "a", "bob", 2000, 5 * kHour, 6 * kHour), U(4, "b", "alice", 250, 0, kHour)};
    ASSERT_TRUE(s->Commit(b).ok());
    Batch gc;
    gc.deleted_workloads = {101};
    gc.usage = {U(1, "a", "alice", 9999, 0, 9 * kHour)};  // an id again: ignored
    ASSERT_TRUE(s->Commit(gc).ok());
  }
  auto s = Open();
  EXPECT_TRUE(s->LoadWorkloads()->empty());
  EXPECT_EQ(*s->MaxUsageId(), 4);
  auto all = s->SumUsage(0, 24 * kHour, 100);
  ASSERT_TRUE(all.ok()) << all.status().message();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].queue, "a");
  EXPECT_EQ((*all)[0].user, "alice");
  EXPECT_EQ((*all)[0].milli_gpu_ms, 1000 * 2 * kHour + 500 * 2 * kHour);
  EXPECT_EQ((*all)[0].intervals, 2);
  EXPECT_EQ((*all)[1].user, "bob");
  EXPECT_EQ((*all)[2].queue, "b");
  // [1h, 2h): half of the first interval, half of the second; bob's lies outside.
  auto mid = s->SumUsage(kHour, 2 * kHour, 100);
  ASSERT_TRUE(mid.ok());
  ASSERT_EQ(mid->size(), 1u);
  EXPECT_EQ((*mid)[0].milli_gpu_ms, 1000 * kHour + 500 * kHour);
  EXPECT_EQ((*mid)[0].intervals, 2);
  // Records at or above below_id are left out (the controller counts them as running).
  auto below = s->SumUsage(0, 24 * kHour, 2);
  ASSERT_TRUE(below.ok());
  ASSERT_EQ(below->size(), 1u);
  EXPECT_EQ((*below)[0].milli_gpu_ms, 1000 * 2 * kHour);
}

// A database written before accounting existed (schema version 0) is migrated in place,
// its workloads and nodes kept; one of a newer version is refused.
TEST_F(StoreTest, MigratesAnOlderSchemaAndRefusesANewerOne) {
  auto raw = [&](const char* sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  };
  raw("CREATE TABLE workloads (id INTEGER PRIMARY KEY, state TEXT NOT NULL, spec TEXT NOT NULL,"
      " status TEXT NOT NULL);"
      "CREATE TABLE nodes (name TEXT PRIMARY KEY, json TEXT NOT NULL);"
      "INSERT INTO workloads VALUES (7, 'Running', '{}', '{}');"
      "INSERT INTO nodes VALUES ('n1', '{}');");
  {
    auto s = Open();
    auto ws = s->LoadWorkloads();
    ASSERT_TRUE(ws.ok());
    ASSERT_EQ(ws->size(), 1u);
    EXPECT_EQ((*ws)[0].id, 7);
    EXPECT_EQ(s->LoadNodes()->size(), 1u);
    Batch b;
    b.usage = {U(1, "a", "alice", 1000, 0, 1000)};
    ASSERT_TRUE(s->Commit(b).ok());
    EXPECT_EQ(*s->MaxUsageId(), 1);
  }
  raw("PRAGMA user_version=99;");
  auto newer = OpenSqliteStore(path_);
  ASSERT_FALSE(newer.ok());
  EXPECT_NE(newer.status().message().find("schema version 99"), std::string::npos)
      << newer.status().message();
}

}  // namespace
}  // namespace gpuorch::store
