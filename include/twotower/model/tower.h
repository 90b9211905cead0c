// Tower: one side of a two-tower model, built from that side's feature encoder.
//
//   input(row) = [dense columns | EmbeddingBag_1(bag_1) | ... | EmbeddingBag_k(bag_k) | history]
//   tower(row) = L2Normalize(Linear_out(Dropout(ReLU(Linear_h(... input(row))))))
//
// The dense columns and the learned features come from data::EntityEncoder (schema order); a
// tower may consist of one id feature alone (input = its embedding). With no hidden widths the
// MLP is a single Linear to embedding_dim, or nothing with `projection: false` (then the input
// width must be embedding_dim: matrix factorisation). `normalize: false` leaves out the
// L2Normalize.
// A user tower with a history feature (data/schema.h's HistorySpec) appends the history pooled by
// nn::AttentionPooling, whose query input is the rest of the input row (dense columns and bags),
// read from a table the tower does not own (the item tower's id embedding, SetHistoryTable). Its
// backward leaves the table's gradient in the context (ScatterHistoryGradient adds it), since the
// item tower's backward may run at the same time.
// Tensor names follow a PyTorch module with `embeddings = nn.ModuleDict({column:
// nn.EmbeddingBag})` and `layers = nn.Sequential(...)`: "<prefix>embeddings.<column>.weight",
// "<prefix>layers.0.weight", ... (see bench/reference/twotower_torch.py).
// Thread-safety: Infer is const and safe from many threads; Forward / Backward use a caller-owned
// TowerContext and need exclusive use of the gradients.
#ifndef TWOTOWER_MODEL_TOWER_H_
#define TWOTOWER_MODEL_TOWER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/core/rng.h"
#include "twotower/data/encoder.h"
#include "twotower/nn/attention.h"
#include "twotower/nn/embedding.h"
#include "twotower/nn/mlp.h"

namespace twotower::model {

// Which history each row of a batch reads: bag rows[i] of `bags` (data/history.h). Training
// passes per-example histories; null bags mean the table's own (EncodedTable::history, same rows).
struct HistoryRows {
  const data::Bags* bags = nullptr;
  const int32_t* rows = nullptr;
};

struct TowerContext {
  Matrix input;  // n x input_dim: the gathered dense columns and pooled embeddings
  nn::SequentialContext mlp;
  Matrix dinput;                   // gradient w.r.t. input (only when the tower has embeddings)
  const Matrix* output = nullptr;  // the last Forward's output
  const data::EncodedTable* table = nullptr;
  const int32_t* rows = nullptr;
  int64_t n = 0;
  Matrix query_input;  // n x query width: the history attention's query input
  Matrix dquery;       // its gradient
  nn::AttentionContext history;
};

struct TowerSpec {
  int dense_dim = 0;                          // width of the dense columns
  std::vector<data::LearnedFeature> learned;  // the embedding bags, in order
  std::vector<int> hidden_dims;               // MLP hidden widths (may be empty)
  int embedding_dim = 128;                    // output width
  float dropout = 0.0f;                       // after each hidden ReLU
  bool normalize = true;                      // L2-normalise the output rows
  bool projection = true;     // false with no hidden widths: no Linear, input width = embedding_dim
  data::HistorySpec history;  // user towers: the history feature (length 0 = none)
  int history_dim = 0;        // the width of the table it reads (the item id feature's dim)
};

class Tower {
 public:
  Tower() = default;
  // Builds and initialises (Linear: PyTorch's default; embeddings: N(0, 1/dim)... see .cc).
  // Throws Error when the input width is 0.
  Tower(const TowerSpec& spec, Rng* init_rng);

  // Every row of `table` -> table.rows() x embedding_dim. Throws Error if the table does not
  // match the tower (dense width, number of bags; a history tower: no history attached, or no
  // history table set).
  void Infer(const data::EncodedTable& table, Matrix* y) const;
  // Rows rows[0..n) of `table` -> n x embedding_dim.
  void Infer(const data::EncodedTable& table, const int32_t* rows, int64_t n, Matrix* y) const;
  // Dense-only towers: x (n x dense_dim) -> n x embedding_dim.
  void Infer(const Matrix& x, Matrix* y) const;

  // Training forward for rows[0..n) of `table` (both must outlive Backward); returns the n x
  // embedding_dim output, which lives in ctx.
  // `history` (a history tower): which histories the rows read; default the table's own.
  const Matrix& Forward(const data::EncodedTable& table, const int32_t* rows, int64_t n,
                        TowerContext* ctx, Rng* rng, HistoryRows history = {});
  // Dense-only towers: x must outlive Backward.
  const Matrix& Forward(const Matrix& x, TowerContext* ctx, Rng* rng);
  // dy: n x embedding_dim. Adds into every parameter gradient (embedding tables: touched rows),
  // except the history table's: that is left in ctx for ScatterHistoryGradient.
  void Backward(TowerContext* ctx, const Matrix& dy);
  // Adds the last Backward's history-table gradient into `table` (the one SetHistoryTable named).
  void ScatterHistoryGradient(const TowerContext& ctx, nn::Parameter* table) const;
  // The table the history rows index (rows x history_dim); must outlive the tower's use.
  void SetHistoryTable(const Matrix* table) { history_table_ = table; }
  bool has_history() const { return spec_.history.enabled(); }

  std::vector<nn::NamedParameter> NamedParameters(const std::string& prefix);
  std::vector<nn::Parameter*> Parameters();

  const TowerSpec& spec() const { return spec_; }
  const nn::Sequential& mlp() const { return mlp_; }
  nn::EmbeddingBag& bag(int f) { return bags_.at(f); }
  const nn::AttentionPooling& history_pooling() const { return history_; }
  // The precision of the MLP's training products (nn/gemm.h); inference stays fp32.
  void set_training_precision(nn::Precision precision) { mlp_.set_precision(precision); }
  // Width of the gathered input: dense columns plus every embedding's dim.
  int input_dim() const { return input_dim_; }
  // "EmbeddingBag(user_id: 944x32) + 21 dense -> Linear(53->128) -> L2Normalize"
  std::string Describe() const;
  // Puts the out-of-vocabulary rows (LearnedFeature::oov_row) back to zero: a sampled negative
  // (uniform or popularity draws over the whole items table) can be an item whose id is out of
  // vocabulary, and its gradient must not teach that shared row anything.
  void ZeroOovRows();

 private:
  // Draws the embedding tables (N(0, 0.1^2)) and zeroes their out-of-vocabulary rows.
  void InitTables(Rng* init_rng);
  void CheckTable(const data::EncodedTable& table) const;
  // The input rows: dense columns and bags (GatherFeatures), then the pooled history in
  // inference (GatherInfer) or training mode (Gather, keeping its state in ctx).
  void GatherFeatures(const data::EncodedTable& table, const int32_t* rows, int64_t n,
                      Matrix* input) const;
  void GatherInfer(const data::EncodedTable& table, const int32_t* rows, int64_t n,
                   Matrix* input) const;
  void Gather(const data::EncodedTable& table, const int32_t* rows, int64_t n, HistoryRows history,
              TowerContext* ctx);
  int query_dim() const { return input_dim_ - spec_.history_dim; }

  TowerSpec spec_;
  std::vector<nn::EmbeddingBag> bags_;
  nn::AttentionPooling history_;
  const Matrix* history_table_ = nullptr;
  nn::Sequential mlp_;
  int input_dim_ = 0;
};

}  // namespace twotower::model

#endif  // TWOTOWER_MODEL_TOWER_H_
