#pragma once

// Small, dependency-free SVG charts for the reports: line charts (optionally with a log10
// x axis), bar charts and stacked-area charts, and the stylesheet the pages share. Output is
// plain text, deterministic for the same input.

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
// Bands stacked bottom-up in the order given: band i spans the sum of series 0..i-1 to the sum
// of series 0..i. The series share x: the first series' x is used, over as many points as the
// shortest y has; negative values count as 0. `c.log_x` is ignored (the axis is linear).
std::string StackedArea(const Chart& c, const std::vector<Series>& series);

// The stylesheet of a report page (the classes the charts above use, tables, the hover tip).
const char* PageStyle();
// The pages' one script: hover tips for elements with data-tip (shown in <div id="tip">),
// then <body data-rendered=VALUE>, VALUE being the JavaScript expression `rendered_js` (the
// render tests read the marker from the DOM).
std::string TipScript(const std::string& rendered_js);

}  // namespace gpuorch::sim::svg
