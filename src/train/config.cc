#include "twotower/train/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/settings.h"

namespace twotower::train {
namespace {

using Kind = SettingKind;
using Setting = twotower::Setting<Config>;
constexpr double kInf = kSettingInf;

const std::vector<Setting>& Settings() {
  static const std::vector<Setting> settings = {
      {"seed",
       Kind::kUint64,
       0,
       false,
       kInf,
       {},
       "random seed (data order, init, dropout)",
       [](Config& c) -> void* { return &c.seed; },
       {},
       {}},
      {"threads",
       Kind::kInt,
       0,
       false,
       1024,
       {},
       "worker threads; 0 = all cores",
       [](Config& c) -> void* { return &c.threads; },
       {},
       {}},
      {"data.dir",
       Kind::kString,
       0,
       false,
       0,
       {},
       "directory the data paths are relative to",
       [](Config& c) -> void* { return &c.data_dir; },
       {},
       {}},
      {"data.users",
       Kind::kString,
       0,
       false,
       0,
       {},
       "users table (CSV or Parquet); empty (the default): no table, the user tower is its id "
       "alone and the ids come from the interactions",
       [](Config& c) -> void* { return &c.users; },
       {},
       {}},
      {"data.items",
       Kind::kString,
       0,
       false,
       0,
       {},
       "items table (CSV or Parquet); empty (the default): no table, the item tower is its id "
       "alone and the ids come from the interactions",
       [](Config& c) -> void* { return &c.items; },
       {},
       {}},
      {"data.shards",
       Kind::kInt,
       1,
       false,
       4096,
       {},
       "parts the training interactions are split into by a hash of the user id (CRC-32C of the "
       "id's bytes, modulo shards), each shuffled on its own; a step takes an equal share of the "
       "batch from each. 1 (the default): one shuffle of every row. Under mpirun with as many "
       "ranks as shards, each rank reads only its part",
       [](Config& c) -> void* { return &c.shards; },
       {},
       {}},
      {"data.train",
       Kind::kString,
       0,
       false,
       0,
       {},
       "training interactions (CSV)",
       [](Config& c) -> void* { return &c.train; },
       {},
       {}},
      {"data.val",
       Kind::kString,
       0,
       false,
       0,
       {},
       "validation interactions (CSV)",
       [](Config& c) -> void* { return &c.val; },
       {},
       {}},
      {"data.test",
       Kind::kString,
       0,
       false,
       0,
       {},
       "test interactions (CSV)",
       [](Config& c) -> void* { return &c.test; },
       {},
       {}},
      {"features.timestamp",
       Kind::kString,
       0,
       false,
       0,
       {},
       "interaction column giving each interaction's time (orders the user history)",
       [](Config& c) -> void* { return &c.features.timestamp_column; },
       {},
       {}},
      {"features.user_id",
       Kind::kString,
       0,
       false,
       0,
       {},
       "the user id column (interaction files and the users table)",
       [](Config& c) -> void* { return &c.features.user.id_column; },
       {},
       {}},
      {"features.item_id",
       Kind::kString,
       0,
       false,
       0,
       {},
       "the item id column (interaction files and the items table)",
       [](Config& c) -> void* { return &c.features.item.id_column; },
       {},
       {}},
      {"features.label",
       Kind::kString,
       0,
       false,
       0,
       {},
       "the interaction column holding 0/1 labels (1 = a positive)",
       [](Config& c) -> void* { return &c.features.label_column; },
       {},
       {}},
      {"features.weight",
       Kind::kString,
       0,
       false,
       0,
       {},
       "interaction column of implicit-feedback weights (e.g. play counts; >= 0), turned into "
       "each row's loss weight by training.weight_transform; empty: every row weighs 1",
       [](Config& c) -> void* { return &c.features.weight_column; },
       {},
       {}},
      {"features.history.length",
       Kind::kInt,
       0,
       false,
       10000,
       {},
       "user-history feature: the most recent positives kept (0 = no history)",
       [](Config& c) -> void* { return &c.features.user.history.length; },
       {},
       {}},
      {"features.history.pooling",
       Kind::kString,
       0,
       false,
       0,
       {"attention", "mean"},
       "user-history pooling: attention (learned query, recency bias) or mean",
       [](Config& c) -> void* { return &c.features.user.history.pooling; },
       {},
       {}},
      {"features.history.heads",
       Kind::kInt,
       1,
       false,
       65536,
       {},
       "user-history attention heads (must divide the item id feature's dim)",
       [](Config& c) -> void* { return &c.features.user.history.heads; },
       {},
       {}},
      {"model.embedding_dim",
       Kind::kInt,
       1,
       false,
       65536,
       {},
       "width of the tower outputs",
       [](Config& c) -> void* { return &c.model.embedding_dim; },
       {},
       {}},
      {"model.user_hidden_dims",
       Kind::kIntList,
       1,
       false,
       65536,
       {},
       "user tower hidden widths",
       [](Config& c) -> void* { return &c.model.user_hidden_dims; },
       {},
       {}},
      {"model.item_hidden_dims",
       Kind::kIntList,
       1,
       false,
       65536,
       {},
       "item tower hidden widths",
       [](Config& c) -> void* { return &c.model.item_hidden_dims; },
       {},
       {}},
      {"model.dropout",
       Kind::kDouble,
       0,
       false,
       0.99,
       {},
       "dropout probability after each ReLU",
       [](Config& c) -> void* { return &c.model.dropout; },
       {},
       {}},
      {"model.score",
       Kind::kString,
       0,
       false,
       0,
       {"learned", "cosine"},
       "learned: sigmoid(scale <u,v> + bias), scale and bias trained; cosine: sigmoid(<u,v>)",
       nullptr,
       [](const Config& c) { return std::string(model::ScoreModeName(c.model.score)); },
       [](Config& c, const std::string& text) {
         c.model.score = text == "learned" ? model::ScoreMode::kLearned : model::ScoreMode::kCosine;
       }},
      {"model.initial_scale",
       Kind::kDouble,
       0,
       true,
       1000,
       {},
       "initial scale (learned mode)",
       [](Config& c) -> void* { return &c.model.initial_scale; },
       {},
       {}},
      {"model.normalize",
       Kind::kBool,
       0,
       false,
       0,
       {},
       "L2-normalise the tower outputs (cosine similarity)",
       [](Config& c) -> void* { return &c.model.normalize; },
       {},
       {}},
      {"model.projection",
       Kind::kBool,
       0,
       false,
       0,
       {},
       "false: towers without hidden layers have no Linear (input width = embedding_dim)",
       [](Config& c) -> void* { return &c.model.projection; },
       {},
       {}},
      {"model.kind",
       Kind::kString,
       0,
       false,
       0,
       {"two_tower", "ranker"},
       "two_tower: user and item towers meeting in a dot product (retrieval); ranker: user and "
       "item features together through a DCN-v2 cross network and an MLP (a second stage, "
       "`recommend --rerank`)",
       [](Config& c) -> void* { return &c.model.kind; },
       {},
       {}},
      {"model.cross_layers",
       Kind::kInt,
       0,
       false,
       16,
       {},
       "ranker: DCN-v2 cross layers x_{l+1} = x_0 * (W_l x_l + b_l) + x_l; 0 = MLP only",
       [](Config& c) -> void* { return &c.model.cross_layers; },
       {},
       {}},
      {"model.ranker_hidden_dims",
       Kind::kIntList,
       1,
       false,
       65536,
       {},
       "ranker: hidden widths of the MLP after the cross network (then a Linear to one logit)",
       [](Config& c) -> void* { return &c.model.ranker_hidden_dims; },
       {},
       {}},
      {"training.batch_size",
       Kind::kInt,
       1,
       false,
       1 << 24,
       {},
       "examples per step",
       [](Config& c) -> void* { return &c.training.batch_size; },
       {},
       {}},
      {"training.learning_rate",
       Kind::kDouble,
       0,
       true,
       10,
       {},
       "Adam learning rate",
       [](Config& c) -> void* { return &c.training.learning_rate; },
       {},
       {}},
      {"training.epochs",
       Kind::kInt,
       1,
       false,
       1000000,
       {},
       "maximum number of epochs",
       [](Config& c) -> void* { return &c.training.epochs; },
       {},
       {}},
      {"training.early_stopping_patience",
       Kind::kInt,
       0,
       false,
       1000000,
       {},
       "stop after this many epochs without a better training.monitor value; 0 = never",
       [](Config& c) -> void* { return &c.training.early_stopping_patience; },
       {},
       {}},
      {"training.loss",
       Kind::kString,
       0,
       false,
       0,
       {"bce", "softmax", "mixed", "bpr", "triplet"},
       "bce: pointwise on labelled pairs; softmax: in-batch sampled softmax over positives; "
       "mixed: softmax over in-batch and uniform negatives; bpr, triplet: pairwise on sampled "
       "negatives",
       [](Config& c) -> void* { return &c.training.loss; },
       {},
       {}},
      {"training.temperature",
       Kind::kDouble,
       0,
       true,
       1000,
       {},
       "softmax, mixed, bpr: logits are <u, v> / temperature",
       [](Config& c) -> void* { return &c.training.temperature; },
       {},
       {}},
      {"training.logq_correction",
       Kind::kBool,
       0,
       false,
       0,
       {},
       "softmax: subtract log of each item's sampling probability (training frequency)",
       [](Config& c) -> void* { return &c.training.logq_correction; },
       {},
       {}},
      {"training.remove_accidental_hits",
       Kind::kBool,
       0,
       false,
       0,
       {},
       "softmax: a batch item equal to the row's positive is not a negative",
       [](Config& c) -> void* { return &c.training.remove_accidental_hits; },
       {},
       {}},
      {"training.sampler",
       Kind::kString,
       0,
       false,
       0,
       {"", "uniform", "popularity", "in_batch"},
       "bpr, triplet: negatives drawn uniformly (default), by popularity, or the batch's items; "
       "ranker: uniform or popularity adds num_negatives unrated (user, item) pairs labelled 0 "
       "to each batch (default: the labelled pairs only)",
       [](Config& c) -> void* { return &c.training.sampler; },
       {},
       {}},
      {"training.num_negatives",
       Kind::kInt,
       1,
       false,
       1 << 20,
       {},
       "bpr, triplet (uniform, popularity): negatives drawn per batch, shared by its rows; "
       "ranker with a sampler: unrated pairs added per batch",
       [](Config& c) -> void* { return &c.training.num_negatives; },
       {},
       {}},
      {"training.num_uniform_negatives",
       Kind::kInt,
       1,
       false,
       1 << 20,
       {},
       "mixed: uniform negatives drawn per batch besides the in-batch ones",
       [](Config& c) -> void* { return &c.training.num_uniform_negatives; },
       {},
       {}},
      {"training.num_hard_negatives",
       Kind::kInt,
       0,
       false,
       1 << 24,
       {},
       "sampled losses: per row keep only this many highest-scoring negatives; 0 = all",
       [](Config& c) -> void* { return &c.training.num_hard_negatives; },
       {},
       {}},
      {"training.num_easy_negatives",
       Kind::kInt,
       0,
       false,
       1 << 24,
       {},
       "with num_hard_negatives: per row, also keep this many of its other negatives, drawn at "
       "random (easy negatives blended with the hard ones)",
       [](Config& c) -> void* { return &c.training.num_easy_negatives; },
       {},
       {}},
      {"training.exclude_history_negatives",
       Kind::kBool,
       0,
       false,
       0,
       {},
       "sampled losses: a user's training positives are never its negatives",
       [](Config& c) -> void* { return &c.training.exclude_history_negatives; },
       {},
       {}},
      {"training.margin",
       Kind::kDouble,
       0,
       true,
       2,
       {},
       "triplet: hinge margin on <u, v+> - <u, v-> (at most 2: the largest gap of unit vectors)",
       [](Config& c) -> void* { return &c.training.margin; },
       {},
       {}},
      {"training.optimizer",
       Kind::kString,
       0,
       false,
       0,
       {"adam", "lazy_adam"},
       "adam: dense; lazy_adam: embedding tables update only the rows a batch touched",
       [](Config& c) -> void* { return &c.training.optimizer; },
       {},
       {}},
      {"training.precision",
       Kind::kString,
       0,
       false,
       0,
       {"fp32", "bf16"},
       "the training products' precision: bf16 rounds the operands of the towers', cross "
       "layers' and softmax logits' products to bfloat16 and accumulates in fp32 (oneDNN; needs "
       "AVX512_BF16 or AMX); weights, Adam and the loss stay fp32, and inference is fp32",
       [](Config& c) -> void* { return &c.training.precision; },
       {},
       {}},
      {"training.weight_transform",
       Kind::kString,
       0,
       false,
       0,
       {"none", "log1p", "confidence"},
       "features.weight x -> the row's loss weight: none (x), log1p (log(1 + x)), confidence "
       "(alpha log(1 + x / eps), Hu, Koren and Volinsky 2008)",
       [](Config& c) -> void* { return &c.training.weight_transform; },
       {},
       {}},
      {"training.weight_alpha",
       Kind::kDouble,
       0,
       true,
       1e6,
       {},
       "confidence weights: alpha in alpha log(1 + x / eps)",
       [](Config& c) -> void* { return &c.training.weight_alpha; },
       {},
       {}},
      {"training.weight_eps",
       Kind::kDouble,
       0,
       true,
       1e12,
       {},
       "confidence weights: eps in alpha log(1 + x / eps) (the weight's unit)",
       [](Config& c) -> void* { return &c.training.weight_eps; },
       {},
       {}},
      {"training.replica_check",
       Kind::kString,
       0,
       false,
       0,
       {"epoch", "step"},
       "under mpirun: how often the ranks check that their parameters are bit-identical (a "
       "fingerprint allgathered; step costs a pass over the parameters per step)",
       [](Config& c) -> void* { return &c.training.replica_check; },
       {},
       {}},
      {"training.positives",
       Kind::kString,
       0,
       false,
       0,
       {"liked", "all"},
       "which interactions are positives (softmax training, ranking evaluation): liked = label 1",
       [](Config& c) -> void* { return &c.training.positives; },
       {},
       {}},
      {"training.monitor",
       Kind::kString,
       0,
       false,
       0,
       {},
       "early stopping / best checkpoint: val_auc, val_loss, val_recall@K, val_ndcg@K, "
       "val_hitrate@K, val_mrr@K (empty: val_auc for bce, val_recall@<first K> for softmax)",
       [](Config& c) -> void* { return &c.training.monitor; },
       {},
       {}},
      {"training.refit",
       Kind::kBool,
       0,
       false,
       0,
       {},
       "after selecting the epoch count on val, train again on train + val (model_refit)",
       [](Config& c) -> void* { return &c.training.refit; },
       {},
       {}},
      {"training.checkpoint",
       Kind::kBool,
       0,
       false,
       0,
       {},
       "write checkpoint.safetensors (weights, optimiser and generator state) after every epoch, "
       "for `train --resume RUN_DIR`",
       [](Config& c) -> void* { return &c.training.checkpoint; },
       {},
       {}},
      {"training.embedding_l2",
       Kind::kDouble,
       0,
       false,
       1000,
       {},
       "batch L2 penalty on the tower outputs: lambda (mean |u|^2 + mean |v|^2)",
       [](Config& c) -> void* { return &c.training.embedding_l2; },
       {},
       {}},
      {"evaluation.k",
       Kind::kIntList,
       1,
       false,
       100000,
       {},
       "ranking cut-offs K for Recall / NDCG / HitRate / MRR / coverage (empty list: none)",
       [](Config& c) -> void* { return &c.evaluation.k; },
       {},
       {}},
      {"output.dir",
       Kind::kString,
       0,
       false,
       0,
       {},
       "where run folders are created",
       [](Config& c) -> void* { return &c.output_dir; },
       {},
       {}},
      {"output.name",
       Kind::kString,
       0,
       false,
       0,
       {},
       "run folder prefix",
       [](Config& c) -> void* { return &c.run_name; },
       {},
       {}},
  };
  return settings;
}

const Setting* FindSetting(const std::string& key) {
  return twotower::FindSetting(Settings(), key);
}

std::string KnownKeys(const std::string& section) {
  std::string out = KnownSettingKeys(Settings(), section);
  if (section.empty()) out += ", data, model, training, evaluation, output, features, tasks";
  return out;
}

std::string Where(const std::string& file, const YAML::Node& node) { return YamlWhere(file, node); }

data::EntitySchema ParseSide(const YAML::Node& node, const std::string& side,
                             const std::string& id_column, const std::string& file) {
  const std::string where = Where(file, node);
  if (!node.IsSequence()) {
    throw Error(where + ": 'features." + side +
                "': expected a list of {column: NAME, type: numeric|categorical|id|multi_hot}");
  }
  data::EntitySchema schema;
  schema.id_column = id_column;
  for (const auto& item : node) {
    const std::string w = Where(file, item);
    if (!item.IsMap() || !item["column"] || !item["type"]) {
      throw Error(w + ": 'features." + side + "': expected {column: NAME, type: TYPE, ...}");
    }
    // The map as JSON (FeatureSpecFromJson checks the keys each type takes); integers parsed
    // here so a YAML scalar like "64" or "abc" gets a message naming the key.
    nlohmann::json j = nlohmann::json::object();
    for (const auto& kv : item) {
      const std::string k = kv.first.Scalar();
      if (j.contains(k)) {
        throw Error(Where(file, kv.first) + ": 'features." + side + "': key '" + k +
                    "' appears twice");
      }
      if (!kv.second.IsScalar()) {
        throw Error(Where(file, kv.second) + ": 'features." + side + "." + k +
                    "': expected a scalar value");
      }
      const std::string v = kv.second.Scalar();
      if (k == "dim" || k == "buckets") {
        int64_t n;
        if (!ParseInt64Text(v, &n)) {
          throw Error(Where(file, kv.second) + ": 'features." + side + "." + k +
                      "': expected an integer, got " + Quote(v));
        }
        j[k] = n;
      } else {
        j[k] = v;
      }
    }
    schema.features.push_back(data::FeatureSpecFromJson(j, w + ": 'features." + side + "'"));
  }
  return schema;
}

void ParseFeatures(const YAML::Node& node, Config* c, const std::string& file) {
  if (!node.IsMap()) throw Error(Where(file, node) + ": 'features': expected a mapping");
  data::FeatureSchema s = c->features;
  data::HistorySpec history = s.user.history;
  std::set<std::string> seen;
  for (const auto& kv : node) {
    const std::string key = kv.first.Scalar();
    const std::string w = Where(file, kv.first);
    // yaml-cpp's node["x"] would pick one of two equal keys silently.
    if (!seen.insert(key).second) throw Error(w + ": key 'features." + key + "' appears twice");
    if (key == "user_id" || key == "item_id" || key == "label" || key == "p_true" ||
        key == "timestamp" || key == "weight") {
      if (!kv.second.IsScalar()) throw Error(w + ": 'features." + key + "': expected a string");
      const std::string v = kv.second.Scalar();
      if (key == "user_id") s.user.id_column = v;
      if (key == "item_id") s.item.id_column = v;
      if (key == "label") s.label_column = v;
      if (key == "p_true") s.p_true_column = v;
      if (key == "timestamp") s.timestamp_column = v;
      if (key == "weight") s.weight_column = v;
    } else if (key == "history") {
      if (!kv.second.IsMap()) {
        throw Error(w + ": 'features.history': expected {length, pooling, heads}");
      }
      nlohmann::json j = nlohmann::json::object();
      for (const auto& h : kv.second) {
        const std::string k = h.first.Scalar();
        const std::string v = h.second.IsScalar() ? h.second.Scalar() : "";
        if (j.contains(k)) {
          throw Error(Where(file, h.first) + ": 'features.history." + k + "' appears twice");
        }
        if (k == "length" || k == "heads") {
          int64_t n;
          if (!h.second.IsScalar() || !ParseInt64Text(v, &n)) {
            throw Error(Where(file, h.second) + ": 'features.history." + k +
                        "': expected an integer, got " + Quote(v));
          }
          j[k] = n;
        } else {
          j[k] = v;
        }
      }
      history = data::HistorySpecFromJson(j, Where(file, kv.second) + ": 'features.history'");
    } else if (key != "user" && key != "item") {
      throw Error(w + ": unknown key 'features." + key +
                  "' (expected: user_id, item_id, label, p_true, timestamp, history, user, item)");
    }
  }
  if (node["user"]) s.user = ParseSide(node["user"], "user", s.user.id_column, file);
  s.user.history = history;
  if (node["item"]) s.item = ParseSide(node["item"], "item", s.item.id_column, file);
  c->features = s;
}

// `tasks:`, a list of {name, type, column, weight, delimiter} (two_tower.h's TaskSpec).
void ParseTasks(const YAML::Node& node, Config* c, const std::string& file) {
  if (node.IsNull()) return;
  if (!node.IsSequence()) {
    throw Error(Where(file, node) + ": 'tasks': expected a list of {name, type, column, weight}");
  }
  std::vector<model::TaskSpec> tasks;
  for (const YAML::Node& item : node) {
    const std::string w = Where(file, item);
    if (!item.IsMap()) throw Error(w + ": 'tasks': expected {name, type, column, weight}");
    model::TaskSpec t;
    std::set<std::string> seen;
    for (const auto& kv : item) {
      const std::string key = kv.first.Scalar();
      const std::string kw = Where(file, kv.first);
      if (!seen.insert(key).second) throw Error(kw + ": key 'tasks." + key + "' appears twice");
      if (!kv.second.IsScalar()) throw Error(kw + ": 'tasks." + key + "': expected a scalar");
      const std::string v = kv.second.Scalar();
      if (key == "name") {
        t.name = v;
      } else if (key == "type") {
        t.type = v;
      } else if (key == "column") {
        t.column = v;
      } else if (key == "delimiter") {
        t.delimiter = v;
      } else if (key == "weight") {
        bool ok = false;
        t.weight = ParseFiniteDouble(v, &ok);
        if (!ok) throw Error(kw + ": 'tasks.weight': expected a number, got " + Quote(v));
      } else {
        throw Error(kw + ": unknown key 'tasks." + key +
                    "' (expected: name, type, column, weight, delimiter)");
      }
    }
    model::ValidateTask(t, w + ": 'tasks'");
    tasks.push_back(std::move(t));
  }
  c->model.tasks = std::move(tasks);
}

// `assigned`: every setting's full name met so far in the document, with where, so that a
// setting given twice is refused however it was spelt (training: {epochs: 2} and, at the top,
// training.epochs: 1).
void Walk(const YAML::Node& node, const std::string& prefix, Config* c, const std::string& file,
          std::map<std::string, std::string>* assigned) {
  for (const auto& kv : node) {
    const std::string key = kv.first.Scalar();
    const std::string full = prefix.empty() ? key : prefix + "." + key;
    const std::string w = Where(file, kv.first);
    // yaml-cpp keeps the last of two equal keys; a silently ignored setting is a bug to report.
    const auto [at, fresh] = assigned->emplace(full, w);
    if (!fresh) {
      throw Error(w + ": key '" + full + "' appears twice (first at " + at->second + ")");
    }
    if (full == "features") {
      ParseFeatures(kv.second, c, file);
      continue;
    }
    if (full == "tasks") {
      ParseTasks(kv.second, c, file);
      continue;
    }
    if (const Setting* s = FindSetting(full)) {
      AssignYaml(*s, c, kv.second, w);
      continue;
    }
    const bool section = prefix.empty() && (key == "data" || key == "model" || key == "training" ||
                                            key == "evaluation" || key == "output");
    if (section) {
      if (kv.second.IsNull()) continue;
      if (!kv.second.IsMap()) throw Error(w + ": '" + key + "': expected a mapping");
      Walk(kv.second, full, c, file, assigned);
      continue;
    }
    throw Error(w + ": unknown key '" + full + "' (expected one of: " + KnownKeys(prefix) + ")");
  }
}

std::string Resolve(const std::string& dir, const std::string& path) {
  if (path.empty() || path.front() == '/' || dir.empty()) return path;
  return (std::filesystem::path(dir) / path).string();
}

}  // namespace

Config Config::FromYamlString(const std::string& text, const std::string& where) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(where + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  Config c;
  if (root.IsNull()) return c;
  if (!root.IsMap()) throw Error(where + ": expected a mapping of settings at the top level");
  std::map<std::string, std::string> assigned;
  Walk(root, "", &c, where, &assigned);
  c.Validate(where);
  return c;
}

Config Config::FromYamlFile(const std::string& path) {
  return FromYamlString(ReadFile(path), path);
}

void Config::Set(const std::string& assignment, const std::string& where, bool validate) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos) {
    throw Error(where + ": expected key=value, got " + Quote(assignment));
  }
  const std::string key = assignment.substr(0, eq);
  const Setting* s = FindSetting(key);
  if (s == nullptr) {
    std::string keys;
    for (const Setting& setting : Settings())
      keys += (keys.empty() ? "" : ", ") + std::string(setting.key);
    throw Error(where + ": unknown key '" + key + "' (expected one of: " + keys + ")");
  }
  AssignText(*s, this, assignment.substr(eq + 1), where);
  if (validate) Validate(where);
}

void Config::Validate(const std::string& where) const {
  const std::pair<const char*, const std::string*> paths[] = {{"data.train", &train},
                                                              {"data.val", &val},
                                                              {"data.test", &test},
                                                              {"output.dir", &output_dir},
                                                              {"output.name", &run_name}};
  for (const auto& [key, value] : paths) {
    if (value->empty()) throw Error(where + ": '" + key + "' is empty (expected a path)");
  }
  features.Validate(where);
  if (shards > training.batch_size) {
    // Each part gives a share of every step's batch: a part with no share would never train.
    throw Error(where + ": 'data.shards' " + std::to_string(shards) +
                " is more than training.batch_size " + std::to_string(training.batch_size) +
                ": every part needs at least one row of each batch");
  }
  if (shards > 1) {
    // What a rank holding one part cannot compute: per-user state over every part's rows.
    const char* refused = features.user.history.enabled() ? "features.history (a user's history "
                                                            "is read across the parts)"
                          : training.exclude_history_negatives
                              ? "training.exclude_history_negatives (the batch's users' "
                                "histories are read across the parts)"
                          : model.kind == "ranker" ? "model.kind: ranker"
                                                   : nullptr;
    if (refused != nullptr) {
      throw Error(where + ": 'data.shards' " + std::to_string(shards) + " does not work with " +
                  refused + ": use data.shards: 1");
    }
  }
  if (training.weight_transform != "none" && features.weight_column.empty()) {
    throw Error(where + ": 'training.weight_transform' " + training.weight_transform +
                " has no weights to transform: name the weight column in features.weight");
  }
  // The monitored value must be one this run computes.
  const std::string m = Monitor();
  if (m != "val_auc" && m != "val_loss") {
    bool ok = false;
    for (const char* metric : {"val_recall@", "val_ndcg@", "val_hitrate@", "val_mrr@"}) {
      if (m.rfind(metric, 0) != 0) continue;
      const std::string k = m.substr(std::string(metric).size());
      for (int kk : evaluation.k) ok |= k == std::to_string(kk);
    }
    if (!ok) {
      std::string ks;
      for (int kk : evaluation.k) ks += (ks.empty() ? "" : ", ") + std::to_string(kk);
      throw Error(where + ": 'training.monitor': unknown value " + Quote(m) +
                  " (expected val_auc, val_loss, or val_recall@K, val_ndcg@K, val_hitrate@K, "
                  "val_mrr@K with K in evaluation.k = [" +
                  ks + "])");
    }
  }
  {
    std::set<std::string> names;
    for (const model::TaskSpec& t : model.tasks) {
      model::ValidateTask(t, where + ": 'tasks'");
      if (!names.insert(t.name).second) {
        throw Error(where + ": 'tasks': the name '" + t.name + "' is used twice");
      }
    }
  }
  if (model.kind == "ranker" && !model.tasks.empty()) {
    throw Error(where + ": 'tasks': heads on the towers of a two-tower model; a ranker " +
                "(model.kind: ranker) has none");
  }
  if (model.kind == "ranker" && features.user.history.enabled()) {
    throw Error(where + ": 'features.history': the user-history feature is a two-tower user " +
                "tower's input; a ranker (model.kind: ranker) does not read it");
  }
  if (model.kind == "ranker") {
    // The ranker is a pointwise model of labelled pairs (BCE), selected on the validation AUC or
    // loss; what it has not got is refused here rather than ignored.
    if (training.loss != "bce") {
      throw Error(where + ": 'training.loss': a ranker (model.kind: ranker) trains with bce on " +
                  "labelled pairs, got " + Quote(training.loss));
    }
    if (training.sampler == "in_batch") {
      throw Error(where + ": 'training.sampler': a ranker draws its sampled negatives uniformly " +
                  "or by popularity (in_batch is for the retrieval losses)");
    }
    if (training.num_hard_negatives > 0 || training.num_easy_negatives > 0) {
      throw Error(where + ": 'training." +
                  (training.num_hard_negatives > 0 ? "num_hard_negatives" : "num_easy_negatives") +
                  "': not used by rankers");
    }
    if (training.exclude_history_negatives) {
      throw Error(where + ": 'training.exclude_history_negatives': a ranker's sampled " +
                  "negatives always skip the user's training items");
    }
    if (training.embedding_l2 != 0.0) {
      throw Error(where + ": 'training.embedding_l2': penalises tower outputs; a ranker has none");
    }
  }
  if (m == "val_loss" && training.loss != "bce") {
    throw Error(where +
                ": 'training.monitor': val_loss is the pointwise (bce) loss on labelled "
                "pairs; with training.loss " +
                training.loss +
                " monitor a ranking metric such as "
                "val_recall@10");
  }
  // The sampler each loss can use, and how many negatives a row can have.
  const std::string& loss = training.loss;
  const std::string& sampler = training.sampler;
  if (!sampler.empty() && model.kind != "ranker") {
    if (loss == "bce") {
      throw Error(where + ": 'training.sampler': bce trains on the labelled pairs and draws no " +
                  "negatives; a sampler is for bpr and triplet");
    }
    if ((loss == "softmax" && sampler != "in_batch") || loss == "mixed") {
      throw Error(where + ": 'training.sampler': " + loss + " takes its negatives from " +
                  (loss == "mixed" ? "the batch and the uniform draws (num_uniform_negatives)"
                                   : "the batch (in_batch)") +
                  ", so sampler " + Quote(sampler) + " does not apply" +
                  (loss == "softmax" ? "; for uniform negatives use loss: mixed" : ""));
    }
  }
  const bool in_batch = loss == "softmax" || loss == "mixed" || sampler == "in_batch";
  if (loss != "bce" && in_batch && training.batch_size < 2) {
    throw Error(where + ": 'training.batch_size': in-batch negatives need at least 2 rows per " +
                "batch (the other rows' items are the negatives), got " +
                std::to_string(training.batch_size));
  }
  if (training.num_hard_negatives > 0) {
    if (loss == "bce") {
      throw Error(where + ": 'training.num_hard_negatives': bce draws no negatives");
    }
    int64_t drawn = 0;
    if (in_batch) drawn += training.batch_size - 1;
    if (loss == "mixed") drawn += training.num_uniform_negatives;
    if (!in_batch) drawn += training.num_negatives;
    if (training.num_easy_negatives > 0 && training.num_hard_negatives >= drawn) {
      throw Error(where + ": 'training.num_easy_negatives': num_hard_negatives (" +
                  std::to_string(training.num_hard_negatives) + ") already keeps all " +
                  std::to_string(drawn) + " negatives a row has, so none is left to draw");
    }
    if (training.num_hard_negatives > drawn) {
      throw Error(where + ": 'training.num_hard_negatives': " +
                  std::to_string(training.num_hard_negatives) + " is more than the " +
                  std::to_string(drawn) + " negatives a row has (" +
                  (in_batch ? "batch_size - 1" : "num_negatives") +
                  (loss == "mixed" ? " + num_uniform_negatives" : "") + ")");
    }
  }
  if (training.num_easy_negatives > 0 && training.num_hard_negatives == 0) {
    throw Error(where + ": 'training.num_easy_negatives': easy negatives are kept beside hard " +
                "ones; set training.num_hard_negatives too (0 keeps every negative already)");
  }
  if (training.exclude_history_negatives && loss == "bce") {
    throw Error(where + ": 'training.exclude_history_negatives': bce draws no negatives");
  }
  {
    std::set<int> ks;
    for (int k : evaluation.k) {
      if (!ks.insert(k).second) {
        throw Error(where + ": 'evaluation.k': " + std::to_string(k) + " is listed twice");
      }
    }
  }
  if (training.loss != "bce" && training.monitor.empty() && evaluation.k.empty()) {
    throw Error(where + ": 'training.loss' " + training.loss +
                " needs a ranking metric to monitor: set evaluation.k (e.g. [10, 20]) or "
                "training.monitor");
  }
}

std::string Config::Monitor() const {
  if (!training.monitor.empty()) return training.monitor;
  if (training.loss == "bce" || evaluation.k.empty()) return "val_auc";
  return "val_recall@" + std::to_string(evaluation.k.front());
}

data::DataPaths Config::ResolvedPaths() const {
  // An unset table of a tower with features beyond its id is the lab generator's file
  // (users.csv, movies.csv), as before tables became optional: configs written for the lab's
  // layout name only data.dir. A tower that is its id alone reads no table.
  auto table = [&](const std::string& path, const data::EntitySchema& side, const char* lab) {
    if (!path.empty()) return Resolve(data_dir, path);
    for (const data::FeatureSpec& f : side.features) {
      if (f.column != side.id_column) return Resolve(data_dir, lab);
    }
    return std::string();
  };
  return {table(users, features.user, "users.csv"), table(items, features.item, "movies.csv"),
          Resolve(data_dir, train), Resolve(data_dir, val), Resolve(data_dir, test)};
}

namespace {

// Settings outside the table's generic form in the written config: the features section is the
// schema's (written whole, below), and the ranker's keys appear in config.yaml only when one of
// them says something, so a two-tower run's config.yaml (and with it the settings hash a
// checkpoint records) stays what it was before rankers existed.
bool InFeatures(const Setting& s) { return std::string(s.key).rfind("features.", 0) == 0; }
constexpr const char* kRankerKeys[] = {"model.kind", "model.cross_layers",
                                       "model.ranker_hidden_dims"};
bool IsRankerKey(const Setting& s) {
  for (const char* k : kRankerKeys) {
    if (std::string(s.key) == k) return true;
  }
  return false;
}

// The JSON object at a dotted key's parent ("model.dropout" -> (*j)["model"]), and its last part.
nlohmann::json& Parent(nlohmann::json* j, const std::string& key, std::string* leaf) {
  nlohmann::json* at = j;
  size_t begin = 0;
  for (size_t dot; (dot = key.find('.', begin)) != std::string::npos; begin = dot + 1) {
    at = &(*at)[key.substr(begin, dot - begin)];
  }
  *leaf = key.substr(begin);
  return *at;
}

}  // namespace

nlohmann::json Config::ToJson() const {
  // Every declared setting, by its dotted key; then the parts that are not plain settings.
  nlohmann::json j = nlohmann::json::object();
  for (const Setting& s : Settings()) {
    if (InFeatures(s)) continue;
    std::string leaf;
    Parent(&j, s.key, &leaf)[leaf] = ValueJson(s, *this);
  }
  j["model"]["tasks"] = model::TasksJson(model.tasks);
  j["features"] = data::ToJson(features);
  j["features"]["history"] = data::ToJson(features.user.history);  // also when off (length 0)
  return j;
}

std::string Config::ToYaml() const {
  const Config defaults;
  bool ranker = false;
  for (const Setting& s : Settings()) {
    ranker |= IsRankerKey(s) && ValueJson(s, *this) != ValueJson(s, defaults);
  }
  YAML::Emitter out;
  out.SetDoublePrecision(15);
  out << YAML::BeginMap;
  // The settings in the table's order, each section one mapping (the table lists a section's
  // keys together).
  std::string section;
  for (const Setting& s : Settings()) {
    if (InFeatures(s) || (IsRankerKey(s) && !ranker)) continue;
    const std::string key = s.key;
    const size_t dot = key.find('.');
    const std::string now = dot == std::string::npos ? "" : key.substr(0, dot);
    if (now != section) {
      if (!section.empty()) out << YAML::EndMap;
      if (!now.empty()) out << YAML::Key << now << YAML::Value << YAML::BeginMap;
      section = now;
    }
    out << YAML::Key << key.substr(dot == std::string::npos ? 0 : dot + 1) << YAML::Value;
    EmitSettingYaml(&out, ValueJson(s, *this));
  }
  if (!section.empty()) out << YAML::EndMap;
  if (!model.tasks.empty()) {
    out << YAML::Key << "tasks" << YAML::Value << YAML::BeginSeq;
    for (const model::TaskSpec& t : model.tasks) {
      out << YAML::Flow << YAML::BeginMap << YAML::Key << "name" << YAML::Value << t.name
          << YAML::Key << "type" << YAML::Value << t.type << YAML::Key << "column" << YAML::Value
          << t.column << YAML::Key << "weight" << YAML::Value << t.weight;
      if (!t.delimiter.empty()) out << YAML::Key << "delimiter" << YAML::Value << t.delimiter;
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  out << YAML::Key << "features" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "user_id" << YAML::Value << features.user.id_column;
  out << YAML::Key << "item_id" << YAML::Value << features.item.id_column;
  out << YAML::Key << "label" << YAML::Value << features.label_column;
  out << YAML::Key << "p_true" << YAML::Value << features.p_true_column;
  if (!features.timestamp_column.empty()) {
    out << YAML::Key << "timestamp" << YAML::Value << features.timestamp_column;
  }
  if (!features.weight_column.empty()) {
    out << YAML::Key << "weight" << YAML::Value << features.weight_column;
  }
  if (features.user.history.enabled()) {
    const data::HistorySpec& h = features.user.history;
    out << YAML::Key << "history" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key
        << "length" << YAML::Value << h.length << YAML::Key << "pooling" << YAML::Value << h.pooling
        << YAML::Key << "heads" << YAML::Value << h.heads << YAML::EndMap;
  }
  for (const auto* side : {&features.user, &features.item}) {
    out << YAML::Key << (side == &features.user ? "user" : "item") << YAML::Value << YAML::BeginSeq;
    for (const auto& f : side->features) {
      out << YAML::Flow << YAML::BeginMap;
      const nlohmann::json spec = data::ToJson(f);
      for (auto it = spec.begin(); it != spec.end(); ++it) {
        out << YAML::Key << it.key() << YAML::Value;
        if (it.value().is_string()) {
          out << it.value().get<std::string>();
        } else {
          out << it.value().get<int64_t>();
        }
      }
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::vector<std::string> SettingsHelp() { return SettingsHelpLines(Settings()); }

}  // namespace twotower::train
