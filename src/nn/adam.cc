#include "twotower/nn/adam.h"

#include <algorithm>
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
  // One fused pass over n entries of p, g, m, v (the compiler vectorises it).
  auto update = [&](float* p, const float* g, float* m, float* v, Eigen::Index n) {
    for (Eigen::Index j = 0; j < n; ++j) {
      m[j] = b1 * m[j] + (1.0f - b1) * g[j];
      v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
      p[j] -= step_size * m[j] / (std::sqrt(v[j]) * inv_sqrt_bc2 + eps);
    }
  };
  for (size_t i = 0; i < params_.size(); ++i) {
    Parameter& param = *params_[i];
    if (options_.lazy && param.sparse) {
      rows_.assign(param.touched_rows.begin(), param.touched_rows.end());
      std::sort(rows_.begin(), rows_.end());
      rows_.erase(std::unique(rows_.begin(), rows_.end()), rows_.end());
      const Eigen::Index cols = param.value.cols();  // row-major: a row is contiguous
      for (int32_t r : rows_) {
        const Eigen::Index at = static_cast<Eigen::Index>(r) * cols;
        update(param.value.data() + at, param.grad.data() + at, m_[i].data() + at,
               v_[i].data() + at, cols);
      }
      continue;
    }
    update(param.value.data(), param.grad.data(), m_[i].data(), v_[i].data(), param.value.size());
  }
}

}  // namespace twotower::nn
