#include "cli/client/usage_command.h"

#include <cinttypes>
#include <cstdio>

#include "cli/client/api_client.h"
#include "cli/client/table.h"
#include "cli/client/views.h"

namespace gpuorch::cli {
namespace {

using nlohmann::json;

int64_t Seconds(const json& row) {
  const auto it = row.find("allocated_gpu_seconds");
  return it != row.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

// GPU-seconds as GPU-hours with `decimals` (2 or 4) decimals, rounded half up in integers.
std::string Hours(int64_t seconds, int decimals) {
  const int64_t scale = decimals == 4 ? 10000 : 100;
  const int64_t units = (seconds * scale + 1800) / 3600;
  char buf[48];
  std::snprintf(buf, sizeof buf, "%" PRId64 ".%0*" PRId64, units / scale, decimals, units % scale);
  return buf;
}

std::string Cell(const json& row, const char* key) {
  const auto it = row.find(key);
  if (it == row.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string By(const json& answer) {
  return answer.is_object() && answer.value("by", "") == "user" ? "user" : "queue";
}

}  // namespace

std::string RenderUsageTable(const json& answer) {
  const std::string by = By(answer);
  std::string out = "Allocated GPU-hours by " + by + ", " + answer.value("from", "?") + " to " +
                    answer.value("to", "?") + "\n";
  std::string key = by;
  for (char& c : key) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  Table t({key, "MODEL", "ALLOCATED-GPU-HOURS", "USED-GPU-HOURS", "TASKS"});
  int64_t total = 0;
  for (const json& row : answer.value("rows", json::array())) {
    const std::string used = Cell(row, "used_gpu_hours");
    t.AddRow({Cell(row, by.c_str()), Cell(row, "model"), Hours(Seconds(row), 2),
              used.empty() ? "-" : used, Cell(row, "tasks")});
    total += Seconds(row);
  }
  t.AddRow({"TOTAL", "", Hours(total, 2), "", ""});
  return out + t.Render();
}

std::string RenderUsageCsv(const json& answer) {
  const std::string by = By(answer);
  std::string out = by + ",model,allocated_gpu_seconds,allocated_gpu_hours,used_gpu_hours,tasks\n";
  for (const json& row : answer.value("rows", json::array())) {
    out += CsvField(Cell(row, by.c_str())) + "," + CsvField(Cell(row, "model")) + "," +
           std::to_string(Seconds(row)) + "," + Hours(Seconds(row), 4) + "," +
           CsvField(Cell(row, "used_gpu_hours")) + "," + Cell(row, "tasks") + "\n";
  }
  return out;
}

int RunUsage(const CommonArgs& common, const UsageArgs& args, const Io& io) {
  auto fail = [&io](const Failure& f) {
    io.err << "error: " << f.message << '\n';
    return f.exit_code;
  };
  auto format = ParseOutputFormat(common.output);
  if (!format.ok()) return fail(format.failure());
  auto client = ConnectWithToken(common.server, common.token, common.token_file);
  if (!client.ok()) return fail(client.failure());
  auto answer = client.value()->GetJson(
      "/v1/usage" +
      QueryString({{"from", args.from}, {"to", args.to}, {"by", args.by}, {"queue", args.queue}}));
  if (!answer.ok()) return fail(answer.failure());
  if (args.csv) {
    io.out << RenderUsageCsv(answer.value());
  } else if (format.value() != OutputFormat::kTable) {
    io.out << RenderData(answer.value(), format.value());
  } else {
    io.out << RenderUsageTable(answer.value());
  }
  return kExitOk;
}

}  // namespace gpuorch::cli
