// Adam (Kingma & Ba 2015) with PyTorch's defaults and exactly torch.optim.Adam's update:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
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
  int64_t t_ = 0;
};

}  // namespace twotower::nn

#endif  // TWOTOWER_NN_ADAM_H_
