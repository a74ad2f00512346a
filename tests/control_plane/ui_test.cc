// The web dashboard (/ui/) in headless Chromium against a real cluster: a server and two
// emulated agents on loopback, two queues, work running, pending and done. Each view is
// loaded as a user would (the token in the URL fragment), waited for by polling the DOM, and
// checked for the names it must show; the test fails on any uncaught exception,
// console.error, CSP violation or failed request. Screenshots of every view are saved in
// the build folder (GPUORCH_UI_SCREENSHOTS) for a person to look at.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "fixture.h"
#include "headless_chrome.h"

namespace gpuorch::cptest {
namespace {

constexpr const char* kChromium = "/usr/bin/chromium";

// Two queues with guarantees, research with a limit (the nodes: two of four GPUs, and one
// of two that is Down).
constexpr const char* kQueues = R"(
queues:
  - name: production
    quota: [{model: "*", guaranteed: 4}]
  - name: research
    quota: [{model: "*", guaranteed: 2, limit: 4}]
)";

Json Job(const std::string& name, const std::string& queue, const std::string& kind, int gpus,
         int tasks, const std::string& script, int gpu_milli = 1000) {
  Json j = Cluster::ShellJob(name, queue, gpus, script);
  j["kind"] = kind;
  j["min_tasks"] = tasks;
  j["gpu_milli"] = gpu_milli;
  j["cpu_milli"] = 100;
  return j;
}

// A JavaScript string literal of `s` (JSON's quoting is JavaScript's).
std::string Js(const std::string& s) { return Json(s).dump(); }

// The expression: every one of `names` appears in the text of the element `selector`.
std::string ShowsAll(const std::string& selector, const std::vector<std::string>& names) {
  std::string e = "(() => { const el = document.querySelector(" + Js(selector) +
                  "); if (!el) return false; const t = el.innerText; return true";
  for (const std::string& n : names) e += " && t.includes(" + Js(n) + ")";
  return e + "; })()";
}

std::string Text(HeadlessChrome& c, const std::string& selector) {
  const Json v = c.Eval("(document.querySelector(" + Js(selector) + ") || {}).innerText || ''");
  return v.is_string() ? v.get<std::string>() : "";
}

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += "\n  " + l;
  return out;
}

class UiDashboard : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(kChromium)) return;
    cluster_ = StartCluster(kQueues, {}).release();
    Cluster& c = *cluster_;
    for (const char* node : {"gpu-node-a", "gpu-node-b", "gpu-node-c"}) {
      ASSERT_TRUE(
          c.StartAgent(node, node == std::string("gpu-node-c") ? "2xH100-80GB" : "4xH100-80GB"))
          << node;
    }
    // A node that went Down before any work arrived (the grid marks it).
    c.KillAgent("gpu-node-c");
    ASSERT_TRUE(
        WaitFor([&] { return c.NodeStatus("gpu-node-c") == "Down"; }, std::chrono::seconds(60)));
    const std::string forever = "sleep 600";
    train_ = c.Submit(Job("llm-train", "production", "training", 2, 2, forever));
    notebook_ = c.Submit(Job("notebook-alice", "research", "experiment", 1, 1, forever));
    serve_ = c.Submit(Job("chat-serve", "research", "inference", 1, 1, forever, 500));
    done_ = c.Submit(Job("quick-check", "research", "experiment", 0, 1, "true"));
    ASSERT_TRUE(c.WaitState(train_, "Running", std::chrono::seconds(60)));
    ASSERT_TRUE(c.WaitState(notebook_, "Running", std::chrono::seconds(60)));
    ASSERT_TRUE(c.WaitState(serve_, "Running", std::chrono::seconds(60)));
    ASSERT_TRUE(c.WaitState(done_, "Succeeded", std::chrono::seconds(60)));
    // Over research's limit of 4 GPUs: it waits, with a reason.
    sweep_ = c.Submit(Job("big-sweep", "research", "experiment", 4, 1, forever));
    ASSERT_TRUE(WaitFor(
        [&] {
          const Json w = c.Workload(sweep_);
          return w.is_object() && w.value("state", "") == "Pending" &&
                 w.value("reason", "Queued") != "Queued";
        },
        std::chrono::seconds(60)));
    tenant_ = c.CreateToken({{"name", "alice"}, {"role", "tenant"}, {"queues", {"research"}}});
    agent_ = c.CreateToken({{"name", "n9"}, {"role", "agent"}, {"node", "n9"}});
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  void SetUp() override {
    if (!std::filesystem::exists(kChromium)) GTEST_SKIP() << kChromium << " is not installed";
    ASSERT_NE(cluster_, nullptr);
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = cluster_->dir() + "/chrome-" + name;
    std::filesystem::create_directories(dir_);
    std::string error;
    chrome_ = HeadlessChrome::Start(kChromium, dir_, 1400, 1000, error);
    ASSERT_NE(chrome_, nullptr) << error;
    std::filesystem::create_directories(GPUORCH_UI_SCREENSHOTS);
  }

  // Opens the dashboard with `token` in the fragment, on `view`.
  void Open(const std::string& token, const std::string& view) {
    ASSERT_TRUE(chrome_->Navigate(cluster_->url() + "/ui/#token=" + token + "&view=" + view));
  }
  // Waits for `view` to have rendered data and for `expression` to hold.
  void WaitView(const std::string& view, const std::string& expression) {
    const std::string ready = "document.body.dataset.ready === " + Js(view);
    ASSERT_TRUE(chrome_->WaitUntil(ready + " && " + expression, std::chrono::seconds(90)))
        << view << ": not shown; the page says: " << Text(*chrome_, "body")
        << "\nproblems:" << Join(chrome_->problems());
  }
  void Shot(const std::string& name) {
    const std::string path = std::string(GPUORCH_UI_SCREENSHOTS) + "/" + name + ".png";
    EXPECT_TRUE(chrome_->Screenshot(path)) << path;
  }
  void ClickTab(const std::string& view) {
    chrome_->Eval("document.querySelector('nav a[data-view=" + view + "]').click()");
  }

  static inline Cluster* cluster_ = nullptr;
  static inline int64_t train_ = 0, notebook_ = 0, serve_ = 0, done_ = 0, sweep_ = 0;
  static inline std::string tenant_, agent_;
  std::string dir_;
  std::unique_ptr<HeadlessChrome> chrome_;
};

TEST_F(UiDashboard, AnAdministratorSeesEveryView) {
  HeadlessChrome& c = *chrome_;
  Open(cluster_->admin_token(), "cluster");
  // Nodes with their GPUs, owners derived from the running workloads.
  WaitView("cluster", ShowsAll("#nodes", {"gpu-node-a", "gpu-node-b", "gpu-node-c", "llm-train",
                                          "notebook-alice", "chat-serve"}));
  EXPECT_EQ(c.Eval("document.querySelectorAll('#nodes .gpu').length"), 10);
  EXPECT_EQ(c.Eval("document.querySelector('[data-node=\"gpu-node-c\"]').className"),
            "node status-down");
  EXPECT_EQ(c.Eval("document.querySelectorAll('#nodes .gpu.held').length"), 6)
      << "llm-train's 4 GPUs, notebook-alice's and chat-serve's";
  EXPECT_TRUE(c.WaitUntil(ShowsAll("#cluster-summary", {"idle while work waits", "fragmented"}),
                          std::chrono::seconds(30)));
  // The token left the address bar for this tab's session storage.
  EXPECT_EQ(c.Eval("location.hash.includes('token')"), false);
  EXPECT_EQ(c.Eval("sessionStorage.getItem('gpuorch.token')"), cluster_->admin_token());
  Shot("cluster");

  ClickTab("queues");
  const Json sweep = cluster_->Workload(sweep_);
  const std::string reason = sweep.value("reason", "?");
  WaitView("queues", ShowsAll("#queues", {"production", "research", "big-sweep", reason,
                                          "pending by reason"}));
  EXPECT_EQ(c.Eval("document.querySelectorAll('#queues .quota').length"), 2);
  Shot("queues");

  ClickTab("workloads");
  WaitView("workloads", ShowsAll("#workload-list", {"llm-train", "notebook-alice", "chat-serve",
                                                    "quick-check", "big-sweep"}));
  c.Eval("document.querySelector('tr[data-id=\"" + std::to_string(train_) + "\"]').click()");
  WaitView("workloads", ShowsAll("#detail", {"llm-train", "Tasks", "Events", "Submitted",
                                             "gpu-node-a", "sleep 600"}));
  // The emulated agents' telemetry reaches the page: llm-train declares no utilization, so
  // its tasks read the emulated default, 90% (docs/observability.md).
  WaitView("workloads",
           "[...document.querySelectorAll('#detail td.util')].some(td => "
           "td.innerText.trim() === '90%')");
  Shot("workloads");

  // The filters: only what is pending.
  c.Eval(
      "document.getElementById('filter-state').value = 'Pending';"
      "document.getElementById('filter-state').dispatchEvent(new Event('change'))");
  WaitView("workloads", ShowsAll("#workload-list", {"big-sweep"}) +
                            " && !document.querySelector('#workload-list').innerText"
                            ".includes('quick-check')");

  EXPECT_EQ(c.Eval("document.getElementById('failures').dataset.count"), "0");
  EXPECT_TRUE(c.problems().empty()) << Join(c.problems());
}

TEST_F(UiDashboard, ATenantSeesOnlyItsQueues) {
  HeadlessChrome& c = *chrome_;
  Open(tenant_, "cluster");
  // production's GPUs are shown as held by another queue, without its workload's name.
  WaitView("cluster",
           ShowsAll("#nodes", {"gpu-node-a", "gpu-node-b", "notebook-alice", "other queue"}));
  EXPECT_EQ(c.Eval("document.querySelector('#nodes').innerText.includes('llm-train')"), false);
  EXPECT_TRUE(c.WaitUntil(ShowsAll("#who", {"alice", "tenant"}), std::chrono::seconds(30)));
  Shot("tenant-cluster");
  ClickTab("queues");
  WaitView("queues", ShowsAll("#queues", {"research", "big-sweep"}));
  EXPECT_EQ(c.Eval("document.querySelector('#queues').innerText.includes('production')"), false);
  ClickTab("workloads");
  WaitView("workloads", ShowsAll("#workload-list", {"notebook-alice"}));
  EXPECT_EQ(c.Eval("document.querySelector('#workload-list').innerText.includes('llm-train')"),
            false);
  // A workload of another queue, asked for by id, is the API's 404: said plainly.
  c.ClearProblems();
  c.Eval("location.hash = 'view=workloads&wl=" + std::to_string(train_) + "'");
  WaitView("workloads", ShowsAll("#detail", {"does not exist, or this token may not read"}));
  for (const std::string& p : c.problems()) {
    EXPECT_NE(p.find("/v1/workloads/" + std::to_string(train_)), std::string::npos) << p;
  }
}

TEST_F(UiDashboard, RefusedTokensGetAClearMessage) {
  HeadlessChrome& c = *chrome_;
  Open("gpo_0123456789abcdef." + std::string(64, '0'), "cluster");
  ASSERT_TRUE(
      c.WaitUntil("document.body.dataset.auth === 'needed' && !document.getElementById("
                  "'login').hidden",
                  std::chrono::seconds(60)))
      << Text(c, "body");
  EXPECT_NE(Text(c, "#message").find("refused the token (401)"), std::string::npos)
      << Text(c, "#message");
  Shot("refused");
  EXPECT_FALSE(c.problems().empty()) << "the browser reports the refused request";
  for (const std::string& p : c.problems()) {
    EXPECT_NE(p.find("401"), std::string::npos) << "only the refusal: " << p;
  }
  // An agent's token reads no cluster state: each view says so.
  c.ClearProblems();
  c.Eval("document.getElementById('token-input').value = " + Js(agent_) +
         "; document.querySelector('#login button').click()");
  ASSERT_TRUE(c.WaitUntil("document.body.dataset.error === 'cluster'", std::chrono::seconds(60)))
      << Text(c, "body");
  EXPECT_NE(Text(c, "#message").find("may not read the nodes (403)"), std::string::npos)
      << Text(c, "#message");
  for (const std::string& p : c.problems()) {
    EXPECT_NE(p.find("403"), std::string::npos) << "only the refusals: " << p;
  }
}

// The telemetry fields of the API (per GPU: util_pct, memory_used_mib, healthy, health,
// holders; per node metrics_url; per task gpu_util_pct, gpu_memory_used_mib;
// docs/observability.md), in states a test cluster of emulated GPUs does not reach by itself
// (an unhealthy GPU, mixed utilizations): the page's own renderers, fed such answers.
TEST_F(UiDashboard, RendersTelemetryWhenTheApiHasIt) {
  HeadlessChrome& c = *chrome_;
  Open(cluster_->admin_token(), "cluster");
  WaitView("cluster", ShowsAll("#nodes", {"gpu-node-a"}));
  c.Eval(R"(
    stopPolling();
    const gpu = (index, extra) => Object.assign(
        {index, uuid: 'GPU-' + index, model: 'H100-80GB', memory_mib: 81920, used_milli: 0}, extra);
    const nodes = [{
      name: 'tele-node', status: 'Ready', zone: 'z1', rack: 'r1', cpu_milli: 64000,
      cpu_used_milli: 8000, last_heartbeat: new Date().toISOString(),
      metrics_url: 'http://10.0.0.7:9400/metrics',
      gpus: [
        gpu(0, {used_milli: 1000, util_pct: 73, memory_used_mib: 40960, healthy: true,
                holders: [{workload: 7, name: 'tele-train', queue: 'production', task: 0}]}),
        gpu(1, {util_pct: null, memory_used_mib: null, healthy: false, health: 'XID 79',
                holders: []}),
        gpu(2, {used_milli: 500, util_pct: 12.4, memory_used_mib: 2048,
                holders: [{workload: 8, name: 'tele-serve', queue: 'research', task: 1}]}),
        gpu(3, {util_pct: 0, memory_used_mib: 0, holders: []}),
      ]}];
    nodes.summary = {nodes: 1, gpus: 4,
                     models: [{model: 'H100-80GB', gpus_idle_while_waiting: 1, fragmented_gpus: 0.5}]};
    window.teleNodes = nodes;
    renderCluster(nodes, new Map());
  )");
  EXPECT_TRUE(c.WaitUntil(ShowsAll("#nodes", {"tele-train", "tele-serve", "73%", "12%", "40/80 GiB",
                                              "XID 79", "metrics: http://10.0.0.7:9400/metrics"}),
                          std::chrono::seconds(10)))
      << Text(c, "#nodes");
  EXPECT_EQ(c.Eval("document.querySelectorAll('#nodes .gpu.unhealthy').length"), 1);
  Shot("telemetry-owner");
  // The switch refreshes from the API: stop that again before drawing the fake answer.
  c.Eval(
      "document.querySelector('input[name=colour][value=util]').click(); stopPolling(); "
      "renderCluster(window.teleNodes, new Map())");
  EXPECT_EQ(c.Eval("document.querySelector('input[name=colour]:checked').value"), "util");
  EXPECT_EQ(c.Eval("document.querySelectorAll('#nodes .gpu.held').length"), 3)
      << "three GPUs report a utilization";
  Shot("telemetry-util");

  ClickTab("workloads");
  WaitView("workloads", ShowsAll("#workload-list", {"llm-train"}));
  c.Eval(R"(
    stopPolling();
    renderDetail(7, {id: 7, name: 'tele-train', queue: 'production', user: 'alice',
      kind: 'training', priority: 'normal', state: 'Running', attempt: 0,
      spec: {min_tasks: 2, max_tasks: 2, gpus: 1, gpu_milli: 1000, command: ['train']},
      submitted_at: new Date().toISOString(), started_at: new Date().toISOString(), finished_at: null,
      tasks: [{task: 0, node: 'tele-node', gpus: [0], gpu_milli: 1000, state: 'running',
               exit_code: null, gpu_util_pct: 73, gpu_memory_used_mib: 40960},
              {task: 1, node: 'tele-node', gpus: [3], gpu_milli: 1000, state: 'running',
               exit_code: null, gpu_util_pct: null, gpu_memory_used_mib: null}],
      events: [{time: new Date().toISOString(), type: 'Bound', message: '2 task(s) on tele-node'}]});
  )");
  EXPECT_EQ(c.Eval("[...document.querySelectorAll('#detail td.util')].map(td => "
                   "td.innerText).join(',')"),
            "73%,\u2013");
  EXPECT_TRUE(c.WaitUntil(ShowsAll("#detail", {"40 GiB"}), std::chrono::seconds(10)));
  Shot("telemetry-workload");
  EXPECT_TRUE(c.problems().empty()) << Join(c.problems());
}

}  // namespace
}  // namespace gpuorch::cptest
