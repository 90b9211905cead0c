// Training objectives over the tower outputs.
//
// A Loss sees one batch of n (user, item) pairs as the towers' outputs u (n x d) and v (n x d),
// the items' rows and labels, and the model's scorer, and returns the mean loss with its
// gradients w.r.t. u, v and the scorer. Objectives that compare a row with other rows' items
// (in-batch softmax, later mixed negatives, BPR, triplet) need no special path in the model or
// the trainer. MakeLoss builds one from the config's `training.loss`.
//   bce      pointwise: logit = scale <u, v> + bias, binary cross-entropy with the label.
//   softmax  in-batch sampled softmax (Yi et al., "Sampling-Bias-Corrected Neural Modeling for
//            Large Corpus Item Recommendations", RecSys 2019; TFRS's Retrieval task): for row i,
//            logits s_ij = <u_i, v_j> / temperature - log q(item_j) for every item j of the
//            batch, q the item's sampling probability (logQ correction, optional), with the
//            row's own item as the target; a batch item equal to the row's item other than on
//            the diagonal is an accidental hit and is removed (logit -infinity). Loss:
//            mean_i (logsumexp_j s_ij - s_ii). Labels are not used: every row is a positive.
// Thread-safety: a Loss keeps scratch buffers; one per training loop.
#ifndef TWOTOWER_TRAIN_LOSS_H_
#define TWOTOWER_TRAIN_LOSS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "twotower/core/matrix.h"

namespace twotower::train {

// Mean binary cross-entropy from logits z and labels y in {0, 1}, computed stably as
// max(z, 0) - z y + log(1 + exp(-|z|)) (no overflow for any z). If dz is not null it receives
// d(mean loss)/dz = (sigmoid(z) - y) / n. Returns the mean loss (double accumulation).
double BinaryCrossEntropyWithLogits(const Vector& z, const float* y, Vector* dz);

struct LossBatch {
  const Matrix* u = nullptr;           // n x d user tower outputs
  const Matrix* v = nullptr;           // n x d item tower outputs
  const int32_t* item_rows = nullptr;  // n: each pair's item (row of the items table)
  const float* labels = nullptr;       // n: 0/1 (bce)
  float scale = 1.0f, bias = 0.0f;     // the model's scorer (bce)
};

struct LossOutput {
  double loss = 0.0;  // mean over the batch's rows
  Matrix du, dv;      // n x d: d loss / d u, d loss / d v
  double d_log_scale = 0.0, d_bias = 0.0;
  Vector logits;  // bce: the n pair logits (for accuracy / AUC); empty otherwise
};

class Loss {
 public:
  virtual ~Loss() = default;
  // Computes the loss and its gradients for one batch into *out (buffers reused across calls).
  // Throws Error for mismatched shapes.
  virtual void Compute(const LossBatch& batch, LossOutput* out) = 0;
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
};

struct SoftmaxOptions {
  double temperature = 0.05;
  // log q per item row (the items table's rows), empty = no logQ correction.
  std::vector<float> log_q;
  bool remove_accidental_hits = true;
};

class InBatchSoftmaxLoss : public Loss {
 public:
  explicit InBatchSoftmaxLoss(SoftmaxOptions options);
  void Compute(const LossBatch& batch, LossOutput* out) override;
  std::string name() const override { return "softmax"; }
  bool pointwise() const override { return false; }

 private:
  SoftmaxOptions options_;
  Matrix logits_;
  Vector column_log_q_;  // log q of each batch column's item
};

// Sampling probabilities for the logQ correction: log(count_j / total) for every item row j with
// count_j > 0 occurrences among `positive_item_rows`; rows never seen get log(1 / total) (they
// never appear in a batch, so the value only has to be finite).
std::vector<float> LogSamplingProbabilities(const std::vector<int32_t>& positive_item_rows,
                                            int64_t num_items);

}  // namespace twotower::train

#endif  // TWOTOWER_TRAIN_LOSS_H_
