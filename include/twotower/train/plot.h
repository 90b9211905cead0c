// A small SVG line chart of per-epoch curves (training_curves.svg in each run folder), so a
// person sees a run at a glance in any browser. Written by hand: it is ~100 lines and no Debian
// package renders a chart to SVG from C++ without pulling in a plotting stack.
// Thread-safe: free functions with no shared state.
#ifndef TWOTOWER_TRAIN_PLOT_H_
#define TWOTOWER_TRAIN_PLOT_H_

#include <string>
#include <vector>

namespace twotower::train {

struct Series {
  std::string label;
  std::string color;           // CSS color
  std::vector<double> values;  // one per epoch; NaN values are skipped
};

struct Panel {
  std::string title;
  std::vector<Series> series;
};

// Panels side by side, x = epoch (1-based). Returns the SVG document.
std::string RenderSvg(const std::vector<Panel>& panels);

}  // namespace twotower::train

#endif  // TWOTOWER_TRAIN_PLOT_H_
