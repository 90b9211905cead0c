#include "twotower/nn/attention.h"

#include <algorithm>
#include <cmath>

#include "twotower/core/error.h"

namespace twotower::nn {

AttentionPooling::AttentionPooling(Mode mode, int dim, int heads, int length, int query_dim)
    : mode_(mode), dim_(dim), heads_(heads), length_(length), query_dim_(query_dim) {
  if (dim < 1 || heads < 1 || dim % heads != 0 || length < 1 || query_dim < 0) {
    throw Error(
        "AttentionPooling: needs dim >= 1, heads >= 1 dividing dim, length >= 1 and "
        "query_dim >= 0 (got dim " +
        std::to_string(dim) + ", heads " + std::to_string(heads) + ", length " +
        std::to_string(length) + ", query_dim " + std::to_string(query_dim) + ")");
  }
  if (mode == Mode::kMean) return;
  query_ = {"query", Matrix::Zero(1, dim), Matrix::Zero(1, dim), false, {}};
  if (query_dim > 0) {
    query_proj_ = {
        "query_proj.weight", Matrix::Zero(dim, query_dim), Matrix::Zero(dim, query_dim), false, {}};
  }
  recency_ = {"recency", Matrix::Zero(heads, length), Matrix::Zero(heads, length), false, {}};
}

void AttentionPooling::InitPyTorchDefault(Rng* rng) {
  if (mode_ == Mode::kMean || query_dim_ == 0) return;
  const double bound = 1.0 / std::sqrt(static_cast<double>(query_dim_));
  for (Eigen::Index i = 0; i < query_proj_.value.size(); ++i) {
    query_proj_.value.data()[i] = static_cast<float>(rng->Uniform(-bound, bound));
  }
}

void AttentionPooling::CheckInputs(const Matrix& table, const data::Bags& bags, const int32_t* rows,
                                   int64_t n, const Matrix& x) const {
  if (table.cols() != dim_) {
    throw Error("AttentionPooling: the table is " + std::to_string(table.cols()) +
                " wide, expected " + std::to_string(dim_));
  }
  if (mode_ == Mode::kAttention && query_dim_ > 0 && (x.rows() != n || x.cols() != query_dim_)) {
    throw Error("AttentionPooling: the query input is " + std::to_string(x.rows()) + " x " +
                std::to_string(x.cols()) + ", expected " + std::to_string(n) + " x " +
                std::to_string(query_dim_));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (rows[i] < 0 || rows[i] >= bags.rows()) {
      throw Error("AttentionPooling: history row " + std::to_string(rows[i]) + " out of range (" +
                  std::to_string(bags.rows()) + " histories)");
    }
    const int64_t b = bags.offsets[rows[i]], e = bags.offsets[rows[i] + 1];
    if (e - b > length_) {
      throw Error("AttentionPooling: a history of " + std::to_string(e - b) +
                  " entries, longer than the length " + std::to_string(length_));
    }
    for (int64_t k = b; k < e; ++k) {
      if (bags.ids[k] < 0 || bags.ids[k] >= table.rows()) {
        throw Error("AttentionPooling: table row " + std::to_string(bags.ids[k]) +
                    " out of range (" + std::to_string(table.rows()) + " rows)");
      }
    }
  }
}

void AttentionPooling::PoolOne(const Matrix& table, const int32_t* ids, int64_t len, const float* q,
                               float* out, float* weights) const {
  Eigen::Map<RowVector> y(out, dim_);
  y.setZero();
  if (len == 0) return;
  if (mode_ == Mode::kMean) {
    const float w = 1.0f / static_cast<float>(len);
    for (int64_t j = 0; j < len; ++j) {
      y += table.row(ids[j]);
      for (int h = 0; h < heads_; ++h) weights[j * heads_ + h] = w;
    }
    y *= w;
    return;
  }
  const int dh = dim_ / heads_;
  const float inv = 1.0f / std::sqrt(static_cast<float>(dh));
  for (int h = 0; h < heads_; ++h) {
    const Eigen::Map<const RowVector> qh(q + h * dh, dh);
    float max = -INFINITY;
    for (int64_t j = 0; j < len; ++j) {
      const float s =
          qh.dot(table.row(ids[j]).segment(h * dh, dh)) * inv + recency_.value(h, len - 1 - j);
      weights[j * heads_ + h] = s;
      max = std::max(max, s);
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < len; ++j) {
      float& w = weights[j * heads_ + h];
      w = std::exp(w - max);
      sum += w;
    }
    for (int64_t j = 0; j < len; ++j) {
      float& w = weights[j * heads_ + h];
      w /= sum;
      y.segment(h * dh, dh) += w * table.row(ids[j]).segment(h * dh, dh);
    }
  }
}

void AttentionPooling::Infer(const Matrix& table, const data::Bags& bags, const int32_t* rows,
                             int64_t n, const Matrix& x, float* out, int64_t stride) const {
  CheckInputs(table, bags, rows, n, x);
  std::vector<float> weights(static_cast<size_t>(length_) * heads_);
  RowVector q(dim_);
  for (int64_t i = 0; i < n; ++i) {
    if (mode_ == Mode::kAttention) {
      q = query_.value;
      if (query_dim_ > 0) q.noalias() += x.row(i) * query_proj_.value.transpose();
    }
    const int64_t b = bags.offsets[rows[i]], e = bags.offsets[rows[i] + 1];
    PoolOne(table, bags.ids.data() + b, e - b, q.data(), out + i * stride, weights.data());
  }
}

void AttentionPooling::Forward(const Matrix& table, const data::Bags& bags, const int32_t* rows,
                               int64_t n, const Matrix& x, float* out, int64_t stride,
                               AttentionContext* ctx) {
  CheckInputs(table, bags, rows, n, x);
  ctx->table = &table;
  ctx->x = &x;
  ctx->bags = &bags;
  ctx->rows = rows;
  ctx->n = n;
  ctx->starts.resize(n + 1);
  ctx->entries.clear();
  ctx->starts[0] = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = bags.offsets[rows[i]], e = bags.offsets[rows[i] + 1];
    ctx->entries.insert(ctx->entries.end(), bags.ids.begin() + b, bags.ids.begin() + e);
    ctx->starts[i + 1] = static_cast<int64_t>(ctx->entries.size());
  }
  ctx->weights.resize(ctx->entries.size() * heads_);
  if (mode_ == Mode::kAttention) {
    if (ctx->q.rows() != n || ctx->q.cols() != dim_) ctx->q.resize(n, dim_);
    ctx->q.rowwise() = query_.value.row(0);
    if (query_dim_ > 0) ctx->q.noalias() += x * query_proj_.value.transpose();
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = ctx->starts[i];
    PoolOne(table, ctx->entries.data() + b, ctx->starts[i + 1] - b,
            mode_ == Mode::kAttention ? ctx->q.row(i).data() : nullptr, out + i * stride,
            ctx->weights.data() + b * heads_);
  }
}

void AttentionPooling::Backward(AttentionContext* ctx, const float* dy, int64_t stride,
                                Matrix* dx) {
  if (ctx->table == nullptr) throw Error("AttentionPooling::Backward before Forward");
  const Matrix& table = *ctx->table;
  const int64_t n = ctx->n;
  ctx->dtable.resize(ctx->entries.size() * dim_);
  const bool attention = mode_ == Mode::kAttention;
  if (attention) {
    if (ctx->dq.rows() != n || ctx->dq.cols() != dim_) ctx->dq.resize(n, dim_);
    ctx->dq.setZero();
  }
  const int dh = dim_ / heads_;
  const float inv = 1.0f / std::sqrt(static_cast<float>(dh));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = ctx->starts[i], len = ctx->starts[i + 1] - b;
    const Eigen::Map<const RowVector> g(dy + i * stride, dim_);
    for (int h = 0; h < heads_; ++h) {
      const auto gh = g.segment(h * dh, dh);
      // d loss / d a_j = <g_h, e_{j,h}>; the values' share of d loss / d e_j is a_j g_h.
      float weighted = 0.0f;  // sum_j a_j da_j
      for (int64_t j = 0; j < len; ++j) {
        const float a = ctx->weights[(b + j) * heads_ + h];
        const int32_t r = ctx->entries[b + j];
        Eigen::Map<RowVector> de(ctx->dtable.data() + (b + j) * dim_ + h * dh, dh);
        de = a * gh;
        if (attention) weighted += a * gh.dot(table.row(r).segment(h * dh, dh));
      }
      if (!attention) continue;
      // Softmax: d s_j = a_j (da_j - sum_k a_k da_k); then s_j = <q_h, e_{j,h}> inv + r.
      auto qh = ctx->q.row(i).segment(h * dh, dh);
      auto dqh = ctx->dq.row(i).segment(h * dh, dh);
      for (int64_t j = 0; j < len; ++j) {
        const float a = ctx->weights[(b + j) * heads_ + h];
        const auto e = table.row(ctx->entries[b + j]).segment(h * dh, dh);
        const float ds = a * (gh.dot(e) - weighted);
        dqh += (ds * inv) * e;
        Eigen::Map<RowVector> de(ctx->dtable.data() + (b + j) * dim_ + h * dh, dh);
        de += (ds * inv) * qh;
        recency_.grad(h, len - 1 - j) += ds;
      }
    }
  }
  if (!attention) return;
  query_.grad.row(0) += ctx->dq.colwise().sum();
  if (query_dim_ > 0) {
    query_proj_.grad.noalias() += ctx->dq.transpose() * *ctx->x;
    if (dx != nullptr) dx->noalias() += ctx->dq * query_proj_.value;
  }
}

void AttentionPooling::ScatterTableGradient(const AttentionContext& ctx, Parameter* table) {
  const int64_t d = table->grad.cols();
  for (size_t k = 0; k < ctx.entries.size(); ++k) {
    const int32_t r = ctx.entries[k];
    table->grad.row(r) += Eigen::Map<const RowVector>(ctx.dtable.data() + k * d, d);
    table->touched_rows.push_back(r);
  }
}

std::vector<NamedParameter> AttentionPooling::NamedParameters(const std::string& prefix) {
  std::vector<NamedParameter> out;
  if (mode_ == Mode::kMean) return out;
  out.push_back({prefix + "query", &query_});
  if (query_dim_ > 0) out.push_back({prefix + "query_proj.weight", &query_proj_});
  out.push_back({prefix + "recency", &recency_});
  return out;
}

std::vector<Parameter*> AttentionPooling::Parameters() {
  std::vector<Parameter*> out;
  for (auto& p : NamedParameters("")) out.push_back(p.parameter);
  return out;
}

std::string AttentionPooling::Describe() const {
  if (mode_ == Mode::kMean) return "Mean(last " + std::to_string(length_) + ")";
  return "Attention(" + std::to_string(heads_) + (heads_ == 1 ? " head" : " heads") + ", last " +
         std::to_string(length_) + ")";
}

}  // namespace twotower::nn
