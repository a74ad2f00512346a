#include "sim/openb.h"

#include <gtest/gtest.h>

#include <cctype>
#include <string>

#include "core/rng.h"
#include "sim/fgd_input.h"

namespace gpuorch::sim {
namespace {

TEST(OpenbNodes, ParsesByHeaderName) {
  auto r = ParseOpenbNodes("model,sn,gpu,cpu_milli,memory_mib\nT4,n1,2,64000,1024\n", "x.csv");
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].sn, "n1");
  EXPECT_EQ((*r)[0].gpu, 2);
  EXPECT_EQ((*r)[0].cpu_milli, 64000);
  EXPECT_EQ((*r)[0].model, "T4");
}

struct BadCase {
  const char* csv;
  const char* expect;  // substring of the error
};

// Test names for ctest: the expected error, reduced to identifier characters.
std::string CaseName(const testing::TestParamInfo<BadCase>& info) {
  std::string name = std::to_string(info.index) + "_";
  for (const char* c = info.param.expect; *c != '\0'; ++c) {
    name += std::isalnum(static_cast<unsigned char>(*c)) ? *c : '_';
  }
  return name;
}

class OpenbNodesBad : public testing::TestWithParam<BadCase> {};

TEST_P(OpenbNodesBad, NamesFileLineAndColumn) {
  auto r = ParseOpenbNodes(GetParam().csv, "nodes.csv");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(GetParam().expect), std::string::npos)
      << r.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Table, OpenbNodesBad,
    testing::Values(BadCase{"", "nodes.csv:1: empty file"},
                    BadCase{"sn,cpu_milli,memory_mib,gpu\n", "nodes.csv:1: missing column 'model'"},
                    BadCase{"sn,cpu_milli,memory_mib,gpu,model\nn,1x,2,1,T4\n",
                            "nodes.csv:2:2: column 'cpu_milli'"},
                    BadCase{"sn,cpu_milli,memory_mib,gpu,model\nn,1,-2,1,T4\n",
                            "nodes.csv:2:3: column 'memory_mib'"},
                    BadCase{"sn,cpu_milli,memory_mib,gpu,model\nn,1,2,1\n",
                            "nodes.csv:2: expected 5 fields, got 4"},
                    BadCase{"sn,cpu_milli,memory_mib,gpu,model\nn,1,2,,T4\n",
                            "nodes.csv:2:4: column 'gpu' is empty"},
                    BadCase{"sn,cpu_milli,memory_mib,gpu,model\nn,1,2,99,T4\n",
                            "nodes.csv:2:4: column 'gpu': at most 16"},
                    BadCase{"sn,cpu_milli,memory_mib,gpu,model\nn,1,2,2,\n",
                            "nodes.csv:2:5: column 'model': empty on a GPU node"}),
    CaseName);

TEST(OpenbPods, ShortMultigpuFilesAndClipping) {
  auto r = ParseOpenbPods(
      "name,cpu_milli,memory_mib,num_gpu,gpu_milli\r\np1,1000,10,1,1500\r\np0,2000,0,0,\r\n",
      "pods.csv");
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].gpu_milli, 1000);  // clipped to one GPU
  EXPECT_EQ((*r)[1].num_gpu, 0);
  EXPECT_EQ((*r)[1].gpu_milli, 0);  // ignored for CPU-only pods
  EXPECT_EQ((*r)[0].gpu_spec, "");
}

TEST(OpenbPods, Errors) {
  const std::string header = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n";
  auto a = ParseOpenbPods(header + "p,1,1,1,,\n", "pods.csv");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("pods.csv:2:5: column 'gpu_milli' is empty"),
            std::string::npos)
      << a.status().message();
  auto b = ParseOpenbPods(header + "p,1,1,2,500,\n", "pods.csv");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("pods.csv:2:5"), std::string::npos);
  auto c = ParseOpenbPods("name,cpu_milli\n", "pods.csv");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("missing column 'memory_mib'"), std::string::npos);
  auto d = ReadOpenbPods("/nonexistent/dir/pods.csv");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("/nonexistent/dir/pods.csv"), std::string::npos);
}

// Found by fuzz/openb_fuzzer.cc: tuning a pod list without GPU pods up to a GPU target
// drew for ever (`gpuorch sim fgd` hung on a CPU-only pod list).
TEST(MakeArrivals, CpuOnlyPodsEndWithoutTuningUp) {
  auto pods = ParseOpenbPods(
      "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,1000,10,0,0\np1,2000,10,1,0\n", "x.csv");
  ASSERT_TRUE(pods.ok()) << pods.status().message();
  core::Rng rng(1);
  const Arrivals a = MakeArrivals(*pods, 2, 16'000, 130, rng);
  EXPECT_EQ(a.sequence.size(), 2u);
  EXPECT_EQ(a.arriving_milli, 0);
  EXPECT_EQ(a.rank.size(), 2u);
}

}  // namespace
}  // namespace gpuorch::sim
