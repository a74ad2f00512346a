// Observability against the real tools: the live server's /metrics under `promtool check
// metrics`, the shipped Prometheus configuration and alerts under `promtool check` and
// `promtool test rules`, every metric name a dashboard or alert uses checked against what
// the server emits (or, for DCGM_FI_* names, what the agents' exporter documents), and a
// real Prometheus scraping a live cluster and evaluating every dashboard expression.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "fixture.h"

namespace gpuorch::cptest {
namespace {

const std::string kSource = GPUORCH_SOURCE_DIR;

// dcgm-exporter's names that the GPU dashboards and alerts use, as the agents' exporter
// documents them (docs/operations.md, "GPU telemetry"; issue 9 §1).
const std::set<std::string> kDcgmNames = {"DCGM_FI_DEV_GPU_UTIL",
                                          "DCGM_FI_DEV_MEM_COPY_UTIL",
                                          "DCGM_FI_DEV_FB_USED",
                                          "DCGM_FI_DEV_FB_FREE",
                                          "DCGM_FI_DEV_POWER_USAGE",
                                          "DCGM_FI_DEV_GPU_TEMP",
                                          "DCGM_FI_DEV_SM_CLOCK",
                                          "DCGM_FI_DEV_XID_ERRORS",
                                          "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
                                          "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
                                          "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"};

// Two queues (prod with a guarantee and a limit), two 8-GPU nodes, and work that leaves
// GPUs allocated, free and wanted: the exposition then has every family with samples.
constexpr const char* kQueues = R"(queues:
  - name: prod
    quota: [{model: H100-80GB, guaranteed: 8, limit: 12}]
  - name: dev
)";

std::string Which(const std::string& tool) {
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
    const std::string p = std::string(dir) + "/" + tool;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// Runs `tool args...` (found on the usual paths); a missing tool fails the test with how
// to get it (scripts/lib.sh installs it).
CliResult Tool(const std::string& tool, const std::vector<std::string>& args) {
  const std::string path = Which(tool);
  if (path.empty()) {
    ADD_FAILURE() << tool << " not found: install Debian's prometheus package (scripts/lib.sh)";
    return {};
  }
  return RunCli(path, args);
}

std::unique_ptr<Cluster> BusyCluster() {
  auto c = StartCluster(kQueues, {"a", "b"});
  // 8 GPUs for prod and 4 for dev run; a 3 x 2-GPU gang of dev cannot start on the 4 left.
  // Emulated GPUs read what their tasks declare: prod's at 73%, dev's notebook at 2%.
  Json train = Cluster::ShellJob("train", "prod", 8, "exec sleep 600");
  train["env"] = {{"GPUORCH_EMULATE_GPU_UTIL", "73"}};
  Json notebook = Cluster::ShellJob("notebook", "dev", 4, "exec sleep 600");
  notebook["env"] = {{"GPUORCH_EMULATE_GPU_UTIL", "2"}};
  EXPECT_GT(c->Submit(train), 0);
  EXPECT_GT(c->Submit(notebook), 0);
  Json gang = Cluster::ShellJob("gang", "dev", 2, "exec sleep 600");
  gang["tasks"] = 3;
  gang["kind"] = "training";
  EXPECT_GT(c->Submit(gang), 0);
  // An inference service at zero replicas (it takes no GPU): the service gauges have series.
  Json service = Cluster::ShellJob("chat", "dev", 1, "exec sleep 600");
  service["kind"] = "inference";
  service["replicas"] = "0:2";
  EXPECT_GT(c->Submit(service), 0);
  // The engine gauges follow within a second or so of a cycle.
  EXPECT_TRUE(WaitFor([&] {
    const std::string m = c->api().Get("/metrics").body;
    return m.find("gpuorch_gpus{model=\"H100-80GB\",state=\"allocated\"} 12") !=
               std::string::npos &&
           m.find("gpuorch_queue_gpu_utilization{queue=\"prod\"} 73") != std::string::npos;
  })) << c->api().Get("/metrics").body;
  return c;
}

// The agents' GPU exporters, as host:port ("metrics_url" of GET /v1/nodes).
std::vector<std::string> AgentExporters(Cluster& c) {
  std::vector<std::string> out;
  const Json nodes = c.api().Get("/v1/nodes").json;
  for (const Json& n : nodes["nodes"]) {
    std::string url = n.value("metrics_url", "");
    EXPECT_EQ(url.rfind("http://", 0), 0u) << n.dump();
    if (url.rfind("http://", 0) != 0) continue;
    url = url.substr(7);
    out.push_back(url.substr(0, url.find('/')));
  }
  return out;
}

// Family names in an exposition ("# TYPE name type"), with their types.
std::map<std::string, std::string> Families(const std::string& text) {
  std::map<std::string, std::string> out;
  static const std::regex kType("^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) ([a-z]+)$");
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_match(line, m, kType)) out[m[1]] = m[2];
  }
  return out;
}

// Metric names a PromQL expression or a rules file mentions (ours and DCGM's).
std::set<std::string> MetricNames(const std::string& text) {
  std::set<std::string> out;
  static const std::regex kName("\\b(gpuorch_[a-z0-9_]+|DCGM_FI_[A-Z0-9_]+)\\b");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kName);
       it != std::sregex_iterator(); ++it) {
    out.insert((*it)[1]);
  }
  return out;
}

// True when `name` is a series of a family in `families` (a histogram's _bucket, _sum,
// _count included).
bool Emitted(const std::map<std::string, std::string>& families, const std::string& name) {
  if (families.count(name)) return true;
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string s = suffix;
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
      auto it = families.find(name.substr(0, name.size() - s.size()));
      if (it != families.end() && it->second == "histogram") return true;
    }
  }
  return false;
}

struct Dashboard {
  std::string file;
  Json json;
  std::vector<std::string> exprs;      // every panel target's PromQL
  std::vector<std::string> variables;  // every template query (label_values(...))
};

std::vector<Dashboard> Dashboards() {
  std::vector<Dashboard> out;
  for (const auto& e : std::filesystem::directory_iterator(kSource + "/deploy/grafana")) {
    if (e.path().extension() != ".json") continue;
    Dashboard d;
    d.file = e.path().filename().string();
    d.json = Json::parse(ReadFile(e.path().string()), nullptr, false);
    if (d.json.is_discarded()) {
      ADD_FAILURE() << d.file << ": not JSON";
      continue;
    }
    for (const Json& p : d.json.value("panels", Json::array())) {
      for (const Json& t : p.value("targets", Json::array()))
        d.exprs.push_back(t.value("expr", ""));
    }
    for (const Json& v : d.json["templating"].value("list", Json::array())) {
      if (v.value("type", "") == "query") d.variables.push_back(v["query"].value("query", ""));
    }
    out.push_back(std::move(d));
  }
  std::sort(out.begin(), out.end(),
            [](const Dashboard& a, const Dashboard& b) { return a.file < b.file; });
  return out;
}

// Grafana's variables as the test evaluates them: every value (".*") and fixed intervals.
std::string Expand(std::string expr) {
  for (const auto& [from, to] :
       std::vector<std::pair<std::string, std::string>>{{"$__rate_interval", "30s"},
                                                        {"$__interval", "15s"},
                                                        {"$__range", "2m"},
                                                        {"$model", ".*"},
                                                        {"$queue", ".*"},
                                                        {"$node", ".*"},
                                                        {"$service", ".*"},
                                                        {"${instance}", ".*"},
                                                        {"${gpu}", ".*"}}) {
    for (size_t at = expr.find(from); at != std::string::npos; at = expr.find(from, at)) {
      expr.replace(at, from.size(), to);
      at += to.size();
    }
  }
  return expr;
}

std::string UrlEncode(const std::string& s) {
  std::string out;
  char buf[4];
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      std::snprintf(buf, sizeof(buf), "%%%02X", ch);
      out += buf;
    }
  }
  return out;
}

TEST(Observability, LiveMetricsPassPromtoolAndShowTheCluster) {
  auto c = BusyCluster();
  HttpResult r = c->api().Get("/metrics");
  ASSERT_EQ(r.status, 200);
  const std::string file = c->dir() + "/metrics.txt";
  WriteFile(file, r.body);
  ASSERT_FALSE(Which("promtool").empty()) << "promtool not found: Debian's prometheus package";
  CliResult lint = RunCli("/bin/sh", {"-c", Which("promtool") + " check metrics < " + file});
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;
  EXPECT_EQ(lint.out + lint.err, "") << r.body;

  const auto families = Families(r.body);
  for (const char* name :
       {"gpuorch_gpus", "gpuorch_gpus_allocated", "gpuorch_gpus_idle_while_waiting",
        "gpuorch_gpu_idle_while_waiting_seconds_total", "gpuorch_fragmented_gpus",
        "gpuorch_queue_gpus_used", "gpuorch_queue_gpus_guaranteed", "gpuorch_queue_gpus_limit",
        "gpuorch_queue_gpus_fair_share", "gpuorch_queue_allocated_gpu_seconds_total",
        "gpuorch_workloads_pending", "gpuorch_queue_wait_seconds", "gpuorch_preemptions_total",
        "gpuorch_cycle_seconds", "gpuorch_api_request_duration_seconds",
        "gpuorch_store_commit_seconds", "gpuorch_node_heartbeat_age_seconds", "gpuorch_node_up"}) {
    EXPECT_TRUE(families.count(name)) << name;
  }
  for (const char* sample : {
           "gpuorch_gpus{model=\"H100-80GB\",state=\"free\"} 4\n",
           "gpuorch_gpus{model=\"H100-80GB\",state=\"down\"} 0\n",
           "gpuorch_queue_gpus_used{model=\"H100-80GB\",queue=\"prod\"} 8\n",
           "gpuorch_queue_gpus_used{model=\"H100-80GB\",queue=\"dev\"} 4\n",
           "gpuorch_queue_gpus_guaranteed{model=\"H100-80GB\",queue=\"prod\"} 8\n",
           "gpuorch_queue_gpus_limit{model=\"H100-80GB\",queue=\"prod\"} 12\n",
           "gpuorch_node_up{node=\"a\"} 1\n",
       }) {
    EXPECT_NE(r.body.find(sample), std::string::npos) << sample << r.body;
  }
  // The gang waits, not held by quota (dev has no guarantee to wait for, and may borrow).
  EXPECT_EQ(r.body.find("gpuorch_workloads_pending{queue=\"dev\",reason=\"WaitingForQuota\"} 1"),
            std::string::npos)
      << r.body;
  // Each agent's GPU exporter passes promtool as well, and attributes the busy GPUs.
  for (const std::string& exporter : AgentExporters(*c)) {
    Api agent("http://" + exporter);
    HttpResult m = agent.Get("/metrics");
    ASSERT_EQ(m.status, 200) << exporter;
    const std::string agent_file = c->dir() + "/agent-metrics.txt";
    WriteFile(agent_file, m.body);
    // Clean but for the one thing dcgm-exporter compatibility forces: its camelCase label
    // `modelName` (docs/observability.md). promtool then exits 3 (lint problems only).
    CliResult agent_lint =
        RunCli("/bin/sh", {"-c", Which("promtool") + " check metrics < " + agent_file});
    std::istringstream lines(agent_lint.out + agent_lint.err);
    size_t camel = 0;
    for (std::string line; std::getline(lines, line);) {
      if (line.find("label names should be written in 'snake_case' not 'camelCase'") !=
          std::string::npos) {
        ++camel;
        continue;
      }
      ADD_FAILURE() << "promtool on the agent's exposition: " << line;
    }
    EXPECT_TRUE(agent_lint.exit_code == 0 || (agent_lint.exit_code == 3 && camel > 0))
        << agent_lint.exit_code;
    // Without modelName the exposition is lint-clean.
    const std::string stripped = c->dir() + "/agent-metrics-stripped.txt";
    WriteFile(stripped, std::regex_replace(m.body, std::regex(",?modelName=\"[^\"]*\""), ""));
    CliResult clean = RunCli("/bin/sh", {"-c", Which("promtool") + " check metrics < " + stripped});
    EXPECT_EQ(clean.exit_code, 0) << clean.out << clean.err;
    EXPECT_EQ(clean.out + clean.err, "");
    for (const std::string& name : kDcgmNames) {
      EXPECT_NE(m.body.find("# TYPE " + name + " "), std::string::npos) << name;
    }
  }
  // Routes are patterns, never raw paths with ids.
  EXPECT_NE(r.body.find("route=\"/v1/workloads\""), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("route=\"/v1/agents/a/"), std::string::npos) << r.body;
}

TEST(Observability, ShippedConfigsPassPromtool) {
  const std::string dir = kSource + "/deploy/prometheus/";
  CliResult config = Tool("promtool", {"check", "config", dir + "prometheus.yml"});
  EXPECT_EQ(config.exit_code, 0) << config.out << config.err;
  CliResult rules = Tool("promtool", {"check", "rules", dir + "alerts.yml"});
  EXPECT_EQ(rules.exit_code, 0) << rules.out << rules.err;
  CliResult tests = Tool("promtool", {"test", "rules", dir + "alerts_test.yml"});
  EXPECT_EQ(tests.exit_code, 0) << tests.out << tests.err;
}

TEST(Observability, DashboardsAndAlertsUseOnlyEmittedNamesAndEvaluateInPrometheus) {
  const std::vector<Dashboard> dashboards = Dashboards();
  ASSERT_EQ(dashboards.size(), 5u);  // cluster, gpus, scheduler, services, tenants
  auto c = BusyCluster();
  const auto families = Families(c->api().Get("/metrics").body);
  // The services dashboard also reads `gpuorch gateway`'s own exposition (docs/inference.md):
  // those names must be the gateway's (InferenceTest scrapes a running gateway for them).
  const std::string gateway_source = ReadFile(kSource + "/src/gateway/gateway.cc");
  auto gateway_only = [&](const std::string& name) {
    if (Emitted(families, name)) return false;
    // A whole name: not the tail of a longer one.
    for (size_t at = gateway_source.find(name); at != std::string::npos;
         at = gateway_source.find(name, at + 1)) {
      const char before = at > 0 ? gateway_source[at - 1] : ' ';
      if (!std::isalnum(static_cast<unsigned char>(before)) && before != '_') return true;
    }
    return false;
  };

  auto check_names = [&](const std::string& where, const std::string& text) {
    for (const std::string& name : MetricNames(text)) {
      if (name.rfind("DCGM_", 0) == 0) {
        EXPECT_TRUE(kDcgmNames.count(name)) << where << ": " << name << " is no documented name";
      } else if (gateway_only(name)) {
        EXPECT_EQ(where, "services.json") << name << " is the gateway's, not the server's";
      } else {
        EXPECT_TRUE(Emitted(families, name)) << where << ": the server emits no " << name;
      }
    }
  };
  for (const Dashboard& d : dashboards) {
    EXPECT_GE(d.json.value("schemaVersion", 0), 36) << d.file;
    bool ds_variable = false;
    for (const Json& v : d.json["templating"]["list"]) {
      ds_variable |= v.value("type", "") == "datasource" && v.value("name", "") == "datasource";
    }
    EXPECT_TRUE(ds_variable) << d.file << ": no datasource template variable";
    for (const Json& p : d.json["panels"]) {
      if (p.value("type", "") == "row") continue;
      EXPECT_EQ(p["datasource"].value("uid", ""), "${datasource}") << d.file << " " << p["title"];
    }
    for (const std::string& e : d.exprs) check_names(d.file, e);
    for (const std::string& v : d.variables) check_names(d.file, v);
  }
  check_names("alerts.yml", ReadFile(kSource + "/deploy/prometheus/alerts.yml"));

  // A real Prometheus scraping the server every second.
  const std::string prom = Which("prometheus");
  ASSERT_FALSE(prom.empty()) << "prometheus not found: Debian's prometheus (scripts/lib.sh)";
  const int port = FreePort();
  const std::string target = c->url().substr(c->url().find("://") + 3);
  std::string agents;
  for (const std::string& a : AgentExporters(*c))
    agents += (agents.empty() ? "\"" : ", \"") + a + "\"";
  WriteFile(c->dir() + "/prometheus.yml",
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "rule_files: [\"" +
                kSource +
                "/deploy/prometheus/alerts.yml\"]\n"
                "scrape_configs:\n"
                "  - job_name: gpuorch-server\n"
                "    static_configs: [{targets: [\"" +
                target +
                "\"]}]\n"
                "  - job_name: gpuorch-agents\n"
                "    static_configs: [{targets: [" +
                agents + "]}]\n");
  Process p({prom, "--config.file=" + c->dir() + "/prometheus.yml",
             "--storage.tsdb.path=" + c->dir() + "/tsdb",
             "--web.listen-address=127.0.0.1:" + std::to_string(port), "--log.level=warn"},
            {}, c->dir() + "/prometheus.log");
  Api api("http://127.0.0.1:" + std::to_string(port));
  auto query = [&](const std::string& q) {
    return api.Get("/api/v1/query?query=" + UrlEncode(q)).json;
  };
  // Enough scrapes for rate() over 30 s windows (two samples at least).
  ASSERT_TRUE(WaitFor(
      [&] {
        Json j = query("count_over_time(gpuorch_cycle_seconds_count[1m]) >= 3");
        return j.is_object() && !j["data"]["result"].empty();
      },
      60s, 200ms))
      << ReadFile(c->dir() + "/prometheus.log");
  for (const Dashboard& d : dashboards) {
    for (const std::string& e : d.exprs) {
      Json j = query(Expand(e));
      ASSERT_TRUE(j.is_object()) << d.file << ": " << e;
      EXPECT_EQ(j.value("status", ""), "success") << d.file << ": " << e << "\n" << j.dump();
      // No gateway runs here: its series evaluate, empty.
      bool gateway = false;
      for (const std::string& name : MetricNames(e)) gateway |= gateway_only(name);
      if (!gateway) EXPECT_FALSE(j["data"]["result"].empty()) << d.file << ": " << e << " is empty";
    }
  }
  // Utilization attributed to a queue is what its emulated tasks declared: per GPU through
  // the exporters' Kubernetes labels, and in the server's own gauge.
  auto value = [&](const std::string& q) {
    Json j = query(q);
    if (!j.is_object() || j["data"]["result"].size() != 1) return -1.0;
    return std::stod(j["data"]["result"][0]["value"][1].get<std::string>());
  };
  EXPECT_DOUBLE_EQ(value("avg by (namespace) (DCGM_FI_DEV_GPU_UTIL{namespace=\"prod\"})"), 73);
  EXPECT_DOUBLE_EQ(value("count(DCGM_FI_DEV_GPU_UTIL{namespace=\"prod\"})"), 8);
  EXPECT_DOUBLE_EQ(
      value("avg by (namespace) (DCGM_FI_DEV_GPU_UTIL{namespace=\"dev\",pod=~\"notebook-.*\"})"),
      2);
  EXPECT_DOUBLE_EQ(value("gpuorch_queue_gpu_utilization{queue=\"prod\"}"), 73);
  EXPECT_DOUBLE_EQ(value("gpuorch_queue_gpu_utilization{queue=\"dev\"}"), 2);
  // NVIDIA's dashboard 12239, unchanged: its variables and its panels' queries over the
  // fields the exporter has (its Tensor Core panel needs DCGM's profiling fields: no data).
  for (const std::string& v : {"instance", "gpu"}) {
    Json j = api.Get("/api/v1/label/" + v + "/values?match[]=DCGM_FI_DEV_GPU_TEMP").json;
    EXPECT_FALSE(j["data"].empty()) << v;
  }
  for (const char* q :
       {"DCGM_FI_DEV_GPU_TEMP{instance=~\"${instance}\", gpu=~\"${gpu}\"}",
        "avg(DCGM_FI_DEV_GPU_TEMP{instance=~\"${instance}\", gpu=~\"${gpu}\"})",
        "DCGM_FI_DEV_POWER_USAGE{instance=~\"${instance}\", gpu=~\"${gpu}\"}",
        "sum(DCGM_FI_DEV_POWER_USAGE{instance=~\"${instance}\", gpu=~\"${gpu}\"})",
        "DCGM_FI_DEV_SM_CLOCK{instance=~\"${instance}\", gpu=~\"${gpu}\"} * 1000000",
        "DCGM_FI_DEV_GPU_UTIL{instance=~\"${instance}\", gpu=~\"${gpu}\"}",
        "DCGM_FI_DEV_FB_USED{instance=~\"${instance}\", gpu=~\"${gpu}\"}"}) {
    Json j = query(Expand(q));
    EXPECT_FALSE(j["data"]["result"].empty()) << q << "\n" << j.dump();
  }
  Json rules = api.Get("/api/v1/rules").json;
  ASSERT_TRUE(rules.is_object());
  size_t loaded = 0;
  for (const Json& g : rules["data"]["groups"]) {
    for (const Json& r : g["rules"]) {
      loaded++;
      EXPECT_NE(r.value("health", ""), "err") << r.dump();
    }
  }
  EXPECT_EQ(loaded, 6u);
}

// A GPU fault on a real agent (an emulated task that injects XID 79): the agent marks the
// GPU unhealthy, the server shows it, tells the engine, and the GPU takes no new work while
// the other GPU does; the workload on it hears of it.
TEST(Observability, AnXidOnANodeMarksItsGpuUnhealthyAndPlacementAvoidsIt) {
  auto c = StartCluster("queues: [{name: default}]\n", {});
  ASSERT_TRUE(c->StartAgent("a", "2xH100-80GB"));
  Json faulty = Cluster::ShellJob("faulty", "default", 1, "exec sleep 600");
  faulty["env"] = {{"GPUORCH_EMULATE_XID", "79"}};
  const int64_t id = c->Submit(faulty);
  ASSERT_GT(id, 0);
  ASSERT_TRUE(c->WaitState(id, "Running"));
  const int bad = c->Workload(id)["tasks"][0]["gpus"][0].get<int>();
  auto gpu = [&](int j) {
    const Json nodes = c->api().Get("/v1/nodes").json;
    return nodes["nodes"][0]["gpus"][static_cast<size_t>(j)];
  };
  ASSERT_TRUE(WaitFor([&] { return gpu(bad).value("healthy", true) == false; })) << gpu(bad).dump();
  EXPECT_EQ(gpu(bad)["health"], "XID 79");
  EXPECT_EQ(gpu(1 - bad)["healthy"], true);
  CliResult table = c->Cli({"nodes", "--gpus"});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("XID 79"), std::string::npos) << table.out;
  bool told = false;
  const Json events = c->Workload(id)["events"];
  for (const Json& e : events) told |= e.value("type", "") == "GpuUnhealthy";
  EXPECT_TRUE(told) << events.dump();
  // Once the faulty task is gone its GPU stays out of use: the next job takes the other GPU,
  // the one after waits.
  ASSERT_EQ(c->Cli({"cancel", std::to_string(id)}).exit_code, 0);
  ASSERT_TRUE(c->WaitState(id, "Cancelled"));
  const int64_t next = c->Submit(Cluster::ShellJob("next", "default", 1, "exec sleep 600"));
  ASSERT_TRUE(c->WaitState(next, "Running"));
  EXPECT_EQ(c->Workload(next)["tasks"][0]["gpus"], Json({1 - bad}));
  const int64_t after = c->Submit(Cluster::ShellJob("after", "default", 1, "exec sleep 600"));
  ASSERT_TRUE(WaitFor([&] { return c->Workload(after).value("reason", "") != ""; }))
      << c->Workload(after).dump();
  EXPECT_EQ(c->Workload(after)["state"], "Pending") << c->Workload(after).dump();
  EXPECT_TRUE(WaitFor([&] {
    return c->api()
               .Get("/metrics")
               .body.find("gpuorch_gpus{model=\"H100-80GB\",state=\"unhealthy\"} 1") !=
           std::string::npos;
  })) << c->api().Get("/metrics").body;
}

}  // namespace
}  // namespace gpuorch::cptest
