#include "sim/platform/report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "sim/report/render_check.h"

namespace gpuorch::sim::platform {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

const std::vector<std::string> kPolicies = {"static", "pool-no-autoscale", "gpuorch"};

// A valid input as the lead writes it: 3 policies, 2 services, 5 timeline points. The last
// policy has an extra metric and no goals; `static` has a null metric (NaN in the run).
ordered_json SmallInput() {
  ordered_json in;
  in["command"] = "gpuorch sim platform --days 1 --out 'a&b' <x>";
  in["assumptions"] = {"peak/trough ratio 3", "weekend <factor> 0.6 & more"};
  in["policies"] = kPolicies;
  for (size_t i = 0; i < kPolicies.size(); ++i) {
    ordered_json s = {
        {"idle_gpu_hours_pct", 31.2 - 10.0 * static_cast<double>(i)},
        {"idle_while_waiting_pct", 4.1},
        {"inference_slo_minutes_pct", 99.5},
        {"replica_minutes", 12345},
        {"training_jct_mean_s", i == 0 ? ordered_json() : ordered_json(1234.5)},
        {"preemptions", {{"reclaim_guarantee", 1}, {"priority", 0}, {"harvested", 3 + i}}}};
    if (i == 2) s["gpu_hours_lost_pct"] = 0.25;
    if (i < 2) {
      s["goals"] = {{{"metric", "idle_gpu_hours_pct"},
                     {"goal", "<= 25"},
                     {"value", 31.2 - 10.0 * static_cast<double>(i)},
                     {"met", i == 1}}};
    }
    in["summary"][kPolicies[i]] = s;
  }
  in["timeline"]["step_s"] = 600;
  in["timeline"]["capacity_gpus"] = 16;
  for (const std::string& p : kPolicies) {
    ordered_json t;
    t["t_h"] = {0, 0.1667, 0.3333, 0.5, 0.6667};
    t["inference"] = {4, 6, 8, 6, 4};
    t["training"] = {8, 6, 4, 6, 8};
    t["experiment"] = {2, 2, 2, 2, 2};
    t["idle_held"] = {1, 1, 1, 1, 1};
    t["free"] = {1, 1, 1, 1, 1};
    t["services"]["chat"] = {{"needed", {1, 2, 3, 2, 1}}, {"ready", {1, 1, 3, 3, 1}}};
    t["services"]["code"] = {{"needed", {0, 1, 1, 1, 0}}, {"ready", {0, 0, 1, 1, 1}}};
    in["timeline"][p] = t;
  }
  return in;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::string Html(const ordered_json& in) {
  auto html = BuildPlatformReport(in);
  EXPECT_TRUE(html.ok()) << html.status().message();
  return html.ok() ? *html : "";
}

TEST(PlatformReport, TableHasEveryPolicyAndMetric) {
  const std::string h = Html(SmallInput());
  for (const std::string& p : kPolicies) EXPECT_NE(h.find("<th>" + p + "</th>"), std::string::npos);
  for (const char* label :
       {"Idle GPU-hours, %", "Idle while work waited, % of GPU-hours",
        "Minutes meeting the inference SLO, %", "Replica-minutes", "Training JCT, mean, s",
        "Preemptions, total", "preemptions: reclaim guarantee", "preemptions: priority",
        "preemptions: harvested", "Gpu hours lost, %"}) {
    EXPECT_NE(h.find(">" + std::string(label) + "</td>"), std::string::npos) << label;
  }
  // Values side by side: the idle row, the preemption total (1 + 0 + 3 + i), a null (n/a) and a
  // metric only the last policy has (a dash for the others).
  EXPECT_NE(h.find("<td>31.20</td><td>21.20</td><td>11.20</td>"), std::string::npos);
  EXPECT_NE(h.find("<td>4</td><td>5</td><td>6</td>"), std::string::npos);
  EXPECT_NE(h.find("<td>n/a</td><td>1234.5</td><td>1234.5</td>"), std::string::npos);
  EXPECT_NE(h.find("<td>&mdash;</td><td>&mdash;</td><td>0.25</td>"), std::string::npos);
  // The raw key stays one hover away.
  EXPECT_NE(h.find("title=\"preemptions.reclaim_guarantee\""), std::string::npos);
}

TEST(PlatformReport, GoalsTableOnlyWhenPresent) {
  ordered_json in = SmallInput();
  std::string h = Html(in);
  EXPECT_NE(h.find("<h2>Goals</h2>"), std::string::npos);
  // A goal on a metric of the table shows that metric's label.
  EXPECT_NE(h.find("<td title=\"idle_gpu_hours_pct\">Idle GPU-hours, %</td><td>&lt;= 25</td><td "
                   "class=\"miss\">31.20 &#10007;</td><td class=\"met\">"
                   "21.20 &#10003;</td><td>&mdash;</td>"),
            std::string::npos);
  for (const std::string& p : kPolicies) in["summary"][p].erase("goals");
  h = Html(in);
  EXPECT_EQ(h.find("<h2>Goals</h2>"), std::string::npos);
}

TEST(PlatformReport, ChartsPerPolicyAndService) {
  const std::string h = Html(SmallInput());
  // One stacked area per policy (5 bands each) and one replica chart per policy and service.
  EXPECT_EQ(Count(h, "<svg"), 3u + 3u * 2u);
  EXPECT_EQ(Count(h, "<polygon class=\"band\""), 3u * 5u);
  for (const std::string& p : kPolicies) {
    EXPECT_NE(h.find(">" + p + ": GPUs by class</text>"), std::string::npos) << p;
    for (const char* s : {"chat", "code"}) {
      EXPECT_NE(h.find(">" + p + " / " + s + ": replicas needed vs ready</text>"),
                std::string::npos)
          << p << " " << s;
    }
  }
  for (const char* c : {"inference", "training", "experiment", "idle_held", "free"}) {
    EXPECT_EQ(Count(h, "data-tip=\"" + std::string(c) + "\""), 3u) << c;
  }
  // Self-contained: the only URL is the SVG namespace; one script.
  EXPECT_EQ(Count(h, "http"), Count(h, "http://www.w3.org/2000/svg"));
  EXPECT_EQ(Count(h, "<script"), 1u);
  EXPECT_NE(h.find("setAttribute('data-rendered', '1')"), std::string::npos);
  // Without services there is no replica section.
  ordered_json in = SmallInput();
  for (const std::string& p : kPolicies) in["timeline"][p].erase("services");
  EXPECT_EQ(Count(Html(in), "<svg"), 3u);
}

TEST(PlatformReport, EscapesAssumptionsAndCommand) {
  const std::string h = Html(SmallInput());
  EXPECT_NE(h.find("<li>weekend &lt;factor&gt; 0.6 &amp; more</li>"), std::string::npos);
  EXPECT_NE(h.find("<code>gpuorch sim platform --days 1 --out 'a&amp;b' &lt;x&gt;</code>"),
            std::string::npos);
  EXPECT_EQ(h.find("<factor>"), std::string::npos);
  EXPECT_EQ(h.find("<x>"), std::string::npos);
}

TEST(PlatformReport, Deterministic) { EXPECT_EQ(Html(SmallInput()), Html(SmallInput())); }

TEST(PlatformReport, MalformedInputNamesTheKey) {
  struct Case {
    std::function<void(ordered_json&)> edit;
    std::string error;
  };
  const std::vector<Case> cases = {
      {[](ordered_json& j) { j.erase("summary"); }, "summary: missing"},
      {[](ordered_json& j) { j.erase("timeline"); }, "timeline: missing"},
      {[](ordered_json& j) { j.erase("policies"); }, "policies: missing"},
      {[](ordered_json& j) { j["policies"] = ordered_json::array(); },
       "policies: expected a non-empty array"},
      {[](ordered_json& j) { j["policies"].push_back("static"); },
       "policies[3]: duplicate policy 'static'"},
      {[](ordered_json& j) { j["summary"].erase("gpuorch"); }, "summary.gpuorch: missing"},
      {[](ordered_json& j) { j["summary"]["static"]["replica_minutes"] = "many"; },
       "summary.static.replica_minutes: not a number"},
      {[](ordered_json& j) { j["summary"]["static"]["preemptions"]["priority"] = true; },
       "summary.static.preemptions.priority: not a number"},
      {[](ordered_json& j) { j["summary"]["static"]["goals"][0].erase("met"); },
       "summary.static.goals[0].met: not a boolean"},
      {[](ordered_json& j) { j["timeline"].erase("step_s"); },
       "timeline.step_s: expected a number > 0"},
      {[](ordered_json& j) { j["timeline"].erase("pool-no-autoscale"); },
       "timeline.pool-no-autoscale: missing"},
      {[](ordered_json& j) {
         j["timeline"]["gpuorch"]["training"] = {1, 2, 3};
       },
       "timeline.gpuorch.training: 3 points, expected 5"},
      {[](ordered_json& j) { j["timeline"]["gpuorch"].erase("idle_held"); },
       "timeline.gpuorch.idle_held: missing"},
      {[](ordered_json& j) { j["timeline"]["static"]["free"][4] = "x"; },
       "timeline.static.free[4]: not a number"},
      {[](ordered_json& j) { j["timeline"]["static"]["t_h"] = ordered_json::array(); },
       "timeline.static.t_h: no points"},
      {[](ordered_json& j) { j["timeline"]["static"]["services"]["code"]["ready"] = {1}; },
       "timeline.static.services.code.ready: 1 points, expected 5"},
      {[](ordered_json& j) { j["assumptions"][1] = 7; }, "assumptions[1]: not a string"},
      {[](ordered_json& j) { j["command"] = 7; }, "command: not a string"},
  };
  for (const Case& c : cases) {
    ordered_json in = SmallInput();
    c.edit(in);
    auto html = BuildPlatformReport(in);
    ASSERT_FALSE(html.ok()) << c.error;
    EXPECT_EQ(html.status().message(), c.error);
  }
  EXPECT_FALSE(BuildPlatformReport(ordered_json::array()).ok());
}

fs::path TempDir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("gpuorch_platform_report_" + std::to_string(getpid())) / name;
  fs::create_directories(d);
  return d;
}

using report_test::Slurp;

void Write(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

std::string RenderErrors(const fs::path& page) {
  return report_test::RenderErrors(page, TempDir("chromium-" + page.stem().string()),
                                   "data-rendered=\"1\"");
}

TEST(PlatformReportRender, LoadsInHeadlessChromiumWithoutScriptErrors) {
  if (!fs::exists("/usr/bin/chromium")) GTEST_SKIP() << "/usr/bin/chromium not installed";
  const fs::path d = TempDir("render");
  const std::string html = Html(SmallInput());
  Write(d / "report.html", html);
  EXPECT_EQ(RenderErrors(d / "report.html"), "");
  // The check can fail: the same page with a broken script is caught.
  std::string broken = html;
  broken.insert(broken.rfind("</body>"), "<script>drawChart(undefinedSeries);</script>");
  Write(d / "broken.html", broken);
  EXPECT_NE(RenderErrors(d / "broken.html").find("Uncaught ReferenceError"), std::string::npos);
  // And so is a page whose script never marks the body.
  std::string silent = html;
  silent.replace(silent.find("'data-rendered', '1'"), 20, "'data-other', '1'");
  Write(d / "silent.html", silent);
  EXPECT_EQ(RenderErrors(d / "silent.html"), "the page's script did not run");
}

}  // namespace
}  // namespace gpuorch::sim::platform
