// Training and evaluation of a TwoTowerModel.
//
// Train(): per epoch, shuffle the training examples (every labelled pair for a pointwise loss such
// as bce; the pairs counted as positives under training.positives for softmax), run
// Trainer::Step over mini-batches, then evaluate the validation split: pointwise loss / accuracy /
// AUC of the labelled pairs, and the ranking metrics of evaluation.k (metrics.h) over a full
// ranking of all items, each user's training items excluded. Keep the weights with the best
// monitored value (training.monitor), stop after `early_stopping_patience` epochs without
// improvement. With training.refit, train a fresh model (same seed) on train + validation for the
// best epoch count (model_refit.safetensors). The epochs, selection, checkpoints and run folder
// are the one fit loop's (fit.h), shared with the ranker. Evaluate the final weights on the test
// split (ranking: train and validation items excluded) beside the MostPop baseline under the
// same protocol (test_metrics.json). Same seed and thread count, same metrics.csv bytes. Not
// thread-safe: one Train call at a time per model.
#ifndef TWOTOWER_TRAIN_TRAINER_H_
#define TWOTOWER_TRAIN_TRAINER_H_

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "twotower/core/progress.h"
#include "twotower/data/dataset.h"
#include "twotower/model/two_tower.h"
#include "twotower/nn/adam.h"
#include "twotower/train/config.h"
#include "twotower/train/fit.h"
#include "twotower/train/loss.h"
#include "twotower/train/loss_factory.h"
#include "twotower/train/metrics.h"
#include "twotower/train/tasks.h"

namespace twotower::train {

// Scores every interaction in inference mode. Users and items are each encoded once, then pairs
// are scored by dot product, so the cost is (users + items) tower passes, not one per pair.
// `progress`, if given, counts the steps: one per tower pass and one per 65,536 pairs scored.
EvalMetrics Evaluate(const model::TwoTowerModel& model, const data::EncodedTable& user_features,
                     const data::EncodedTable& item_features, const data::Interactions& data,
                     ProgressBar* progress = nullptr);
// The same from embeddings the caller already has: u (users x d) and v (items x d), every row of
// the users and items tables through the model's towers (the scorer's scale and bias come from
// `model`). `progress` counts one step per 65,536 pairs, continuing from `steps_done`.
EvalMetrics Evaluate(const model::TwoTowerModel& model, const Matrix& u, const Matrix& v,
                     const data::Interactions& data, ProgressBar* progress = nullptr,
                     int64_t steps_done = 0);

// Which split a ranking evaluation scores, and so which history it excludes: validation
// excludes each user's training items; test excludes training and validation items.
enum class Split { kVal, kTest };

// Ranking metrics of `split` (positives: its interactions counted under `positives_only`) for
// the model: every user tower and item tower pass once, then EvaluateRankingAcrossRanks (under
// mpirun a collective, each rank ranking a share of the users; otherwise EvaluateRanking).
RankingMetrics EvaluateRankingSplit(const model::TwoTowerModel& model, const data::Dataset& data,
                                    Split split, bool positives_only, const std::vector<int>& ks);
// The same from embeddings the caller already has (u: users x d, v: items x d).
RankingMetrics EvaluateRankingSplit(const Matrix& u, const Matrix& v, const data::Dataset& data,
                                    Split split, bool positives_only, const std::vector<int>& ks);
// Per user row, the items a ranking evaluation of `split` excludes (train; test: train and val),
// and the positives it scores (the split's interactions, label 1 only with positives_only).
std::vector<std::vector<int32_t>> ExcludedItems(const data::Dataset& data, Split split);
std::vector<std::vector<int32_t>> SplitPositives(const data::Dataset& data, Split split,
                                                 bool positives_only);
// The MostPop baseline on the same split and protocol; popularity = the positives of the history
// the split excludes (train for validation; train and validation for test).
RankingMetrics EvaluateMostPopularSplit(const data::Dataset& data, Split split, bool positives_only,
                                        const std::vector<int>& ks);

// Each row of `source`'s weight in the loss: config.features.weight's column through
// config.training.weight_transform (TrainingConfig); empty when the config names no weight
// column. Throws Error naming features.weight when `source` lacks the column.
std::vector<float> LossWeights(const Config& config, const data::Interactions& source);

// One optimisation step, the one copy the trainer, the tests and the benchmarks call: forward
// both towers for n (user row, item row) pairs of the encoded tables, the loss, zero the
// gradients, backward, Adam. Buffers are reused: at a fixed n a step allocates nothing (a model
// with task heads excepted: their losses use small per-step temporaries).
// Not thread-safe.
class Trainer {
 public:
  // `model` must outlive the Trainer.
  // embedding_l2: lambda of the batch penalty lambda (mean |u_i|^2 + mean |v_i|^2), added to the
  // loss and its gradients (TrainingConfig::embedding_l2).
  // sampling_seed: the negatives a loss draws at step t come from a generator seeded with
  // (sampling_seed, t), so a resumed run draws what the uninterrupted one did.
  Trainer(model::TwoTowerModel* model, std::unique_ptr<Loss> loss, nn::AdamOptions adam,
          double embedding_l2 = 0.0, uint64_t sampling_seed = 0);
  ~Trainer();
  // labels: n values 0/1 (read by pointwise losses; may be null otherwise). Returns the batch's
  // mean loss, plus sum_t weight_t L_t of the model's tasks (tasks.h). `rng` drives dropout.
  // task_targets: per task, the n pairs' regression targets (null for item_class tasks); needed
  // when the model has a regression task. history: the n examples' user histories (a model with a
  // history feature; default: the users table's own, EncodedTable::history). weights: the n
  // rows' weights in the loss (LossBatch::weights; null: all 1).
  // Under mpirun with more than one rank (core/dist.h, train/replicas.h) every rank passes the
  // same global batch of n pairs: it runs the towers on its share (dist::Share), the loss runs on
  // the allgathered tower outputs (global in-batch negatives), and the gradients are summed over
  // the ranks before Adam, so every rank keeps identical parameters. Dropout then draws from a
  // generator of the (step, rank) instead of `rng`. Tasks are refused there (Error).
  double Step(const data::EncodedTable& users, const int32_t* user_rows,
              const data::EncodedTable& items, const int32_t* item_rows, const float* labels,
              int64_t n, Rng* rng, const std::vector<const float*>* task_targets = nullptr,
              model::HistoryRows history = {}, const float* weights = nullptr);
  // The item classes of the model's item_class tasks (FitTaskTargets).
  void SetTasks(TaskTargets targets);
  // Under mpirun: after every step the ranks compare a fingerprint of their parameters and Step
  // throws Error (kConflict) when they differ (TrainingConfig::replica_check "step").
  void CheckReplicasEveryStep(bool on) { check_every_step_ = on; }
  // The last step's unweighted task losses.
  const std::vector<double>& task_losses() const { return task_losses_; }
  // The last step's pair logits (pointwise losses; empty otherwise).
  const Vector& logits() const { return out_.logits; }
  const Loss& loss() const { return *loss_; }
  // The optimiser, for training checkpoints.
  nn::Adam& optimizer() { return adam_; }

 private:
  model::TwoTowerModel* model_;
  std::unique_ptr<Loss> loss_;
  std::vector<nn::Parameter*> params_;
  nn::Adam adam_;
  double embedding_l2_;
  uint64_t sampling_seed_;
  std::vector<int32_t> negatives_, item_rows_;  // the step's drawn negatives; items + negatives
  model::ModelContext ctx_;
  LossOutput out_;
  TaskTargets tasks_;
  TaskBatch task_batch_;
  TaskScratch task_scratch_;
  std::vector<double> task_losses_;
  bool check_every_step_ = false;
  struct Replicas;  // the data-parallel step's buffers (null in a one-process run)
  std::unique_ptr<Replicas> replicas_;
};

struct TrainResult {
  std::unique_ptr<model::TwoTowerModel> model;  // the best weights (the refitted model if refit)
  std::unique_ptr<model::TwoTowerModel> selected_model;  // refit: the model selected on val
  bool refit = false;
  std::vector<EpochRecord> history;
  int best_epoch = 0;
  EvalMetrics test;
  RankingMetrics test_ranking, test_most_popular;  // empty ks when evaluation.k is empty
  std::vector<TaskMetric> test_tasks;              // one per config.model.tasks entry
  double train_seconds = 0;
};

// Trains on an already loaded data set through the one fit loop (fit.h: epochs, selection,
// early stopping, checkpoints and resume, refit, the run folder's per-epoch files), then
// evaluates the final weights on the test split and writes test_metrics.json to the run folder.
// Throws Error for data that was loaded without the tasks' target columns, a ranking monitor
// with no validation positives, and whatever Fit throws.
TrainResult Train(const Config& config, const data::Dataset& data, const TrainOptions& options);

}  // namespace twotower::train

#endif  // TWOTOWER_TRAIN_TRAINER_H_
