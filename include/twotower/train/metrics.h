// Classification metrics for pointwise (user, item, liked) evaluation.
// Pure functions; thread-safe.
#ifndef TWOTOWER_TRAIN_METRICS_H_
#define TWOTOWER_TRAIN_METRICS_H_

#include <cstdint>
#include <vector>

namespace twotower::train {

// Area under the ROC curve: the probability that a random positive scores above a random
// negative, ties counting one half (Mann-Whitney U with mid-ranks). `labels` are 0/1.
// Returns NaN when all labels are equal (the AUC is undefined) or a score is NaN.
double Auc(const std::vector<float>& scores, const std::vector<float>& labels);

// Fraction of examples whose logit has the label's sign (logit >= 0 predicts 1).
double Accuracy(const std::vector<float>& logits, const std::vector<float>& labels);

}  // namespace twotower::train

#endif  // TWOTOWER_TRAIN_METRICS_H_
