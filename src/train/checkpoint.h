// Training checkpoints: what the fit loop (fit.cc) needs to continue a run after a crash, written
// after every epoch and read by --resume. Internal to the train module. Format: a safetensors
// file with tensors "weights.i", "adam.m.i", "adam.v.i" (per trainable parameter i) and "best.i"
// (per snapshot tensor i), and __metadata__ keys format ("twotower.checkpoint"),
// format_version ("1"), epoch, stopped, best_epoch, best_value, best_loss (C99 hex floats),
// since_best, adam_steps, threads, history (JSON, one record per epoch), config_sha256,
// data_sha256 (JSON), and one key per generator of the model kind (e.g. dropout_rng).
#ifndef TWOTOWER_SRC_TRAIN_CHECKPOINT_H_
#define TWOTOWER_SRC_TRAIN_CHECKPOINT_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/train/config.h"
#include "twotower/train/fit.h"

namespace twotower::train {

// The early-stopping state after `epoch` completed epochs.
struct FitState {
  int epoch = 0;
  bool stopped = false;  // early stopping ended the epochs
  int best_epoch = 0;
  double best_value = 0, best_loss = 0;
  int since_best = 0;
};

// SHA-256 of each data file the config names (those that exist), by split name: a resumed run
// must see the same data. Throws Error when a file cannot be read.
nlohmann::json DataFingerprints(const Config& config);

// Writes `path` atomically from the model's parameters, optimiser and generators, the best
// weights (a FitModel::Snapshot), the state and history. Throws Error on I/O errors.
void SaveCheckpoint(const std::string& path, FitModel& model,
                    const std::vector<Matrix>& best_weights, const FitState& state,
                    const std::vector<EpochRecord>& history, const std::string& config_sha256,
                    const nlohmann::json& data_sha256, int threads);

// Restores what SaveCheckpoint wrote into `model`, *best_weights, *state, *history and *threads,
// after checking that it was written with these settings (config_sha256) and data. Throws Error
// naming the file for a missing, damaged or foreign checkpoint.
void LoadCheckpoint(const std::string& path, FitModel& model, std::vector<Matrix>* best_weights,
                    FitState* state, std::vector<EpochRecord>* history,
                    const std::string& config_sha256, const nlohmann::json& data_sha256,
                    int* threads);

}  // namespace twotower::train

#endif  // TWOTOWER_SRC_TRAIN_CHECKPOINT_H_
