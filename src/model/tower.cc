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
          " (set the id feature's dim to embedding_dim)");
    }
    if (spec.normalize) mlp_.Add(std::make_unique<nn::L2Normalize>(spec.embedding_dim));
    for (nn::EmbeddingBag& bag : bags_) bag.InitNormal(init_rng, kEmbeddingInitStd);
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
  for (nn::EmbeddingBag& bag : bags_) bag.InitNormal(init_rng, kEmbeddingInitStd);
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
}

void Tower::Gather(const data::EncodedTable& table, const int32_t* rows, int64_t n,
                   Matrix* input) const {
  if (input->rows() != n || input->cols() != input_dim()) input->resize(n, input_dim());
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
  if (bags_.empty()) {
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
    Gather(table, rows.data(), m, &input);
    mlp_.Infer(input, &out);
    y->middleRows(b, m) = out;
  }
}

void Tower::Infer(const data::EncodedTable& table, const int32_t* rows, int64_t n,
                  Matrix* y) const {
  CheckTable(table);
  Matrix input;
  Gather(table, rows, n, &input);
  mlp_.Infer(input, y);
}

void Tower::Infer(const Matrix& x, Matrix* y) const {
  if (!bags_.empty()) throw Error("Tower: this tower has learned features; pass an EncodedTable");
  mlp_.Infer(x, y);
}

const Matrix& Tower::Forward(const data::EncodedTable& table, const int32_t* rows, int64_t n,
                             TowerContext* ctx, Rng* rng) {
  CheckTable(table);
  ctx->table = &table;
  ctx->rows = rows;
  ctx->n = n;
  Gather(table, rows, n, &ctx->input);
  ctx->output = mlp_.size() == 0 ? &ctx->input : &mlp_.Forward(ctx->input, &ctx->mlp, rng);
  return *ctx->output;
}

const Matrix& Tower::Forward(const Matrix& x, TowerContext* ctx, Rng* rng) {
  if (!bags_.empty()) throw Error("Tower: this tower has learned features; pass an EncodedTable");
  ctx->table = nullptr;
  ctx->rows = nullptr;
  ctx->n = x.rows();
  ctx->output = mlp_.size() == 0 ? &x : &mlp_.Forward(x, &ctx->mlp, rng);
  return *ctx->output;
}

void Tower::Backward(TowerContext* ctx, const Matrix& dy) {
  if (bags_.empty()) {
    if (mlp_.size() > 0) mlp_.Backward(&ctx->mlp, dy, nullptr);
    return;
  }
  if (mlp_.size() > 0) {
    mlp_.Backward(&ctx->mlp, dy, &ctx->dinput);
  } else {
    ctx->dinput = dy;
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
  for (auto& p : mlp_.NamedParameters(prefix + "layers.")) out.push_back(p);
  return out;
}

std::vector<nn::Parameter*> Tower::Parameters() {
  std::vector<nn::Parameter*> out;
  for (auto& p : NamedParameters("")) out.push_back(p.parameter);
  return out;
}

std::string Tower::Describe() const {
  if (bags_.empty()) return mlp_.Describe();
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
  return out + rest;
}

}  // namespace twotower::model
