#include "twotower/nn/embedding.h"

#include <algorithm>

#include "twotower/core/error.h"

namespace twotower::nn {

EmbeddingBag::EmbeddingBag(int64_t rows, int dim, data::Pooling pooling) : pooling_(pooling) {
  if (rows < 1 || dim < 1) {
    throw Error("EmbeddingBag: rows and dim must be positive (got " + std::to_string(rows) + " x " +
                std::to_string(dim) + ")");
  }
  weight_.name = "weight";
  weight_.value = Matrix::Zero(rows, dim);
  weight_.grad = Matrix::Zero(rows, dim);
  weight_.sparse = true;
}

void EmbeddingBag::InitNormal(Rng* rng, float std) {
  for (Eigen::Index i = 0; i < weight_.value.size(); ++i) {
    weight_.value.data()[i] = static_cast<float>(rng->Normal()) * std;
  }
}

void EmbeddingBag::Pool(const data::Bags& bags, const int32_t* rows, int64_t n, float* out,
                        int64_t stride) const {
  const int d = dim();
  const int64_t table_rows = weight_.value.rows();
  for (int64_t i = 0; i < n; ++i) {
    if (rows[i] < 0 || rows[i] >= bags.rows()) throw Error("EmbeddingBag: bag row out of range");
    const int64_t b = bags.offsets[rows[i]], e = bags.offsets[rows[i] + 1];
    Eigen::Map<RowVector> y(out + i * stride, d);
    y.setZero();
    for (int64_t k = b; k < e; ++k) {
      const int32_t r = bags.ids[k];
      if (r < 0 || r >= table_rows) throw Error("EmbeddingBag: table row out of range");
      y += weight_.value.row(r);
    }
    if (pooling_ == data::Pooling::kMean && e - b > 1) y /= static_cast<float>(e - b);
  }
}

void EmbeddingBag::Backward(const data::Bags& bags, const int32_t* rows, int64_t n, const float* dy,
                            int64_t stride) {
  const int d = dim();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = bags.offsets[rows[i]], e = bags.offsets[rows[i] + 1];
    const float w = pooling_ == data::Pooling::kMean && e - b > 1 ? 1.0f / (e - b) : 1.0f;
    const Eigen::Map<const RowVector> g(dy + i * stride, d);
    for (int64_t k = b; k < e; ++k) {
      const int32_t r = bags.ids[k];
      weight_.grad.row(r) += w * g;
      weight_.touched_rows.push_back(r);
    }
  }
}

}  // namespace twotower::nn
