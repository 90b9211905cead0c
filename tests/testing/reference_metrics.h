// Reference metrics for tests, written independently of the library's (train/metrics.h).
#ifndef TWOTOWER_TESTS_TESTING_REFERENCE_METRICS_H_
#define TWOTOWER_TESTS_TESTING_REFERENCE_METRICS_H_

#include <vector>

namespace twotower::testing {

// AUC by counting every (positive, negative) pair: 1 if the positive scores higher, 1/2 on a
// tie. Labels are 0/1.
template <typename Score>
double PairwiseAuc(const std::vector<Score>& scores, const std::vector<float>& labels) {
  double wins = 0.0, pairs = 0.0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] != 1.0f) continue;
    for (size_t j = 0; j < scores.size(); ++j) {
      if (labels[j] != 0.0f) continue;
      pairs += 1;
      wins += scores[i] > scores[j] ? 1.0 : scores[i] == scores[j] ? 0.5 : 0.0;
    }
  }
  return wins / pairs;
}

}  // namespace twotower::testing

#endif  // TWOTOWER_TESTS_TESTING_REFERENCE_METRICS_H_
