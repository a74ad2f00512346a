#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "sim/replay/config.h"
#include "sim/replay/trace.h"

namespace gpuorch::sim {
namespace {

std::string TempFile(const std::string& name, const std::string& text) {
  const auto dir = std::filesystem::temp_directory_path() / "gpuorch_replay_test";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / name).string();
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(Parse, SecondsAndFractionsAreExact) {
  int64_t ms = 0;
  EXPECT_TRUE(ParseSecondsMs("66.0", ms));
  EXPECT_EQ(ms, 66000);
  EXPECT_TRUE(ParseSecondsMs("0.001", ms));
  EXPECT_EQ(ms, 1);
  EXPECT_TRUE(ParseSecondsMs("12.5000", ms));
  EXPECT_EQ(ms, 12500);
  EXPECT_FALSE(ParseSecondsMs("1.0005", ms));  // would be rounded
  EXPECT_FALSE(ParseSecondsMs("-1", ms));
  EXPECT_FALSE(ParseSecondsMs("1e3", ms));
  EXPECT_FALSE(ParseSecondsMs("", ms));
  int32_t milli = 0;
  EXPECT_TRUE(ParseFractionMilli("0.25", milli));
  EXPECT_EQ(milli, 250);
  EXPECT_TRUE(ParseFractionMilli("1", milli));
  EXPECT_EQ(milli, 1000);
  EXPECT_FALSE(ParseFractionMilli("1.5", milli));
  EXPECT_FALSE(ParseFractionMilli("0", milli));
  int64_t s = 0;
  EXPECT_TRUE(ParseTimestamp("1970-01-02 00:00:01", s));
  EXPECT_EQ(s, 86401);
  EXPECT_FALSE(ParseTimestamp("2017-13-01 00:00:00", s));
}

// Found while writing fuzz/replay_trace_fuzzer.cc: a JCT of 1e300 s was converted to
// int64 milliseconds (undefined behaviour), and durations near INT64_MAX overflowed the
// per-tenant GPU-time sums.
TEST(Parse, DurationsAndJctsAreBounded) {
  int64_t ms = 0;
  EXPECT_TRUE(ParseSecondsMs("1000000000", ms));
  EXPECT_EQ(ms, kMaxTraceMs);
  EXPECT_FALSE(ParseSecondsMs("1000000000.001", ms));
  EXPECT_FALSE(ParseSecondsMs("9223372036854775", ms));
  std::map<std::string, int64_t> best;
  for (const char* jct : {"1e300", "1e10", "-5", "0"}) {
    const std::string summary = std::string(R"({"jcts": {"w": {"a": )") + jct + "}}}";
    auto s = ParsePolluxJcts(summary, "summary.json", "w", best);
    ASSERT_FALSE(s.ok()) << jct;
    EXPECT_EQ(s.message(), "summary.json: jcts.w.a: expected seconds in (0, 1e9]");
  }
  EXPECT_FALSE(ParsePolluxJcts(R"({"jcts": [1]})", "summary.json", "w", best).ok());
  EXPECT_TRUE(ParsePolluxJcts(R"({"jcts": {"w": {"a": 12.5}}})", "summary.json", "w", best).ok());
  EXPECT_EQ(best["a"], 12500);
}

TEST(SplitGang, NodeSizedTasks) {
  struct Case {
    int gpus, node, tasks, per;
  };
  for (Case c : {Case{1, 8, 1, 1}, Case{8, 8, 1, 8}, Case{16, 8, 2, 8}, Case{12, 8, 2, 6},
                 Case{24, 8, 3, 8}, Case{128, 8, 16, 8}, Case{6, 4, 2, 3}}) {
    GangShape g = SplitGang(c.gpus, c.node);
    EXPECT_EQ(g.tasks, c.tasks) << c.gpus;
    EXPECT_EQ(g.gpus_per_task, c.per) << c.gpus;
  }
}

TEST(PhillyReader, ReadsSortsAndSplitsGangs) {
  const std::string path = TempFile("philly.csv",
                                    "timestamp,duration,num_gpus,gpu_time,cluster\n"
                                    "2017-10-09 07:01:55,66.0,1,66.0,vcA\n"
                                    "2017-10-09 06:13:03,2951.0,16,47216.0,vcB\n"
                                    "2017-10-09 06:13:03,10.0,12,120.0,vcA\n"
                                    "\n");
  auto t = ReadPhillyTrace(path, 8);
  ASSERT_TRUE(t.ok()) << t.status().message();
  ASSERT_EQ(t->jobs.size(), 3u);
  EXPECT_EQ(t->jobs[0].arrival, 0);
  EXPECT_EQ(t->jobs[0].tasks, 2);  // 16 GPUs -> 2 x 8
  EXPECT_EQ(t->jobs[0].gpus_per_task, 8);
  EXPECT_EQ(t->jobs[0].duration, 2951000);
  EXPECT_EQ(t->jobs[1].gpus_per_task, 6);  // 12 GPUs -> 2 x 6, stable order on ties
  EXPECT_EQ(t->jobs[2].arrival, (48 * 60 + 52) * 1000);
  EXPECT_EQ(t->tenants[t->jobs[2].tenant], "vcA");
}

TEST(PhillyReader, MalformedInputNamesFileLineAndField) {
  struct Case {
    std::string row, field;
  };
  for (const Case& c : {Case{"2017-10-09 7:01:55,66.0,1,66.0,vc", ":3: timestamp"},
                        Case{"2017-10-09 07:01:55,abc,1,66.0,vc", ":3: duration"},
                        Case{"2017-10-09 07:01:55,66.0,0,66.0,vc", ":3: num_gpus"},
                        Case{"2017-10-09 07:01:55,66.0,1,66.0,", ":3: cluster"},
                        Case{"2017-10-09 07:01:55,66.0", ":3: row"}}) {
    const std::string path = TempFile("bad_philly.csv",
                                      "timestamp,duration,num_gpus,gpu_time,cluster\n"
                                      "2017-10-09 07:01:55,66.0,1,66.0,vc\n" +
                                          c.row + "\n");
    auto t = ReadPhillyTrace(path, 8);
    ASSERT_FALSE(t.ok()) << c.row;
    EXPECT_NE(t.status().message().find(path + c.field), std::string::npos) << t.status().message();
  }
  auto missing = ReadPhillyTrace(TempFile("nohdr.csv", "a,b\n1,2\n"), 8);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(":1: timestamp: missing column"), std::string::npos);
  EXPECT_FALSE(ReadPhillyTrace("/nonexistent/philly.csv", 8).ok());
}

TEST(GenericReader, CsvAndJsonLinesAgree) {
  const std::string csv = TempFile(
      "jobs.csv",
      "arrival,duration,tasks,gpus_per_task,fraction,model,tenant,kind,priority,preemptible\n"
      "# a comment\n"
      "10,100,2,4,1,H100,research,training,0,true\n"
      "0,5.5,1,1,0.5,,prod,inference,10,false\n");
  const std::string jsonl = TempFile(
      "jobs.jsonl",
      "{\"arrival\": 10, \"duration\": 100, \"tasks\": 2, \"gpus_per_task\": 4, \"model\": "
      "\"H100\", \"tenant\": \"research\"}\n"
      "{\"arrival\": 0, \"duration\": 5.5, \"fraction\": 0.5, \"tenant\": \"prod\", \"kind\": "
      "\"inference\", \"priority\": 10, \"preemptible\": false}\n");
  for (const std::string& path : {csv, jsonl}) {
    auto t = ReadGenericTrace(path);
    ASSERT_TRUE(t.ok()) << t.status().message();
    ASSERT_EQ(t->jobs.size(), 2u);
    const TraceJob& a = t->jobs[0];  // sorted by arrival
    EXPECT_EQ(a.arrival, 0);
    EXPECT_EQ(a.duration, 5500);
    EXPECT_EQ(a.gpu_milli, 500);
    EXPECT_EQ(a.kind, core::WorkloadKind::kInference);
    EXPECT_EQ(a.priority, 10);
    EXPECT_FALSE(a.preemptible);
    EXPECT_EQ(a.model, UINT32_MAX);
    const TraceJob& b = t->jobs[1];
    EXPECT_EQ(b.arrival, 10000);
    EXPECT_EQ(b.tasks, 2);
    EXPECT_EQ(b.gpus_per_task, 4);
    EXPECT_EQ(t->models[b.model], "H100");
    EXPECT_EQ(t->tenants[b.tenant], "research");
    EXPECT_TRUE(b.preemptible);
  }
}

TEST(GenericReader, MalformedInputNamesFileLineAndField) {
  struct Case {
    std::string name, text, want;
  };
  const std::string hdr = "arrival,duration,tenant,fraction,gpus_per_task,kind,preemptible\n";
  for (const Case& c : {
           Case{"a.csv", hdr + "0,1,t,,1,training,true\nx,1,t,,1,training,true\n", ":3: arrival"},
           Case{"b.csv", hdr + "0,0,t,,1,training,true\n", ":2: duration"},
           Case{"c.csv", hdr + "0,1,,,1,training,true\n", ":2: tenant"},
           Case{"d.csv", hdr + "0,1,t,0.5,2,training,true\n", ":2: fraction"},
           Case{"e.csv", hdr + "0,1,t,,17,training,true\n", ":2: gpus_per_task"},
           Case{"f.csv", hdr + "0,1,t,,1,batch,true\n", ":2: kind"},
           Case{"g.csv", hdr + "0,1,t,,1,training,maybe\n", ":2: preemptible"},
           Case{"h.csv", hdr + "0,1,t\n", ":2: row"},
           Case{"i.csv", "arrival,duration,tenant,colour\n", ":1: colour: unknown column"},
           Case{"j.jsonl", "{\"arrival\": 0, \"duration\": 1, \"tenant\": \"t\"}\n[1]\n",
                ":2: record"},
           Case{"k.jsonl", "{\"arrival\": 0, \"duration\": 1, \"tenant\": \"t\", \"gpu\": 1}\n",
                ":1: gpu: unknown field"},
           Case{"l.jsonl", "{\"arrival\": \"soon\", \"duration\": 1, \"tenant\": \"t\"}\n",
                ":1: arrival"},
       }) {
    const std::string path = TempFile(c.name, c.text);
    auto t = ReadGenericTrace(path);
    ASSERT_FALSE(t.ok()) << c.name;
    EXPECT_NE(t.status().message().find(path + c.want), std::string::npos)
        << c.name << ": " << t.status().message();
  }
}

// The shared Philly and Pollux files, when present (GPUORCH_TRACES).
std::string Traces() {
  const char* env = std::getenv("GPUORCH_TRACES");
  return env != nullptr ? env : "";
}

TEST(SharedTraces, PhillyAndItsDerivedCluster) {
  const std::string dir = Traces();
  if (dir.empty() || !std::filesystem::exists(dir + "/philly/philly_pollux_artifact.csv")) {
    GTEST_SKIP() << "shared traces not found (GPUORCH_TRACES)";
  }
  auto t = ReadPhillyTrace(dir + "/philly/philly_pollux_artifact.csv", 8);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->jobs.size(), 82247u);
  EXPECT_EQ(t->tenants.size(), 15u);
  auto d = DerivePhillySetup(*t, dir + "/philly/philly_vc_nodes_helios_artifact.csv", 100);
  ASSERT_TRUE(d.ok()) << d.status().message();
  // 352 listed nodes plus one node for each of the four VCs the Helios table lacks.
  EXPECT_EQ(d->cluster.nodes.size(), 356u);
  EXPECT_EQ(d->queues.queues.size(), 15u);
  EXPECT_EQ(d->queues.queues[static_cast<size_t>(d->queues.Find("ee9e8c"))].guarantee_milli,
            512000);
}

TEST(SharedTraces, PolluxWorkloadGetsPublishedDurations) {
  const std::string dir = Traces();
  if (dir.empty() || !std::filesystem::exists(dir + "/pollux/workloads/workload-1.csv")) {
    GTEST_SKIP() << "shared traces not found (GPUORCH_TRACES)";
  }
  auto t =
      ReadPolluxTrace(dir + "/pollux/workloads/workload-1.csv", dir + "/pollux/results-jobload", 4);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->jobs.size(), 160u);
  for (const TraceJob& j : t->jobs) EXPECT_GT(j.duration, 0);
}

}  // namespace
}  // namespace gpuorch::sim
