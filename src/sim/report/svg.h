#pragma once

// Small, dependency-free SVG charts for the report: line charts (optionally with a log10
// x axis) and bar charts. Output is plain text, deterministic for the same input.

#include <string>
#include <vector>

namespace gpuorch::sim::svg {

struct Series {
  std::string name;
  std::vector<double> x, y;
  bool dashed = false;
};

struct Chart {
  std::string title;
  std::string x_label, y_label;
  bool log_x = false;  // x axis in log10(1 + x)
  double y_max = 0;    // 0: from the data
  int width = 640, height = 300;
};

// The colour of series i (a fixed, colour-blind-friendly palette).
const char* Color(size_t i);
std::string Escape(const std::string& s);
// Formats a number for axes and labels: 1234 -> "1234", 12345 -> "12.3k", 0.5 -> "0.5".
std::string Short(double v);

std::string LineChart(const Chart& c, const std::vector<Series>& series);
std::string BarChart(const Chart& c, const std::vector<std::string>& labels,
                     const std::vector<double>& values);

}  // namespace gpuorch::sim::svg
