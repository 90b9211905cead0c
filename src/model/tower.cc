#include "twotower/model/tower.h"

#include <cmath>

#include "twotower/core/error.h"

namespace twotower::model {

// Embedding rows start at N(0, 0.1^2): small next to the Linear layers' PyTorch-default weights,
// so early steps are steered by the dense features, and large enough that Adam's first steps
// (size ~ learning rate) change the pooled vectors noticeably. Measured on ML-100k (BENCHMARKS.md).
constexpr float kEmbeddingInitStd = 0.1f;

Tower::Tower(const TowerSpec& spec, Rng* init_rng) : spec_(spec) {
  int input = spec.dense_dim;
  for (const data::LearnedFeature& f : spec.learned) {
    bags_.emplace_back(f.rows, f.dim, f.pooling);
    input += f.dim;
  }
  if (spec.history.enabled()) {
    const int query = input;
    input += spec.history_dim;
    history_ = nn::AttentionPooling(
        spec.history.pooling == "mean" ? nn::AttentionPooling::Mode::kMean
                                       : nn::AttentionPooling::Mode::kAttention,
        spec.history_dim, spec.history.pooling == "mean" ? 1 : spec.history.heads,
        spec.history.length, query);
  }
  input_dim_ = input;
  if (input <= 0) {
    throw Error("Tower: the input has no columns (no dense columns and no learned features)");
  }
  if (!spec.projection) {
    if (!spec.hidden_dims.empty() || input != spec.embedding_dim) {
      throw Error(
          "Tower: projection: false needs no hidden layers and an input as wide as "
          "embedding_dim (" +
          std::to_string(spec.embedding_dim) + "), got " + std::to_string(spec.hidden_dims.size()) +
          " hidden layers and input width " + std::to_string(input) +
          (spec.history.enabled() ? " (features.history adds " + std::to_string(spec.history_dim) +
                                        " columns: set model.projection: true)"
                                  : std::string(" (set the id feature's dim to embedding_dim)")));
    }
    if (spec.normalize) mlp_.Add(std::make_unique<nn::L2Normalize>(spec.embedding_dim));
    InitTables(init_rng);
    history_.InitPyTorchDefault(init_rng);
    return;
  }
  int prev = input;
  for (int h : spec.hidden_dims) {
    auto linear = std::make_unique<nn::Linear>(prev, h);
    linear->InitPyTorchDefault(init_rng);
    mlp_.Add(std::move(linear));
    mlp_.Add(std::make_unique<nn::ReLUDropout>(h, spec.dropout));
    prev = h;
  }
  auto out = std::make_unique<nn::Linear>(prev, spec.embedding_dim);
  out->InitPyTorchDefault(init_rng);
  mlp_.Add(std::move(out));
  if (spec.normalize) mlp_.Add(std::make_unique<nn::L2Normalize>(spec.embedding_dim));
  // Tables after the MLP, so a dense-only tower draws exactly the generator values it always did.
  InitTables(init_rng);
  history_.InitPyTorchDefault(init_rng);
}

void Tower::ZeroOovRows() {
  for (size_t b = 0; b < bags_.size(); ++b) {
    if (spec_.learned[b].oov_row) bags_[b].weight().value.row(0).setZero();
  }
}

void Tower::InitTables(Rng* init_rng) {
  for (size_t b = 0; b < bags_.size(); ++b) {
    bags_[b].InitNormal(init_rng, kEmbeddingInitStd);
    // The out-of-vocabulary row starts (and, never reached by a training row, stays) at zero: an
    // unseen id or value adds nothing, rather than a random vector scored as if learned.
    if (spec_.learned[b].oov_row) bags_[b].weight().value.row(0).setZero();
  }
}

void Tower::CheckTable(const data::EncodedTable& table) const {
  if (table.dense.cols() != spec_.dense_dim || table.bags.size() != bags_.size()) {
    throw Error("Tower: the encoded table has " + std::to_string(table.dense.cols()) +
                " dense columns and " + std::to_string(table.bags.size()) +
                " learned features, the tower expects " + std::to_string(spec_.dense_dim) +
                " and " + std::to_string(bags_.size()));
  }
  for (const data::Bags& b : table.bags) {
    if (b.rows() != table.rows()) throw Error("Tower: a bag column has the wrong number of rows");
  }
  if (has_history() && history_table_ == nullptr) {
    throw Error("Tower: the history feature has no table to read (internal: SetHistoryTable)");
  }
}

void Tower::GatherInfer(const data::EncodedTable& table, const int32_t* rows, int64_t n,
                        Matrix* input) const {
  GatherFeatures(table, rows, n, input);
  if (!has_history()) return;
  if (table.history.rows() != table.rows()) {
    throw Error(
        "Tower: the user tower reads each user's history (features.history), and this "
        "users table has none attached");
  }
  const Matrix query = input->leftCols(query_dim());
  history_.Infer(*history_table_, table.history, rows, n, query, input->data() + query_dim(),
                 input->cols());
}

void Tower::Gather(const data::EncodedTable& table, const int32_t* rows, int64_t n,
                   HistoryRows history, TowerContext* ctx) {
  GatherFeatures(table, rows, n, &ctx->input);
  if (!has_history() || n == 0) return;
  if (history.bags == nullptr) {
    if (table.history.rows() != table.rows()) {
      throw Error(
          "Tower: the user tower reads each user's history (features.history), and this "
          "users table has none attached");
    }
    history = {&table.history, rows};
  }
  ctx->query_input = ctx->input.leftCols(query_dim());
  history_.Forward(*history_table_, *history.bags, history.rows, n, ctx->query_input,
                   ctx->input.data() + query_dim(), ctx->input.cols(), &ctx->history);
}

void Tower::GatherFeatures(const data::EncodedTable& table, const int32_t* rows, int64_t n,
                           Matrix* input) const {
  if (input->rows() != n || input->cols() != input_dim()) input->resize(n, input_dim());
  if (n == 0) return;  // an empty share: no rows to pool (and no pointer into an empty matrix)
  const int d = spec_.dense_dim;
  for (int64_t i = 0; i < n; ++i) {
    if (rows[i] < 0 || rows[i] >= table.rows()) throw Error("Tower: row out of range");
    if (d > 0) input->row(i).head(d) = table.dense.row(rows[i]);
  }
  int offset = d;
  for (size_t f = 0; f < bags_.size(); ++f) {
    bags_[f].Pool(table.bags[f], rows, n, input->data() + offset, input->cols());
    offset += bags_[f].dim();
  }
}

void Tower::Infer(const data::EncodedTable& table, Matrix* y) const {
  CheckTable(table);
  if (bags_.empty() && !has_history()) {
    mlp_.Infer(table.dense, y);
    return;
  }
  // In chunks, so a catalogue of millions needs one chunk of inputs at a time.
  constexpr int64_t kChunk = 16384;
  const int64_t n = table.rows();
  y->resize(n, spec_.embedding_dim);
  std::vector<int32_t> rows;
  Matrix input, out;
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t m = std::min(kChunk, n - b);
    rows.resize(m);
    for (int64_t i = 0; i < m; ++i) rows[i] = static_cast<int32_t>(b + i);
    GatherInfer(table, rows.data(), m, &input);
    mlp_.Infer(input, &out);
    y->middleRows(b, m) = out;
  }
}

void Tower::Infer(const data::EncodedTable& table, const int32_t* rows, int64_t n,
                  Matrix* y) const {
  CheckTable(table);
  Matrix input;
  GatherInfer(table, rows, n, &input);
  mlp_.Infer(input, y);
}

void Tower::Infer(const Matrix& x, Matrix* y) const {
  if (!bags_.empty() || has_history()) {
    throw Error("Tower: this tower has learned features; pass an EncodedTable");
  }
  mlp_.Infer(x, y);
}

const Matrix& Tower::Forward(const data::EncodedTable& table, const int32_t* rows, int64_t n,
                             TowerContext* ctx, Rng* rng, HistoryRows history) {
  CheckTable(table);
  ctx->table = &table;
  ctx->rows = rows;
  ctx->n = n;
  Gather(table, rows, n, history, ctx);
  ctx->output = mlp_.size() == 0 ? &ctx->input : &mlp_.Forward(ctx->input, &ctx->mlp, rng);
  return *ctx->output;
}

const Matrix& Tower::Forward(const Matrix& x, TowerContext* ctx, Rng* rng) {
  if (!bags_.empty() || has_history()) {
    throw Error("Tower: this tower has learned features; pass an EncodedTable");
  }
  ctx->table = nullptr;
  ctx->rows = nullptr;
  ctx->n = x.rows();
  ctx->output = mlp_.size() == 0 ? &x : &mlp_.Forward(x, &ctx->mlp, rng);
  return *ctx->output;
}

void Tower::Backward(TowerContext* ctx, const Matrix& dy) {
  // No rows (a data-parallel rank's empty share of a short last batch): no gradient.
  if (ctx->n == 0) return;
  if (bags_.empty() && !has_history()) {
    if (mlp_.size() > 0) mlp_.Backward(&ctx->mlp, dy, nullptr);
    return;
  }
  if (mlp_.size() > 0) {
    mlp_.Backward(&ctx->mlp, dy, &ctx->dinput);
  } else {
    ctx->dinput = dy;
  }
  if (has_history()) {
    // The history block's gradient goes to the attention (and its query input, the rest of the
    // row) before the bags read their share of the row.
    const int q = query_dim();
    if (ctx->dquery.rows() != ctx->n || ctx->dquery.cols() != q) ctx->dquery.resize(ctx->n, q);
    ctx->dquery.setZero();
    history_.Backward(&ctx->history, ctx->dinput.data() + q, ctx->dinput.cols(), &ctx->dquery);
    ctx->dinput.leftCols(q) += ctx->dquery;
  }
  int offset = spec_.dense_dim;
  for (size_t f = 0; f < bags_.size(); ++f) {
    bags_[f].Backward(ctx->table->bags[f], ctx->rows, ctx->n, ctx->dinput.data() + offset,
                      ctx->dinput.cols());
    offset += bags_[f].dim();
  }
}

std::vector<nn::NamedParameter> Tower::NamedParameters(const std::string& prefix) {
  std::vector<nn::NamedParameter> out;
  for (size_t f = 0; f < bags_.size(); ++f) {
    out.push_back(
        {prefix + "embeddings." + spec_.learned[f].column + ".weight", &bags_[f].weight()});
  }
  for (auto& p : history_.NamedParameters(prefix + "history.")) out.push_back(p);
  for (auto& p : mlp_.NamedParameters(prefix + "layers.")) out.push_back(p);
  return out;
}

void Tower::ScatterHistoryGradient(const TowerContext& ctx, nn::Parameter* table) const {
  // No rows (a data-parallel rank's empty share): no history was read, nothing to add.
  if (has_history() && ctx.n > 0) {
    nn::AttentionPooling::ScatterTableGradient(ctx.history, table);
  }
}

std::vector<nn::Parameter*> Tower::Parameters() {
  std::vector<nn::Parameter*> out;
  for (auto& p : NamedParameters("")) out.push_back(p.parameter);
  return out;
}

std::string Tower::Describe() const {
  if (bags_.empty() && !has_history()) return mlp_.Describe();
  const std::string rest = mlp_.size() == 0 ? "" : " -> " + mlp_.Describe();
  std::string out;
  for (size_t f = 0; f < bags_.size(); ++f) {
    const data::LearnedFeature& l = spec_.learned[f];
    out += (out.empty() ? "" : " + ") + std::string("EmbeddingBag(") + l.column + ": " +
           std::to_string(l.rows) + "x" + std::to_string(l.dim) +
           (l.pooling == data::Pooling::kMean ? ", mean" : ", sum") + ")";
  }
  if (spec_.dense_dim > 0) {
    out += (out.empty() ? "" : " + ") + std::to_string(spec_.dense_dim) + " dense";
  }
  if (has_history()) out += (out.empty() ? "" : " + ") + history_.Describe();
  return out + rest;
}

}  // namespace twotower::model
