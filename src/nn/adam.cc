#include "twotower/nn/adam.h"

#include <cmath>

namespace twotower::nn {

Adam::Adam(std::vector<Parameter*> params, AdamOptions options)
    : params_(std::move(params)), options_(options) {
  for (Parameter* p : params_) {
    m_.push_back(Matrix::Zero(p->value.rows(), p->value.cols()));
    v_.push_back(Matrix::Zero(p->value.rows(), p->value.cols()));
  }
}

void Adam::Step() {
  ++t_;
  const double bc1 = 1.0 - std::pow(options_.beta1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(options_.beta2, static_cast<double>(t_));
  const float step_size = static_cast<float>(options_.learning_rate / bc1);
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  const float b1 = static_cast<float>(options_.beta1);
  const float b2 = static_cast<float>(options_.beta2);
  const float eps = static_cast<float>(options_.eps);
  for (size_t i = 0; i < params_.size(); ++i) {
    float* p = params_[i]->value.data();
    const float* g = params_[i]->grad.data();
    float* m = m_[i].data();
    float* v = v_[i].data();
    const Eigen::Index n = params_[i]->value.size();
    // One fused pass over p, g, m, v (the compiler vectorises it).
    for (Eigen::Index j = 0; j < n; ++j) {
      m[j] = b1 * m[j] + (1.0f - b1) * g[j];
      v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
      p[j] -= step_size * m[j] / (std::sqrt(v[j]) * inv_sqrt_bc2 + eps);
    }
  }
}

}  // namespace twotower::nn
