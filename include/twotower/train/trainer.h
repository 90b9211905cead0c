// Training and evaluation of a TwoTowerModel on pointwise (user, item, liked) data.
//
// Train(): the lab's loop. Per epoch: shuffle the training interactions, step Adam over mini-
// batches with BCE on the logits, then score the validation split; keep the weights with the best
// val AUC, stop after `early_stopping_patience` epochs without improvement, evaluate the best
// weights on the test split. With a run folder it writes config.yaml, metrics.csv (one row per
// epoch), model_best.safetensors, model_last.safetensors, test_metrics.json and
// training_curves.svg, each atomically. Same seed and thread count, same metrics.csv bytes.
// Not thread-safe: one Train call at a time per model.
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
#include "twotower/train/config.h"

namespace twotower::train {

struct EvalMetrics {
  int64_t count = 0;
  double loss = 0, accuracy = 0, auc = 0;
  double oracle_auc = 0;  // AUC of p_true; NaN when the file has none
};

// Scores every interaction in inference mode. Users and items are each encoded once, then pairs
// are scored by dot product, so the cost is (users + items) tower passes, not one per pair.
// `progress`, if given, counts the steps: one per tower pass and one per 65,536 pairs scored.
EvalMetrics Evaluate(const model::TwoTowerModel& model, const Matrix& user_features,
                     const Matrix& item_features, const data::Interactions& data,
                     ProgressBar* progress = nullptr);

struct EpochRecord {
  int epoch = 0;
  double train_loss = 0, train_accuracy = 0, train_auc = 0;
  double val_loss = 0, val_accuracy = 0, val_auc = 0;
  bool best = false;
  double seconds = 0;
};

struct TrainOptions {
  bool progress = true;         // progress bars on stderr
  std::ostream* log = nullptr;  // per-epoch lines; null = silent
  std::string run_dir;          // empty = write nothing
};

struct TrainResult {
  std::unique_ptr<model::TwoTowerModel> model;  // holds the best weights
  std::vector<EpochRecord> history;
  int best_epoch = 0;
  EvalMetrics test;
  double train_seconds = 0;
};

// Trains on an already loaded data set.
TrainResult Train(const Config& config, const data::Dataset& data, const TrainOptions& options);

// Creates <config.output_dir>/<config.run_name>_<YYYYmmdd_HHMMSS>[_N]/ and returns its path.
std::string CreateRunDirectory(const Config& config);

}  // namespace twotower::train

#endif  // TWOTOWER_TRAIN_TRAINER_H_
