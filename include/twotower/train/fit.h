// The one fit loop: every model kind (the two-tower model, trainer.h; the ranker,
// ranker_trainer.h) trains through Fit, which owns what does not depend on the kind:
//
//   - epochs: FitModel::TrainEpoch, then FitModel::Validate on the validation split;
//   - the monitor (training.monitor: val_auc, val_loss or a ranking metric val_recall@K ...),
//     the best snapshot (kept in memory and written as model_best.safetensors whenever the
//     monitored value improves), early stopping after training.early_stopping_patience epochs
//     without improvement;
//   - checkpoints (checkpoint.safetensors after every epoch with training.checkpoint) and
//     TrainOptions::resume, which continues from one to the same bytes of metrics.csv;
//   - refit (training.refit): a fresh model of the same seed trained on train + validation for
//     the selected number of epochs (model_refit.safetensors);
//   - the run folder: config.yaml (at the start), metrics.csv and training_curves.svg (every
//     epoch), model_last.safetensors (at the end). Each file is written atomically
//     (core/files.h), so a crash at any moment leaves the previous version of each.
//
// A model kind supplies a FitModel (its model, optimiser, examples and generators); the test
// evaluation and test_metrics.json stay with the kind. The pattern is Keras' Model.fit over
// train_step / test_step, and PyTorch Lightning's Trainer over a LightningModule. Not
// thread-safe: one Fit at a time per FitModel.
#ifndef TWOTOWER_TRAIN_FIT_H_
#define TWOTOWER_TRAIN_FIT_H_

#include <atomic>
#include <iosfwd>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/core/rng.h"
#include "twotower/nn/adam.h"
#include "twotower/nn/layer.h"
#include "twotower/train/config.h"
#include "twotower/train/metrics.h"

namespace twotower::train {

// One epoch's metrics: one row of metrics.csv.
struct EpochRecord {
  int epoch = 0;
  double train_loss = 0, train_accuracy = 0, train_auc = 0;
  double val_loss = 0, val_accuracy = 0, val_auc = 0;
  RankingMetrics val_ranking;  // empty ks when not ranked
  // The auxiliary tasks' validation metrics ("val_<task>_rmse" | "val_<task>_accuracy"; tasks.h).
  std::vector<std::string> task_names;
  std::vector<double> val_tasks;
  double monitored = 0;  // the value of training.monitor
  bool best = false;
  double seconds = 0;
};

struct TrainOptions {
  bool progress = true;         // progress bars on stderr
  std::ostream* log = nullptr;  // per-epoch lines; null = silent
  std::string run_dir;          // empty = write nothing
  // Continue the run in run_dir from its checkpoint.safetensors (see Fit).
  bool resume = false;
  // When not null and set (from another thread, or a signal handler: it is lock-free), training
  // stops before its next batch and Fit throws Error(kUnavailable, "training interrupted ...").
  // The run folder then holds what the last completed epoch wrote, checkpoint included, so
  // `resume` continues the run to the bytes an uninterrupted one writes.
  const std::atomic<bool>* stop = nullptr;
};

// The checkpoint Fit writes after every epoch when training.checkpoint is set.
constexpr char kCheckpointFile[] = "checkpoint.safetensors";

// What a model kind gives the fit loop. Implementations hold the model, its optimiser, the
// training examples and the generators (init, shuffle, dropout, ...), all seeded from
// config.seed, so that the same seed gives the same bytes.
class FitModel {
 public:
  virtual ~FitModel() = default;

  // One pass over the training examples, shuffled first (Fisher-Yates over the previous epoch's
  // order, from the kind's shuffle generator). Fills r->train_loss, train_accuracy, train_auc
  // (NaN where the loss does not define them). Progress bars on stderr when `progress`.
  virtual void TrainEpoch(bool progress, EpochRecord* r) = 0;
  // The example order and shuffle generator after `epochs` completed epochs, replayed (resume).
  virtual void ReplayShuffles(int epochs) = 0;
  // The current weights on the validation split: r->val_loss / val_accuracy / val_auc (NaN
  // where undefined), val_ranking (when the kind ranks; evaluation.k), task_names and
  // val_tasks.
  virtual void Validate(bool progress, EpochRecord* r) = 0;
  // The epoch line's metrics after "epoch E/N  train loss X", e.g. "  |  val auc 0.81".
  virtual std::string EpochSummary(const EpochRecord& r) const = 0;
  // "BCE" or "softmax": the loss panel of training_curves.svg.
  virtual std::string LossName() const = 0;

  // The weights (every named tensor: what Restore takes back), and the trainable parameters
  // with their optimiser (what a checkpoint holds).
  virtual std::vector<Matrix> Snapshot() const = 0;
  virtual void Restore(const std::vector<Matrix>& weights) = 0;
  virtual std::vector<nn::Parameter*> TrainableParameters() = 0;
  virtual nn::Adam& Optimizer() = 0;
  // The generators a checkpoint saves and a resume restores, by name (the shuffle generator is
  // replayed instead: ReplayShuffles). Names are checkpoint metadata keys, e.g. "dropout_rng".
  virtual std::vector<std::pair<std::string, Rng*>> Generators() = 0;

  // Writes the model file (model/model_file.h) of the current weights.
  virtual void Save(const std::string& path) const = 0;
  // training.refit: a fresh model of the same settings and seed whose examples are train +
  // validation. Throws Error when the kind cannot refit.
  virtual std::unique_ptr<FitModel> ForRefit() const = 0;

  // TrainOptions::stop, which TrainEpoch checks before each batch (CheckStop).
  void set_stop(const std::atomic<bool>* stop) { stop_ = stop; }

 protected:
  // Throws Error(kUnavailable, "training interrupted ...") when the stop flag is set.
  void CheckStop() const;

 private:
  const std::atomic<bool>* stop_ = nullptr;
};

struct FitResult {
  std::vector<EpochRecord> history;  // every epoch, resumed ones included
  int best_epoch = 0;                // 0 when no epoch ran
  // training.refit: the refitted model (its weights trained best_epoch epochs on train +
  // validation); null otherwise.
  std::unique_ptr<FitModel> refit;
};

// Trains `model` (see the file comment). On return `model` holds the best weights (the last
// ones when no epoch was best). With options.resume, continues the run in options.run_dir from
// its checkpoint: the example order and generators are replayed or restored, so the epochs that
// follow, the selection and refit are those of the run that was not interrupted, and metrics.csv
// comes out byte-identical (same seed, threads and data). The checkpoint holds the weights,
// Adam's moments and step count, the best weights so far, the kind's generators, the
// early-stopping state and every epoch's metrics, plus the SHA-256 of config.yaml's settings and
// of each data file. Throws Error naming the file for a missing or damaged checkpoint, or one
// written with other settings or data; and whatever the FitModel throws.
FitResult Fit(const Config& config, const TrainOptions& options, FitModel* model);

// Creates <config.output_dir>/<config.run_name>_<YYYYmmdd_HHMMSS>[_N]/ and returns its path.
std::string CreateRunDirectory(const Config& config);

}  // namespace twotower::train

#endif  // TWOTOWER_TRAIN_FIT_H_
