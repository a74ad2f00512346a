// Limits that keep a long-running control plane bounded (issue 12 §3): GPU model names come
// only from nodes and the config, and finished workloads are retained for a while, then
// collected from memory and the store.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "server/controller.h"
#include "server/controller_test_util.h"
#include "store/state_store.h"

namespace gpuorch::server {
namespace {

class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test_util::FreshTestDir("limits"); }
  void TearDown() override {
    controller_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Open(const std::string& yaml) {
    controller_.reset();
    store_.reset();
    auto config = ParseConfig(yaml);
    ASSERT_TRUE(config.ok()) << config.status().message();
    auto s = store::OpenSqliteStore((dir_ / "db").string());
    ASSERT_TRUE(s.ok());
    store_ = std::move(s).value();
    auto c = Controller::Create(*config, store_.get());
    ASSERT_TRUE(c.ok()) << c.status().message();
    controller_ = std::move(c).value();
  }
  bool Register(const std::string& name, const std::string& model, int gpus, ApiError& e) {
    Json gs = Json::array();
    for (int i = 0; i < gpus; ++i) gs.push_back({{"index", i}, {"model", model}});
    Json out;
    return controller_->Register(
        {{"name", name}, {"cpu_milli", 64000}, {"memory_mib", 262144}, {"gpus", gs}}, out, e);
  }
  int64_t Submit(Json models, const std::string& name = "w") {
    Json out;
    ApiError e;
    Json body = {{"name", name}, {"queue", "default"}, {"gpus", 1}, {"command", {"true"}}};
    if (!models.is_null()) body["gpu_models"] = models;
    EXPECT_TRUE(controller_->Submit(body, out, e)) << e.message;
    return out.value("id", int64_t{-1});
  }
  Json Get(int64_t id) { return test_util::GetWorkloadOrFail(*controller_, id); }
  bool Exists(int64_t id) { return test_util::WorkloadExists(*controller_, id); }
  // Runs the workload's one task to exit code 0 on `node`.
  void RunToSuccess(int64_t id, const std::string& node) {
    controller_->Step();
    ASSERT_EQ(Get(id)["state"], "Running");
    Json out;
    ApiError e;
    ASSERT_TRUE(controller_->Heartbeat(node,
                                       {{"tasks",
                                         {{{"workload", id},
                                           {"task", 0},
                                           {"attempt", 0},
                                           {"state", "exited"},
                                           {"exit_code", 0}}}}},
                                       out, e))
        << e.message;
    ASSERT_EQ(Get(id)["state"], "Succeeded");
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::StateStore> store_;
  std::unique_ptr<Controller> controller_;
};

TEST_F(LimitsTest, ModelsNamedOnlyByRequestsDoNotFillTheRegistry) {
  Open("");
  ApiError e;
  ASSERT_TRUE(Register("n1", "H100", 2, e)) << e.message;
  // More new names than the registry holds, each in its own request: all accepted.
  std::vector<int64_t> unknown;
  for (int i = 0; i < 70; ++i) unknown.push_back(Submit({"X" + std::to_string(i)}));
  const int64_t b200 = Submit({"B200"}, "b200");
  const int64_t either = Submit({"B200", "H100"}, "either");
  controller_->Step();
  for (int64_t id : unknown) {
    ASSERT_EQ(Get(id)["state"], "Pending");
    EXPECT_EQ(Get(id)["reason"], "ModelUnavailable");
    EXPECT_EQ(Get(id)["spec"]["gpu_models"][0], "X" + std::to_string(id - unknown[0]));
  }
  EXPECT_EQ(Get(b200)["reason"], "ModelUnavailable");
  EXPECT_EQ(Get(either)["state"], "Running") << "a known model of the list is enough";
  // A node still brings a new model, and the workload waiting for it runs there.
  ASSERT_TRUE(Register("n2", "B200", 1, e)) << e.message;
  controller_->Step();
  EXPECT_EQ(Get(b200)["state"], "Running");
  EXPECT_EQ(Get(b200)["tasks"][0]["node"], "n2");
  EXPECT_EQ(Get(unknown[0])["reason"], "ModelUnavailable");
  // After a restart too: the stored specs name the models, nodes bring them back.
  Open("");
  controller_->Step();
  EXPECT_EQ(Get(unknown[1])["reason"], "ModelUnavailable");
  ASSERT_TRUE(Register("n3", "X1", 1, e)) << e.message;
  controller_->Step();
  EXPECT_EQ(Get(unknown[1])["state"], "Running");
  EXPECT_EQ(Get(unknown[1])["tasks"][0]["node"], "n3");
  EXPECT_EQ(Get(unknown[2])["state"], "Pending");
}

// Found by fuzz/spec_file_fuzzer.cc (the same hole in the spec reader): YAML passes any bytes
// through, and a queue name that is not UTF-8 would make every JSON answer naming it throw.
TEST(LimitsConfig, TextThatIsNotUtf8IsRefused) {
  auto c = ParseConfig("queues: [{name: \"caf\xE9\"}]\n");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "config: not UTF-8 text (a bad byte at offset 20)");
  EXPECT_TRUE(ParseConfig("queues: [{name: \"caf\xC3\xA9\"}]\n").ok());
}

// Found by fuzz/config_fuzzer.cc: a mapping as a key threw out of ParseConfig.
TEST(LimitsConfig, KeysThatAreNotNamesAreRefused) {
  auto c = ParseConfig("queues: [{name: a}, {{x: 1}: 2}]\n");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "queues[1]: keys must be field names");
  EXPECT_FALSE(ParseConfig("{[1]: 2}").ok());
}

TEST(LimitsConfig, FinishedRetentionIsADuration) {
  EXPECT_EQ(ParseConfig("")->finished_retention_s, 7 * 86400);
  EXPECT_EQ(ParseConfig("finished_retention: 36h")->finished_retention_s, 36 * 3600);
  EXPECT_EQ(ParseConfig("finished_retention: 90")->finished_retention_s, 90);
  EXPECT_EQ(ParseConfig("finished_retention: 15m")->finished_retention_s, 900);
  EXPECT_EQ(ParseConfig("finished_retention: 0")->finished_retention_s, 0);
  for (const char* bad : {"finished_retention: 7w", "finished_retention: -1",
                          "finished_retention: [1]", "finished_retention: 1.5h",
                          "finished_retention: 9999d", "finished_retention: 99999999999"}) {
    auto c = ParseConfig(bad);
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_EQ(c.status().message().rfind("finished_retention: ", 0), 0u) << c.status().message();
  }
}

TEST_F(LimitsTest, FinishedWorkloadsAreCollectedAfterTheirRetention) {
  const std::string config = "finished_retention: 1s\n";
  Open(config);
  ApiError e;
  ASSERT_TRUE(Register("n1", "H100", 1, e)) << e.message;
  const int64_t done = Submit(nullptr, "done");
  RunToSuccess(done, "n1");
  const int64_t cancelled = Submit(nullptr, "cancelled");
  Json out;
  ASSERT_TRUE(controller_->Cancel(cancelled, out, e)) << e.message;
  const int64_t waiting = Submit({"nobody-has-it"}, "waiting");
  const int64_t newest = Submit(nullptr, "newest");
  ASSERT_TRUE(controller_->Cancel(newest, out, e)) << e.message;
  // Poll: the collection runs in cycles, once the retention has passed.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while ((Exists(done) || Exists(cancelled)) && std::chrono::steady_clock::now() < deadline) {
    controller_->Step();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(Exists(done));
  EXPECT_FALSE(Exists(cancelled));
  EXPECT_EQ(Get(waiting)["state"], "Pending") << "unfinished work is never collected";
  EXPECT_EQ(Get(newest)["state"], "Cancelled") << "the newest id stays";
  auto stored = store_->LoadWorkloads();
  ASSERT_TRUE(stored.ok());
  std::vector<int64_t> ids;
  for (const auto& w : *stored) ids.push_back(w.id);
  EXPECT_EQ(ids, (std::vector<int64_t>{waiting, newest}));
  // A restart neither brings them back nor gives their ids again.
  controller_->Flush();
  Open(config);
  EXPECT_FALSE(Exists(done));
  EXPECT_GT(Submit(nullptr, "after"), newest);
}

TEST_F(LimitsTest, ZeroRetentionKeepsFinishedWorkloads) {
  Open("finished_retention: 0\n");
  ApiError e;
  Json out;
  const int64_t first = Submit(nullptr, "first");
  ASSERT_TRUE(controller_->Cancel(first, out, e)) << e.message;
  (void)Submit(nullptr, "second");
  for (int i = 0; i < 3; ++i) controller_->Step();
  EXPECT_EQ(Get(first)["state"], "Cancelled");
}

}  // namespace
}  // namespace gpuorch::server
