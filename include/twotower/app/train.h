// app::Train: what `twotower train` does (and what the Python module's train will call): resolve
// the settings (a YAML file, then key=value overrides in order, or a run folder's own
// config.yaml to resume), load the data, build and train the model the settings name (the
// two-tower model, or the ranker for model.kind: ranker) into a run folder, and test it. A
// TrainObserver sees each stage as it happens, so a front end can print or collect; nothing here
// prints. Index building (BuildIndex, AddToIndex) sits beside it.
//
// Errors: Error with kInvalidArgument naming the setting, file and line (config.h), kNotFound
// for a missing file or run folder, kConflict for a resume the run folder cannot serve.
// Thread-safety: one call at a time per process (training sets the thread count, core/threads.h).
#ifndef TWOTOWER_APP_TRAIN_H_
#define TWOTOWER_APP_TRAIN_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "twotower/app/app.h"
#include "twotower/data/dataset.h"
#include "twotower/index/item_index.h"
#include "twotower/model/two_tower.h"
#include "twotower/train/config.h"
#include "twotower/train/metrics.h"
#include "twotower/train/trainer.h"

namespace twotower::app {

struct TrainRequest {
  std::string config_path = "config/ranking_config.yaml";
  // "key=value" overrides applied in order after the file, each with where it came from ("--set",
  // "command line"); a key given twice is refused, as in the file.
  std::vector<std::pair<std::string, std::string>> settings;
  // A run folder to continue from its checkpoint with its own config.yaml (then settings must be
  // empty and config_path is not read).
  std::string resume;
  bool progress = true;         // progress bars on stderr
  std::ostream* log = nullptr;  // per-epoch lines; null = none
  // Set to stop training before its next batch (train::TrainOptions::stop): Train then throws
  // Error(kUnavailable) and the run folder is resumable from its last checkpoint.
  const std::atomic<bool>* stop = nullptr;
};

// The model about to be trained, for a front end to describe.
struct ModelSummary {
  bool ranker = false;
  int64_t parameters = 0;
  int threads = 1;
  std::string loss, score;             // training.loss; the two-tower model's score mode
  std::string user_tower, item_tower;  // Describe() of each tower (two-tower)
  std::string ranker_layers;           // Describe() of the ranker
  std::vector<model::TaskSpec> tasks;  // with item_class widths fitted
  // training.precision, and for bf16 what runs its products (nn::Bf16Engine): "fp32" or
  // "bf16 (oneDNN: AMX)".
  std::string precision = "fp32";
};

class TrainObserver {
 public:
  virtual ~TrainObserver() = default;
  // The resolved settings (what config.yaml of the run will hold) and where they came from.
  virtual void Configured(const train::Config& /*config*/, const std::string& /*source*/) {}
  virtual void DataLoaded(const data::Dataset& /*data*/) {}
  virtual void ModelBuilt(const ModelSummary& /*model*/) {}
  // A setting that is valid but measured to do badly (BENCHMARKS.md says where).
  virtual void Warning(const std::string& /*message*/) {}
  // Training starts, writing into run_dir.
  virtual void Training(const std::string& /*run_dir*/, bool /*ranker*/) {}
};

struct TrainOutcome {
  bool ranker = false;
  std::string run_dir;  // without a trailing '/'
  int best_epoch = 0;
  bool refit = false;  // model_refit.safetensors was written
  double train_seconds = 0;
  train::EvalMetrics test;
  train::RankingMetrics test_ranking, test_most_popular;  // empty ks when not ranked
  std::vector<train::TaskMetric> test_tasks;
};

// The settings `request` names, validated, with data.dir made absolute (model files record it,
// so that evaluate / recommend work from any folder). For a resume, the run folder's own.
train::Config ResolveTrainConfig(const TrainRequest& request, std::string* source);
// Throws Error (kInvalidArgument, field training.precision) when the config asks for bf16 and
// this build or CPU cannot run it (nn::Bf16Unavailable), naming `source` and what is missing.
void CheckPrecisionRuns(const train::Config& config, const std::string& source);

// Trains as described above. `observer` may be null.
TrainOutcome Train(const TrainRequest& request, TrainObserver* observer = nullptr);

// A flag's value checked as the setting it stands for (the settings table's rules and message):
// `--seed` as `seed`, `--threads` as `threads`. Throws Error naming `flag`.
uint64_t ParseSeed(const std::string& text, const std::string& flag);
int ParseThreads(int threads, const std::string& flag);
// One line per setting (key, type, default, range, help): `train --list-settings`.
std::vector<std::string> SettingsHelp();

// ---- indexes -----------------------------------------------------------------------------------

struct IndexBuildResult {
  std::unique_ptr<index::ItemIndex> index;
  double seconds = 0;
};
// An index of type `spec` (index::MakeIndex: "flat", "hnsw:M=32,...") over the embeddings in
// `embeddings_path` (ReadItemEmbeddings), recording the model that made them, written to
// out_path. `progress`: a bar on stderr (an HNSW build of a million items takes minutes).
IndexBuildResult BuildIndex(const std::string& embeddings_path, const std::string& spec,
                            const std::string& out_path, bool progress);

// Encodes every row of `items_path` with the model's item tower and adds them to the index file
// (an existing id is updated), written to out_path. The index must record the model unless
// allow_other_model (then the result records no model).
struct IndexAddResult {
  index::ItemIndex::AddResult added;
  int64_t untrained = 0;  // items left out: no trained embedding (UntrainedItemRows)
  std::unique_ptr<index::ItemIndex> index;
};
IndexAddResult AddToIndex(const std::string& model_path, const std::string& index_path,
                          const std::string& items_path, const std::string& out_path,
                          bool allow_other_model);

}  // namespace twotower::app

#endif  // TWOTOWER_APP_TRAIN_H_
