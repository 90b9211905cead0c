// app::Tune: what `twotower tune` does. A hyperparameter search on the validation split by
// successive halving (Jamieson and Talwalkar, "Non-stochastic Best Arm Identification and
// Hyperparameter Optimization", AISTATS 2016; one bracket of Hyperband, Li et al., JMLR 2018):
// n configurations drawn from the search space are each trained for r epochs, the best 1/eta by
// the monitored validation metric (training.monitor, e.g. val_recall@10) go on with eta times the
// epochs, and so on until one is trained with the config's training.epochs; trial 1, the config's
// own values, always goes on too (short rungs favour fast learners), so the search never ends
// worse on validation than the config it started from; early stopping
// (training.early_stopping_patience) applies within every trial. The best configuration of the
// highest rung reached is written as <out>/best.yaml and trained as `train` trains it (selection
// on val, refit on train + val when training.refit) into a run folder.
//
// The search space: per setting, a range ("lo:hi", uniform; "lo:hi:log", log-uniform; integers
// when both bounds are integers and the setting is one) or a list of values ("a|b|c", uniform
// choice). Defaults (DefaultTuneSpace): temperature 0.05:0.5:log, learning_rate 3e-4:1e-2:log,
// embedding_l2 0|1e-6|1e-5|1e-4, model.embedding_dim 32|64|128|256, batch_size 256|512|1024|2048,
// loss softmax|mixed|bpr. With model.projection false (an id-alone tower that is the embedding),
// a model.embedding_dim value also sets the dim of each side's only (id) feature.
//
// Resumable: every finished trial is a row of <out>/tune.csv (written atomically); a rerun with
// the same --out, config, space, seed and trials reuses those rows and trains only the rest.
// <out>/tune.svg plots the trials' validation metric by rung.
//
// Errors: Error naming the setting for a bad space entry or a setting that cannot be tuned, the
// config's own errors (train), and kConflict for a tune.csv of another search.
// Thread-safety: one call at a time per process (training sets the thread count, core/threads.h).
#ifndef TWOTOWER_APP_TUNE_H_
#define TWOTOWER_APP_TUNE_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "twotower/app/train.h"

namespace twotower::app {

struct TuneRequest {
  std::string config_path;
  std::vector<std::pair<std::string, std::string>> settings;  // as TrainRequest's
  // "key=spec" entries replacing the default space's (an empty spec removes the key).
  std::vector<std::string> space;
  int trials = 27;              // configurations drawn at the first rung (>= 1)
  int eta = 3;                  // the halving factor (>= 2)
  double budget_seconds = 0.0;  // > 0: start no trial after this much time; 0: no limit
  std::string out_dir;          // tune.csv, tune.svg; "" = <output.dir>/<output.name>_tune
  uint64_t seed = 0;            // draws the configurations
  bool refit_best = true;       // train the best as `train` does into a run folder
  bool progress = false;        // progress bars of the final training
};

struct TrialResult {
  int trial = 0;  // 1-based draw number
  int rung = 0;   // 0-based
  int epochs = 0;
  std::vector<std::pair<std::string, std::string>> params;  // key, value as set
  double value = 0.0;  // the monitored validation metric at the trial's best epoch
  int best_epoch = 0;
  double seconds = 0.0;
  bool reused = false;  // read from tune.csv rather than trained
};

class TuneObserver : public TrainObserver {
 public:
  virtual void Planned(const std::vector<int>& /*rung_epochs*/,
                       const std::vector<int>& /*rung_trials*/, const std::string& /*monitor*/,
                       const std::string& /*out_dir*/) {}
  virtual void Trial(const TrialResult& /*trial*/, int /*of*/) {}
  virtual void BudgetSpent(double /*seconds*/) {}
  virtual void Best(const TrialResult& /*best*/) {}
};

struct TuneOutcome {
  std::vector<TrialResult> trials;
  TrialResult best;
  std::string out_dir;
  std::string best_config;  // <out>/best.yaml: the base config with the best trial's settings
  TrainOutcome final_run;   // when refit_best
  bool trained_final = false;
};

// The default search space: setting -> spec.
std::map<std::string, std::string> DefaultTuneSpace();

TuneOutcome Tune(const TuneRequest& request, TuneObserver* observer = nullptr);

}  // namespace twotower::app

#endif  // TWOTOWER_APP_TUNE_H_
