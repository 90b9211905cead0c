#include "twotower/train/fit.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <ostream>

#include "train/checkpoint.h"
#include "train/replicas.h"
#include "train/run_folder.h"
#include "twotower/core/dist.h"
#include "twotower/core/error.h"
#include "twotower/core/failpoint.h"
#include "twotower/core/files.h"
#include "twotower/core/hash.h"
#include "twotower/core/threads.h"

namespace twotower::train {
namespace {

// The value of training.monitor in an epoch's record.
double Monitored(const std::string& monitor, const EpochRecord& r) {
  if (monitor == "val_auc") return r.val_auc;
  if (monitor == "val_loss") return r.val_loss;
  return r.val_ranking.Get(monitor.substr(4));
}

// Continues the run in `dir` from its checkpoint: `model`, *best_weights, *state and *history as
// they were after the checkpointed epoch, and the thread count the run had.
void Resume(const std::string& dir, const std::string& config_sha256,
            const nlohmann::json& data_sha256, std::ostream* log, FitModel* model,
            std::vector<Matrix>* best_weights, FitState* state, std::vector<EpochRecord>* history) {
  if (dir.empty()) throw Error("resume: no run folder given");
  int threads = 0;
  LoadCheckpoint(dir + "/" + kCheckpointFile, *model, best_weights, state, history, config_sha256,
                 data_sha256, &threads);
  // `threads: 0` resolves to this machine's cores; the run continues with the count it had,
  // which the arithmetic's order (and so every result) depends on.
  const int now = omp_get_max_threads();
  if (threads != now) {
    SetThreads(threads);
    if (log != nullptr) {
      *log << "threads: " << threads << ", as the run had (not " << now << ")" << std::endl;
    }
  }
  // The completed epochs' shuffles, replayed: the same order and generator state as then.
  model->ReplayShuffles(state->epoch);
  if (log != nullptr) {
    *log << "resumed " << dir << " after epoch " << state->epoch << " (best epoch "
         << state->best_epoch << (state->stopped ? ", early stopping had ended it" : "") << ")"
         << std::endl;
  }
}

}  // namespace

void FitModel::CheckStop() const {
  if (stop_ != nullptr && stop_->load(std::memory_order_relaxed)) {
    throw Error(ErrorCode::kUnavailable,
                "training interrupted: the run folder keeps what the last completed epoch wrote "
                "(with training.checkpoint, resume continues from it)");
  }
}

FitResult Fit(const Config& config, const TrainOptions& options, FitModel* model) {
  FitResult result;
  model->set_stop(options.stop);
  const std::string monitor = config.Monitor();
  const bool lower_is_better = monitor == "val_loss";
  const int patience = config.training.early_stopping_patience;
  std::vector<Matrix> best_weights = model->Snapshot();
  FitState state;
  state.best_value = lower_is_better ? std::numeric_limits<double>::infinity() : -1.0;
  state.best_loss = std::numeric_limits<double>::infinity();
  // Under mpirun every rank reads the run folder (resume) and only rank 0 writes it.
  const std::string& read_dir = options.run_dir;
  const std::string dir = dist::IsRoot() ? read_dir : std::string();
  const bool checkpoint = !dir.empty() && config.training.checkpoint;
  const std::string checkpoint_path = dir + "/" + kCheckpointFile;
  const std::string config_sha256 = Sha256Hex(config.ToYaml());
  nlohmann::json data_sha256;
  if (checkpoint || options.resume) data_sha256 = DataFingerprints(config);
  if (options.resume) {
    Resume(read_dir, config_sha256, data_sha256, options.log, model, &best_weights, &state,
           &result.history);
  } else if (!dir.empty()) {
    WriteFileAtomically(dir + "/config.yaml", config.ToYaml());
  }
  result.best_epoch = state.best_epoch;

  for (int epoch = state.epoch + 1; !state.stopped && epoch <= config.training.epochs; ++epoch) {
    const auto epoch_start = std::chrono::steady_clock::now();
    EpochRecord r;
    r.epoch = epoch;
    model->TrainEpoch(options.progress, &r);
    // Replicas must agree bit for bit (train/replicas.h); a difference is a bug, caught here.
    if (dist::Distributed()) {
      dist::CheckSame(ParameterFingerprint(model->TrainableParameters()),
                      "the parameters' fingerprint after epoch " + std::to_string(epoch),
                      "a replica diverged: a bug to report");
    }
    model->Validate(options.progress, &r);
    r.monitored = Monitored(monitor, r);
    // Selection by the monitored value; a one-class validation split has no AUC (NaN), and then
    // val loss decides, so a best model is always kept.
    if (std::isnan(r.monitored)) {
      r.best = r.val_loss < state.best_loss || (std::isnan(r.val_loss) && state.best_epoch == 0);
    } else {
      r.best = lower_is_better ? r.monitored < state.best_value : r.monitored > state.best_value;
    }
    if (dist::Distributed()) {
      // Every rank validates on its own and must decide alike (selection, early stopping),
      // or one would leave the loop while another waits in the next step's collective.
      uint64_t decision = 0;
      std::memcpy(&decision, &r.monitored, sizeof(decision));
      decision = decision * 31 + (r.best ? 1 : 0);
      dist::CheckSame(decision, "the validation result of epoch " + std::to_string(epoch),
                      "every rank must run the same thread count on the same data");
    }
    r.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    if (r.best) {
      if (!std::isnan(r.monitored)) state.best_value = r.monitored;
      state.best_loss = r.val_loss;
      state.best_epoch = epoch;
      result.best_epoch = epoch;
      state.since_best = 0;
      best_weights = model->Snapshot();
      if (!dir.empty()) model->Save(dir + "/model_best.safetensors");
    } else {
      ++state.since_best;
    }
    result.history.push_back(r);
    if (options.log != nullptr) {
      *options.log << "epoch " << epoch << "/" << config.training.epochs << "  train loss "
                   << Fixed(r.train_loss) << model->EpochSummary(r) << "  (" << Fixed(r.seconds, 2)
                   << "s)" << (r.best ? "  * best, saved" : "") << std::endl;
    }
    if (!dir.empty()) {
      WriteFileAtomically(dir + "/metrics.csv", MetricsCsv(result.history));
      WriteFileAtomically(dir + "/training_curves.svg",
                          CurvesSvg(result.history, model->LossName()));
    }
    state.epoch = epoch;
    state.stopped = patience > 0 && state.since_best >= patience;
    if (checkpoint) {
      FailPoint("train.before_checkpoint");
      SaveCheckpoint(checkpoint_path, *model, best_weights, state, result.history, config_sha256,
                     data_sha256, omp_get_max_threads());
      FailPoint("train.after_checkpoint");
    }
    if (state.stopped && options.log != nullptr) {
      const std::string shown = monitor == "val_auc" ? "val AUC" : monitor;
      *options.log << "early stopping: no better " << shown << " for " << patience
                   << " epochs (best epoch " << state.best_epoch << ", " << shown << " "
                   << Fixed(state.best_value) << ")" << std::endl;
    }
  }
  if (!dir.empty()) model->Save(dir + "/model_last.safetensors");
  if (result.best_epoch > 0) model->Restore(best_weights);
  if (config.training.refit && result.best_epoch > 0) {
    // The usual last step of model selection: the chosen settings and number of epochs, trained
    // again from the same initial weights on train + validation (what EASE-style baselines
    // refitted on both see too). The test split is still untouched.
    result.refit = model->ForRefit();
    result.refit->set_stop(options.stop);
    for (int epoch = 1; epoch <= result.best_epoch; ++epoch) {
      EpochRecord r;
      result.refit->TrainEpoch(options.progress, &r);
      if (dist::Distributed()) {
        dist::CheckSame(ParameterFingerprint(result.refit->TrainableParameters()),
                        "the parameters' fingerprint after refit epoch " + std::to_string(epoch),
                        "a replica diverged: a bug to report");
      }
      if (options.log != nullptr) {
        *options.log << "refit epoch " << epoch << "/" << result.best_epoch
                     << " on train + val  train loss " << Fixed(r.train_loss) << std::endl;
      }
    }
    if (!dir.empty()) result.refit->Save(dir + "/model_refit.safetensors");
  }
  return result;
}

}  // namespace twotower::train
