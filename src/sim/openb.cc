#include "sim/openb.h"

#include <charconv>
#include <fstream>
#include <sstream>

namespace gpuorch::sim {

using core::Result;
using core::Status;

namespace {

// Splits one CSV line on commas. The openb files have no quoting.
std::vector<std::string_view> SplitLine(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t comma = line.find(',', start);
    if (comma == std::string_view::npos) {
      out.push_back(line.substr(start));
      return out;
    }
    out.push_back(line.substr(start, comma - start));
    start = comma + 1;
  }
}

// A CSV table read row by row, with columns addressed by header name.
class Table {
 public:
  Table(std::string_view csv, std::string_view file) : csv_(csv), file_(file) {}

  // Reads the header and checks that every required column is present.
  Status Open(const std::vector<std::string_view>& required) {
    std::string_view header;
    if (!NextLine(header)) return Error(1, 0, "empty file, expected a header line");
    header_ = SplitLine(header);
    for (std::string_view name : required) {
      if (Column(name) < 0) return Error(line_no_, 0, "missing column '" + std::string(name) + "'");
    }
    return Status::Ok();
  }

  int Column(std::string_view name) const {
    for (size_t i = 0; i < header_.size(); ++i) {
      if (header_[i] == name) return static_cast<int>(i);
    }
    return -1;
  }

  // Advances to the next non-empty row; false at the end.
  Result<bool> Next() {
    std::string_view line;
    while (NextLine(line)) {
      if (line.empty()) continue;
      row_ = SplitLine(line);
      if (row_.size() != header_.size()) {
        return Error(line_no_, 0,
                     "expected " + std::to_string(header_.size()) + " fields, got " +
                         std::to_string(row_.size()));
      }
      return true;
    }
    return false;
  }

  std::string_view Field(int col) const { return col < 0 ? std::string_view() : row_[col]; }

  // Parses a non-negative integer cell; `optional` allows an empty cell (read as 0).
  Result<int64_t> Int(std::string_view name, bool optional = false) const {
    const int col = Column(name);
    std::string_view s = Field(col);
    if (s.empty()) {
      if (optional || col < 0) return int64_t{0};
      return Error(line_no_, col + 1, "column '" + std::string(name) + "' is empty");
    }
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || ptr != s.data() + s.size() || v < 0) {
      return Error(line_no_, col + 1,
                   "column '" + std::string(name) + "': expected a non-negative integer, got '" +
                       std::string(s) + "'");
    }
    return v;
  }

  Status Error(size_t line, int col, const std::string& what) const {
    std::string where = std::string(file_) + ":" + std::to_string(line);
    if (col > 0) where += ":" + std::to_string(col);
    return Status::Invalid(where + ": " + what);
  }
  size_t line_no() const { return line_no_; }

 private:
  bool NextLine(std::string_view& line) {
    if (pos_ >= csv_.size()) return false;
    size_t end = csv_.find('\n', pos_);
    if (end == std::string_view::npos) end = csv_.size();
    line = csv_.substr(pos_, end - pos_);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos_ = end + 1;
    ++line_no_;
    return true;
  }

  std::string_view csv_;
  std::string_view file_;
  size_t pos_ = 0;
  size_t line_no_ = 0;
  std::vector<std::string_view> header_;
  std::vector<std::string_view> row_;
};

#define GPUORCH_ASSIGN_OR_RETURN(lhs, expr)   \
  auto lhs##_r = (expr);                      \
  if (!lhs##_r.ok()) return lhs##_r.status(); \
  auto lhs = std::move(lhs##_r).value()

}  // namespace

Result<std::vector<OpenbNode>> ParseOpenbNodes(std::string_view csv, std::string_view file) {
  Table t(csv, file);
  if (Status s = t.Open({"sn", "cpu_milli", "memory_mib", "gpu", "model"}); !s.ok()) return s;
  std::vector<OpenbNode> nodes;
  while (true) {
    GPUORCH_ASSIGN_OR_RETURN(more, t.Next());
    if (!more) break;
    OpenbNode n;
    n.sn = std::string(t.Field(t.Column("sn")));
    if (n.sn.empty()) return t.Error(t.line_no(), t.Column("sn") + 1, "column 'sn' is empty");
    GPUORCH_ASSIGN_OR_RETURN(cpu, t.Int("cpu_milli"));
    GPUORCH_ASSIGN_OR_RETURN(mem, t.Int("memory_mib"));
    GPUORCH_ASSIGN_OR_RETURN(gpu, t.Int("gpu"));
    if (gpu > 16) {
      return t.Error(t.line_no(), t.Column("gpu") + 1,
                     "column 'gpu': at most 16 GPUs per node, got " + std::to_string(gpu));
    }
    n.cpu_milli = cpu;
    n.memory_mib = mem;
    n.gpu = static_cast<int32_t>(gpu);
    n.model = std::string(t.Field(t.Column("model")));
    if (n.gpu > 0 && n.model.empty()) {
      return t.Error(t.line_no(), t.Column("model") + 1, "column 'model': empty on a GPU node");
    }
    nodes.push_back(std::move(n));
  }
  return nodes;
}

Result<std::vector<OpenbPod>> ParseOpenbPods(std::string_view csv, std::string_view file) {
  Table t(csv, file);
  if (Status s = t.Open({"name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"}); !s.ok()) {
    return s;
  }
  const int spec_col = t.Column("gpu_spec");
  std::vector<OpenbPod> pods;
  while (true) {
    GPUORCH_ASSIGN_OR_RETURN(more, t.Next());
    if (!more) break;
    OpenbPod p;
    p.name = std::string(t.Field(t.Column("name")));
    if (p.name.empty()) return t.Error(t.line_no(), t.Column("name") + 1, "column 'name' is empty");
    GPUORCH_ASSIGN_OR_RETURN(cpu, t.Int("cpu_milli"));
    GPUORCH_ASSIGN_OR_RETURN(mem, t.Int("memory_mib"));
    GPUORCH_ASSIGN_OR_RETURN(num_gpu, t.Int("num_gpu"));
    if (num_gpu > 16) {
      return t.Error(t.line_no(), t.Column("num_gpu") + 1,
                     "column 'num_gpu': at most 16, got " + std::to_string(num_gpu));
    }
    p.cpu_milli = cpu;
    p.memory_mib = mem;
    p.num_gpu = static_cast<int32_t>(num_gpu);
    // gpu_milli and gpu_spec only mean something for GPU pods (protocol §1.2).
    GPUORCH_ASSIGN_OR_RETURN(milli, t.Int("gpu_milli", /*optional=*/p.num_gpu == 0));
    if (p.num_gpu > 0) {
      p.gpu_milli = static_cast<int32_t>(std::min<int64_t>(milli, 1000));
      if (p.num_gpu > 1 && p.gpu_milli != 1000) {
        return t.Error(t.line_no(), t.Column("gpu_milli") + 1,
                       "column 'gpu_milli': a pod with several GPUs must ask for 1000 each");
      }
      p.gpu_spec = std::string(t.Field(spec_col));
    }
    pods.push_back(std::move(p));
  }
  return pods;
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::Invalid(path + ": read error");
  return ss.str();
}

Result<std::vector<OpenbNode>> ReadOpenbNodes(const std::string& path) {
  GPUORCH_ASSIGN_OR_RETURN(text, ReadFile(path));
  return ParseOpenbNodes(text, path);
}

Result<std::vector<OpenbPod>> ReadOpenbPods(const std::string& path) {
  GPUORCH_ASSIGN_OR_RETURN(text, ReadFile(path));
  return ParseOpenbPods(text, path);
}

}  // namespace gpuorch::sim
