#include "sim/report/report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sim/report/render_check.h"
#include "sim/report/svg.h"

namespace gpuorch::sim {
namespace {

namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("gpuorch_report_" + std::to_string(getpid())) / name;
  fs::create_directories(d);
  return d;
}

using report_test::Slurp;

// A metrics.json with the structure the replay writes (two policies, two tenants).
nlohmann::ordered_json SmallMetrics() {
  auto policy = [](const char* name, double iww) {
    nlohmann::ordered_json p;
    p["policy"] = name;
    nlohmann::ordered_json dist = {{"n", 3},      {"mean", 10.0}, {"p50", 5.0},
                                   {"p95", 20.0}, {"p99", 30.0},  {"max", 30.0}};
    p["summary"] = {{"jobs", 3},
                    {"finished", 3},
                    {"infeasible", 0},
                    {"unfinished", 0},
                    {"utilization_pct", 50.0},
                    {"idle_while_waiting_pct", iww},
                    {"idle_while_waiting_gpu_hours", 1.5},
                    {"queueing_delay_s", dist},
                    {"jct_s", dist},
                    {"guarantee_violations", 0},
                    {"preemptions", 1},
                    {"lost_gpu_hours", 0.1},
                    {"jain_fairness", 0.9}};
    nlohmann::ordered_json cdf = nlohmann::ordered_json::array();
    for (const char* t : {"a", "b<&>"}) {
      nlohmann::ordered_json q = nlohmann::ordered_json::array();
      for (int k = 0; k <= 100; ++k) q.push_back(k * 3.0);
      cdf.push_back({{"tenant", t}, {"delay_s_at_pct", q}});
    }
    p["wait_cdf"] = cdf;
    p["timeline"] = {{"bin_hours", 1.0},
                     {"busy_gpus", {1, 2, 3, 4}},
                     {"waiting_gpus", {0, 1, 0, 2}},
                     {"idle_while_waiting_gpus", {0, 1, 0, 0}}};
    return p;
  };
  nlohmann::ordered_json m;
  m["trace"] = {{"name", "toy"}, {"jobs", 3}};
  m["cluster"] = {{"nodes", 2}, {"gpus", 8}};
  m["options"] = {{"grace_period_s", 30.0}, {"restart", "checkpoint"}};
  m["setup_notes"] = {"a: 1 node"};
  m["policies"] = {policy("static", 12.5), policy("gpuorch", 0.0)};
  return m;
}

TEST(Report, ReplayPageHasChartsAndEscapesNames) {
  auto html = BuildReport(SmallMetrics(), "");
  ASSERT_TRUE(html.ok()) << html.status().message();
  EXPECT_NE(html->find("<svg"), std::string::npos);
  EXPECT_NE(html->find("Idle GPUs while runnable work waited"), std::string::npos);
  EXPECT_NE(html->find("b&lt;&amp;&gt;"), std::string::npos);
  EXPECT_EQ(html->find("b<&>"), std::string::npos);
  EXPECT_EQ(html->find("http://"), html->find("http://www.w3.org/2000/svg"));  // no fetches
}

TEST(Report, ReadsAllocCsvAndAveragesSeeds) {
  const fs::path d = TempDir("alloc");
  std::ofstream(d / "alloc.csv") << "workload,policy,seed,total_gpus,0,1,2\n"
                                 << "w,bestfit,42,10,0,50,\n"
                                 << "w,bestfit,43,10,0,70,90\n";
  auto c = ReadAllocCsv((d / "alloc.csv").string());
  ASSERT_TRUE(c.ok()) << c.status().message();
  const auto& ys = c.value().at("w").at("bestfit");
  ASSERT_EQ(ys.size(), 3u);
  EXPECT_DOUBLE_EQ(ys[1], 60.0);
  EXPECT_DOUBLE_EQ(ys[2], 90.0);
  std::ofstream(d / "bad.csv") << "workload,policy,seed,total_gpus,0\nw,p,1,10,x\n";
  auto bad = ReadAllocCsv((d / "bad.csv").string());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad.csv:2: column 0"), std::string::npos);
  auto both = BuildReport(SmallMetrics(), (d / "alloc.csv").string());
  ASSERT_TRUE(both.ok());
  EXPECT_NE(both->find("FGD experiment"), std::string::npos);
  EXPECT_FALSE(BuildReport(nlohmann::ordered_json(), "").ok());
}

std::string RenderErrors(const fs::path& page) {
  return report_test::RenderErrors(page, TempDir("chromium-" + page.stem().string()),
                                   "data-rendered=\"");
}

TEST(ReportRender, LoadsInHeadlessChromiumWithoutScriptErrors) {
  if (!fs::exists("/usr/bin/chromium")) GTEST_SKIP() << "/usr/bin/chromium not installed";
  const fs::path d = TempDir("render");
  auto html = BuildReport(SmallMetrics(), "");
  ASSERT_TRUE(html.ok());
  ASSERT_TRUE(WriteText((d / "report.html").string(), *html).ok());
  EXPECT_EQ(RenderErrors(d / "report.html"), "");
  // The check can fail: the same page with a broken script is caught.
  std::string broken = *html;
  broken.insert(broken.rfind("</body>"), "<script>drawChart(undefinedSeries);</script>");
  ASSERT_TRUE(WriteText((d / "broken.html").string(), broken).ok());
  EXPECT_NE(RenderErrors(d / "broken.html").find("Uncaught ReferenceError"), std::string::npos);
}

TEST(Svg, ShortNumbers) {
  EXPECT_EQ(svg::Short(1234), "1234");
  EXPECT_EQ(svg::Short(12345), "12.3k");
  EXPECT_EQ(svg::Short(0.5), "0.5");
  EXPECT_EQ(svg::Short(2500000), "2.5M");
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(Svg, StackedAreaStacksBandsOnTheSharedX) {
  // The default 640x300 chart: the plot spans x 64..490 and y 256 (0) up to 28 (the top
  // tick). The totals peak at 3, so the y axis ends at 3.
  const std::string svg =
      svg::StackedArea({"GPUs by class", "hours", "GPUs"},
                       {{"busy", {0, 1, 2}, {1, 1, 1}}, {"idle<&>", {9, 9, 9}, {2, 0, -5}}});
  EXPECT_EQ(Count(svg, "<polygon class=\"band\""), 2u);
  // Band 0 runs from 0 to 1 (y 180.0), left to right along its top, back along the axis.
  EXPECT_NE(svg.find("points=\"64.0,180.0 277.0,180.0 490.0,180.0 490.0,256.0 277.0,256.0 "
                     "64.0,256.0 \""),
            std::string::npos);
  // Band 1 sits on band 0, uses band 0's x, and counts its negative value as 0.
  EXPECT_NE(svg.find("points=\"64.0,28.0 277.0,180.0 490.0,180.0 490.0,180.0 277.0,180.0 "
                     "64.0,180.0 \""),
            std::string::npos);
  EXPECT_NE(svg.find("data-tip=\"idle&lt;&amp;&gt;\""), std::string::npos);
  EXPECT_EQ(svg.find("idle<&>"), std::string::npos);
  // The legend lists the top band first.
  EXPECT_LT(svg.find(">idle&lt;&amp;&gt;</text>"), svg.find(">busy</text>"));
  // A fixed y_max scales the bands; mismatched lengths use the shortest y.
  const std::string capped = svg::StackedArea({"c", "", "", false, 6}, {{"a", {0, 1, 2}, {3, 3}}});
  EXPECT_NE(capped.find("points=\"64.0,142.0 490.0,142.0 490.0,256.0 64.0,256.0 \""),
            std::string::npos);
  EXPECT_EQ(svg::StackedArea({"empty", "", ""}, {}).find("<polygon"), std::string::npos);
}

}  // namespace
}  // namespace gpuorch::sim
