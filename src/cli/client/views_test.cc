#include "cli/client/views.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "cli/client/table.h"
#include "cli/client/test_support.h"
#include "cli/client/yaml_json.h"

namespace gpuorch::cli {
namespace {

using nlohmann::json;
using testing::FixedNow;

TEST(Table, AlignsColumnsAndTrimsTrailingSpace) {
  Table t({"ID", "NAME", "X"});
  t.AddRow({"7", "a-long-name", ""});
  t.AddRow({"1234", "b"});
  EXPECT_EQ(t.Render(),
            "ID     NAME          X\n"
            "7      a-long-name\n"
            "1234   b\n");
}

TEST(GpuFormatting, TwoDecimalsInIntegers) {
  const std::pair<int64_t, const char*> two[] = {{0, "0.00"}, {16000, "16.00"}, {2505, "2.51"},
                                                 {1, "0.00"}, {5, "0.01"},      {-1500, "-1.50"}};
  for (const auto& [milli, want] : two) EXPECT_EQ(MilliToGpus2(milli), want) << milli;
  EXPECT_EQ(MilliToGpusShort(8000), "8");
  EXPECT_EQ(MilliToGpusShort(500), "0.50");
}

TEST(Time, ParsesApiTimestampsAndFormatsAges) {
  auto t = ParseTimestamp("2026-11-24T14:00:00.000Z");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(FixedNow() - *t, std::chrono::minutes(5));
  EXPECT_TRUE(ParseTimestamp("2026-11-24T14:00:00Z").has_value());
  EXPECT_TRUE(ParseTimestamp("2026-11-24T14:00:00.5+00:00").has_value());
  EXPECT_FALSE(ParseTimestamp("yesterday").has_value());
  EXPECT_FALSE(ParseTimestamp("2026-11-24T14:00:00+02:00").has_value());
  using std::chrono::seconds;
  const std::pair<int64_t, const char*> ages[] = {{-3, "0s"},   {59, "59s"},   {60, "1m"},
                                                  {7199, "1h"}, {86400, "1d"}, {400 * 86400, "1y"}};
  for (const auto& [s, want] : ages) EXPECT_EQ(ShortDuration(seconds(s)), want);
  EXPECT_EQ(Age("garbage", FixedNow()), "-");
}

TEST(RenderWorkloadTable, KubectlStyleColumns) {
  const json ws = json::array({testing::CannedWorkload(), testing::CannedPendingFraction()});
  EXPECT_EQ(
      RenderWorkloadTable(ws, FixedNow()),
      "ID   NAME           QUEUE      KIND         STATE     REASON            ESTIMATED START   "
      "TASKS   GPUS   AGE\n"
      "17   llm-pretrain   research   training     Running   -                 -                 "
      "2/2     4      5m\n"
      "18   notebook       dev        experiment   Pending   WaitingForQuota   -                 "
      "0/1     0.50   1h\n");
}

// Pending work shows its estimated start to the second, N/A when the server has none; an
// older server's answer (no field) and work that is not pending show "-".
TEST(RenderWorkloadTable, EstimatedStartOfPendingWork) {
  const struct {
    json estimate;
    const char* state;
    const char* want;
  } cases[] = {
      {"2026-12-02T07:10:00.000Z", "Pending", "2026-12-02T07:10:00Z"},
      {"2026-12-02T07:10:00Z", "Pending", "2026-12-02T07:10:00Z"},
      {nullptr, "Pending", "N/A"},
      {"2026-12-02T07:10:00.000Z", "Running", "-"},
  };
  for (const auto& c : cases) {
    json w = testing::CannedPendingFraction();
    w["state"] = c.state;
    w["estimated_start"] = c.estimate;
    const std::string out = RenderWorkloadTable(json::array({w}), FixedNow());
    // The second line's cells, split where the table pads (cells hold no double spaces).
    std::vector<std::string> cells;
    std::string row = out.substr(out.find('\n') + 1);
    for (size_t at = 0; at < row.size();) {
      const size_t gap = std::min(row.find("  ", at), row.find('\n', at));
      cells.push_back(row.substr(at, gap - at));
      at = row.find_first_not_of(' ', gap);
      if (row[at] == '\n') break;
    }
    ASSERT_EQ(cells.size(), 10u) << out;
    EXPECT_EQ(cells[6], c.want) << out;
  }
}

TEST(RenderWorkloadTable, ToleratesSparseObjects) {
  EXPECT_EQ(RenderWorkloadTable(json::parse(R"([{"id": 1}])"), FixedNow()),
            "ID   NAME   QUEUE   KIND   STATE   REASON   ESTIMATED START   TASKS   GPUS   AGE\n"
            "1    -      -       -      -       -        -                 0/-     0      -\n");
  EXPECT_EQ(RenderWorkloadTable(json::object(), FixedNow()),
            "ID   NAME   QUEUE   KIND   STATE   REASON   ESTIMATED START   TASKS   GPUS   AGE\n");
}

TEST(RenderQueueTable, UsageAgainstQuotaPerModel) {
  EXPECT_EQ(RenderQueueTable(testing::CannedQueues()["queues"]),
            "NAME       PARENT   WEIGHT   MODEL       USED   GUARANTEED   LIMIT   PENDING   "
            "RUNNING\n"
            "research   org      1        H100-80GB   8.00   16.00        32.00   3         2\n"
            "research   org      1        A100-40GB   2.51   4.00         8.00    3         2\n"
            "dev        org      2        -           -      -            -       0         0\n");
}

TEST(RenderQueueTable, CpuAndMemoryQuotasGetRowsOfTheirOwn) {
  const json queues = json::parse(R"([{"name": "org", "parent": null, "weight": 1,
    "quota": [], "pending": 0, "running": 1,
    "cpu_quota": {"guaranteed_milli": null, "limit_milli": 64000, "used_milli": 1500},
    "memory_quota": {"guaranteed_mib": 2048, "limit_mib": null, "used_mib": 512}}])");
  EXPECT_EQ(RenderQueueTable(queues),
            "NAME   PARENT   WEIGHT   MODEL        USED   GUARANTEED   LIMIT   PENDING   RUNNING\n"
            "org    -        1        cpu          1.50   -            64.00   0         1\n"
            "org    -        1        memory-gib   0.50   2.00         -       0         1\n");
}

TEST(RenderNodeTable, UsedOverTotalGpus) {
  EXPECT_EQ(RenderNodeTable(testing::CannedNodes()["nodes"], FixedNow()),
            "NAME    STATUS     ZONE   RACK   MODEL                  GPUS     HEARTBEAT\n"
            "gpu-3   Ready      z1     r2     H100-80GB (emulated)   1.50/2   2s\n"
            "cpu-1   Draining   z1     r9     -                      0/0      -\n");
}

TEST(RenderGpuTable, OneRowPerGpuWithTelemetryHealthAndHolders) {
  EXPECT_EQ(RenderGpuTable(testing::CannedNodes()["nodes"]),
            "NODE    GPU   MODEL                  UTIL   MEMORY      HEALTH   WORKLOAD\n"
            "gpu-3   0     H100-80GB (emulated)   73%    40.0/80Gi   ok       llm-17/0\n"
            "gpu-3   1     H100-80GB (emulated)   -      -           XID 79   other queue\n");
}

TEST(RenderGpuTable, MigGpusShowTheirLayoutTheChangeUnderWayAndTheInstanceOfEachHolder) {
  const json nodes = json::parse(R"([{"name": "m1", "status": "Ready", "backend": "nvml",
    "gpus": [
      {"index": 0, "model": "H100-80GB", "mode": "mig", "mig_layout": "1g.10gb@0,3g.40gb@4",
       "mig_pending_layout": "1g.10gb@0,1g.10gb@1,3g.40gb@4",
       "holders": [{"workload": 7, "name": "nb", "queue": "q", "task": 0, "gpu_milli": 142,
                    "mig_start": 0, "mig_profile": "1g.10gb"}]},
      {"index": 1, "model": "H100-80GB", "mode": "whole", "holders": []}]}])");
  EXPECT_EQ(RenderGpuTable(nodes),
            "NODE   GPU   MODEL       UTIL   MEMORY   HEALTH   MIG                       "
            "                             WORKLOAD\n"
            "m1     0     H100-80GB   -      -        ok       1g.10gb@0,3g.40gb@4 -> "
            "1g.10gb@0,1g.10gb@1,3g.40gb@4   nb-7/0:1g.10gb@0\n"
            "m1     1     H100-80GB   -      -        ok       whole                     "
            "                             -\n");
}

TEST(RenderNodeSummary, CountsNodesAndGpusByStatusAndModel) {
  // An unpaged answer (no "summary"): counted from its nodes.
  EXPECT_EQ(RenderNodeSummary(testing::CannedNodes()),
            "STATUS     MODEL       NODES   GPUS   GPUS-USED\n"
            "Draining   -           1       0      0\n"
            "Ready      H100-80GB   1       2      1.50\n"
            "total                  2       2      1.50\n");
  // A page: the server's summary of all nodes, and the next page.
  const json page = json::parse(R"({"nodes": [], "continue": "h-00100",
    "summary": {"nodes": 10000, "gpus": 80000, "groups": [
      {"status": "Ready", "model": "H100-80GB", "nodes": 9990, "gpus": 79920,
       "gpus_used_milli": 1200000},
      {"status": "Down", "model": "H100-80GB", "nodes": 10, "gpus": 80, "gpus_used_milli": 0}]}})");
  EXPECT_EQ(RenderNodeSummary(page),
            "STATUS   MODEL       NODES   GPUS    GPUS-USED\n"
            "Ready    H100-80GB   9990    79920   1200\n"
            "Down     H100-80GB   10      80      0\n"
            "total                10000   80000   1200\n");
  EXPECT_EQ(RenderNextPage(page), "(0 nodes shown; next page: gpuorch nodes --after h-00100)\n");
  EXPECT_EQ(RenderNextPage(testing::CannedNodes()), "");
}

TEST(RenderDescribe, ShowsSpecTasksAndEvents) {
  json w = testing::CannedWorkload();
  w["tasks"][1].update(json{{"state", "exited"},
                            {"exit_code", 0},
                            {"cpu_user_ms", 5230},
                            {"cpu_system_ms", 410},
                            {"max_rss_kib", 1843200}});
  w["tasks"][0].update(json{{"gpu_util_pct", 87.5}, {"gpu_memory_used_mib", 40960}});
  const std::string out = RenderDescribe(w, FixedNow());
  const char* expected_parts[] = {
      "Name:         llm-pretrain\n",
      "ID:           17\n",
      "State:        Running\n",
      "Reason:       -\n",
      "Submitted:    2026-11-24T14:00:00.000Z (5m ago)\n",
      "Finished:     -\n",
      "Command:      python train.py --epochs 3 --note 'two words'\n",
      "Spec:\n  command:\n    - python\n",
      "  name: llm-pretrain\n",
      "  topology:\n    level: rack\n    required: true\n",
      "Tasks:\n  TASK   NODE    GPUS   GPU-MILLI   STATE     GPU-UTIL   GPU-MEM   EXIT   CPU     "
      "MAX-RSS\n"
      "  0      gpu-3   0,1    1000        running   88%        40.0Gi    -      -       -\n"
      "  1      gpu-4   2,3    1000        exited    -          -         0      5.64s   "
      "1800.0Mi\n",
      "Events:\n  AGE   TYPE        MESSAGE\n  5m    Submitted   queued in research\n"
      "  4m    Started     placed on gpu-3, gpu-4\n",
  };
  for (const char* part : expected_parts) {
    EXPECT_NE(out.find(part), std::string::npos) << "missing:\n" << part << "\nin:\n" << out;
  }
  const std::string pending = RenderDescribe(testing::CannedPendingFraction(), FixedNow());
  EXPECT_NE(pending.find("Reason:       WaitingForQuota\n"), std::string::npos);
  EXPECT_NE(pending.find("Tasks:        <none>\n"), std::string::npos);
  EXPECT_NE(pending.find("Events:       <none>\n"), std::string::npos);
  EXPECT_EQ(RenderDescribe(testing::CannedWorkload(), FixedNow()).find("Waiting for:"),
            std::string::npos)
      << "only pending work waits";
}

TEST(RenderDescribe, PendingWorkSaysWhatItWaitsForAndWhen) {
  const json holder = json::parse(R"({"id": 12, "name": "train-llama"})");
  const struct {
    const char* reason;
    json waiting_for, estimate;
    const char* want;
  } cases[] = {
      {"BlockedByReservation", holder, "2026-12-02T07:10:00.000Z",
       "Waiting for:  reservation of workload 12 (train-llama)\n"
       "Est. start:   2026-12-02T07:10:00Z\n"},
      {"Preempting", holder, "2026-12-02T07:10:00.000Z",
       "Waiting for:  workload 12 (train-llama) to stop (the last of its victims to leave)\n"
       "Est. start:   2026-12-02T07:10:00Z\n"},
      {"NoFit", holder, "2026-12-02T07:10:00.000Z",
       "Waiting for:  workload 12 (train-llama) to end\nEst. start:   2026-12-02T07:10:00Z\n"},
      {"NoFit", nullptr, nullptr, "Waiting for:  -\nEst. start:   N/A\n"},
  };
  for (const auto& c : cases) {
    json w = testing::CannedPendingFraction();
    w["reason"] = c.reason;
    w["waiting_for"] = c.waiting_for;
    w["estimated_start"] = c.estimate;
    const std::string out = RenderDescribe(w, FixedNow());
    EXPECT_NE(out.find(std::string("Reason:       ") + c.reason + "\n" + c.want), std::string::npos)
        << out;
  }
}

TEST(RenderData, JsonIsPrettyAndYamlRoundTrips) {
  const json w = testing::CannedWorkload();
  EXPECT_EQ(json::parse(RenderData(w, OutputFormat::kJson)), w);
  EXPECT_EQ(RenderData(json::parse(R"({"a": [1]})"), OutputFormat::kJson),
            "{\n  \"a\": [\n    1\n  ]\n}\n");
  // Strings that look like other scalars are quoted, so YAML reads back the same JSON.
  const json tricky = json::parse(R"({"s1": "17", "s2": "true", "s3": "null", "s4": "",
                                      "s5": "1.5", "n": null, "b": false, "i": -3,
                                      "empty": [], "obj": {}, "text": "a: b"})");
  for (const json& v : {w, tricky}) {
    const std::string yaml = RenderData(v, OutputFormat::kYaml);
    EXPECT_EQ(YamlToJson(YAML::Load(yaml)), v) << yaml;
  }
  EXPECT_EQ(RenderData(json::parse(R"({"id": 17, "state": "Pending"})"), OutputFormat::kYaml),
            "id: 17\nstate: Pending\n");
  // Floats in their shortest form, read back as the same floats.
  const json floats = json::parse(R"({"f": 0.9, "g": 0.7, "h": 1e-7, "k": 2.0})");
  const std::string yaml = RenderData(floats, OutputFormat::kYaml);
  EXPECT_EQ(yaml, "f: 0.9\ng: 0.7\nh: 1e-07\nk: 2.0\n");
  EXPECT_EQ(YamlToJson(YAML::Load(yaml)), floats) << yaml;
}

TEST(ParseOutputFormat, RejectsUnknown) {
  EXPECT_TRUE(ParseOutputFormat("yaml").ok());
  auto bad = ParseOutputFormat("xml");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.failure().exit_code, kExitUsage);
}

TEST(PrometheusTargets, OneGroupPerNodeWithItsExporterAddress) {
  const json nodes =
      json::array({{{"name", "a"}, {"zone", "z1"}, {"rack", "r1"}, {"address", "10.0.0.5:7481"}},
                   {{"name", "b"},
                    {"zone", ""},
                    {"rack", ""},
                    {"address", "10.0.0.6:7481"},
                    {"metrics_url", "http://10.0.0.6:9500/metrics"}},
                   {{"name", "c"}, {"address", ""}}});
  const json groups = json::parse(RenderPrometheusTargets(nodes, 9400));
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0], json({{"targets", {"10.0.0.5:9400"}},
                             {"labels", {{"node", "a"}, {"zone", "z1"}, {"rack", "r1"}}}}));
  EXPECT_EQ(groups[1]["targets"], json({"10.0.0.6:9500"}));
  EXPECT_EQ(groups[1]["labels"]["node"], "b");
}

TEST(RenderData, YamlQuotesStringsAPlainScalarWouldNotReadBack) {
  // The spec_file fuzzer's find: a value ending in "\r" came back without it.
  for (const char* text : {"llm-pret\r", "a\tb", " lead", "trail ", "bell\x07", "nul\x7f"}) {
    const json v = {{"k", text}, {std::string("key\r"), 1}};
    const std::string yaml = RenderData(v, OutputFormat::kYaml);
    EXPECT_EQ(YamlToJson(YAML::Load(yaml)), v) << yaml;
  }
}

}  // namespace
}  // namespace gpuorch::cli
