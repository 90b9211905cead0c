#include "twotower/train/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace twotower::train {

double Auc(const std::vector<float>& scores, const std::vector<float>& labels) {
  const size_t n = scores.size();
  // NaN has no order; sorting it would be undefined behaviour. A NaN score means no AUC.
  for (float s : scores) {
    if (std::isnan(s)) return std::numeric_limits<double>::quiet_NaN();
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  double positives = 0, rank_sum = 0;
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    while (j + 1 < n && scores[order[j + 1]] == scores[order[i]]) ++j;
    const double mid_rank = 0.5 * static_cast<double>(i + j) + 1.0;  // 1-based average rank
    for (size_t k = i; k <= j; ++k) {
      if (labels[order[k]] > 0.5f) {
        positives += 1;
        rank_sum += mid_rank;
      }
    }
    i = j + 1;
  }
  const double negatives = static_cast<double>(n) - positives;
  if (positives == 0 || negatives == 0) return std::numeric_limits<double>::quiet_NaN();
  return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

double Accuracy(const std::vector<float>& logits, const std::vector<float>& labels) {
  if (logits.empty()) return std::numeric_limits<double>::quiet_NaN();
  size_t correct = 0;
  for (size_t i = 0; i < logits.size(); ++i) correct += (logits[i] >= 0.0f) == (labels[i] > 0.5f);
  return static_cast<double>(correct) / static_cast<double>(logits.size());
}

}  // namespace twotower::train
