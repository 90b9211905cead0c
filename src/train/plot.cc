#include "twotower/train/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace twotower::train {
namespace {

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", v);
  return buf;
}

std::string Label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g", v);
  return buf;
}

}  // namespace

std::string RenderSvg(const std::vector<Panel>& panels) {
  constexpr double kW = 420, kH = 300, kLeft = 55, kRight = 15, kTop = 35, kBottom = 45;
  const double width = kW * static_cast<double>(panels.size());
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << Num(width) << "\" height=\""
      << Num(kH) << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  for (size_t p = 0; p < panels.size(); ++p) {
    const Panel& panel = panels[p];
    const double x0 = kW * static_cast<double>(p) + kLeft, x1 = kW * (p + 1) - kRight;
    const double y0 = kH - kBottom, y1 = kTop;
    size_t epochs = 0;
    double lo = INFINITY, hi = -INFINITY;
    for (const Series& s : panel.series) {
      epochs = std::max(epochs, s.values.size());
      for (double v : s.values) {
        if (std::isfinite(v)) {
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
      }
    }
    if (!std::isfinite(lo)) lo = 0, hi = 1;
    if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
    const double pad = 0.05 * (hi - lo);
    lo -= pad;
    hi += pad;
    auto X = [&](size_t i) {
      return epochs <= 1 ? (x0 + x1) / 2 : x0 + (x1 - x0) * static_cast<double>(i) / (epochs - 1);
    };
    auto Y = [&](double v) { return y0 - (y0 - y1) * (v - lo) / (hi - lo); };
    svg << "<text x=\"" << Num((x0 + x1) / 2) << "\" y=\"20\" text-anchor=\"middle\" "
        << "font-size=\"14\">" << panel.title << "</text>\n";
    svg << "<rect x=\"" << Num(x0) << "\" y=\"" << Num(y1) << "\" width=\"" << Num(x1 - x0)
        << "\" height=\"" << Num(y0 - y1) << "\" fill=\"none\" stroke=\"#888\"/>\n";
    for (int t = 0; t <= 4; ++t) {
      const double v = lo + (hi - lo) * t / 4.0;
      svg << "<line x1=\"" << Num(x0) << "\" x2=\"" << Num(x1) << "\" y1=\"" << Num(Y(v))
          << "\" y2=\"" << Num(Y(v)) << "\" stroke=\"#eee\"/>\n";
      svg << "<text x=\"" << Num(x0 - 5) << "\" y=\"" << Num(Y(v) + 4) << "\" text-anchor=\"end\">"
          << Label(v) << "</text>\n";
    }
    for (size_t i = 0; i < epochs; ++i) {
      if (epochs > 10 && (i + 1) % ((epochs + 9) / 10) != 0 && i != 0) continue;
      svg << "<text x=\"" << Num(X(i)) << "\" y=\"" << Num(y0 + 16) << "\" text-anchor=\"middle\">"
          << i + 1 << "</text>\n";
    }
    svg << "<text x=\"" << Num(x1) << "\" y=\"" << Num(kH - 8)
        << "\" text-anchor=\"end\">epoch</text>\n";
    for (size_t si = 0; si < panel.series.size(); ++si) {
      const Series& s = panel.series[si];
      std::string points;
      for (size_t i = 0; i < s.values.size(); ++i) {
        if (!std::isfinite(s.values[i])) continue;
        points += Num(X(i)) + "," + Num(Y(s.values[i])) + " ";
      }
      svg << "<polyline fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"2\" points=\""
          << points << "\"/>\n";
      // Legend on the x-axis label line, left of "epoch", where it never covers a curve.
      const double ly = kH - 12;
      const double lx = x0 + 85 * static_cast<double>(si) - 40;
      svg << "<line x1=\"" << Num(lx) << "\" x2=\"" << Num(lx + 20) << "\" y1=\"" << Num(ly)
          << "\" y2=\"" << Num(ly) << "\" stroke=\"" << s.color << "\" stroke-width=\"2\"/>\n";
      svg << "<text x=\"" << Num(lx + 25) << "\" y=\"" << Num(ly + 4) << "\">" << s.label
          << "</text>\n";
    }
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace twotower::train
