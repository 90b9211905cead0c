// Adam (Kingma & Ba 2015) with PyTorch's defaults and exactly torch.optim.Adam's update:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Lazy mode (AdamOptions::lazy; TensorFlow Addons' LazyAdam, PyTorch's SparseAdam): for a sparse
// parameter (an embedding table, Parameter::sparse) only the rows the step touched
// (Parameter::touched_rows) are updated, by the formula above with the global step t; the
// moments and values of every other row stay as they are. So a step costs the rows the batch
// touched, not the table size. It differs from dense Adam, which also decays an untouched row's
// moments and keeps moving it by its momentum: the two agree exactly on a row touched at every
// step, and on every row's first update. Dense parameters get dense Adam in both modes.
// Not thread-safe; one optimizer per model.
#ifndef TWOTOWER_NN_ADAM_H_
#define TWOTOWER_NN_ADAM_H_

#include <vector>

#include "twotower/nn/layer.h"

namespace twotower::nn {

struct AdamOptions {
  double learning_rate = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  bool lazy = false;  // sparse parameters: update only the touched rows
};

class Adam {
 public:
  Adam(std::vector<Parameter*> params, AdamOptions options);
  // Applies one update from the parameters' current gradients.
  void Step();
  int64_t steps() const { return t_; }
  // The moment estimates m and v, one per parameter (the parameter's shape), and the step count:
  // the optimiser's whole state, for training checkpoints.
  std::vector<Matrix>& first_moments() { return m_; }
  std::vector<Matrix>& second_moments() { return v_; }
  void set_steps(int64_t t) { t_ = t; }

 private:
  std::vector<Parameter*> params_;
  AdamOptions options_;
  std::vector<Matrix> m_, v_;
  std::vector<int32_t> rows_;  // scratch: a sparse parameter's touched rows, sorted and unique
  int64_t t_ = 0;
};

}  // namespace twotower::nn

#endif  // TWOTOWER_NN_ADAM_H_
