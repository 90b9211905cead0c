#include "twotower/nn/cross.h"

#include <cmath>

#include "twotower/core/error.h"

namespace twotower::nn {

CrossNetwork::CrossNetwork(int dim, int layers) : dim_(dim) {
  if (dim < 1 || layers < 0) {
    throw Error("CrossNetwork: needs a width >= 1 and >= 0 layers, got width " +
                std::to_string(dim) + " and " + std::to_string(layers) + " layers");
  }
  for (int l = 0; l < layers; ++l) {
    weights_.push_back({"weight", Matrix::Zero(dim, dim), Matrix::Zero(dim, dim), false, {}});
    biases_.push_back({"bias", Matrix::Zero(1, dim), Matrix::Zero(1, dim), false, {}});
  }
}

void CrossNetwork::InitPyTorchDefault(Rng* rng) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(dim_));
  for (size_t l = 0; l < weights_.size(); ++l) {
    for (Matrix* m : {&weights_[l].value, &biases_[l].value}) {
      for (Eigen::Index i = 0; i < m->size(); ++i) {
        m->data()[i] = (2.0f * rng->UniformFloat() - 1.0f) * bound;
      }
    }
  }
}

void CrossNetwork::Infer(const Matrix& x, Matrix* y) const {
  if (x.cols() != dim_) {
    throw Error("CrossNetwork: expected input with " + std::to_string(dim_) + " columns, got " +
                std::to_string(x.cols()));
  }
  *y = x;
  Matrix z(x.rows(), dim_);
  for (size_t l = 0; l < weights_.size(); ++l) {
    MatMul(*y, false, weights_[l].value, true, false, z);
    z.rowwise() += biases_[l].value.row(0);
    y->array() += x.array() * z.array();
  }
}

const Matrix& CrossNetwork::Forward(const Matrix& x, CrossContext* ctx) {
  if (x.cols() != dim_) {
    throw Error("CrossNetwork: expected input with " + std::to_string(dim_) + " columns, got " +
                std::to_string(x.cols()));
  }
  ctx->x0 = &x;
  const size_t layers = weights_.size();
  ctx->xs.resize(layers);
  ctx->zs.resize(layers);
  const Matrix* prev = &x;
  for (size_t l = 0; l < layers; ++l) {
    Matrix& z = ctx->zs[l];
    Matrix& next = ctx->xs[l];
    z.resize(x.rows(), dim_);
    next.resize(x.rows(), dim_);
    MatMul(*prev, false, weights_[l].value, true, false, z, precision_);
    z.rowwise() += biases_[l].value.row(0);
    next.array() = x.array() * z.array() + prev->array();
    prev = &next;
  }
  return *prev;
}

void CrossNetwork::Backward(CrossContext* ctx, const Matrix& dy, Matrix* dx) {
  if (ctx->x0 == nullptr) throw Error("CrossNetwork: Backward called before Forward");
  const Matrix& x0 = *ctx->x0;
  if (dy.rows() != x0.rows() || dy.cols() != dim_) {
    throw Error("CrossNetwork: expected output gradient of shape " + std::to_string(x0.rows()) +
                " x " + std::to_string(dim_) + ", got " + std::to_string(dy.rows()) + " x " +
                std::to_string(dy.cols()));
  }
  // g = d loss / d x_{l+1}; going down a layer:
  //   d loss / d z_l = g ⊙ x_0 (= t),  dW_l += t^T x_l,  db_l += sum_rows t,
  //   d loss / d x_l = g + t W_l,      d loss / d x_0 += g ⊙ z_l (x_0's own term in the product).
  ctx->g = dy;
  dx->resize(x0.rows(), dim_);
  dx->setZero();
  ctx->t.resize(x0.rows(), dim_);
  for (size_t l = weights_.size(); l-- > 0;) {
    const Matrix& x_l = l == 0 ? x0 : ctx->xs[l - 1];
    ctx->t.array() = ctx->g.array() * x0.array();
    dx->array() += ctx->g.array() * ctx->zs[l].array();
    MatMul(ctx->t, true, x_l, false, true, weights_[l].grad, precision_);
    MatMul(ctx->t, false, weights_[l].value, false, true, ctx->g, precision_);
    biases_[l].grad.row(0) += ctx->t.colwise().sum();
  }
  *dx += ctx->g;  // x_0 is also the first layer's input
}

std::vector<NamedParameter> CrossNetwork::NamedParameters(const std::string& prefix) {
  std::vector<NamedParameter> out;
  for (size_t l = 0; l < weights_.size(); ++l) {
    out.push_back({prefix + std::to_string(l) + ".weight", &weights_[l]});
    out.push_back({prefix + std::to_string(l) + ".bias", &biases_[l]});
  }
  return out;
}

std::vector<Parameter*> CrossNetwork::Parameters() {
  std::vector<Parameter*> out;
  for (auto& p : NamedParameters("")) out.push_back(p.parameter);
  return out;
}

std::string CrossNetwork::Describe() const {
  return "Cross(" + std::to_string(dim_) + ", " + std::to_string(weights_.size()) + " layers)";
}

}  // namespace twotower::nn
