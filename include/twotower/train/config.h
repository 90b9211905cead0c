// Config: every setting of a training run, declared once (name, default, range, help) in
// config.cc's settings table. The YAML file, `--set key=value` flags and the CLI shortcuts all go
// through that table, so there is one parser and one set of defaults.
//
// YAML layout (the lab's ranking_config.yaml keys, plus data/features/output/seed/threads):
//   seed: 42
//   threads: 0                      # 0 = all cores
//   data: {dir, users, items, train, val, test}   # file paths relative to dir
//   model: {embedding_dim, user_hidden_dims, item_hidden_dims, dropout, score, initial_scale,
//           normalize}
//   training: {batch_size, learning_rate, epochs, early_stopping_patience, loss, temperature,
//              logq_correction, remove_accidental_hits, positives, monitor}
//   evaluation: {k}                 # ranking cut-offs, e.g. [10, 20]
//   output: {dir, name}             # runs go to <dir>/<name>_<YYYYmmdd_HHMMSS>/
//   features: {user_id, item_id, label, p_true, user: [{column, type, ...}], item: [...]}
//             (per-type keys: schema.h)
// Unknown keys, wrong types and out-of-range values are errors naming the file and key.
#ifndef TWOTOWER_TRAIN_CONFIG_H_
#define TWOTOWER_TRAIN_CONFIG_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "twotower/data/dataset.h"
#include "twotower/data/schema.h"
#include "twotower/model/two_tower.h"

namespace twotower::train {

struct TrainingConfig {
  int batch_size = 256;
  double learning_rate = 1e-3;
  int epochs = 30;
  int early_stopping_patience = 5;  // epochs without a better monitored value; 0 disables
  std::string loss = "bce";         // bce | softmax | mixed | bpr | triplet (loss.h)
  double temperature = 0.05;        // softmax, mixed, bpr: logits are <u, v> / temperature
  bool logq_correction = true;      // softmax, mixed: subtract log Q; bpr, triplet: weights
  bool remove_accidental_hits = true;
  // bpr, triplet: where negatives come from: uniform (default) | popularity | in_batch.
  // softmax is in_batch and mixed is in_batch + uniform by definition; "" = the loss's own.
  std::string sampler;
  int num_negatives = 64;          // bpr, triplet with uniform / popularity: draws per batch
  int num_uniform_negatives = 64;  // mixed: uniform draws per batch, shared by its rows
  int num_hard_negatives = 0;      // per row, keep the highest-scoring negatives; 0 = all
  int num_easy_negatives = 0;      // with hard negatives: random others kept per row beside them
  bool exclude_history_negatives = false;  // never use a user's training positives as its negatives
  double margin = 0.5;                     // triplet: hinge margin on the similarity gap
  // adam: dense Adam on every parameter; lazy_adam: embedding tables update only the rows a
  // batch touched (nn/adam.h), the rest dense.
  std::string optimizer = "adam";
  // fp32 | bf16: the precision of the training products (nn/gemm.h, Layer::set_precision);
  // bf16 needs AVX512_BF16 or AMX-BF16 (checked when training starts) and oneDNN in the build.
  std::string precision = "fp32";
  std::string positives = "liked";  // which interactions are positives: liked | all
  // features.weight x -> each training row's weight in the loss: none (x), log1p (log(1 + x)),
  // confidence (weight_alpha log(1 + x / weight_eps): Hu, Koren and Volinsky, "Collaborative
  // Filtering for Implicit Feedback Datasets", ICDM 2008, without their 1 +: a row of weight 0
  // is no positive). Losses take the weighted mean, sum_i w_i L_i / sum_i w_i, per batch.
  std::string weight_transform = "none";
  double weight_alpha = 1.0;
  double weight_eps = 1.0;
  // Under mpirun (core/dist.h): the ranks compare a fingerprint of their parameters after every
  // epoch ("epoch") or every step ("step"); a difference stops training with an error.
  std::string replica_check = "epoch";
  // What early stopping and the best checkpoint follow: val_auc, val_loss, or
  // val_<recall|ndcg|hitrate|mrr>@K with K in evaluation.k. Empty = val_auc for bce,
  // val_recall@<first K> for softmax.
  std::string monitor;
  // After selection on val: train again on train + val for the best number of epochs and report
  // the test split with that model.
  bool refit = false;
  bool checkpoint = true;  // checkpoint.safetensors after every epoch (train --resume)
  // lambda of the batch L2 penalty lambda (mean_i |u_i|^2 + mean_i |v_i|^2) on the tower outputs
  // (a regulariser for unnormalised id embeddings; constant, so without effect, when the towers
  // L2-normalise).
  double embedding_l2 = 0.0;
};

struct EvaluationConfig {
  std::vector<int> k = {10, 20};  // ranking cut-offs; empty = no ranking evaluation
};

struct Config {
  uint64_t seed = 42;
  int threads = 0;
  std::string data_dir = "data/recommendations/v1";
  // Empty: no table when the tower is its id alone (the ids come from the interactions,
  // data::ReadEntities); for a tower with other features, the lab generator's users.csv /
  // movies.csv in data_dir (ResolvedPaths).
  std::string users;
  std::string items;
  // data.shards: the training interactions in this many parts by user (data::UserParts), each
  // shuffled on its own; under mpirun with as many ranks, rank r holds part r only.
  int shards = 1;
  std::string train = "train/interactions.csv";
  std::string val = "val/interactions.csv";
  std::string test = "test/interactions.csv";
  model::ModelConfig model;
  TrainingConfig training;
  EvaluationConfig evaluation;
  std::string output_dir = "experiments/runs";
  std::string run_name = "ranking_model";
  data::FeatureSchema features = data::FeatureSchema::Lab();

  // Reads a YAML file over the defaults. Throws Error("<path>: ...") naming the key.
  static Config FromYamlFile(const std::string& path);
  static Config FromYamlString(const std::string& text, const std::string& where);
  // Applies "key=value" (dotted key, e.g. training.epochs=10). Throws Error naming the flag.
  // With validate, then checks the whole config (Validate); a caller applying several flags
  // passes false and calls Validate once after the last, so their order does not matter.
  void Set(const std::string& assignment, const std::string& where, bool validate = true);
  // Checks ranges and the schema; throws Error naming the key.
  void Validate(const std::string& where) const;

  // training.monitor with its default filled in ("val_auc" or "val_recall@K").
  std::string Monitor() const;

  // Data paths resolved against data_dir.
  data::DataPaths ResolvedPaths() const;
  // The resolved config as YAML (what the run folder keeps) and as JSON (model file metadata).
  std::string ToYaml() const;
  nlohmann::json ToJson() const;
};

// training.precision as the layers take it (nn/gemm.h).
inline nn::Precision TrainingPrecision(const TrainingConfig& t) {
  return t.precision == "bf16" ? nn::Precision::kBf16 : nn::Precision::kFp32;
}

// Help text of every setting: "key (type, default): help".
std::vector<std::string> SettingsHelp();

}  // namespace twotower::train

#endif  // TWOTOWER_TRAIN_CONFIG_H_
