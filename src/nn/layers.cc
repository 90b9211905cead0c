#include <cmath>

#include "twotower/core/error.h"
#include "twotower/core/parallel.h"
#include "twotower/nn/layer.h"

namespace twotower::nn {
namespace {

void CheckInput(const Matrix& x, int dim, const std::string& layer) {
  if (x.cols() != dim) {
    throw Error(layer + ": expected input with " + std::to_string(dim) + " columns, got " +
                std::to_string(x.cols()));
  }
}

constexpr float kNormEps = 1e-12f;

// |x| of one row without overflow: squaring entries past 1.8e19 gives inf and x / inf a zero
// vector (an item with an absurd feature value embedded as 0). Eigen's stableNorm scales by
// the largest entry first (as BLAS snrm2 does); used only where the plain sum overflowed, so
// the usual rows keep the same bits. (A norm below kNormEps is replaced by it either way, as
// PyTorch's F.normalize does.)
template <typename Row>
float RowNorm(const Row& row) {
  const float n = row.norm();
  return std::isinf(n) ? row.stableNorm() : n;
}

// y = x / max(|x|, eps) for one row; where |x| itself is past float's range (entries near
// 1e38), the row is divided by its largest |entry| first, so it keeps its direction (a finite
// row never becomes zeros). Returns the norm used (inf in that case).
template <typename In, typename Out>
float NormalizeRow(const In& x, Out y, float eps) {
  const float norm = RowNorm(x);
  if (std::isinf(norm) && x.allFinite()) {
    const float largest = x.cwiseAbs().maxCoeff();
    y = x / largest;
    y /= y.norm();
    return norm;
  }
  y = x / std::max(norm, eps);
  return norm;
}

// Writes an inverted-dropout mask (0 with probability p, else 1 / (1 - p)) for n values.
// Counter-based bits: the caller draws one key from its generator, then value group g gets
// SplitMix64(key + g), which has no loop-carried state and so vectorises (the serial generator
// cost more than the matrix products here). Each 64-bit hash gives four 16-bit uniforms,
// compared with p quantised to 1/65536 (the drop rate is off by < 2e-5).
void FillDropoutMask(float p, uint64_t key, float* mask, Eigen::Index n) {
  const float keep_scale = 1.0f / (1.0f - p);
  const uint32_t threshold = static_cast<uint32_t>(std::lround(p * 65536.0f));
  auto bits = [key](uint64_t g) {
    uint64_t z = key + g * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  const Eigen::Index full = n / 4;
  for (Eigen::Index g = 0; g < full; ++g) {
    const uint64_t z = bits(static_cast<uint64_t>(g));
    for (int j = 0; j < 4; ++j) {
      const uint32_t u = static_cast<uint32_t>(z >> (16 * j)) & 0xffffu;
      mask[4 * g + j] = u >= threshold ? keep_scale : 0.0f;
    }
  }
  if (full * 4 < n) {
    const uint64_t z = bits(static_cast<uint64_t>(full));
    for (Eigen::Index i = full * 4; i < n; ++i) {
      const uint32_t u = static_cast<uint32_t>(z >> (16 * (i - full * 4))) & 0xffffu;
      mask[i] = u >= threshold ? keep_scale : 0.0f;
    }
  }
}

}  // namespace

void Layer::Infer(const Matrix& x, Matrix* y) const {
  CheckInput(x, in_dim_, TypeName());
  InferImpl(x, y);
}

const Matrix& Layer::Forward(const Matrix& x, Context* ctx, Rng* rng) {
  CheckInput(x, in_dim_, TypeName());
  ctx->x = &x;
  ForwardImpl(x, ctx, rng);
  return ctx->y;
}

void Layer::ForwardImpl(const Matrix& x, Context* ctx, Rng* /*rng*/) { InferImpl(x, &ctx->y); }

void Layer::Backward(const Context& ctx, const Matrix& dy, Matrix* dx) {
  if (ctx.x == nullptr) throw Error(TypeName() + ": Backward called before Forward");
  if (dy.rows() != ctx.x->rows() || dy.cols() != out_dim_) {
    throw Error(TypeName() + ": expected output gradient of shape " +
                std::to_string(ctx.x->rows()) + " x " + std::to_string(out_dim_) + ", got " +
                std::to_string(dy.rows()) + " x " + std::to_string(dy.cols()));
  }
  BackwardImpl(ctx, dy, dx);
}

Linear::Linear(int in_dim, int out_dim) : Layer(in_dim, out_dim) {
  weight_ = {"weight", Matrix::Zero(out_dim, in_dim), Matrix::Zero(out_dim, in_dim), false, {}};
  bias_ = {"bias", Matrix::Zero(1, out_dim), Matrix::Zero(1, out_dim), false, {}};
}

void Linear::InitPyTorchDefault(Rng* rng) {
  // kaiming_uniform_(a=sqrt(5)) gives bound sqrt(6 / ((1 + 5) fan_in)) = 1 / sqrt(fan_in);
  // the bias uses the same bound.
  const float bound = 1.0f / std::sqrt(static_cast<float>(in_dim()));
  for (Matrix* m : {&weight_.value, &bias_.value}) {
    for (Eigen::Index i = 0; i < m->size(); ++i) {
      m->data()[i] = (2.0f * rng->UniformFloat() - 1.0f) * bound;
    }
  }
}

void Linear::InferImpl(const Matrix& x, Matrix* y) const {
  y->resize(x.rows(), out_dim());
  // By blocks of rows on the threads that are free (core/parallel.h): one block, on this
  // thread, for a training batch inside a tower's job; many for encoding a whole table.
  ParallelBlocks(x.rows(), kProductRows, 0, [&](int64_t r0, int64_t r1) {
    auto out = y->middleRows(r0, r1 - r0);
    MatMul(x.middleRows(r0, r1 - r0), false, weight_.value, true, false, out);
    out.rowwise() += bias_.value.row(0);
  });
}

void Linear::ForwardImpl(const Matrix& x, Context* ctx, Rng* /*rng*/) {
  if (precision() == Precision::kFp32) {
    InferImpl(x, &ctx->y);
    return;
  }
  ctx->y.resize(x.rows(), out_dim());
  ParallelBlocks(x.rows(), kProductRows, 0, [&](int64_t r0, int64_t r1) {
    MatMulBf16(x.middleRows(r0, r1 - r0), false, weight_.value, true, false,
               ctx->y.middleRows(r0, r1 - r0));
    ctx->y.middleRows(r0, r1 - r0).rowwise() += bias_.value.row(0);
  });
}

void Linear::BackwardImpl(const Context& ctx, const Matrix& dy, Matrix* dx) {
  // dW += dy^T x and dx = dy W (bf16 operands in bf16 training); the bias gradient is a sum,
  // kept fp32.
  MatMul(dy, true, *ctx.x, false, true, weight_.grad, precision());
  bias_.grad.row(0) += dy.colwise().sum();
  if (dx != nullptr) {
    dx->resize(dy.rows(), in_dim());
    MatMul(dy, false, weight_.value, false, false, *dx, precision());
  }
}

void ReLU::InferImpl(const Matrix& x, Matrix* y) const { *y = x.cwiseMax(0.0f); }

void ReLU::BackwardImpl(const Context& ctx, const Matrix& dy, Matrix* dx) {
  if (dx == nullptr) return;
  // The derivative at exactly 0 is taken as 0, as PyTorch does.
  *dx = (ctx.y.array() > 0.0f).select(dy, 0.0f);
}

Dropout::Dropout(int dim, float p) : Layer(dim, dim), p_(p) {
  if (!(p >= 0.0f && p < 1.0f)) {
    throw Error("Dropout: probability must be in [0, 1), got " + std::to_string(p));
  }
}

void Dropout::InferImpl(const Matrix& x, Matrix* y) const { *y = x; }

void Dropout::ForwardImpl(const Matrix& x, Context* ctx, Rng* rng) {
  if (p_ == 0.0f) {
    ctx->y = x;
    ctx->aux.setOnes(x.rows(), x.cols());
    return;
  }
  if (rng == nullptr) throw Error("Dropout: Forward needs a random generator");
  ctx->aux.resize(x.rows(), x.cols());
  ctx->y.resize(x.rows(), x.cols());
  FillDropoutMask(p_, rng->NextU64(), ctx->aux.data(), x.size());
  ctx->y.array() = x.array() * ctx->aux.array();
}

void Dropout::BackwardImpl(const Context& ctx, const Matrix& dy, Matrix* dx) {
  if (dx != nullptr) *dx = dy.cwiseProduct(ctx.aux);
}

ReLUDropout::ReLUDropout(int dim, float p) : Layer(dim, dim), p_(p) {
  if (!(p >= 0.0f && p < 1.0f)) {
    throw Error("ReLUDropout: probability must be in [0, 1), got " + std::to_string(p));
  }
}

void ReLUDropout::InferImpl(const Matrix& x, Matrix* y) const { *y = x.cwiseMax(0.0f); }

void ReLUDropout::ForwardImpl(const Matrix& x, Context* ctx, Rng* rng) {
  ctx->aux.resize(x.rows(), x.cols());
  ctx->y.resize(x.rows(), x.cols());
  if (p_ == 0.0f) {
    ctx->aux.setOnes();
  } else {
    if (rng == nullptr) throw Error("ReLUDropout: Forward needs a random generator");
    FillDropoutMask(p_, rng->NextU64(), ctx->aux.data(), x.size());
  }
  // Fold the ReLU into the mask (0 where x <= 0), so Backward is a single product.
  ctx->aux.array() = (x.array() > 0.0f).select(ctx->aux.array(), 0.0f);
  ctx->y.array() = x.array() * ctx->aux.array();
}

void ReLUDropout::BackwardImpl(const Context& ctx, const Matrix& dy, Matrix* dx) {
  if (dx != nullptr) dx->array() = dy.array() * ctx.aux.array();
}

void L2Normalize::InferImpl(const Matrix& x, Matrix* y) const {
  y->resize(x.rows(), x.cols());
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    NormalizeRow(x.row(r), y->row(r), kNormEps);
  }
}

void L2Normalize::ForwardImpl(const Matrix& x, Context* ctx, Rng* /*rng*/) {
  ctx->y.resize(x.rows(), x.cols());
  ctx->aux.resize(x.rows(), 1);
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    ctx->aux(r, 0) = NormalizeRow(x.row(r), ctx->y.row(r), kNormEps);
  }
}

void L2Normalize::BackwardImpl(const Context& ctx, const Matrix& dy, Matrix* dx) {
  if (dx == nullptr) return;
  dx->resize(dy.rows(), dy.cols());
  for (Eigen::Index r = 0; r < dy.rows(); ++r) {
    const float norm = ctx.aux(r, 0);
    if (norm > kNormEps) {
      // d(x/|x|) = (I - y y^T) / |x|
      const float dot = dy.row(r).dot(ctx.y.row(r));
      dx->row(r) = (dy.row(r) - dot * ctx.y.row(r)) / norm;
    } else {
      dx->row(r) = dy.row(r) / kNormEps;
    }
  }
}

void ZeroGrad(const std::vector<Parameter*>& params) {
  for (Parameter* p : params) {
    if (!p->sparse) {
      p->grad.setZero();
      continue;
    }
    for (int32_t r : p->touched_rows) p->grad.row(r).setZero();
    p->touched_rows.clear();
  }
}

}  // namespace twotower::nn
