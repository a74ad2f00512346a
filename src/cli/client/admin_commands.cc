#include "cli/client/admin_commands.h"

#include <cctype>
#include <cstdio>
#include <ctime>
#include <functional>
#include <memory>

#include "cli/client/api_client.h"
#include "cli/client/table.h"
#include "cli/client/views.h"

namespace gpuorch::cli {
namespace {

using nlohmann::json;

int Fail(const Failure& f, const Io& io) {
  io.err << "error: " << f.message << '\n';
  return f.exit_code;
}

Outcome<std::unique_ptr<ApiClient>> Connect(const CommonArgs& common) {
  return ConnectWithToken(common.server, common.token, common.token_file, common.ca_file);
}

std::string Str(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return "-";
  if (j[key].is_string())
    return j[key].get<std::string>().empty() ? "-" : j[key].get<std::string>();
  return j[key].dump();
}

std::string Joined(const json& list) {
  std::string out;
  if (!list.is_array()) return "-";
  for (const json& q : list) {
    if (q.is_string()) out += (out.empty() ? "" : ",") + q.get<std::string>();
  }
  return out.empty() ? "-" : out;
}

// JSON or YAML as asked, else `table`.
int Show(const json& answer, const CommonArgs& common, const Io& io,
         const std::function<std::string()>& table) {
  auto format = ParseOutputFormat(common.output);
  if (!format.ok()) return Fail(format.failure(), io);
  if (format.value() != OutputFormat::kTable) {
    io.out << RenderData(answer, format.value());
  } else {
    io.out << table();
  }
  return kExitOk;
}

std::string IsoMs(std::chrono::system_clock::time_point t) {
  const int64_t ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const time_t secs = static_cast<time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

}  // namespace

Outcome<std::string> AuditSince(const std::string& since,
                                std::chrono::system_clock::time_point now) {
  if (since.empty()) return std::string();
  if (auto t = ParseTimestamp(since)) return IsoMs(*t);
  // A duration back from now: digits and one unit.
  size_t digits = 0;
  while (digits < since.size() && std::isdigit(static_cast<unsigned char>(since[digits]))) {
    ++digits;
  }
  const std::string unit = since.substr(digits);
  const int64_t seconds_per[] = {1, 60, 3600, 86400};
  const char* units[] = {"s", "m", "h", "d"};
  if (digits > 0 && digits <= 9) {
    for (int i = 0; i < 4; ++i) {
      if (unit != units[i]) continue;
      const int64_t back = std::stoll(since.substr(0, digits)) * seconds_per[i];
      return IsoMs(now - std::chrono::seconds(back));
    }
  }
  return UsageError("--since: '" + since +
                    "' is neither a time like 2026-12-02T13:00:00Z nor a duration like 30m");
}

int RunTokenCreate(const CommonArgs& common, const TokenCreateArgs& args, const Io& io) {
  json body = {{"name", args.name}, {"role", args.role}};
  if (!args.queues.empty()) body["queues"] = args.queues;
  if (!args.node.empty()) body["node"] = args.node;
  if (!args.default_queue.empty()) body["default_queue"] = args.default_queue;
  auto client = Connect(common);
  if (!client.ok()) return Fail(client.failure(), io);
  auto answer = client.value()->PostJson("/v1/tokens", body);
  if (!answer.ok()) return Fail(answer.failure(), io);
  const json& a = answer.value();
  if (!a.is_object() || !a.contains("token") || !a["token"].is_string()) {
    return Fail({kExitRefused, "the server created a token but its answer has none"}, io);
  }
  auto format = ParseOutputFormat(common.output);
  if (!format.ok()) return Fail(format.failure(), io);
  if (format.value() != OutputFormat::kTable) {
    io.out << RenderData(a, format.value());
    return kExitOk;
  }
  io.out << a["token"].get<std::string>() << '\n';
  io.err << "token " << Str(a, "accessor") << " (" << Str(a, "name") << ", " << Str(a, "role")
         << "): shown only now; store it, e.g. in ~/.config/gpuorch/token (mode 0600)\n";
  return kExitOk;
}

int RunTokenList(const CommonArgs& common, const Io& io) {
  auto client = Connect(common);
  if (!client.ok()) return Fail(client.failure(), io);
  auto answer = client.value()->GetJson("/v1/tokens");
  if (!answer.ok()) return Fail(answer.failure(), io);
  return Show(answer.value(), common, io, [&] {
    Table t({"ACCESSOR", "NAME", "ROLE", "QUEUES", "NODE", "DEFAULT-QUEUE", "AGE", "REVOKED"});
    for (const json& tok : answer.value().value("tokens", json::array())) {
      t.AddRow({Str(tok, "accessor"), Str(tok, "name"), Str(tok, "role"),
                Joined(tok.value("queues", json::array())), Str(tok, "node"),
                Str(tok, "default_queue"), Age(tok.value("created", ""), io.now()),
                tok.contains("revoked") && tok["revoked"].is_string()
                    ? Age(tok["revoked"].get<std::string>(), io.now()) + " ago"
                    : "-"});
    }
    return t.Render();
  });
}

int RunTokenRevoke(const CommonArgs& common, const std::string& accessor, const Io& io) {
  auto client = Connect(common);
  if (!client.ok()) return Fail(client.failure(), io);
  auto answer =
      client.value()->PostJson("/v1/tokens/" + UrlEncode(accessor) + "/revoke", json::object());
  if (!answer.ok()) return Fail(answer.failure(), io);
  io.out << "token " << accessor << " revoked\n";
  return kExitOk;
}

int RunAudit(const CommonArgs& common, const std::string& since, int64_t limit, const Io& io) {
  auto from = AuditSince(since, io.now());
  if (!from.ok()) return Fail(from.failure(), io);
  auto client = Connect(common);
  if (!client.ok()) return Fail(client.failure(), io);
  auto answer = client.value()->GetJson(
      "/v1/audit" + QueryString({{"since", from.value()}, {"limit", std::to_string(limit)}}));
  if (!answer.ok()) return Fail(answer.failure(), io);
  return Show(answer.value(), common, io, [&] {
    Table t(
        {"TIME", "ACCESSOR", "ROLE", "VERB", "RESOURCE", "QUEUE", "DECISION", "STATUS", "SOURCE"});
    for (const json& e : answer.value().value("entries", json::array())) {
      t.AddRow({Str(e, "time"), Str(e, "accessor"), Str(e, "role"), Str(e, "verb"),
                Str(e, "resource"), Str(e, "queue"), Str(e, "decision"), Str(e, "status"),
                Str(e, "source")});
    }
    std::string out = t.Render();
    if (answer.value().value("truncated", false)) {
      out += "(only the last " + std::to_string(limit) + " entries; raise --limit)\n";
    }
    return out;
  });
}

}  // namespace gpuorch::cli
