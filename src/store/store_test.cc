#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

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

}  // namespace
}  // namespace gpuorch::store
