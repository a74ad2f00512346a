#include "sim/report/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace gpuorch::sim::svg {

namespace {

constexpr int kLeft = 64, kRight = 150, kTop = 28, kBottom = 44;

std::string F(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}

// About five round ticks from 0 to max.
std::vector<double> Ticks(double max) {
  if (max <= 0) return {0, 1};
  const double raw = max / 5;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  }
  std::vector<double> t;
  for (double v = 0; v <= max * 1.0001 + step * 1e-9; v += step) t.push_back(v);
  if (t.back() < max) t.push_back(t.back() + step);
  return t;
}

std::string Frame(const Chart& c) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"" +
         std::to_string(c.width) + "\" height=\"" + std::to_string(c.height) + "\" viewBox=\"0 0 " +
         std::to_string(c.width) + " " + std::to_string(c.height) + "\"><text x=\"" +
         std::to_string(kLeft) + "\" y=\"18\" class=\"title\">" + Escape(c.title) + "</text>";
}

// Horizontal grid lines with their tick labels, for y values `ticks` mapped by `py`.
template <typename Py>
std::string YGrid(const std::vector<double>& ticks, double plot_width, Py&& py) {
  std::string o;
  for (double y : ticks) {
    o += "<line class=\"grid\" x1=\"" + std::to_string(kLeft) + "\" x2=\"" + F(kLeft + plot_width) +
         "\" y1=\"" + F(py(y)) + "\" y2=\"" + F(py(y)) + "\"/><text class=\"tick\" x=\"" +
         std::to_string(kLeft - 6) + "\" y=\"" + F(py(y) + 4) + "\" text-anchor=\"end\">" +
         Short(y) + "</text>";
  }
  return o;
}

// The x axis of a line or area chart: ticks (linear, or decades on a log axis), the axis line
// and both axis labels. `xmax` is in axis units (log10(1 + x) on a log axis); `px` maps data x.
template <typename Px>
std::string XAxis(const Chart& c, double xmax, double pw, double ph, Px&& px) {
  std::string o;
  std::vector<double> xt;
  if (c.log_x) {
    for (double d = 0; d <= xmax + 1e-9; d += 1) xt.push_back(std::pow(10.0, d) - 1.0);
  } else {
    xt = Ticks(xmax);
    while (xt.size() > 1 && xt.back() > xmax * 1.0001) xt.pop_back();
  }
  for (double x : xt) {
    o += "<text class=\"tick\" x=\"" + F(px(x)) + "\" y=\"" + F(kTop + ph + 16) +
         "\" text-anchor=\"middle\">" + Short(x) + "</text>";
  }
  o += "<line class=\"axis\" x1=\"" + std::to_string(kLeft) + "\" x2=\"" + F(kLeft + pw) +
       "\" y1=\"" + F(kTop + ph) + "\" y2=\"" + F(kTop + ph) + "\"/>";
  o += "<text class=\"label\" x=\"" + F(kLeft + pw / 2) + "\" y=\"" + std::to_string(c.height - 6) +
       "\" text-anchor=\"middle\">" + Escape(c.x_label) +
       "</text><text class=\"label\" transform=\"translate(14 " + F(kTop + ph / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + Escape(c.y_label) + "</text>";
  return o;
}

// A legend entry (a swatch line in colour i and the name) at `row` to the right of the plot.
std::string LegendEntry(size_t row, size_t i, const std::string& name, double pw,
                        const char* width) {
  const double ly = kTop + 12 + 16 * static_cast<double>(row);
  return "<line x1=\"" + F(kLeft + pw + 10) + "\" x2=\"" + F(kLeft + pw + 28) + "\" y1=\"" +
         F(ly - 4) + "\" y2=\"" + F(ly - 4) + "\" stroke=\"" + Color(i) + "\" stroke-width=\"" +
         width + "\"/><text class=\"legend\" x=\"" + F(kLeft + pw + 32) + "\" y=\"" + F(ly) +
         "\">" + Escape(name) + "</text>";
}

}  // namespace

const char* Color(size_t i) {
  static const char* kPalette[] = {"#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00",
                                   "#56b4e9", "#f0e442", "#000000", "#999999", "#8c564b",
                                   "#7f7f7f", "#bcbd22", "#17becf", "#9467bd", "#2ca02c"};
  return kPalette[i % (sizeof kPalette / sizeof kPalette[0])];
}

std::string Escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    switch (ch) {
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '&':
        o += "&amp;";
        break;
      case '"':
        o += "&quot;";
        break;
      default:
        o += ch;
    }
  }
  return o;
}

std::string Short(double v) {
  char b[32];
  const double a = std::fabs(v);
  if (a >= 999500) {
    std::snprintf(b, sizeof b, "%.3gM", v / 1e6);
  } else if (a >= 9999.5) {
    std::snprintf(b, sizeof b, "%.3gk", v / 1e3);
  } else {
    std::snprintf(b, sizeof b, "%.4g", v);
  }
  return b;
}

std::string LineChart(const Chart& c, const std::vector<Series>& series) {
  auto tx = [&](double x) { return c.log_x ? std::log10(1.0 + std::max(0.0, x)) : x; };
  double xmax = 0, ymax = c.y_max;
  for (const Series& s : series) {
    for (double x : s.x) xmax = std::max(xmax, tx(x));
    if (c.y_max <= 0) {
      for (double y : s.y) ymax = std::max(ymax, y);
    }
  }
  if (xmax <= 0) xmax = 1;
  const std::vector<double> yt = Ticks(ymax > 0 ? ymax : 1);
  ymax = yt.back();
  const double pw = c.width - kLeft - kRight, ph = c.height - kTop - kBottom;
  auto px = [&](double x) { return kLeft + tx(x) / xmax * pw; };
  auto py = [&](double y) { return kTop + ph - y / ymax * ph; };
  std::string o = Frame(c);
  o += YGrid(yt, pw, py);
  o += XAxis(c, xmax, pw, ph, px);
  for (size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    std::string pts;
    for (size_t k = 0; k < s.x.size() && k < s.y.size(); ++k) {
      pts += F(px(s.x[k])) + "," + F(py(std::min(s.y[k], ymax))) + " ";
    }
    o += "<polyline class=\"series\" data-tip=\"" + Escape(s.name) + "\" fill=\"none\" stroke=\"" +
         Color(i) + "\" stroke-width=\"1.6\"" + (s.dashed ? " stroke-dasharray=\"5 3\"" : "") +
         " points=\"" + pts + "\"/>";
    o += LegendEntry(i, i, s.name, pw, "2");
  }
  return o + "</svg>";
}

std::string BarChart(const Chart& c, const std::vector<std::string>& labels,
                     const std::vector<double>& values) {
  double vmax = c.y_max;
  for (double v : values) vmax = std::max(vmax, v);
  const std::vector<double> yt = Ticks(vmax > 0 ? vmax : 1);
  vmax = yt.back();
  const double pw = c.width - kLeft - kRight, ph = c.height - kTop - kBottom;
  auto py = [&](double y) { return kTop + ph - y / vmax * ph; };
  std::string o = Frame(c);
  o += YGrid(yt, pw, py);
  const double slot = pw / static_cast<double>(std::max<size_t>(1, values.size()));
  for (size_t i = 0; i < values.size(); ++i) {
    const double x = kLeft + slot * static_cast<double>(i) + slot * 0.2;
    const double y = py(values[i]);
    o += "<rect class=\"bar\" data-tip=\"" + Escape(labels[i]) + ": " + Short(values[i]) +
         "\" x=\"" + F(x) + "\" y=\"" + F(y) + "\" width=\"" + F(slot * 0.6) + "\" height=\"" +
         F(kTop + ph - y) + "\" fill=\"" + Color(i) + "\"/><text class=\"tick\" x=\"" +
         F(x + slot * 0.3) + "\" y=\"" + F(y - 4) + "\" text-anchor=\"middle\">" +
         Short(values[i]) + "</text><text class=\"label\" x=\"" + F(x + slot * 0.3) + "\" y=\"" +
         F(kTop + ph + 16) + "\" text-anchor=\"middle\">" + Escape(labels[i]) + "</text>";
  }
  o += "<text class=\"label\" transform=\"translate(14 " + F(kTop + ph / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + Escape(c.y_label) + "</text>";
  return o + "</svg>";
}

std::string StackedArea(const Chart& c, const std::vector<Series>& series) {
  size_t n = series.empty() ? 0 : series[0].x.size();
  for (const Series& s : series) n = std::min(n, s.y.size());
  // cum[i][k]: the top of band i at point k.
  std::vector<std::vector<double>> cum(series.size(), std::vector<double>(n, 0.0));
  for (size_t i = 0; i < series.size(); ++i) {
    for (size_t k = 0; k < n; ++k) {
      cum[i][k] = (i > 0 ? cum[i - 1][k] : 0.0) + std::max(0.0, series[i].y[k]);
    }
  }
  double xmax = 0, ymax = c.y_max;
  for (size_t k = 0; k < n; ++k) {
    xmax = std::max(xmax, series[0].x[k]);
    if (c.y_max <= 0) ymax = std::max(ymax, cum.back()[k]);
  }
  if (xmax <= 0) xmax = 1;
  const std::vector<double> yt = Ticks(ymax > 0 ? ymax : 1);
  ymax = yt.back();
  const double pw = c.width - kLeft - kRight, ph = c.height - kTop - kBottom;
  auto px = [&](double x) { return kLeft + std::max(0.0, x) / xmax * pw; };
  auto py = [&](double y) { return kTop + ph - std::min(y, ymax) / ymax * ph; };
  Chart linear = c;
  linear.log_x = false;
  std::string o = Frame(c);
  o += YGrid(yt, pw, py);
  for (size_t i = 0; i < series.size(); ++i) {
    std::string pts;
    for (size_t k = 0; k < n; ++k) pts += F(px(series[0].x[k])) + "," + F(py(cum[i][k])) + " ";
    for (size_t k = n; k-- > 0;) {
      pts += F(px(series[0].x[k])) + "," + F(py(i > 0 ? cum[i - 1][k] : 0.0)) + " ";
    }
    o += "<polygon class=\"band\" data-tip=\"" + Escape(series[i].name) + "\" fill=\"" + Color(i) +
         "\" fill-opacity=\"0.75\" stroke=\"" + Color(i) + "\" stroke-width=\"0.5\"" +
         " points=\"" + pts + "\"/>";
  }
  o += XAxis(linear, xmax, pw, ph, px);
  // The legend lists the top band first, as the bands appear on the chart.
  for (size_t i = series.size(); i-- > 0;) {
    o += LegendEntry(series.size() - 1 - i, i, series[i].name, pw, "8");
  }
  return o + "</svg>";
}

const char* PageStyle() {
  return R"(body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1400px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #eee;background:#fff}
.title{font-weight:600;font-size:13px}.tick,.legend{font-size:11px;fill:#444}.label{font-size:12px;fill:#222}
.grid{stroke:#eee}.axis{stroke:#888}.series:hover{stroke-width:3.5}.band:hover{fill-opacity:1}
#tip{position:fixed;pointer-events:none;background:#333;color:#fff;padding:2px 6px;border-radius:3px;font-size:12px;display:none}
.note{color:#555;font-size:13px})";
}

std::string TipScript(const std::string& rendered_js) {
  return R"(<script>
(function () {
  var tip = document.getElementById('tip');
  document.querySelectorAll('[data-tip]').forEach(function (el) {
    el.addEventListener('mousemove', function (e) {
      tip.textContent = el.getAttribute('data-tip');
      tip.style.left = (e.clientX + 12) + 'px';
      tip.style.top = (e.clientY + 12) + 'px';
      tip.style.display = 'block';
    });
    el.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
  });
  document.body.setAttribute('data-rendered', )" +
         rendered_js + R"();
})();
</script>)";
}

}  // namespace gpuorch::sim::svg
