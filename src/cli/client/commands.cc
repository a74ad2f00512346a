#include "cli/client/commands.h"

#include <strings.h>

#include <map>

#include "cli/client/api_client.h"
#include "cli/client/views.h"

namespace gpuorch::cli {
namespace {

using nlohmann::json;

int Fail(const Failure& f, const Io& io) {
  io.err << "error: " << f.message << '\n';
  return f.exit_code;
}

// The list answers wrap their array in an object ({"workloads": [...]}); tables want the
// array, -o json/yaml print the answer as the server gave it.
int Show(const json& answer, const char* list_key, const CommonArgs& common, const Io& io,
         const std::function<std::string(const json&)>& table) {
  auto format = ParseOutputFormat(common.output);
  if (!format.ok()) return Fail(format.failure(), io);
  if (format.value() != OutputFormat::kTable) {
    io.out << RenderData(answer, format.value());
    return kExitOk;
  }
  if (list_key == nullptr) {
    io.out << table(json::array({answer}));
  } else {
    io.out << table(answer.contains(list_key) ? answer[list_key] : json::array());
  }
  return kExitOk;
}

Outcome<std::unique_ptr<ApiClient>> Connect(const CommonArgs& common) {
  return ConnectWithToken(common.server, common.token, common.token_file, common.ca_file);
}

// Workloads per request of `gpuorch get`'s list.
constexpr int kListPage = 1000;

std::string WorkloadPath(int64_t id) { return "/v1/workloads/" + std::to_string(id); }

}  // namespace

int RunSubmit(const CommonArgs& common, const SubmitFlags& flags, const Io& io) {
  json base = json::object();
  if (flags.spec_file) {
    auto spec = LoadSpecFile(*flags.spec_file);
    if (!spec.ok()) return Fail(spec.failure(), io);
    base = std::move(spec).value();
  }
  auto body = BuildSubmitBody(flags, std::move(base));
  if (!body.ok()) return Fail(body.failure(), io);
  auto client = Connect(common);
  if (!client.ok()) return Fail(client.failure(), io);
  auto answer = client.value()->PostJson("/v1/workloads", body.value());
  if (!answer.ok()) return Fail(answer.failure(), io);
  const json& id =
      answer.value().is_object() && answer.value().contains("id") ? answer.value()["id"] : json();
  if (!id.is_number_integer()) {
    return Fail({kExitRefused, "the server accepted the workload but its answer has no id"}, io);
  }
  // The id alone, so that scripts can write ID=$(gpuorch submit ...).
  io.out << id.get<int64_t>() << '\n';
  return kExitOk;
}

int RunGet(const CommonArgs& common, const GetArgs& args, const Io& io) {
  auto client = Connect(common);
  if (!client.ok()) return Fail(client.failure(), io);
  const auto now = io.now();
  auto table = [now](const json& ws) { return RenderWorkloadTable(ws, now); };
  if (args.id) {
    auto w = client.value()->GetJson(WorkloadPath(*args.id));
    if (!w.ok()) return Fail(w.failure(), io);
    return Show(w.value(), nullptr, common, io, table);
  }
  // Pages of kListPage, following "continue" (kubectl's --chunk-size), so that no single
  // answer holds a hundred thousand workloads.
  json all = {{"workloads", json::array()}};
  std::string cursor;
  do {
    const std::string query = QueryString({{"queue", args.queue},
                                           {"state", args.state},
                                           {"kind", args.kind},
                                           {"limit", std::to_string(kListPage)},
                                           {"continue", cursor}});
    auto page = client.value()->GetJson("/v1/workloads" + query);
    if (!page.ok()) return Fail(page.failure(), io);
    const json& p = page.value();
    if (!p.is_object() || !p.contains("workloads") || !p["workloads"].is_array()) {
      return Show(p, "workloads", common, io, table);  // Show names what is wrong with it
    }
    for (const json& w : p["workloads"]) all["workloads"].push_back(w);
    const std::string next =
        p.contains("continue") && p["continue"].is_string() ? p["continue"].get<std::string>() : "";
    if (!next.empty() && next == cursor) {
      return Fail({kExitRefused, "the server's list did not advance past " + next}, io);
    }
    cursor = next;
  } while (!cursor.empty());
  return Show(all, "workloads", common, io, table);
}

int RunDescribe(const CommonArgs& common, int64_t id, const Io& io) {
  auto client = Connect(common);
  if (!client.ok()) return Fail(client.failure(), io);
  auto w = client.value()->GetJson(WorkloadPath(id));
  if (!w.ok()) return Fail(w.failure(), io);
  io.out << RenderDescribe(w.value(), io.now());
  return kExitOk;
}

int RunScale(const CommonArgs& common, int64_t id, std::optional<int64_t> replicas, const Io& io) {
  auto client = Connect(common);
  if (!client.ok()) return Fail(client.failure(), io);
  const json body = replicas ? json{{"replicas", *replicas}} : json{{"auto", true}};
  auto answer = client.value()->PostJson(WorkloadPath(id) + "/scale", body);
  if (!answer.ok()) {
    Failure f = answer.failure();
    f.message = "service " + std::to_string(id) + ": " + f.message;
    return Fail(f, io);
  }
  if (replicas) {
    io.out << "service " << id << " pinned at " << *replicas << " replicas (autoscaling off)\n";
  } else {
    io.out << "service " << id << " autoscaled\n";
  }
  return kExitOk;
}

int RunLoad(const CommonArgs& common, int64_t id, double in_flight, const Io& io) {
  auto client = Connect(common);
  if (!client.ok()) return Fail(client.failure(), io);
  auto answer =
      client.value()->PostJson(WorkloadPath(id) + "/load", json{{"in_flight", in_flight}});
  if (!answer.ok()) {
    Failure f = answer.failure();
    f.message = "service " + std::to_string(id) + ": " + f.message;
    return Fail(f, io);
  }
  const json& a = answer.value();
  io.out << "service " << id << ": " << in_flight << " in flight reported; desired "
         << (a.is_object() && a.contains("desired") ? a["desired"].dump() : "?") << " replicas\n";
  return kExitOk;
}

int RunCancel(const CommonArgs& common, const std::vector<int64_t>& ids, const Io& io) {
  auto client = Connect(common);
  if (!client.ok()) return Fail(client.failure(), io);
  int rc = kExitOk;
  for (int64_t id : ids) {
    auto answer = client.value()->PostJson(WorkloadPath(id) + "/cancel", json::object());
    if (answer.ok()) {
      io.out << "workload " << id << " cancelled\n";
      continue;
    }
    Failure f = answer.failure();
    f.message = "workload " + std::to_string(id) + ": " + f.message;
    rc = Fail(f, io);
    if (rc == kExitUnreachable) break;
  }
  return rc;
}

int RunLogs(const CommonArgs& common, int64_t id, int64_t task, const std::string& stream,
            int64_t offset, int64_t tail, const Io& io) {
  auto client = Connect(common);
  if (!client.ok()) return Fail(client.failure(), io);
  std::vector<std::pair<std::string, std::string>> params = {{"task", std::to_string(task)},
                                                             {"stream", stream}};
  if (offset >= 0) params.emplace_back("offset", std::to_string(offset));
  if (tail >= 0) params.emplace_back("tail", std::to_string(tail));
  std::multimap<std::string, std::string> headers;
  auto text = client.value()->GetText(WorkloadPath(id) + "/logs" + QueryString(params), &headers);
  if (!text.ok()) return Fail(text.failure(), io);
  io.out << text.value();
  auto header = [&headers](const char* name) {
    for (const auto& [k, v] : headers) {
      if (strcasecmp(k.c_str(), name) == 0) return v;
    }
    return std::string();
  };
  if (header("X-Gpuorch-Log-Truncated") == "true") {
    const std::string start = header("X-Gpuorch-Log-Offset");
    io.err << "gpuorch: not the whole log: bytes " << start << ".."
           << std::stoll(start.empty() ? "0" : start) + static_cast<int64_t>(text.value().size())
           << " of " << header("X-Gpuorch-Log-Size")
           << " shown (the server sends at most its max_log_bytes; --offset or --tail-bytes pick "
              "the part)\n";
  }
  return kExitOk;
}

int RunQueues(const CommonArgs& common, const std::string& name, const Io& io) {
  auto client = Connect(common);
  if (!client.ok()) return Fail(client.failure(), io);
  auto answer =
      client.value()->GetJson(name.empty() ? "/v1/queues" : "/v1/queues/" + UrlEncode(name));
  if (!answer.ok()) return Fail(answer.failure(), io);
  return Show(answer.value(), name.empty() ? "queues" : nullptr, common, io, RenderQueueTable);
}

int RunNodes(const CommonArgs& common, const NodesArgs& args, const Io& io) {
  auto client = Connect(common);
  if (!client.ok()) return Fail(client.failure(), io);
  std::vector<std::pair<std::string, std::string>> params;
  if (args.limit > 0) params.emplace_back("limit", std::to_string(args.limit));
  if (args.limit > 0 && !args.after.empty()) params.emplace_back("after", args.after);
  auto answer = client.value()->GetJson("/v1/nodes" + QueryString(params));
  if (!answer.ok()) return Fail(answer.failure(), io);
  const auto now = io.now();
  const json& page = answer.value();
  if (args.gpus) {
    return Show(page, "nodes", common, io,
                [&page](const json& ns) { return RenderGpuTable(ns) + RenderNextPage(page); });
  }
  return Show(page, "nodes", common, io, [now, &page](const json& ns) {
    return RenderNodeSummary(page) + "\n" + RenderNodeTable(ns, now) + RenderNextPage(page);
  });
}

int RunDrain(const CommonArgs& common, const std::string& node, bool drain, const Io& io) {
  auto client = Connect(common);
  if (!client.ok()) return Fail(client.failure(), io);
  const std::string path = "/v1/nodes/" + UrlEncode(node) + (drain ? "/drain" : "/undrain");
  auto answer = client.value()->PostJson(path, json::object());
  if (!answer.ok()) return Fail(answer.failure(), io);
  io.out << "node " << node << (drain ? " drained\n" : " undrained\n");
  return kExitOk;
}

int RunPrometheusTargets(const CommonArgs& common, int port, const Io& io) {
  auto client = Connect(common);
  if (!client.ok()) return Fail(client.failure(), io);
  auto answer = client.value()->GetJson("/v1/nodes");
  if (!answer.ok()) return Fail(answer.failure(), io);
  const json& page = answer.value();
  io.out << RenderPrometheusTargets(page.contains("nodes") ? page["nodes"] : json::array(), port);
  return kExitOk;
}

}  // namespace gpuorch::cli
