#include "server/metrics.h"

#include <cstdio>

namespace gpuorch::server {

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::Write(std::string& out, const std::string& name, const std::string& labels) const {
  uint64_t cumulative = 0;
  char buf[64];
  std::string sep = labels.empty() ? "" : ",";
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    std::string le = "+Inf";
    if (i < bounds_.size()) {
      std::snprintf(buf, sizeof(buf), "%g", bounds_[i]);
      le = buf;
    }
    out += name + "_bucket{" + labels + sep + "le=\"" + le + "\"} " + std::to_string(cumulative) +
           "\n";
  }
  std::snprintf(buf, sizeof(buf), "%.6f", sum_);
  std::string l = labels.empty() ? "" : "{" + labels + "}";
  out += name + "_sum" + l + " " + buf + "\n";
  out += name + "_count" + l + " " + std::to_string(count_) + "\n";
}

std::string LabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace gpuorch::server
