// Training objectives over the tower outputs.
//
// A Loss sees one batch of n (user, item) pairs as the towers' outputs u (n x d) and v (n x d),
// the items' rows and labels, and the model's scorer, and returns the mean loss with its
// gradients w.r.t. u, v and the scorer. Objectives that compare a row with other rows' items
// (in-batch softmax, later mixed negatives, BPR, triplet) need no special path in the model or
// the trainer. MakeLoss (loss_factory.h) builds one from the config's `training.loss`.
//   bce      pointwise: logit = scale <u, v> + bias, binary cross-entropy with the label.
//   softmax  in-batch sampled softmax (Yi et al., "Sampling-Bias-Corrected Neural Modeling for
//            Large Corpus Item Recommendations", RecSys 2019; TFRS's Retrieval task): for row i,
//            logits s_ij = <u_i, v_j> / temperature - log q(item_j) for every item j of the
//            batch, q the item's sampling probability (logQ correction, optional), with the
//            row's own item as the target; a batch item equal to the row's item other than on
//            the diagonal is an accidental hit and is removed (logit -infinity). Loss:
//            mean_i (logsumexp_j s_ij - s_ii). Labels are not used: every row is a positive.
//   mixed, bpr, triplet, and softmax with hard negatives or history exclusion: SampledLoss below.
// Thread-safety: a Loss keeps scratch buffers; one per training loop.
#ifndef TWOTOWER_TRAIN_LOSS_H_
#define TWOTOWER_TRAIN_LOSS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/nn/gemm.h"

namespace twotower::train {

// Mean binary cross-entropy from logits z and labels y in {0, 1}, computed stably as
// max(z, 0) - z y + log(1 + exp(-|z|)) (no overflow for any z). If dz is not null it receives
// d(mean loss)/dz = (sigmoid(z) - y) / n. Returns the mean loss (double accumulation). With
// `multipliers` (n values, RowMultipliers) row i's loss and gradient are multiplied by m_i.
double BinaryCrossEntropyWithLogits(const Vector& z, const float* y, Vector* dz,
                                    const float* multipliers = nullptr);

// The rows' multipliers of a weighted mean: m_i = n w_i / sum_j w_j, so that mean_i (m_i L_i) =
// sum_i w_i L_i / sum_i w_i (all 0 when the weights sum to 0). With weights null, returns null
// (every row 1: the losses keep their unweighted arithmetic); else out's data. n weights >= 0.
const float* RowMultipliers(const float* weights, int64_t n, std::vector<float>* out);

struct LossBatch {
  const Matrix* u = nullptr;  // n x d user tower outputs
  // (n + m) x d item tower outputs: the n pairs' items, then the m negatives the loss drew
  // (Loss::DrawNegatives; m = 0 for losses that draw none).
  const Matrix* v = nullptr;
  const int32_t* item_rows = nullptr;  // n + m: each row's item (row of the items table)
  const int32_t* user_rows = nullptr;  // n: each pair's user (row of the users table), or null
  const float* labels = nullptr;       // n: 0/1 (bce)
  // n: each row's weight (>= 0; implicit-feedback confidence, TrainingConfig::weight_transform),
  // or null for 1. Every loss then returns the weighted mean sum_i w_i L_i / sum_i w_i of its
  // rows' losses L_i (and its gradient): a weight scales a row's own term, and with in-batch
  // negatives the row's items still serve the other rows as negatives, unweighted.
  const float* weights = nullptr;
  float scale = 1.0f, bias = 0.0f;  // the model's scorer (bce)
  // The step's seed, for random choices inside a loss (SampledLoss's easy negatives); the
  // trainer passes the one it gave DrawNegatives, so a step is reproducible.
  uint64_t seed = 0;
  // Row shares (losses whose SupportsRowShares() is true; data-parallel training,
  // train/replicas.h): u holds only rows [row_offset, row_offset + u->rows()) of a batch of
  // rows_total rows (0: u->rows(), the whole batch), v and the other arrays are the whole
  // batch's. The loss then computes those rows' terms of the whole batch's mean: loss, du
  // (u->rows() x d), dv (all of v's rows: these rows' share), d_log_scale and d_bias are the
  // shares whose sums over a partition of the rows are the whole batch's values.
  int64_t row_offset = 0, rows_total = 0;
};

struct LossOutput {
  double loss = 0.0;  // mean over the batch's rows
  Matrix du, dv;      // n x d and (n + m) x d: d loss / d u, d loss / d v
  double d_log_scale = 0.0, d_bias = 0.0;
  Vector logits;  // bce: the n pair logits (for accuracy / AUC); empty otherwise
};

class Loss {
 public:
  virtual ~Loss() = default;
  // Computes the loss and its gradients for one batch into *out (buffers reused across calls).
  // Throws Error for mismatched shapes.
  virtual void Compute(const LossBatch& batch, LossOutput* out) = 0;
  // Whether Compute takes LossBatch::row_offset / rows_total (row shares).
  virtual bool SupportsRowShares() const { return false; }
  // The item rows (of the items table) this step's loss needs encoded besides the batch's n
  // items: the trainer encodes them after the batch's items (LossBatch::v). `seed` fixes the
  // draws, so a step is reproducible (the trainer derives it from the seed and step count).
  // Default: none.
  virtual void DrawNegatives(const int32_t* user_rows, const int32_t* item_rows, int64_t n,
                             uint64_t seed, std::vector<int32_t>* negatives) {
    (void)user_rows, (void)item_rows, (void)n, (void)seed;
    negatives->clear();
  }
  virtual std::string name() const = 0;
  // True when the loss reads labels (trains on every labelled pair); false when every pair is a
  // positive (the trainer feeds only the interactions counted as positives).
  virtual bool pointwise() const = 0;
};

class BceLoss : public Loss {
 public:
  void Compute(const LossBatch& batch, LossOutput* out) override;
  std::string name() const override { return "bce"; }
  bool pointwise() const override { return true; }

 private:
  Vector dot_, dz_, dscaled_;
  std::vector<float> multipliers_;
};

struct SoftmaxOptions {
  double temperature = 0.05;
  // log q per item row (the items table's rows), empty = no logQ correction.
  std::vector<float> log_q;
  bool remove_accidental_hits = true;
  // The products U V^T and the gradients' G V, G^T U (nn/gemm.h); the softmax is fp32.
  nn::Precision precision = nn::Precision::kFp32;
};

class InBatchSoftmaxLoss : public Loss {
 public:
  explicit InBatchSoftmaxLoss(SoftmaxOptions options);
  void Compute(const LossBatch& batch, LossOutput* out) override;
  bool SupportsRowShares() const override { return true; }
  std::string name() const override { return "softmax"; }
  bool pointwise() const override { return false; }

 private:
  SoftmaxOptions options_;
  Matrix logits_;
  Vector column_log_q_;  // log q of each batch column's item
  std::vector<float> multipliers_;
};

// ---- sampled negatives: mixed, bpr, triplet ----------------------------------------------------
//
// For row i (user u_i, positive item v_i) the negatives are, by sampler:
//   in_batch    the other rows' items v_j, j != i (each drawn by the data: probability q_j, the
//               item's share of the training positives; expected count n q_j in a batch);
//   uniform     m items drawn uniformly from the catalogue with replacement, shared by the batch
//               (expected count m / N);
//   popularity  m items drawn with probability q_j, shared by the batch (expected count m q_j);
//   mixed       in_batch and uniform together (Yang et al., "Mixed Negative Sampling for
//               Learning Two-tower Neural Networks in Recommendations", WWW 2020): items nobody
//               clicked, never in a batch, are pushed down too.
// A negative equal to the row's positive item (an accidental hit, with remove_accidental_hits)
// and, with `history`, any item in the row's user's training positives is masked: it is not a
// negative for that row. With num_hard_negatives = h > 0 a row keeps only its h highest-scoring
// unmasked negatives (TFRS Retrieval's num_hard_negatives; fewer when it has fewer), and with
// num_easy_negatives = e > 0 also e of its R other unmasked negatives, drawn uniformly without
// replacement (all R when R <= e): easy negatives blended with the hard ones (Huang et al.,
// "Embedding-based Retrieval in Facebook Search", KDD 2020). Hard negatives alone select the
// items a user scores highest, which on real data are often items the user likes but has not
// rated; in-batch softmax with 64 hard of 1,023 collapsed on MovieLens-100K (BENCHMARKS.md).
// Objectives, with s = <u, v> and a row's kept negatives K_i (|K_i| = k_i):
//   softmax  z = s / temperature - log Q_j (logQ correction: Q_j the negative's expected count
//            in the sample by its source, above; the positive is corrected as an in-batch
//            column, by log(n q_i)); loss_i = logsumexp({z_i+} U {z_ij : j in K_i}) - z_i+
//            (Yi et al. 2019; Yang et al. 2020, each source with its own correction). An easy
//            negative's logit gets + log(R / min(R, e)): it stands for that many of the row's
//            non-hard negatives, so the normaliser is an unbiased estimate of the one over all.
//   bpr      loss_i = 1/k_i sum_{j in K_i} w_ij softplus(-(s_i+ - s_ij) / temperature)
//            (Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback",
//            UAI 2009, with a temperature since normalised towers give |s| <= 1).
//   triplet  loss_i = 1/k_i sum_{j in K_i} w_ij max(0, margin - s_i+ + s_ij) (the hinge on
//            the similarity gap; Schroff et al., FaceNet, CVPR 2015, on inner products).
// w_ij: 1, or with logq_correction and a non-uniform source the importance weight
// (1 / (N q_j)) / mean over K_i of the same, so the expectation is the one over uniform negatives
// that BPR and the triplet loss are defined with (self-normalised: mean 1 in every row).
// A row without unmasked negatives contributes 0. The loss is the mean over the n rows.
enum class Objective { kSoftmax, kBpr, kTriplet };
enum class Sampler { kInBatch, kUniform, kPopularity, kMixed };

struct SampledLossOptions {
  Objective objective = Objective::kSoftmax;
  Sampler sampler = Sampler::kInBatch;
  int num_sampled = 0;         // m: uniform / popularity / mixed draws per batch (>= 1 for those)
  int num_hard_negatives = 0;  // 0: every unmasked negative
  int num_easy_negatives = 0;  // with num_hard_negatives: random others kept per row (>= 0)
  double temperature = 0.05;   // softmax, bpr (> 0)
  double margin = 0.5;         // triplet (> 0)
  bool logq_correction = true;
  bool remove_accidental_hits = true;
  // q_j per item row (sums to 1): the popularity sampler's distribution and the in-batch
  // columns' correction. Required (num_items entries) for in_batch, mixed and popularity, and
  // for softmax with logq_correction (its positive is corrected by log(n q)).
  std::vector<double> item_probability;
  int64_t num_items = 0;  // N: the catalogue the uniform and popularity samplers draw from
  // Per user row: sorted item rows never used as that user's negatives (empty: none).
  std::vector<std::vector<int32_t>> history;
  // The dense products (scores U V_neg^T; with every negative kept, the gradients G V_neg and
  // G^T U) (nn/gemm.h). The positive's score, the gathers of hard negatives and the loss: fp32.
  nn::Precision precision = nn::Precision::kFp32;
};

class SampledLoss : public Loss {
 public:
  // Throws Error for options that do not fit together (a missing distribution, m < 1 for a
  // drawing sampler, temperature or margin <= 0, easy negatives without hard ones).
  explicit SampledLoss(SampledLossOptions options);
  void DrawNegatives(const int32_t* user_rows, const int32_t* item_rows, int64_t n, uint64_t seed,
                     std::vector<int32_t>* negatives) override;
  // Needs batch.user_rows when history is set. Throws Error for mismatched shapes.
  void Compute(const LossBatch& batch, LossOutput* out) override;
  std::string name() const override;
  bool pointwise() const override { return false; }

 private:
  SampledLossOptions o_;
  std::vector<double> cumulative_;  // popularity sampler: running sums of item_probability
  Matrix scores_, grad_;            // n x C: negatives' scores, then d loss / d score
  // With hard negatives, d loss / d score as up to h + e (column, value) pairs per row instead.
  std::vector<int32_t> sparse_col_, sparse_count_;
  std::vector<float> sparse_grad_;
  Vector pos_, gpos_;           // n: positives' scores and d loss / d score
  std::vector<float> log_q_;    // per column: log of its expected count
  std::vector<float> log_p_;    // per item row: log item_probability (empty for uniform)
  struct Scratch {              // one per thread
    std::vector<int32_t> keep;  // a row's kept columns
    std::vector<float> values;  // hard-negative selection
    std::vector<float> z, w;    // a row's kept logits and weights
    std::vector<int32_t> rest;  // easy-negative candidates: the row's non-hard columns
    std::vector<float> rest_z;  // and their logits
  };
  std::vector<Scratch> scratch_;
  std::vector<double> partial_;  // per thread: its rows' loss
  std::vector<float> multipliers_;
};

// Sampling probabilities for the logQ correction: log(count_j / total) for every item row j with
// count_j > 0 occurrences among `positive_item_rows`; rows never seen get log(1 / total) (they
// never appear in a batch, so the value only has to be finite).
std::vector<float> LogSamplingProbabilities(const std::vector<int32_t>& positive_item_rows,
                                            int64_t num_items);

}  // namespace twotower::train

#endif  // TWOTOWER_TRAIN_LOSS_H_
