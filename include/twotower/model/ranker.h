// Ranker: a second-stage model that sees a user and an item together (model.kind: ranker).
//
//   x_0(u, i) = [user dense | user bags ... | item dense | item bags ...]      (width d)
//   logit(u, i) = MLP(CrossNetwork(x_0)),   p(like) = sigmoid(logit)
//
// The inputs are the two towers' inputs (data::FeatureEncoder, embedding bags pooled as in
// tower.h) side by side; the cross network is DCN-v2's (nn/cross.h; Wang et al., WWW 2021, the
// "stacked" structure: cross layers, then the deep network), the MLP is Linear -> ReLU ->
// Dropout per ranker_hidden_dims, then a Linear to one logit. Unlike a two-tower model it can
// express any user-item interaction (e.g. "likes items older than the user's own age"), at the
// price of one network pass per (user, item) pair: it re-ranks a retrieved candidate set
// (`recommend --rerank`), and cannot be indexed. Trained with BCE on labelled pairs
// (train/ranker_trainer.h).
//
// Tensor names follow a PyTorch module (bench/reference/twotower_torch.py, `Ranker`):
// "user_embeddings.<column>.weight", "item_embeddings.<column>.weight", "cross.<l>.weight",
// "cross.<l>.bias", "deep.<i>.weight", "deep.<i>.bias" (nn.Sequential indices: Linear at 0, 3,
// 6, ...), so a model file loads with load_state_dict(strict=True).
// Thread-safety: Score is const and safe from many threads; Forward / Backward use a caller-owned
// RankerContext and need exclusive use of the gradients.
#ifndef TWOTOWER_MODEL_RANKER_H_
#define TWOTOWER_MODEL_RANKER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/core/rng.h"
#include "twotower/data/encoder.h"
#include "twotower/model/two_tower.h"
#include "twotower/nn/cross.h"
#include "twotower/nn/embedding.h"
#include "twotower/nn/mlp.h"

namespace twotower::model {

struct RankerContext {
  Matrix input;  // n x input_dim: x_0
  nn::CrossContext cross;
  nn::SequentialContext deep;
  Matrix dlogits;  // n x 1
  Matrix dcross;   // d loss / d cross output
  Matrix dinput;   // d loss / d x_0
  Vector logits;
  const data::EncodedTable* users = nullptr;
  const data::EncodedTable* items = nullptr;
  const int32_t* user_rows = nullptr;
  const int32_t* item_rows = nullptr;
  int64_t n = 0;
};

class Ranker {
 public:
  // Built from a fitted encoder (both sides' dense columns and learned features) and
  // config.cross_layers, ranker_hidden_dims, dropout; initialised as PyTorch's defaults (Linear
  // and cross) and N(0, 0.1^2) (embeddings, as tower.cc). Throws Error for an input of width 0.
  Ranker(const ModelConfig& config, const data::FeatureEncoder& encoder, Rng* init_rng);

  // Inference logits for n pairs (users row user_rows[j], items row item_rows[j]) of the encoded
  // tables -> *logits (n). In chunks, so n may be millions. Throws Error for a table that does
  // not match the encoder or a row out of range.
  void Score(const data::EncodedTable& users, const int32_t* user_rows,
             const data::EncodedTable& items, const int32_t* item_rows, int64_t n,
             Vector* logits) const;

  // Training forward (dropout on) for n pairs; the tables and row arrays must outlive Backward.
  // Returns the n logits (in ctx).
  const Vector& Forward(const data::EncodedTable& users, const int32_t* user_rows,
                        const data::EncodedTable& items, const int32_t* item_rows, int64_t n,
                        RankerContext* ctx, Rng* rng);
  // dlogits: n values, d loss / d logit. Adds into every parameter's gradient (embedding tables:
  // the touched rows).
  void Backward(RankerContext* ctx, const Vector& dlogits);

  std::vector<nn::NamedParameter> NamedTensors();
  std::vector<nn::Parameter*> TrainableParameters();
  int64_t ParameterCount();
  std::vector<Matrix> Snapshot();
  void Restore(const std::vector<Matrix>& snapshot);

  const ModelConfig& config() const { return config_; }
  // The precision of the cross and deep layers' training products (nn/gemm.h); Score is fp32.
  void set_training_precision(nn::Precision precision) {
    cross_.set_precision(precision);
    deep_.set_precision(precision);
  }
  int input_dim() const { return input_dim_; }
  // "x0 = 43 dense + EmbeddingBag(user_id: 944x32) | 2 dense + EmbeddingBag(movie_id: 1641x32)
  //  + ... (125) -> Cross(125, 2 layers) -> Linear(125->256) -> ReLU -> ... -> Linear(128->1)",
  // in x0's column order.
  std::string Describe() const;

 private:
  struct Side {
    int dense_dim = 0;
    std::vector<data::LearnedFeature> learned;
    std::vector<nn::EmbeddingBag> bags;
    int width = 0;  // dense_dim + every bag's dim
  };
  void CheckTables(const data::EncodedTable& users, const data::EncodedTable& items) const;
  void Gather(const data::EncodedTable& users, const int32_t* user_rows,
              const data::EncodedTable& items, const int32_t* item_rows, int64_t n,
              Matrix* input) const;

  ModelConfig config_;
  Side user_, item_;
  nn::CrossNetwork cross_;
  nn::Sequential deep_;
  int input_dim_ = 0;
};

// The tensor shapes a ranker of this config and encoder has (PyTorch shapes: biases 1-d), by
// name, computed without building it: what a model file is checked against before allocating.
// Throws Error for an embedding table of more than 2^31 rows.
std::vector<std::pair<std::string, std::vector<int64_t>>> RankerTensorShapes(
    const ModelConfig& config, const data::FeatureEncoder& encoder);

}  // namespace twotower::model

#endif  // TWOTOWER_MODEL_RANKER_H_
