#include "twotower/train/loss.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "twotower/core/error.h"
#include "twotower/core/parallel.h"

namespace twotower::train {

const float* RowMultipliers(const float* weights, int64_t n, std::vector<float>* out) {
  if (weights == nullptr) return nullptr;
  out->resize(static_cast<size_t>(n));
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += weights[i];
  const double scale = sum > 0.0 ? static_cast<double>(n) / sum : 0.0;
  for (int64_t i = 0; i < n; ++i)
    (*out)[static_cast<size_t>(i)] = static_cast<float>(weights[i] * scale);
  return out->data();
}

double BinaryCrossEntropyWithLogits(const Vector& z, const float* y, Vector* dz,
                                    const float* multipliers) {
  const Eigen::Index n = z.size();
  if (n == 0) return 0.0;
  if (dz != nullptr) dz->resize(n);
  double total = 0.0;
  const float inv_n = 1.0f / static_cast<float>(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const float zi = z[i];
    const float e = std::exp(-std::abs(zi));
    const float term = std::max(zi, 0.0f) - zi * y[i] + std::log1p(e);
    total += multipliers ? multipliers[i] * term : term;
    if (dz != nullptr) {
      // sigmoid(z) from e = exp(-|z|), stable for both signs.
      const float sig = zi >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
      (*dz)[i] = (sig - y[i]) * inv_n;
      if (multipliers) (*dz)[i] *= multipliers[i];
    }
  }
  return total / static_cast<double>(n);
}

}  // namespace twotower::train

namespace twotower::train {

void BceLoss::Compute(const LossBatch& b, LossOutput* out) {
  const Matrix& u = *b.u;
  const Matrix& v = *b.v;
  if (u.rows() != v.rows() || u.cols() != v.cols()) throw Error("BceLoss: u and v differ in shape");
  // The same arithmetic, in the same order, as TwoTowerModel::Forward / Backward, so the lab's
  // results do not change with the Loss interface.
  dot_.resize(u.rows());
  dot_.noalias() = u.cwiseProduct(v).rowwise().sum();
  out->logits.resize(u.rows());
  out->logits.array() = dot_.array() * b.scale + b.bias;
  out->loss = BinaryCrossEntropyWithLogits(out->logits, b.labels, &dz_,
                                           RowMultipliers(b.weights, u.rows(), &multipliers_));
  out->d_log_scale = b.scale * dz_.dot(dot_);
  out->d_bias = dz_.sum();
  dscaled_.resize(dz_.size());
  dscaled_.array() = dz_.array() * b.scale;
  out->du.resize(u.rows(), u.cols());
  out->dv.resize(v.rows(), v.cols());
  out->du.array() = v.array().colwise() * dscaled_.array();
  out->dv.array() = u.array().colwise() * dscaled_.array();
}

InBatchSoftmaxLoss::InBatchSoftmaxLoss(SoftmaxOptions options) : options_(std::move(options)) {
  if (!(options_.temperature > 0.0)) throw Error("InBatchSoftmaxLoss: temperature must be > 0");
}

void InBatchSoftmaxLoss::Compute(const LossBatch& b, LossOutput* out) {
  const Matrix& u = *b.u;
  const Matrix& v = *b.v;
  // Rows [offset, offset + rows) of a batch of n: the whole batch unless given row shares.
  const Eigen::Index n = b.rows_total > 0 ? b.rows_total : u.rows();
  const Eigen::Index offset = b.row_offset, rows = u.rows();
  if (v.rows() != n || u.cols() != v.cols() || offset < 0 || offset + rows > n) {
    throw Error("InBatchSoftmaxLoss: u and v differ in shape");
  }
  const float inv_t = static_cast<float>(1.0 / options_.temperature);
  logits_.resize(rows, n);
  // The products by blocks of output rows on the threads that are free (core/parallel.h).
  ParallelBlocks(rows, kProductRows, 0, [&](int64_t r0, int64_t r1) {
    nn::MatMul(u.middleRows(r0, r1 - r0), false, v, true, false, logits_.middleRows(r0, r1 - r0),
               options_.precision);
  });
  logits_ *= inv_t;
  const bool log_q = !options_.log_q.empty();
  if (log_q) {
    // Each column's correction once per batch, not once per (row, column).
    column_log_q_.resize(n);
    for (Eigen::Index j = 0; j < n; ++j) column_log_q_[j] = options_.log_q[b.item_rows[j]];
  }
  // The weighted mean's multipliers over the whole batch (its rows share one normaliser).
  const float* mult = RowMultipliers(b.weights, n, &multipliers_);
  double total = 0.0;
  for (Eigen::Index r = 0; r < rows; ++r) {
    const Eigen::Index i = offset + r;  // the row's index in the batch: its positive's column
    float* row = logits_.row(r).data();
    const int32_t target = b.item_rows[i];
    float max = -std::numeric_limits<float>::infinity();
    for (Eigen::Index j = 0; j < n; ++j) {
      if (log_q) row[j] -= column_log_q_[j];
      if (j != i && options_.remove_accidental_hits && b.item_rows[j] == target) {
        row[j] = -std::numeric_limits<float>::infinity();
      }
      max = std::max(max, row[j]);
    }
    const float s_ii = row[i];
    double sum = 0.0;
    for (Eigen::Index j = 0; j < n; ++j) {
      const float e = std::exp(row[j] - max);
      row[j] = e;  // row now holds exp(s_ij - max)
      sum += e;
    }
    // loss_i = logsumexp_j s_ij - s_ii, with the sum taken relative to the row's max.
    const double loss_i = static_cast<double>(max) + std::log(sum) - static_cast<double>(s_ii);
    total += mult ? mult[i] * loss_i : loss_i;
    // d loss_i / d s_ij = softmax_ij - [i == j]; scaled by 1/n for the mean (and m_i).
    const float scale = static_cast<float>(1.0 / (sum * static_cast<double>(n)));
    const float m_i = mult ? mult[i] : 1.0f;
    for (Eigen::Index j = 0; j < n; ++j) row[j] *= scale * m_i;
    row[i] -= m_i / static_cast<float>(n);
  }
  out->loss = total / static_cast<double>(n);
  // s_ij = <u_i, v_j> / t: du = G V / t, dv = G^T U / t.
  out->du.resize(rows, u.cols());
  out->dv.resize(n, v.cols());
  ParallelBlocks(rows, kProductRows, 0, [&](int64_t r0, int64_t r1) {
    nn::MatMul(logits_.middleRows(r0, r1 - r0), false, v, false, false,
               out->du.middleRows(r0, r1 - r0), options_.precision);
  });
  out->du *= inv_t;
  ParallelBlocks(n, kProductRows, 0, [&](int64_t j0, int64_t j1) {
    nn::MatMul(logits_.middleCols(j0, j1 - j0), true, u, false, false,
               out->dv.middleRows(j0, j1 - j0), options_.precision);
  });
  out->dv *= inv_t;
  out->d_log_scale = 0.0;
  out->d_bias = 0.0;
  out->logits.resize(0);
}

std::vector<float> LogSamplingProbabilities(const std::vector<int32_t>& positive_item_rows,
                                            int64_t num_items) {
  std::vector<int64_t> counts(num_items, 0);
  for (int32_t r : positive_item_rows) ++counts[r];
  const double total = std::max<double>(1.0, static_cast<double>(positive_item_rows.size()));
  std::vector<float> out(num_items);
  for (int64_t j = 0; j < num_items; ++j) {
    out[j] = static_cast<float>(std::log(std::max<int64_t>(counts[j], 1) / total));
  }
  return out;
}

}  // namespace twotower::train
