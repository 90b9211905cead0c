// Towers built from a feature encoder: embedding bags + dense columns -> MLP. Gradients of every
// tensor (embedding tables included) against finite differences through a retrieval loss, PyTorch
// names, Infer == Forward without dropout, and a model file round trip.
#include "twotower/model/tower.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "testing/encoded_fixture.h"
#include "testing/fixtures.h"
#include "testing/gradient_check.h"
#include "testing/temp_dir.h"
#include "twotower/core/error.h"
#include "twotower/data/history.h"
#include "twotower/model/model_file.h"
#include "twotower/model/two_tower.h"
#include "twotower/train/loss.h"

namespace twotower::model {
namespace {

using ::testing::Contains;
using twotower::testing::MakeTable;
using twotower::testing::TempDir;

using Fixture = twotower::testing::EncodedFixture;

ModelConfig SmallConfig(std::vector<int> hidden, double dropout) {
  ModelConfig c;
  c.embedding_dim = 4;
  c.user_hidden_dims = hidden;
  c.item_hidden_dims = hidden;
  c.dropout = dropout;
  return c;
}

TEST(TowerTest, TensorNamesFollowThePyTorchModule) {
  Fixture fx;
  Rng rng(1);
  TwoTowerModel model(SmallConfig({5}, 0.0), fx.encoder, &rng);
  std::vector<std::string> names;
  for (const auto& t : model.NamedTensors()) names.push_back(t.name);
  EXPECT_THAT(names, Contains("user_tower.embeddings.user_id.weight"));
  EXPECT_THAT(names, Contains("item_tower.embeddings.genres.weight"));
  EXPECT_THAT(names, Contains("item_tower.layers.3.weight"));
  for (const auto& t : model.NamedTensors()) {
    if (t.name == "item_tower.embeddings.movie_id.weight") {
      EXPECT_EQ(t.parameter->value.rows(), 5);  // 4 ids + the out-of-vocabulary row
      EXPECT_EQ(t.parameter->value.cols(), 4);
    }
    if (t.name == "item_tower.layers.0.weight") {
      EXPECT_EQ(t.parameter->value.cols(), 4 + 2);  // movie_id 4 + genres 2, no dense columns
    }
    if (t.name == "user_tower.layers.0.weight") {
      EXPECT_EQ(t.parameter->value.cols(), 1 + 3);  // age + user_id 3
    }
  }
}

// In-batch softmax over n (user, item) pairs, every tensor's gradient (the scorer's aside) against
// finite differences; `history` names per-example histories for a history tower.
void ExpectSoftmaxGradientsMatch(TwoTowerModel* model, const Fixture& fx,
                                 const std::vector<int32_t>& user_rows,
                                 const std::vector<int32_t>& item_rows, HistoryRows history,
                                 const std::string& label) {
  const int64_t n = static_cast<int64_t>(user_rows.size());
  train::InBatchSoftmaxLoss loss({0.5, {-1.0f, -2.0f, -1.5f, -0.5f}, true});
  // The loss of the batch; with backward, also adds every gradient.
  auto f = [&](bool backward) {
    ModelContext ctx;
    model->ForwardTowers(fx.xu, user_rows.data(), n, history, fx.xi, item_rows.data(), n, &ctx,
                         nullptr);
    train::LossBatch b;
    b.u = &TwoTowerModel::user_output(ctx);
    b.v = &TwoTowerModel::item_output(ctx);
    b.item_rows = item_rows.data();
    train::LossOutput out;
    loss.Compute(b, &out);
    if (backward) model->BackwardTowers(&ctx, out.du, out.dv);
    return out.loss;
  };
  nn::ZeroGrad(model->TrainableParameters());
  f(true);
  for (const auto& t : model->NamedTensors()) {
    if (t.name.rfind("scorer.", 0) == 0) continue;  // softmax does not use the scorer
    const Matrix analytic = t.parameter->grad;
    const auto numeric = testing::NumericalGradient(
        &t.parameter->value, [&] { return f(false); }, 1e-3);
    if (numeric.cwiseAbs().maxCoeff() == 0.0) {
      // The out-of-vocabulary rows are in no bag of this batch: zero both ways.
      EXPECT_EQ(analytic.cwiseAbs().maxCoeff(), 0.0f) << label << " " << t.name;
      continue;
    }
    EXPECT_TRUE(testing::GradientNear(analytic, numeric, 5e-3, 5e-4)) << label << " " << t.name;
  }
}

TEST(TowerTest, EveryGradientMatchesFiniteDifferencesThroughInBatchSoftmax) {
  Fixture fx;
  Rng rng(3);
  TwoTowerModel model(SmallConfig({5}, 0.0), fx.encoder, &rng);
  ExpectSoftmaxGradientsMatch(&model, fx, {0, 2, 1, 2}, {1, 3, 0, 2}, {}, "no history");
}

TEST(TowerTest, InferEqualsForwardWithoutDropoutAndMatchesEncodeRow) {
  Fixture fx;
  Rng rng(8);
  TwoTowerModel model(SmallConfig({6}, 0.0), fx.encoder, &rng);
  Matrix all;
  model.EncodeItems(fx.xi, &all);
  ModelContext ctx;
  const std::vector<int32_t> rows = {3, 0};
  const std::vector<int32_t> user_rows = {0, 1};
  model.ForwardTowers(fx.xu, user_rows.data(), fx.xi, rows.data(), 2, &ctx, nullptr);
  const Matrix& v = TwoTowerModel::item_output(ctx);
  EXPECT_TRUE(v.row(0).isApprox(all.row(3), 1e-6f));
  EXPECT_TRUE(v.row(1).isApprox(all.row(0), 1e-6f));
  data::EncodedTable one;
  fx.encoder.item.EncodeRow({{"movie_id", "m4"}, {"genres", "B|C"}}, "req", &one);
  Matrix single;
  model.EncodeItems(one, &single);
  EXPECT_TRUE(single.row(0).isApprox(all.row(3), 1e-6f));
}

TEST(TowerTest, IdOnlyTowerWithoutHiddenLayers) {
  data::FeatureSchema schema;
  schema.user.id_column = "user_id";
  schema.user.features = {{"user_id", data::FeatureType::kId}};
  schema.item.id_column = "movie_id";
  schema.item.features = {{"movie_id", data::FeatureType::kId}};
  Fixture fx;
  data::FeatureEncoder enc;
  enc.user = data::EntityEncoder(schema.user);
  enc.user.Fit(fx.users, {0, 1});
  enc.item = data::EntityEncoder(schema.item);
  enc.item.Fit(fx.items, {0, 1, 2, 3});
  Rng rng(2);
  TwoTowerModel model(SmallConfig({}, 0.0), enc, &rng);
  EXPECT_EQ(model.user_tower().Describe(),
            "EmbeddingBag(user_id: 3x32, sum) -> Linear(32->4) -> L2Normalize");
  data::EncodedTable xu;
  enc.user.Encode(fx.users, &xu);
  Matrix u;
  model.EncodeUsers(xu, &u);
  // u3 was not in the fitted rows: it shares the out-of-vocabulary row, so its embedding is
  // whatever that row maps to, and finite.
  EXPECT_TRUE(u.allFinite());
  EXPECT_NEAR(u.row(2).norm(), 1.0f, 1e-5f);
}

TEST(TowerTest, ModelFileRoundTripWithEmbeddings) {
  Fixture fx;
  Rng rng(4);
  TwoTowerModel model(SmallConfig({5}, 0.1), fx.encoder, &rng);
  TempDir dir;
  const std::string path = dir.File("m.safetensors");
  SaveModel(path, model, fx.encoder, fx.schema, nlohmann::json::object());
  const LoadedModel loaded = LoadModel(path);
  Matrix a, b;
  model.EncodeItems(fx.xi, &a);
  loaded.model->EncodeItems(fx.xi, &b);
  EXPECT_EQ(a, b);
  model.EncodeUsers(fx.xu, &a);
  loaded.model->EncodeUsers(fx.xu, &b);
  EXPECT_EQ(a, b);
  EXPECT_EQ(loaded.encoder.ToJson(), fx.encoder.ToJson());
}

// The fixture's encoder with a user history (last 3 positives) embedded with the movie_id table.
struct HistoryFixture : Fixture {
  explicit HistoryFixture(const std::string& pooling = "attention", int heads = 2) {
    schema.user.history = {3, pooling, heads};
    encoder.user = data::EntityEncoder(schema.user);
    encoder.user.Fit(users, {0, 1, 2});
    encoder.user.Encode(users, &xu);
    // Users' histories as item rows (oldest first), through movie_id's table rows.
    data::Interactions seen;
    seen.user_row = {0, 0, 2, 0};
    seen.item_row = {1, 3, 2, 0};
    seen.label = {1, 1, 1, 1};
    xu.history = data::UserHistory({&seen}, 3, xi.bags[0], 3);
    // Per-example histories for a batch: u0 with [m2], u2 with [m3, m1, m4], u1 with none.
    examples.offsets = {0, 1, 4, 4};
    for (int item : {1, 2, 0, 3}) examples.ids.push_back(xi.bags[0].ids[xi.bags[0].offsets[item]]);
  }
  data::Bags examples;
};

TEST(TowerTest, HistoryTensorsShareTheItemIdTable) {
  HistoryFixture fx;
  Rng rng(1);
  TwoTowerModel model(SmallConfig({5}, 0.0), fx.encoder, &rng);
  std::vector<std::string> names;
  for (const auto& t : model.NamedTensors()) names.push_back(t.name);
  EXPECT_THAT(names, Contains("user_tower.history.query"));
  EXPECT_THAT(names, Contains("user_tower.history.query_proj.weight"));
  EXPECT_THAT(names, Contains("user_tower.history.recency"));
  EXPECT_THAT(names, ::testing::Not(Contains("user_tower.embeddings.movie_id.weight")));
  EXPECT_EQ(model.user_tower().Describe(),
            "EmbeddingBag(user_id: 4x3, sum) + 1 dense + Attention(2 heads, last 3) -> "
            "Linear(8->5) -> ReLU -> Dropout(0) -> Linear(5->4) -> L2Normalize");
  // Without a history attached the user tower refuses rather than reading nothing.
  data::EncodedTable bare = fx.xu;
  bare.history = {};
  Matrix u;
  EXPECT_THAT([&] { model.EncodeUsers(bare, &u); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("none attached")));
}

void CheckHistoryGradients(const std::string& pooling) {
  HistoryFixture fx(pooling);
  Rng rng(3);
  TwoTowerModel model(SmallConfig({5}, 0.0), fx.encoder, &rng);
  // Nonzero query and recency, so the attention is not uniform.
  for (const auto& t : model.NamedTensors()) {
    if (t.name.find(".history.") != std::string::npos) {
      t.parameter->value =
          testing::RandomNormal(t.parameter->value.rows(), t.parameter->value.cols(), &rng);
    }
  }
  const std::vector<int32_t> example_rows = {0, 1, 2};
  ExpectSoftmaxGradientsMatch(&model, fx, {0, 2, 1}, {1, 3, 0},
                              HistoryRows{&fx.examples, example_rows.data()}, pooling);
}

TEST(TowerTest, HistoryGradientsMatchFiniteDifferencesWithTheSharedTable) {
  // movie_id's table gets the item tower's gradient and the history's (m2 is both a batch item
  // and in a history); every history parameter and the query input's path are checked too.
  CheckHistoryGradients("attention");
  CheckHistoryGradients("mean");
}

TEST(TowerTest, HistoryModelFileRoundTripAndInferEqualsForward) {
  HistoryFixture fx;
  Rng rng(4);
  TwoTowerModel model(SmallConfig({5}, 0.0), fx.encoder, &rng);
  for (const auto& t : model.NamedTensors()) {
    if (t.name.find(".history.") != std::string::npos) {
      t.parameter->value =
          testing::RandomNormal(t.parameter->value.rows(), t.parameter->value.cols(), &rng);
    }
  }
  TempDir dir;
  const std::string path = dir.File("m.safetensors");
  SaveModel(path, model, fx.encoder, fx.schema, nlohmann::json::object());
  const LoadedModel loaded = LoadModel(path);
  Matrix a, b;
  model.EncodeUsers(fx.xu, &a);
  loaded.model->EncodeUsers(fx.xu, &b);
  EXPECT_EQ(a, b);
  EXPECT_EQ(loaded.encoder.user.schema().history.heads, 2);
  // Training forward over the users' own histories equals inference.
  const std::vector<int32_t> rows = {2, 0, 1};
  ModelContext ctx;
  model.ForwardTowers(fx.xu, rows.data(), fx.xi, rows.data(), 3, &ctx, nullptr);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(TwoTowerModel::user_output(ctx).row(i).isApprox(a.row(rows[i]), 1e-6f));
  }
  // Users with different histories get different vectors (user 1 has none).
  EXPECT_GT((a.row(0) - a.row(2)).norm(), 1e-3f);
}

}  // namespace
}  // namespace twotower::model
