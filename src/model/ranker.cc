#include "twotower/model/ranker.h"

#include <algorithm>
#include <memory>

#include "twotower/core/error.h"

namespace twotower::model {
namespace {

// As tower.cc: embedding rows start at N(0, 0.1^2).
constexpr float kRankerEmbeddingInitStd = 0.1f;

}  // namespace

Ranker::Ranker(const ModelConfig& config, const data::FeatureEncoder& encoder, Rng* init_rng)
    : config_(config) {
  for (Side* side : {&user_, &item_}) {
    const data::EntityEncoder& e = side == &user_ ? encoder.user : encoder.item;
    side->dense_dim = e.width();
    side->learned = e.learned();
    side->width = side->dense_dim;
    for (const data::LearnedFeature& f : side->learned) {
      side->bags.emplace_back(f.rows, f.dim, f.pooling);
      side->width += f.dim;
    }
  }
  input_dim_ = user_.width + item_.width;
  if (input_dim_ <= 0) {
    throw Error("Ranker: the input has no columns (no dense columns and no learned features)");
  }
  cross_ = nn::CrossNetwork(input_dim_, config.cross_layers);
  cross_.InitPyTorchDefault(init_rng);
  int prev = input_dim_;
  for (int h : config.ranker_hidden_dims) {
    auto linear = std::make_unique<nn::Linear>(prev, h);
    linear->InitPyTorchDefault(init_rng);
    deep_.Add(std::move(linear));
    deep_.Add(std::make_unique<nn::ReLUDropout>(h, static_cast<float>(config.dropout)));
    prev = h;
  }
  auto out = std::make_unique<nn::Linear>(prev, 1);
  out->InitPyTorchDefault(init_rng);
  deep_.Add(std::move(out));
  for (Side* side : {&user_, &item_}) {
    for (nn::EmbeddingBag& bag : side->bags) bag.InitNormal(init_rng, kRankerEmbeddingInitStd);
  }
}

void Ranker::CheckTables(const data::EncodedTable& users, const data::EncodedTable& items) const {
  for (const Side* side : {&user_, &item_}) {
    const data::EncodedTable& t = side == &user_ ? users : items;
    if (t.dense.cols() != side->dense_dim || t.bags.size() != side->bags.size()) {
      throw Error(std::string("Ranker: the encoded ") + (side == &user_ ? "users" : "items") +
                  " table has " + std::to_string(t.dense.cols()) + " dense columns and " +
                  std::to_string(t.bags.size()) + " learned features, the ranker expects " +
                  std::to_string(side->dense_dim) + " and " + std::to_string(side->bags.size()));
    }
    for (const data::Bags& b : t.bags) {
      if (b.rows() != t.rows()) throw Error("Ranker: a bag column has the wrong number of rows");
    }
  }
}

void Ranker::Gather(const data::EncodedTable& users, const int32_t* user_rows,
                    const data::EncodedTable& items, const int32_t* item_rows, int64_t n,
                    Matrix* input) const {
  if (input->rows() != n || input->cols() != input_dim_) input->resize(n, input_dim_);
  int offset = 0;
  for (const Side* side : {&user_, &item_}) {
    const data::EncodedTable& t = side == &user_ ? users : items;
    const int32_t* rows = side == &user_ ? user_rows : item_rows;
    const int d = side->dense_dim;
    for (int64_t i = 0; i < n; ++i) {
      if (rows[i] < 0 || rows[i] >= t.rows()) {
        throw Error(std::string("Ranker: ") + (side == &user_ ? "user" : "item") + " row " +
                    std::to_string(rows[i]) + " out of range [0, " + std::to_string(t.rows()) +
                    ")");
      }
      if (d > 0) input->row(i).segment(offset, d) = t.dense.row(rows[i]);
    }
    offset += d;
    for (size_t f = 0; f < side->bags.size(); ++f) {
      side->bags[f].Pool(t.bags[f], rows, n, input->data() + offset, input->cols());
      offset += side->bags[f].dim();
    }
  }
}

void Ranker::Score(const data::EncodedTable& users, const int32_t* user_rows,
                   const data::EncodedTable& items, const int32_t* item_rows, int64_t n,
                   Vector* logits) const {
  CheckTables(users, items);
  logits->resize(n);
  constexpr int64_t kChunk = 4096;
  Matrix input, crossed, out;
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t m = std::min(kChunk, n - b);
    Gather(users, user_rows + b, items, item_rows + b, m, &input);
    cross_.Infer(input, &crossed);
    deep_.Infer(crossed, &out);
    logits->segment(b, m) = out.col(0);
  }
}

const Vector& Ranker::Forward(const data::EncodedTable& users, const int32_t* user_rows,
                              const data::EncodedTable& items, const int32_t* item_rows, int64_t n,
                              RankerContext* ctx, Rng* rng) {
  CheckTables(users, items);
  ctx->users = &users;
  ctx->items = &items;
  ctx->user_rows = user_rows;
  ctx->item_rows = item_rows;
  ctx->n = n;
  Gather(users, user_rows, items, item_rows, n, &ctx->input);
  const Matrix& crossed = cross_.Forward(ctx->input, &ctx->cross);
  const Matrix& out = deep_.Forward(crossed, &ctx->deep, rng);
  ctx->logits.resize(n);
  ctx->logits = out.col(0);
  return ctx->logits;
}

void Ranker::Backward(RankerContext* ctx, const Vector& dlogits) {
  if (ctx->users == nullptr) throw Error("Ranker: Backward called before Forward");
  if (dlogits.size() != ctx->n) {
    throw Error("Ranker: expected " + std::to_string(ctx->n) + " logit gradients, got " +
                std::to_string(dlogits.size()));
  }
  ctx->dlogits.resize(ctx->n, 1);
  ctx->dlogits.col(0) = dlogits;
  deep_.Backward(&ctx->deep, ctx->dlogits, &ctx->dcross);
  cross_.Backward(&ctx->cross, ctx->dcross, &ctx->dinput);
  int offset = 0;
  for (Side* side : {&user_, &item_}) {
    const data::EncodedTable& t = side == &user_ ? *ctx->users : *ctx->items;
    const int32_t* rows = side == &user_ ? ctx->user_rows : ctx->item_rows;
    offset += side->dense_dim;
    for (size_t f = 0; f < side->bags.size(); ++f) {
      side->bags[f].Backward(t.bags[f], rows, ctx->n, ctx->dinput.data() + offset,
                             ctx->dinput.cols());
      offset += side->bags[f].dim();
    }
  }
}

std::vector<nn::NamedParameter> Ranker::NamedTensors() {
  std::vector<nn::NamedParameter> out;
  for (Side* side : {&user_, &item_}) {
    const std::string prefix = side == &user_ ? "user_embeddings." : "item_embeddings.";
    for (size_t f = 0; f < side->bags.size(); ++f) {
      out.push_back({prefix + side->learned[f].column + ".weight", &side->bags[f].weight()});
    }
  }
  for (auto& p : cross_.NamedParameters("cross.")) out.push_back(p);
  for (auto& p : deep_.NamedParameters("deep.")) out.push_back(p);
  return out;
}

std::vector<nn::Parameter*> Ranker::TrainableParameters() {
  std::vector<nn::Parameter*> out;
  for (auto& p : NamedTensors()) out.push_back(p.parameter);
  return out;
}

int64_t Ranker::ParameterCount() {
  int64_t n = 0;
  for (nn::Parameter* p : TrainableParameters()) n += p->value.size();
  return n;
}

std::vector<Matrix> Ranker::Snapshot() {
  std::vector<Matrix> out;
  for (auto& t : NamedTensors()) out.push_back(t.parameter->value);
  return out;
}

void Ranker::Restore(const std::vector<Matrix>& snapshot) {
  auto tensors = NamedTensors();
  if (snapshot.size() != tensors.size()) throw Error("Ranker::Restore: wrong snapshot");
  for (size_t i = 0; i < tensors.size(); ++i) tensors[i].parameter->value = snapshot[i];
}

std::string Ranker::Describe() const {
  std::string out = "x0 = ";
  for (const Side* side : {&user_, &item_}) {
    // In x0's order: the dense columns, then each bag.
    std::string part = side->dense_dim > 0 ? std::to_string(side->dense_dim) + " dense" : "";
    for (const data::LearnedFeature& l : side->learned) {
      part += (part.empty() ? "" : " + ") + std::string("EmbeddingBag(") + l.column + ": " +
              std::to_string(l.rows) + "x" + std::to_string(l.dim) + ")";
    }
    out += (side == &user_ ? "" : " | ") + (part.empty() ? std::string("nothing") : part);
  }
  return out + " (" + std::to_string(input_dim_) + ") -> " + cross_.Describe() + " -> " +
         deep_.Describe();
}

std::vector<std::pair<std::string, std::vector<int64_t>>> RankerTensorShapes(
    const ModelConfig& config, const data::FeatureEncoder& encoder) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  int64_t d = 0;
  for (const bool user : {true, false}) {
    const data::EntityEncoder& e = user ? encoder.user : encoder.item;
    d += e.width();
    for (const data::LearnedFeature& f : e.learned()) {
      if (f.rows < 1 || f.rows > (int64_t{1} << 31)) {
        throw Error("feature '" + f.column + "' has " + std::to_string(f.rows) +
                    " embedding rows (expected 1 .. 2^31)");
      }
      out.push_back(
          {std::string(user ? "user_embeddings." : "item_embeddings.") + f.column + ".weight",
           {f.rows, f.dim}});
      d += f.dim;
    }
  }
  for (int l = 0; l < config.cross_layers; ++l) {
    out.push_back({"cross." + std::to_string(l) + ".weight", {d, d}});
    out.push_back({"cross." + std::to_string(l) + ".bias", {d}});
  }
  std::vector<int64_t> dims(config.ranker_hidden_dims.begin(), config.ranker_hidden_dims.end());
  dims.push_back(1);
  int64_t prev = d;
  for (size_t i = 0; i < dims.size(); ++i) {
    const std::string name = "deep." + std::to_string(3 * i);
    out.push_back({name + ".weight", {dims[i], prev}});
    out.push_back({name + ".bias", {dims[i]}});
    prev = dims[i];
  }
  return out;
}

}  // namespace twotower::model
