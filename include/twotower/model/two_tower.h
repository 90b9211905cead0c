// TwoTowerModel: a user tower and an item tower (tower.h) that meet in a scaled dot product.
//
//   u = tower_u(user row), v = tower_i(item row)          (unit rows unless normalize: false)
//   logit(u, v) = scale * <u, v> + bias,   p = sigmoid(logit)       (the scorer, for bce)
//
// Retrieval ranks items by <u, v> (the scorer is monotone in it). `score: learned` trains scale
// (as log_scale, so it stays positive) and bias; `score: cosine` fixes scale = 1 and bias = 0,
// the lab's model exactly. Towers are built from the feature encoder (dense columns plus
// embedding bags for id / categorical / multi-hot features). Tensor names match a PyTorch module
// (bench/reference/twotower_torch.py): `user_tower.embeddings.<column>.weight`,
// `user_tower.layers.<i>.{weight,bias}` (nn.Sequential indices), the same for the item tower, and
// `scorer.log_scale`, `scorer.bias` (0-d), so weights load with load_state_dict.
// Thread-safety: the const methods (Encode*, Score*, Predict) are safe from many threads; Forward
// and Backward need a caller-owned ModelContext and exclusive use of the gradients.
#ifndef TWOTOWER_MODEL_TWO_TOWER_H_
#define TWOTOWER_MODEL_TWO_TOWER_H_

#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/core/rng.h"
#include "twotower/data/encoder.h"
#include "twotower/model/tower.h"
#include "twotower/nn/mlp.h"

namespace twotower::model {

enum class ScoreMode { kLearned, kCosine };

// An auxiliary task (multi-task learning, the config's `tasks:` list), trained beside the main
// objective with its own head and loss weight (train/tasks.h has the losses):
//   regression  a numeric column of the interaction files (e.g. rating), predicted from the pair
//               as w . (u * v) + b (a learned weighting of the dot product), mean squared error
//   item_class  a column of the items table (e.g. genre), predicted from the item embedding alone
//               as softmax(W v + b) over `classes` (cross-entropy), or, with a delimiter
//               (multi-valued cells such as "Action|Comedy"), one sigmoid per class (binary
//               cross-entropy averaged over the classes)
// Heads are tensors "tasks.<name>.weight" ([1 or classes, embedding_dim]) and "tasks.<name>.bias".
struct TaskSpec {
  std::string name;                  // letters, digits, '_'
  std::string type;                  // "regression" | "item_class"
  std::string column;                // the target column
  double weight = 1.0;               // the task loss's weight beside the main objective's (1)
  std::string delimiter;             // item_class: "" one label per item, else the cells' separator
  std::vector<std::string> classes;  // item_class: the labels, sorted (fitted on the items table)
  int outputs() const { return type == "regression" ? 1 : static_cast<int>(classes.size()); }
};

struct ModelConfig {
  int embedding_dim = 128;
  std::vector<int> user_hidden_dims = {256, 128};
  std::vector<int> item_hidden_dims = {256, 128};
  double dropout = 0.3;
  ScoreMode score = ScoreMode::kLearned;
  // Initial scale in learned mode. With unit vectors a scale of 1 caps sigmoid at 0.73; starting
  // higher lets the model express confident predictions from the first epochs.
  double initial_scale = 5.0;
  bool normalize = true;  // L2-normalise the tower outputs
  // false: a tower without hidden layers has no Linear either; its input (e.g. one id
  // embedding of width embedding_dim) is its output, as in matrix factorisation.
  bool projection = true;
  // "two_tower" (this file) or "ranker" (ranker.h: user and item features seen together, for a
  // second stage). The ranker reads cross_layers, ranker_hidden_dims and dropout.
  std::string kind = "two_tower";
  int cross_layers = 2;                              // DCN-v2 cross layers (nn/cross.h); 0 = none
  std::vector<int> ranker_hidden_dims = {256, 128};  // the ranker's MLP after the cross network
  std::vector<TaskSpec> tasks;                       // auxiliary task heads (two_tower only)

  nlohmann::json ToJson() const;
  static ModelConfig FromJson(const nlohmann::json& json, const std::string& where);
};

const char* ScoreModeName(ScoreMode mode);
// The tasks as the model file's JSON; ValidateTask throws Error("<where>: ...") naming the task
// for a bad name, type, column, weight or delimiter.
nlohmann::json TasksJson(const std::vector<TaskSpec>& tasks);
void ValidateTask(const TaskSpec& task, const std::string& where);
// Writes ScoreModeName(mode) (for logs, and for gtest, which prints parameters with it).
std::ostream& operator<<(std::ostream& os, ScoreMode mode);

struct ModelContext {
  TowerContext user, item;
  Vector dot;      // <u, v> per row
  Vector logits;   // scale * dot + bias
  Vector dscaled;  // scale * dlogits
  Matrix du, dv;   // gradients w.r.t. the tower outputs
};

class TwoTowerModel {
 public:
  // Not copyable or movable: the user tower's history reads the item tower's table by address.
  TwoTowerModel(const TwoTowerModel&) = delete;
  TwoTowerModel& operator=(const TwoTowerModel&) = delete;
  // Towers over dense inputs of the given widths (no learned features), initialised as PyTorch
  // does.
  TwoTowerModel(const ModelConfig& config, int user_input_dim, int item_input_dim, Rng* init_rng);
  // Towers built from a fitted encoder: its dense columns and learned features.
  TwoTowerModel(const ModelConfig& config, const data::FeatureEncoder& encoder, Rng* init_rng);

  // Every row of an encoded users / items table -> rows x embedding_dim.
  void EncodeUsers(const data::EncodedTable& users, Matrix* u) const {
    user_tower_.Infer(users, u);
  }
  void EncodeItems(const data::EncodedTable& items, Matrix* v) const {
    item_tower_.Infer(items, v);
  }
  // Rows rows[0..n) of an encoded users table -> n x embedding_dim.
  void EncodeUsers(const data::EncodedTable& users, const int32_t* rows, int64_t n,
                   Matrix* u) const {
    user_tower_.Infer(users, rows, n, u);
  }
  // Dense-only towers: x_u: n x user_input_dim() -> n x embedding_dim.
  void EncodeUsers(const Matrix& x_u, Matrix* u) const { user_tower_.Infer(x_u, u); }
  void EncodeItems(const Matrix& x_i, Matrix* v) const { item_tower_.Infer(x_i, v); }
  // Row-wise logits for paired embeddings (u.rows() == v.rows()).
  void ScorePairs(const Matrix& u, const Matrix& v, Vector* logits) const;
  // Inference logits for n (user, item) dense feature pairs.
  void Predict(const Matrix& x_u, const Matrix& x_i, Vector* logits) const;

  // Training forward of both towers (dropout on) for n (user row, item row) pairs of the encoded
  // tables (which, with the row arrays, must outlive Backward). The outputs are user_output(ctx)
  // and item_output(ctx), n x embedding_dim each.
  void ForwardTowers(const data::EncodedTable& users, const int32_t* user_rows,
                     const data::EncodedTable& items, const int32_t* item_rows, int64_t n,
                     ModelContext* ctx, Rng* rng) {
    ForwardTowers(users, user_rows, n, items, item_rows, n, ctx, rng);
  }
  // The same with n_users user rows and n_items item rows (a batch's items and then sampled
  // negatives): user_output is n_users x d, item_output n_items x d.
  void ForwardTowers(const data::EncodedTable& users, const int32_t* user_rows, int64_t n_users,
                     const data::EncodedTable& items, const int32_t* item_rows, int64_t n_items,
                     ModelContext* ctx, Rng* rng);
  static const Matrix& user_output(const ModelContext& ctx) { return *ctx.user.output; }
  static const Matrix& item_output(const ModelContext& ctx) { return *ctx.item.output; }
  // The same, the user rows reading per-example histories (user tower with a history feature).
  void ForwardTowers(const data::EncodedTable& users, const int32_t* user_rows, int64_t n_users,
                     HistoryRows history, const data::EncodedTable& items, const int32_t* item_rows,
                     int64_t n_items, ModelContext* ctx, Rng* rng);
  // du, dv: gradients of the loss w.r.t. the tower outputs. Adds into the towers' gradients
  // (the item id table also receives the user history's share, after both towers).
  void BackwardTowers(ModelContext* ctx, const Matrix& du, const Matrix& dv);
  // Adds d loss / d log_scale and d loss / d bias into the scorer's gradients (learned mode only).
  void AddScorerGradient(double d_log_scale, double d_bias);

  // Dense-only training forward (dropout on) with the scorer: returns ctx->logits.
  const Vector& Forward(const Matrix& x_u, const Matrix& x_i, ModelContext* ctx, Rng* rng);
  // dlogits: gradient of the loss w.r.t. ctx->logits. Adds into every trainable gradient.
  void Backward(ModelContext* ctx, const Vector& dlogits);

  // Every tensor of the model file, PyTorch names, scorer included.
  std::vector<nn::NamedParameter> NamedTensors();
  // What the optimizer updates (the scorer only in learned mode).
  std::vector<nn::Parameter*> TrainableParameters();
  int64_t ParameterCount();

  float scale() const { return std::exp(log_scale_.value(0, 0)); }
  float bias() const { return bias_.value(0, 0); }
  const ModelConfig& config() const { return config_; }
  int user_input_dim() const { return user_tower_.input_dim(); }
  int item_input_dim() const { return item_tower_.input_dim(); }
  int embedding_dim() const { return config_.embedding_dim; }
  const Tower& user_tower() const { return user_tower_; }
  // Both towers' Tower::set_training_precision (the task heads stay fp32: one output each).
  void set_training_precision(nn::Precision precision) {
    user_tower_.set_training_precision(precision);
    item_tower_.set_training_precision(precision);
  }
  // Both towers' Tower::ZeroOovRows (after every optimiser step).
  void ZeroOovRows() {
    user_tower_.ZeroOovRows();
    item_tower_.ZeroOovRows();
  }
  const Tower& item_tower() const { return item_tower_; }
  // The head of config().tasks[t]: y = x W^T + b with x = u * v (regression) or v (item_class).
  const nn::Linear& task_head(size_t t) const { return *task_heads_[t]; }
  nn::Linear& task_head(size_t t) { return *task_heads_[t]; }

  // Copies of all tensor values (for keeping the best epoch) and their restoration.
  std::vector<Matrix> Snapshot();
  void Restore(const std::vector<Matrix>& snapshot);

 private:
  void InitScorer();
  void InitTasks(Rng* init_rng);
  // The item id table a user history reads (null without a history).
  nn::Parameter* history_table_ = nullptr;

  ModelConfig config_;
  Tower user_tower_;
  Tower item_tower_;
  nn::Parameter log_scale_;
  nn::Parameter bias_;
  std::vector<std::unique_ptr<nn::Linear>> task_heads_;
};

// The tower spec of one side for a model config and a fitted encoder (the user side's history
// reads the item side's id feature). Throws Error for a history without that feature.
TowerSpec MakeTowerSpec(const ModelConfig& config, const data::FeatureEncoder& encoder, bool user);

}  // namespace twotower::model

#endif  // TWOTOWER_MODEL_TWO_TOWER_H_
