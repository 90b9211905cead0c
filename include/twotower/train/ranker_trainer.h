// Training and evaluation of a Ranker (model/ranker.h; model.kind: ranker).
//
// TrainRanker: per epoch, shuffle every labelled training pair, run RankerTrainer::Step (BCE with
// logits, Adam) over mini-batches, then score the validation pairs: loss, accuracy, AUC. With
// training.sampler (uniform | popularity) each batch also gets training.num_negatives unrated
// (user, item) pairs labelled 0 (users in turn from the batch, items the user has not rated in
// train): what a ranker needs to rank all items rather than only rated ones. Keep the weights
// with the best training.monitor (val_auc, val_loss, or a ranking metric val_recall@K ...,
// which scores every item for every validation user each epoch), stop after
// early_stopping_patience epochs without improvement. Then the test split: its pairs' AUC, and,
// with evaluation.k, the ranking metrics of the ranker scoring every item for every test user
// (train and val items excluded; metrics.h's EvaluateRankingByScores) beside MostPop. The run
// folder, checkpoints, --resume and training.refit are the one fit loop's (fit.h), as for the
// two-tower model; test_metrics.json is the ranker's own.
// Under mpirun (core/dist.h) training is data-parallel as the two-tower model's (train/replicas.h):
// training.batch_size and num_negatives are per rank, every rank draws the same global batch
// (N x batch_size labelled pairs, N x num_negatives unrated ones) and runs the ranker on its
// contiguous share, and the gradients of the global batch's mean loss are summed over the ranks;
// the ranking metrics of validation and test are shared across the ranks by user (the pairs'
// loss and AUC are computed whole by every rank). N ranks then train the objective of one
// process with N times the batch and the negatives.
// Same seed and thread count, same metrics.csv bytes. Not thread-safe.
#ifndef TWOTOWER_TRAIN_RANKER_TRAINER_H_
#define TWOTOWER_TRAIN_RANKER_TRAINER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "twotower/data/dataset.h"
#include "twotower/model/ranker.h"
#include "twotower/nn/adam.h"
#include "twotower/train/config.h"
#include "twotower/train/metrics.h"
#include "twotower/train/trainer.h"

namespace twotower::train {

// Scores every labelled pair of `data` with the ranker in inference mode: BCE loss, accuracy,
// AUC (and the oracle AUC of p_true when the file has it).
EvalMetrics EvaluateRanker(const model::Ranker& ranker, const data::EncodedTable& users,
                           const data::EncodedTable& items, const data::Interactions& data);

// Ranking metrics of `split` (as EvaluateRankingSplit) with the ranker scoring every item for
// each evaluated user: users x items network passes.
// With across_ranks (a collective: every rank of an mpirun calls it) each rank scores a share of
// the users and the per-user values are gathered (EvaluateRankingByScores).
RankingMetrics EvaluateRankerRankingSplit(const model::Ranker& ranker, const data::Dataset& data,
                                          Split split, bool positives_only,
                                          const std::vector<int>& ks, bool across_ranks = false);

// One optimisation step: forward n pairs, mean BCE with logits against labels (0/1), zero the
// gradients, backward, Adam. At a fixed n a step allocates nothing after the first. Under mpirun
// each rank passes the same global batch: it computes its share and the ranks exchange
// gradients (every rank must call Step the same number of times).
class RankerTrainer {
 public:
  // `ranker` must outlive the trainer.
  RankerTrainer(model::Ranker* ranker, nn::AdamOptions adam);
  ~RankerTrainer();
  // Returns the batch's mean loss; logits() holds its n logits (the whole global batch's under
  // mpirun).
  double Step(const data::EncodedTable& users, const int32_t* user_rows,
              const data::EncodedTable& items, const int32_t* item_rows, const float* labels,
              int64_t n, Rng* rng);
  const Vector& logits() const;
  // The optimiser, for training checkpoints.
  nn::Adam& optimizer() { return adam_; }

 private:
  model::Ranker* ranker_;
  std::vector<nn::Parameter*> params_;
  nn::Adam adam_;
  model::RankerContext ctx_;
  Vector dlogits_;
  struct Replicas;  // under mpirun (core/dist.h): what the ranks exchange
  std::unique_ptr<Replicas> replicas_;
};

struct RankerTrainResult {
  std::unique_ptr<model::Ranker> model;           // the best weights (the refitted model if refit)
  std::unique_ptr<model::Ranker> selected_model;  // refit: the model selected on val
  bool refit = false;
  std::vector<EpochRecord> history;  // val_ranking empty: selection is pointwise
  int best_epoch = 0;
  EvalMetrics test;
  RankingMetrics test_ranking, test_most_popular;  // empty ks when evaluation.k is empty
  double train_seconds = 0;
};

// Trains through the one fit loop (fit.h: selection, early stopping, checkpoints and resume,
// refit, the run folder), then evaluates the test split and writes test_metrics.json. Throws
// Error for a config that is not a ranker's (Config::Validate's rules) and whatever Fit throws.
RankerTrainResult TrainRanker(const Config& config, const data::Dataset& data,
                              const TrainOptions& options);

}  // namespace twotower::train

#endif  // TWOTOWER_TRAIN_RANKER_TRAINER_H_
