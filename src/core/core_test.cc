#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/gpu_model.h"
#include "core/node.h"
#include "core/queue.h"
#include "core/rng.h"
#include "core/text.h"
#include "core/workload.h"

namespace gpuorch::core {
namespace {

TEST(GpuModelRegistry, InternsAndFinds) {
  GpuModelRegistry r;
  auto a = r.Intern("H100");
  auto b = r.Intern("A100");
  auto c = r.Intern("H100");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, *c);
  EXPECT_NE(*a, *b);
  EXPECT_EQ(r.Find("A100"), *b);
  EXPECT_FALSE(r.Find("T4").valid());
  EXPECT_EQ(r.Name(*b), "A100");
  EXPECT_FALSE(r.Intern("").ok());
}

TEST(GpuModelRegistry, RejectsTooManyModels) {
  GpuModelRegistry r;
  for (uint32_t i = 0; i < kMaxNamedGpuModels; ++i) {
    ASSERT_TRUE(r.Intern("m" + std::to_string(i)).ok());
  }
  auto over = r.Intern("one-too-many");
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("63"), std::string::npos);
}

TEST(Utf8, AcceptsWellFormedAndFindsTheFirstBadByte) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("gr\xC3\xBC\xC3\x9F \xE2\x82\xAC \xF0\x9F\x9A\x80 \xF4\x8F\xBF\xBF"));
  struct Case {
    std::string text;
    size_t bad_at;
  };
  for (const Case& c : std::vector<Case>{{"a\xFF", 1},
                                         {"\x80", 0},
                                         {"ab\xC3", 2},            // truncated
                                         {"\xC0\xAF", 0},          // overlong '/'
                                         {"\xE0\x80\xAF", 0},      // overlong
                                         {"x\xED\xA0\x80", 1},     // a surrogate
                                         {"\xF4\x90\x80\x80", 0},  // past U+10FFFF
                                         {"\xE2\x82", 0},
                                         {"\xE2\x28\xA1", 0}}) {
    size_t at = 99;
    EXPECT_FALSE(IsValidUtf8(c.text, &at)) << c.text;
    EXPECT_EQ(at, c.bad_at) << c.text;
  }
}

TEST(ModelSet, NoneAcceptsNoNamedModel) {
  const ModelSet none = ModelSet::None();
  EXPECT_FALSE(none.any());
  for (uint32_t m = 0; m < kMaxNamedGpuModels; ++m) EXPECT_FALSE(none.Accepts(GpuModelId(m)));
  NodeSpec n;
  n.name = "n";
  n.gpu_count = 1;
  n.gpu_model = GpuModelId(kMaxNamedGpuModels);  // the bit None() uses is no node's model
  EXPECT_FALSE(n.Validate().ok());
}

TEST(ModelSet, EmptyAcceptsAll) {
  ModelSet s;
  EXPECT_TRUE(s.Accepts(GpuModelId(3)));
  s.Add(GpuModelId(1));
  EXPECT_TRUE(s.Accepts(GpuModelId(1)));
  EXPECT_FALSE(s.Accepts(GpuModelId(3)));
  EXPECT_EQ(s.size(), 1);
}

TEST(Validate, NamesTheField) {
  struct Case {
    const char* name;
    WorkloadSpec spec;
    const char* field;
  };
  WorkloadSpec ok;
  ok.name = "w";
  ok.queue = QueueId(0);
  ok.task.gpu_count = 1;
  std::vector<Case> cases;
  auto add = [&](const char* n, auto mutate, const char* field) {
    WorkloadSpec s = ok;
    mutate(s);
    cases.push_back({n, s, field});
  };
  add(
      "no name", [](WorkloadSpec& s) { s.name.clear(); }, "workload.name");
  add(
      "no queue", [](WorkloadSpec& s) { s.queue = QueueId(); }, "workload.queue");
  add(
      "min 0", [](WorkloadSpec& s) { s.min_tasks = 0; }, "workload.min_tasks");
  add(
      "max<min", [](WorkloadSpec& s) { s.min_tasks = 3, s.max_tasks = 2; }, "workload.max_tasks");
  add(
      "17 gpus", [](WorkloadSpec& s) { s.task.gpu_count = 17; }, "workload.task.gpus");
  add(
      "fraction of 2", [](WorkloadSpec& s) { s.task.gpu_count = 2, s.task.gpu_milli = 500; },
      "workload.task.gpu_milli");
  add(
      "milli 0", [](WorkloadSpec& s) { s.task.gpu_milli = 0; }, "workload.task.gpu_milli");
  add(
      "neg cpu", [](WorkloadSpec& s) { s.task.milli_cpu = -1; }, "workload.task.milli_cpu");
  add(
      "nothing", [](WorkloadSpec& s) { s.task.gpu_count = 0; }, "workload.task");
  add(
      "neg grace", [](WorkloadSpec& s) { s.grace_period = -1; }, "workload.grace_period");
  ASSERT_TRUE(ok.Validate().ok());
  for (const Case& c : cases) {
    Status s = c.spec.Validate();
    EXPECT_FALSE(s.ok()) << c.name;
    EXPECT_EQ(s.message().rfind(c.field, 0), 0u) << c.name << ": " << s.message();
  }
}

TEST(Validate, Nodes) {
  NodeSpec n;
  n.name = "n";
  n.gpu_count = 8;
  EXPECT_FALSE(n.Validate().ok());  // GPUs need a model
  n.gpu_model = GpuModelId(0);
  EXPECT_TRUE(n.Validate().ok());
  n.nvlink_domain_gpus = 3;
  EXPECT_EQ(n.Validate().message().rfind("node.nvlink_domain_gpus", 0), 0u);
  n.nvlink_domain_gpus = 4;
  n.gpu_count = 17;
  EXPECT_EQ(n.Validate().message().rfind("node.gpu_count", 0), 0u);
}

TEST(Validate, UnhealthyGpusNameGpusOfTheNode) {
  NodeSpec n;
  n.name = "n";
  n.gpu_model = GpuModelId(0);
  n.gpu_count = 8;
  n.unhealthy_gpus = 0x80;  // GPU 7: the last one
  EXPECT_TRUE(n.Validate().ok());
  n.unhealthy_gpus = 0x100;  // GPU 8: beyond gpu_count
  EXPECT_EQ(n.Validate().message().rfind("node.unhealthy_gpus", 0), 0u);
  n.unhealthy_gpus = 0x8001;
  EXPECT_EQ(n.Validate().message().rfind("node.unhealthy_gpus", 0), 0u);
  n.gpu_count = 16;  // every bit names a GPU
  EXPECT_TRUE(n.Validate().ok());
  n.gpu_count = 0;  // a node without GPUs has none to be unhealthy
  n.unhealthy_gpus = 1;
  EXPECT_EQ(n.Validate().message().rfind("node.unhealthy_gpus", 0), 0u);
}

TEST(Validate, Queues) {
  QueueSpec q;
  q.name = "q";
  q.quotas.push_back({GpuModelId(0), 8000, 4000});
  EXPECT_EQ(q.Validate().message().rfind("queue.quota.limit", 0), 0u);
  q.quotas[0].limit = kUnlimited;
  EXPECT_TRUE(q.Validate().ok());
  q.quotas.push_back({GpuModelId(), 1000, kUnlimited});
  EXPECT_EQ(q.QuotaFor(GpuModelId(0))->guaranteed, 8000);
  EXPECT_EQ(q.QuotaFor(GpuModelId(5))->guaranteed, 1000);  // default entry
  q.weight = 0;
  EXPECT_FALSE(q.Validate().ok());
}

TEST(Rng, SeededAndUniform) {
  Rng a(42), b(42), c(43);
  for (int i = 0; i < 100; ++i) {
    uint64_t x = a.Next();
    EXPECT_EQ(x, b.Next());
    (void)c;
  }
  Rng d(7);
  std::vector<int> counts(10, 0);
  for (int i = 0; i < 100000; ++i) counts[d.Uniform(10)]++;
  for (int n : counts) EXPECT_NEAR(n, 10000, 500);
}

}  // namespace
}  // namespace gpuorch::core
