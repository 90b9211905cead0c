// SampledLoss: softmax, BPR and triplet objectives over in-batch and drawn negatives (loss.h).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "twotower/core/error.h"
#include "twotower/core/parallel.h"
#include "twotower/core/rng.h"
#include "twotower/train/loss.h"

namespace twotower::train {
namespace {

// Rows per unit of work shared among threads (core/parallel.h): a row costs a pass over the
// batch's columns, so 64 rows are tens of microseconds, well above the cost of a claim.
constexpr Eigen::Index kRowsPerChunk = 64;

bool UsesBatch(Sampler s) { return s == Sampler::kInBatch || s == Sampler::kMixed; }
bool Draws(Sampler s) { return s != Sampler::kInBatch; }

// softplus(x) = log(1 + e^x), without overflow for large x.
double Softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }
double Sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

}  // namespace

SampledLoss::SampledLoss(SampledLossOptions options) : o_(std::move(options)) {
  if ((o_.objective != Objective::kTriplet) && !(o_.temperature > 0.0)) {
    throw Error("SampledLoss: temperature must be > 0");
  }
  if (o_.objective == Objective::kTriplet && !(o_.margin > 0.0)) {
    throw Error("SampledLoss: margin must be > 0");
  }
  if (o_.num_hard_negatives < 0) throw Error("SampledLoss: num_hard_negatives must be >= 0");
  if (Draws(o_.sampler)) {
    if (o_.num_sampled < 1) throw Error("SampledLoss: the sampler draws at least 1 negative");
    if (o_.num_items < 1) throw Error("SampledLoss: an empty catalogue to draw from");
  }
  // q is the in-batch columns' correction and the popularity sampler's distribution; a softmax
  // with the correction also corrects its positive by it, whatever the sampler.
  const bool needs_q = o_.sampler != Sampler::kUniform ||
                       (o_.objective == Objective::kSoftmax && o_.logq_correction);
  if (needs_q && static_cast<int64_t>(o_.item_probability.size()) != o_.num_items) {
    throw Error("SampledLoss: item_probability needs one entry per item (" +
                std::to_string(o_.num_items) + "), got " +
                std::to_string(o_.item_probability.size()));
  }
  if (o_.num_easy_negatives < 0) throw Error("SampledLoss: num_easy_negatives must be >= 0");
  if (o_.num_easy_negatives > 0 && o_.num_hard_negatives == 0) {
    throw Error("SampledLoss: easy negatives are kept beside hard ones (num_hard_negatives > 0)");
  }
  if (needs_q) {
    // log q_j once per item: a step then gathers one float per column instead of computing a
    // logarithm (per column and per row, it was a fifth of a mixed epoch at 1M items).
    log_p_.resize(o_.item_probability.size());
    for (size_t j = 0; j < log_p_.size(); ++j) {
      log_p_[j] = static_cast<float>(std::log(std::max(o_.item_probability[j], 1e-30)));
    }
  }
  if (o_.sampler == Sampler::kPopularity) {
    cumulative_.resize(o_.item_probability.size());
    double sum = 0.0;
    for (size_t j = 0; j < o_.item_probability.size(); ++j) {
      sum += o_.item_probability[j];
      cumulative_[j] = sum;
    }
    if (!(sum > 0.0)) throw Error("SampledLoss: the popularity distribution sums to 0");
  }
}

std::string SampledLoss::name() const {
  switch (o_.objective) {
    case Objective::kSoftmax:
      return o_.sampler == Sampler::kMixed ? "mixed" : "softmax";
    case Objective::kBpr:
      return "bpr";
    case Objective::kTriplet:
      return "triplet";
  }
  return "sampled";
}

void SampledLoss::DrawNegatives(const int32_t* user_rows, const int32_t* item_rows, int64_t n,
                                uint64_t seed, std::vector<int32_t>* negatives) {
  (void)user_rows, (void)item_rows, (void)n;
  negatives->clear();
  if (!Draws(o_.sampler)) return;
  Rng rng(seed);
  negatives->resize(static_cast<size_t>(o_.num_sampled));
  for (int32_t& r : *negatives) {
    if (o_.sampler == Sampler::kPopularity) {
      // Inverse CDF by binary search: the first item whose running sum exceeds u * total.
      const double u = rng.Uniform() * cumulative_.back();
      const auto it = std::upper_bound(cumulative_.begin(), cumulative_.end(), u);
      r = static_cast<int32_t>(std::min<ptrdiff_t>(it - cumulative_.begin(),
                                                   static_cast<ptrdiff_t>(cumulative_.size()) - 1));
    } else {
      r = static_cast<int32_t>(rng.Below(static_cast<uint64_t>(o_.num_items)));
    }
  }
}

void SampledLoss::Compute(const LossBatch& b, LossOutput* out) {
  const Matrix& u = *b.u;
  const Matrix& v = *b.v;
  const Eigen::Index n = u.rows();
  const Eigen::Index m = v.rows() - n;
  if (u.cols() != v.cols() || m < 0) throw Error("SampledLoss: u and v do not fit together");
  if (m != (Draws(o_.sampler) ? o_.num_sampled : 0)) {
    throw Error("SampledLoss: v has " + std::to_string(m) + " negative rows, expected " +
                std::to_string(Draws(o_.sampler) ? o_.num_sampled : 0));
  }
  if (!o_.history.empty() && b.user_rows == nullptr) {
    throw Error("SampledLoss: history exclusion needs the batch's user rows");
  }
  // The negative columns: v's rows [first, n + m): the batch's items (in-batch samplers) and
  // the drawn ones.
  const Eigen::Index first = UsesBatch(o_.sampler) ? 0 : n;
  const Eigen::Index c = n + m - first;
  const auto vn = v.middleRows(first, c);
  scores_.resize(n, c);
  ParallelBlocks(n, kProductRows, 0, [&](int64_t r0, int64_t r1) {
    nn::MatMul(u.middleRows(r0, r1 - r0), false, vn, true, false, scores_.middleRows(r0, r1 - r0),
               o_.precision);
  });
  pos_.resize(n);
  pos_.noalias() = u.cwiseProduct(v.topRows(n)).rowwise().sum();
  // log Q per column: the expected count of the column's item in this batch's sample.
  log_q_.resize(static_cast<size_t>(c));
  const bool correct = o_.logq_correction;
  const double nn = static_cast<double>(n), nm = static_cast<double>(m);
  const double log_n = std::log(nn), log_m = m > 0 ? std::log(nm) : 0.0;
  const double log_uniform =
      log_m - std::log(static_cast<double>(std::max<int64_t>(o_.num_items, 1)));
  for (Eigen::Index j = 0; j < c; ++j) {
    const Eigen::Index col = first + j;
    const int32_t item = b.item_rows[col];
    double lq;
    if (col < n) {
      lq = log_n + log_p_[item];
    } else if (o_.sampler == Sampler::kPopularity) {
      lq = log_m + log_p_[item];
    } else {
      lq = log_uniform;
    }
    log_q_[j] = static_cast<float>(lq);
  }
  // With hard negatives a row keeps at most h + e of its C columns: its gradient is kept as a
  // list of (column, value) pairs and applied by row gathers and scatters, instead of a dense
  // n x C matrix and two GEMMs that would be mostly zeros (64 + 64 of 1,280 columns at scale).
  const bool sparse = o_.num_hard_negatives > 0;
  const Eigen::Index row_cap =
      sparse ? std::min<Eigen::Index>(
                   c, static_cast<Eigen::Index>(o_.num_hard_negatives) + o_.num_easy_negatives)
             : 0;
  if (sparse) {
    sparse_col_.resize(static_cast<size_t>(n * row_cap));
    sparse_grad_.resize(static_cast<size_t>(n * row_cap));
    sparse_count_.assign(static_cast<size_t>(n), 0);
  } else {
    grad_.resize(n, c);  // each row zeroed by its thread below
  }
  gpos_.setZero(n);
  // The loss is the mean over rows: every gradient is written already divided by n.
  const float* mult = RowMultipliers(b.weights, n, &multipliers_);
  const double inv_n = 1.0 / static_cast<double>(n);
  const bool pairwise = o_.objective != Objective::kSoftmax;
  const double inv_t = o_.objective == Objective::kTriplet ? 1.0 : 1.0 / o_.temperature;
  double total = 0.0;
  // Rows are independent: each thread works with its own scratch (a slot of ParallelFor).
  const Eigen::Index chunks = (n + kRowsPerChunk - 1) / kRowsPerChunk;
  const int threads = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(chunks)));
  // Grown, never shrunk (a short last batch uses fewer threads), and every buffer reserved for
  // a whole row of C, so no step after the first allocates.
  if (scratch_.size() < static_cast<size_t>(threads)) scratch_.resize(static_cast<size_t>(threads));
  for (Scratch& sc : scratch_) {
    for (auto* v : {&sc.keep, &sc.rest}) v->reserve(static_cast<size_t>(c));
    for (auto* v : {&sc.values, &sc.z, &sc.w, &sc.rest_z}) v->reserve(static_cast<size_t>(c));
  }
  partial_.assign(static_cast<size_t>(chunks), 0.0);
  // One row: writes only row i of grad_ (or sparse_*) and gpos_, and adds its loss to total.
  const auto row = [&](Eigen::Index i, Scratch& sc, double& total) {
    std::vector<int32_t>& keep_ = sc.keep;
    std::vector<float>& z_ = sc.z;
    std::vector<float>& w_ = sc.w;
    if (!sparse) grad_.row(i).setZero();
    // d loss / d s for the row's t-th kept column.
    const auto put = [&](size_t t, double g) {
      if (sparse) {
        sparse_col_[static_cast<size_t>(i * row_cap) + t] = keep_[t];
        sparse_grad_[static_cast<size_t>(i * row_cap) + t] = static_cast<float>(g);
      } else {
        grad_(i, keep_[t]) = static_cast<float>(g);
      }
    };
    const int32_t positive = b.item_rows[i];
    const std::vector<int32_t>* seen =
        o_.history.empty() ? nullptr : &o_.history[static_cast<size_t>(b.user_rows[i])];
    // The row's unmasked negatives, with the value hard-negative mining ranks them by.
    keep_.clear();
    z_.clear();
    for (Eigen::Index j = 0; j < c; ++j) {
      const Eigen::Index col = first + j;
      if (col == i) continue;  // the row's own positive
      const int32_t item = b.item_rows[col];
      if (o_.remove_accidental_hits && item == positive) continue;
      if (seen != nullptr && std::binary_search(seen->begin(), seen->end(), item)) continue;
      keep_.push_back(static_cast<int32_t>(j));
      const double s = scores_(i, j) * inv_t;
      z_.push_back(static_cast<float>(!pairwise && correct ? s - log_q_[j] : s));
    }
    // Softmax: the log of how many of the row's non-hard negatives each easy one stands for.
    float easy_log_weight = 0.0f;
    size_t hard_kept = keep_.size();
    if (o_.num_hard_negatives > 0 && static_cast<int>(keep_.size()) > o_.num_hard_negatives) {
      // The h highest, ties to the lower column: the h-th largest value by selection on a copy
      // of the values (contiguous floats), then one stable pass moving every value above it and,
      // among values equal to it, the first ones to the front (keep_ is in column order); the
      // others follow in column order. A min-heap of the h largest measured 7% slower per epoch.
      const int h = o_.num_hard_negatives;
      std::vector<float>& values = sc.values;
      values.assign(z_.begin(), z_.end());
      std::nth_element(values.begin(), values.begin() + (h - 1), values.end(),
                       std::greater<float>());
      const float threshold = values[static_cast<size_t>(h - 1)];
      int above = 0;
      for (float z : z_) above += z > threshold;
      int ties = h - above;
      const int e = o_.num_easy_negatives;
      std::vector<int32_t>& rest = sc.rest;
      std::vector<float>& rest_z = sc.rest_z;
      rest.clear();
      rest_z.clear();
      size_t out = 0;
      for (size_t t = 0; t < keep_.size(); ++t) {
        // out < h: at most h are hard even when NaN scores leave nth_element without an order
        // (the sparse rows hold h + e entries).
        if (static_cast<int>(out) < h &&
            (z_[t] > threshold || (z_[t] == threshold && ties-- > 0))) {
          keep_[out] = keep_[t];
          z_[out] = z_[t];
          ++out;
        } else if (e > 0) {
          rest.push_back(keep_[t]);
          rest_z.push_back(z_[t]);
        }
      }
      keep_.resize(out);
      z_.resize(out);
      hard_kept = out;
      if (e > 0) {
        // Easy negatives (Huang et al., "Embedding-based Retrieval in Facebook Search", KDD
        // 2020, blend them with hard ones): e of the rest drawn without replacement by a partial
        // Fisher-Yates shuffle, from a generator of the step's seed and the row (so the choice
        // does not depend on the thread count).
        const size_t r = rest.size(), take = std::min(r, static_cast<size_t>(e));
        Rng rng(b.seed ^ (0xD1B54A32D192ED03ull * static_cast<uint64_t>(i + 1)));
        for (size_t t = 0; t < take; ++t) {
          const size_t pick = t + static_cast<size_t>(rng.Below(r - t));
          std::swap(rest[t], rest[pick]);
          std::swap(rest_z[t], rest_z[pick]);
          keep_.push_back(rest[t]);
          z_.push_back(rest_z[t]);
        }
        if (take > 0) {
          easy_log_weight = static_cast<float>(std::log(static_cast<double>(r) / take));
        }
      }
    }
    const size_t k = keep_.size();
    if (k == 0) return;
    // The row's weight in the mean (1 without weights: the same arithmetic as unweighted).
    const double m_i = mult ? static_cast<double>(mult[i]) : 1.0;
    const double row_inv_n = inv_n * m_i;
    if (sparse) sparse_count_[static_cast<size_t>(i)] = static_cast<int32_t>(k);
    if (!pairwise) {
      double z_pos = pos_[i] * inv_t;
      if (correct) z_pos -= log_n + log_p_[positive];
      // An easy negative stands for R / e of the row's R non-hard negatives: its logit gets
      // log(R / e), so the normaliser is an unbiased estimate of the one over all of them.
      for (size_t t = hard_kept; t < k; ++t) z_[t] += easy_log_weight;
      double max = z_pos;
      for (float z : z_) max = std::max(max, static_cast<double>(z));
      double sum = std::exp(z_pos - max);
      for (float z : z_) sum += std::exp(static_cast<double>(z) - max);
      total += m_i * (max + std::log(sum) - z_pos);
      // d loss_i / d z = softmax - [positive]; z = s / t (the correction is a constant).
      gpos_[i] = static_cast<float>((std::exp(z_pos - max) / sum - 1.0) * inv_t * row_inv_n);
      for (size_t t = 0; t < k; ++t) {
        put(t, std::exp(static_cast<double>(z_[t]) - max) / sum * inv_t * row_inv_n);
      }
      return;
    }
    // Importance weights, self-normalised over the row's kept negatives.
    w_.assign(k, 1.0f);
    if (correct && o_.sampler != Sampler::kUniform) {
      double mean = 0.0;
      for (size_t t = 0; t < k; ++t) {
        const Eigen::Index col = first + keep_[t];
        const double q = o_.item_probability[b.item_rows[col]];
        w_[t] = static_cast<float>(1.0 / (static_cast<double>(o_.num_items) * std::max(q, 1e-30)));
        mean += w_[t];
      }
      mean /= static_cast<double>(k);
      for (float& w : w_) w = static_cast<float>(w / mean);
    }
    const double inv_k = 1.0 / static_cast<double>(k);
    double row = 0.0, gp = 0.0;
    for (size_t t = 0; t < k; ++t) {
      const double s_neg = scores_(i, keep_[t]);
      const double w = w_[t] * inv_k;
      double g;  // d loss_i / d s_neg (= - d loss_i / d s_pos for this pair)
      if (o_.objective == Objective::kBpr) {
        const double x = (pos_[i] - s_neg) * inv_t;
        row += w * Softplus(-x);
        g = w * Sigmoid(-x) * inv_t;
      } else {
        const double hinge = o_.margin - pos_[i] + s_neg;
        row += w * std::max(hinge, 0.0);
        g = hinge > 0 ? w : 0.0;
      }
      put(t, g * row_inv_n);
      gp -= g;
    }
    total += m_i * row;
    gpos_[i] = static_cast<float>(gp * row_inv_n);
  };
  // Rows in chunks of kRowsPerChunk, claimed by whichever threads are running
  // (core/parallel.h); each chunk sums its loss on its own and the chunks are added in order,
  // so the loss does not depend on the thread count or on which thread ran a chunk.
  const auto chunk = [&](int64_t ch, int slot) {
    Scratch& sc = scratch_[static_cast<size_t>(slot)];
    double& total = partial_[static_cast<size_t>(ch)];
    const Eigen::Index end = std::min<Eigen::Index>(n, (ch + 1) * kRowsPerChunk);
    for (Eigen::Index i = ch * kRowsPerChunk; i < end; ++i) row(i, sc, total);
  };
  ParallelFor(chunks, threads, IndexBody(chunk));
  for (double t : partial_) total += t;
  out->loss = total / nn;
  // s_ij = <u_i, v_col(j)>, s_i+ = <u_i, v_i>.
  out->du.resize(n, u.cols());
  out->dv.setZero(n + m, v.cols());
  if (sparse) {
    // du_i = sum_t g_it v_col(t): a gather per row (rows are independent, so in parallel);
    // dv_col += g_it u_i: a scatter, in row order on one thread, so the sums do not depend on
    // the thread count (n (h + e) row updates of d floats: 65,536 x 32 at scale, ~0.2 ms).
    const auto gather = [&](int64_t ch, int) {
      const Eigen::Index end = std::min<Eigen::Index>(n, (ch + 1) * kRowsPerChunk);
      for (Eigen::Index i = ch * kRowsPerChunk; i < end; ++i) {
        auto du_i = out->du.row(i);
        du_i.setZero();
        const size_t base = static_cast<size_t>(i * row_cap);
        for (int32_t t = 0; t < sparse_count_[static_cast<size_t>(i)]; ++t) {
          du_i.noalias() += sparse_grad_[base + t] * vn.row(sparse_col_[base + t]);
        }
      }
    };
    ParallelFor(chunks, threads, IndexBody(gather));
    for (Eigen::Index i = 0; i < n; ++i) {
      const size_t base = static_cast<size_t>(i * row_cap);
      for (int32_t t = 0; t < sparse_count_[static_cast<size_t>(i)]; ++t) {
        out->dv.row(first + sparse_col_[base + t]).noalias() += sparse_grad_[base + t] * u.row(i);
      }
    }
  } else {
    ParallelBlocks(n, kProductRows, 0, [&](int64_t r0, int64_t r1) {
      nn::MatMul(grad_.middleRows(r0, r1 - r0), false, vn, false, false,
                 out->du.middleRows(r0, r1 - r0), o_.precision);
    });
    ParallelBlocks(c, kProductRows, 0, [&](int64_t j0, int64_t j1) {
      nn::MatMul(grad_.middleCols(j0, j1 - j0), true, u, false, false,
                 out->dv.middleRows(first + j0, j1 - j0), o_.precision);
    });
  }
  out->du.array() += v.topRows(n).array().colwise() * gpos_.array();
  out->dv.topRows(n).array() += u.array().colwise() * gpos_.array();
  out->d_log_scale = 0.0;
  out->d_bias = 0.0;
  out->logits.resize(0);
}

}  // namespace twotower::train
