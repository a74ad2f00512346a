#include "core/prometheus_text.h"

#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <set>

namespace gpuorch::core {
namespace {

bool Blank(char c) { return c == ' ' || c == '\t'; }
bool NameHead(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
bool NameTail(char c) { return NameHead(c) || (c >= '0' && c <= '9'); }

// A cursor over one line.
struct Line {
  std::string_view s;
  size_t i = 0;

  bool AtEnd() const { return i >= s.size(); }
  char Peek() const { return AtEnd() ? '\0' : s[i]; }
  void SkipBlanks() {
    while (!AtEnd() && Blank(s[i])) ++i;
  }
  // [a-zA-Z_:][a-zA-Z0-9_:]*; a label name has no ':' (checked by the caller).
  std::string_view Name() {
    const size_t start = i;
    if (!AtEnd() && NameHead(s[i])) {
      ++i;
      while (!AtEnd() && NameTail(s[i])) ++i;
    }
    return s.substr(start, i - start);
  }
  std::string_view Token() {
    const size_t start = i;
    while (!AtEnd() && !Blank(s[i])) ++i;
    return s.substr(start, i - start);
  }
};

// `{label="value",...}` from its opening brace into `labels` (values unescaped); false
// when malformed.
bool ReadLabels(Line& l, std::map<std::string, std::string>& labels) {
  ++l.i;  // '{'
  while (true) {
    l.SkipBlanks();
    if (l.Peek() == '}') {
      ++l.i;
      return true;
    }
    const std::string_view name = l.Name();
    if (name.empty() || name.find(':') != std::string_view::npos) return false;
    l.SkipBlanks();
    if (l.Peek() != '=') return false;
    ++l.i;
    l.SkipBlanks();
    if (l.Peek() != '"') return false;
    ++l.i;
    std::string value;
    while (true) {
      if (l.AtEnd()) return false;
      const char c = l.s[l.i++];
      if (c == '"') break;
      if (c == '\\') {
        const char e = l.Peek();
        if (e != '\\' && e != '"' && e != 'n') return false;
        value += e == 'n' ? '\n' : e;
        ++l.i;
      } else {
        value += c;
      }
    }
    labels[std::string(name)] = std::move(value);
    l.SkipBlanks();
    if (l.Peek() == ',') {
      ++l.i;
    } else if (l.Peek() != '}') {
      return false;
    }
  }
}

// A sample value: a float as Go's ParseFloat reads it here, including NaN and ±Inf.
std::optional<double> Value(std::string_view t) {
  if (!t.empty() && t[0] == '+') {
    t.remove_prefix(1);
    if (!t.empty() && t[0] == '-') return std::nullopt;
  }
  if (t.empty() || t[0] == '+') return std::nullopt;
  double v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || end != t.data() + t.size()) return std::nullopt;
  return v;
}

bool Timestamp(std::string_view t) {
  int64_t ms = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), ms);
  return !t.empty() && ec == std::errc() && end == t.data() + t.size();
}

}  // namespace

Result<std::vector<PromSample>> ParsePrometheusText(std::string_view text) {
  std::vector<PromSample> out;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    Line l{text.substr(0, nl)};
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (!l.s.empty() && l.s.back() == '\r') l.s.remove_suffix(1);
    l.SkipBlanks();
    if (l.AtEnd() || l.Peek() == '#') continue;
    auto bad = [&](const char* what) {
      return Status::Invalid("line " + std::to_string(line_no) + ": " + what);
    };
    PromSample sample;
    sample.name = std::string(l.Name());
    if (sample.name.empty()) return bad("expected a metric name");
    size_t mark = l.i;  // the value must be separated from what precedes it by blanks
    l.SkipBlanks();
    if (l.Peek() == '{') {
      if (!ReadLabels(l, sample.labels)) return bad("malformed labels");
      mark = l.i;
      l.SkipBlanks();
    }
    if (l.i == mark || l.AtEnd()) return bad("expected a value after the name");
    const std::optional<double> value = Value(l.Token());
    if (!value) return bad("malformed value");
    l.SkipBlanks();
    if (!l.AtEnd()) {
      if (!Timestamp(l.Token())) return bad("malformed timestamp");
      l.SkipBlanks();
      if (!l.AtEnd()) return bad("unexpected text after the timestamp");
    }
    sample.value = *value;
    out.push_back(std::move(sample));
  }
  return out;
}

Result<std::map<std::string, double>> SumSamples(std::string_view text,
                                                 const std::vector<std::string>& names) {
  auto samples = ParsePrometheusText(text);
  if (!samples.ok()) return samples.status();
  const std::set<std::string_view> wanted(names.begin(), names.end());
  std::map<std::string, double> sums;
  for (const PromSample& s : *samples) {
    if (std::isfinite(s.value) && wanted.count(s.name)) sums[s.name] += s.value;
  }
  for (auto it = sums.begin(); it != sums.end();) {
    it = std::isfinite(it->second) ? std::next(it) : sums.erase(it);
  }
  return sums;
}

}  // namespace gpuorch::core
