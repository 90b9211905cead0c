// TwoTowerModel: a user tower and an item tower that meet in a scaled dot product.
//
//   tower(x) = L2Normalize(Linear_out(Dropout(ReLU(Linear_h(... x)))))   (per hidden width h)
//   logit(u, v) = scale * <tower_u(x_u), tower_i(x_i)> + bias,   p = sigmoid(logit)
//
// `score: learned` trains scale (as log_scale, so it stays positive) and bias; `score: cosine`
// fixes scale = 1 and bias = 0, the lab's model exactly. Tensor names match a PyTorch module with
// `user_tower.layers = nn.Sequential(Linear, ReLU, Dropout, ..., Linear)` and the same for the item
// tower, plus `scorer.log_scale` and `scorer.bias` (0-d), so weights load with load_state_dict.
// Thread-safety: the const methods (Encode*, Score*) are safe from many threads; Forward and
// Backward need a caller-owned ModelContext and exclusive use of the gradients.
#ifndef TWOTOWER_MODEL_TWO_TOWER_H_
#define TWOTOWER_MODEL_TWO_TOWER_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/core/rng.h"
#include "twotower/nn/mlp.h"

namespace twotower::model {

enum class ScoreMode { kLearned, kCosine };

struct ModelConfig {
  int embedding_dim = 128;
  std::vector<int> user_hidden_dims = {256, 128};
  std::vector<int> item_hidden_dims = {256, 128};
  double dropout = 0.3;
  ScoreMode score = ScoreMode::kLearned;
  // Initial scale in learned mode. With unit vectors a scale of 1 caps sigmoid at 0.73; starting
  // higher lets the model express confident predictions from the first epochs.
  double initial_scale = 5.0;

  nlohmann::json ToJson() const;
  static ModelConfig FromJson(const nlohmann::json& json, const std::string& where);
};

const char* ScoreModeName(ScoreMode mode);

struct ModelContext {
  nn::SequentialContext user, item;
  Vector dot;      // <u, v> per row
  Vector logits;   // scale * dot + bias
  Vector dscaled;  // scale * dlogits
  Matrix du, dv;   // gradients w.r.t. the tower outputs
};

class TwoTowerModel {
 public:
  // Builds the towers for inputs of the given widths and initialises them as PyTorch does.
  TwoTowerModel(const ModelConfig& config, int user_input_dim, int item_input_dim, Rng* init_rng);

  // x_u: n x user_input_dim() -> n x embedding_dim (unit rows).
  void EncodeUsers(const Matrix& x_u, Matrix* u) const { user_tower_.Infer(x_u, u); }
  void EncodeItems(const Matrix& x_i, Matrix* v) const { item_tower_.Infer(x_i, v); }
  // Row-wise logits for paired embeddings (u.rows() == v.rows()).
  void ScorePairs(const Matrix& u, const Matrix& v, Vector* logits) const;
  // Inference logits for n (user, item) feature pairs.
  void Predict(const Matrix& x_u, const Matrix& x_i, Vector* logits) const;

  // Training forward (dropout on): returns ctx->logits.
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
  int user_input_dim() const { return user_tower_.in_dim(); }
  int item_input_dim() const { return item_tower_.in_dim(); }
  int embedding_dim() const { return config_.embedding_dim; }
  const nn::Sequential& user_tower() const { return user_tower_; }
  const nn::Sequential& item_tower() const { return item_tower_; }

  // Copies of all tensor values (for keeping the best epoch) and their restoration.
  std::vector<Matrix> Snapshot();
  void Restore(const std::vector<Matrix>& snapshot);

 private:
  ModelConfig config_;
  nn::Sequential user_tower_;
  nn::Sequential item_tower_;
  nn::Parameter log_scale_;
  nn::Parameter bias_;
};

}  // namespace twotower::model

#endif  // TWOTOWER_MODEL_TWO_TOWER_H_
