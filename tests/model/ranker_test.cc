// The ranker (model/ranker.h): every gradient, embedding tables included, against finite
// differences through BCE; PyTorch tensor names and shapes (RankerTensorShapes agrees with the
// built model); Score == Forward without dropout; the model file round trip, and each loader
// refusing the other kind's file.
#include "twotower/model/ranker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "testing/encoded_fixture.h"
#include "testing/gradient_check.h"
#include "testing/temp_dir.h"
#include "twotower/core/error.h"
#include "twotower/model/model_file.h"
#include "twotower/train/loss.h"

namespace twotower::model {
namespace {

using ::testing::HasSubstr;
using twotower::testing::EncodedFixture;
using twotower::testing::TempDir;

ModelConfig RankerConfig(int cross_layers, std::vector<int> hidden, double dropout) {
  ModelConfig c;
  c.kind = "ranker";
  c.cross_layers = cross_layers;
  c.ranker_hidden_dims = hidden;
  c.dropout = dropout;
  return c;
}

const std::vector<int32_t> kUsers = {0, 2, 1, 2, 0};
const std::vector<int32_t> kItems = {1, 3, 0, 2, 2};
const std::vector<float> kLabels = {1, 0, 1, 1, 0};

TEST(RankerTest, TensorNamesAndShapesFollowThePyTorchModule) {
  EncodedFixture fx;
  Rng rng(1);
  const ModelConfig config = RankerConfig(2, {6, 5}, 0.0);
  Ranker ranker(config, fx.encoder, &rng);
  // x0 = age (1) + user_id (3) | movie_id (4) + genres (2).
  EXPECT_EQ(ranker.input_dim(), 10);
  std::vector<std::pair<std::string, std::vector<int64_t>>> built;
  for (const auto& t : ranker.NamedTensors()) {
    const Matrix& m = t.parameter->value;
    const bool bias = t.name.size() > 5 && t.name.substr(t.name.size() - 5) == ".bias";
    built.push_back(
        {t.name, bias ? std::vector<int64_t>{m.size()} : std::vector<int64_t>{m.rows(), m.cols()}});
  }
  const std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
      {"user_embeddings.user_id.weight", {4, 3}},  // 3 ids + the out-of-vocabulary row
      {"item_embeddings.movie_id.weight", {5, 4}},
      {"item_embeddings.genres.weight", {4, 2}},
      {"cross.0.weight", {10, 10}},
      {"cross.0.bias", {10}},
      {"cross.1.weight", {10, 10}},
      {"cross.1.bias", {10}},
      {"deep.0.weight", {6, 10}},
      {"deep.0.bias", {6}},
      {"deep.3.weight", {5, 6}},
      {"deep.3.bias", {5}},
      {"deep.6.weight", {1, 5}},
      {"deep.6.bias", {1}}};
  EXPECT_EQ(built, expected);
  EXPECT_EQ(RankerTensorShapes(config, fx.encoder), expected);
}

TEST(RankerTest, EveryGradientMatchesFiniteDifferencesThroughBce) {
  EncodedFixture fx;
  for (int cross_layers : {0, 2}) {
    Rng rng(3);
    Ranker ranker(RankerConfig(cross_layers, {5}, 0.0), fx.encoder, &rng);
    auto loss = [&] {
      Vector logits;
      ranker.Score(fx.xu, kUsers.data(), fx.xi, kItems.data(), 5, &logits);
      return train::BinaryCrossEntropyWithLogits(logits, kLabels.data(), nullptr);
    };
    nn::ZeroGrad(ranker.TrainableParameters());
    RankerContext ctx;
    const Vector& logits =
        ranker.Forward(fx.xu, kUsers.data(), fx.xi, kItems.data(), 5, &ctx, nullptr);
    Vector dlogits;
    train::BinaryCrossEntropyWithLogits(logits, kLabels.data(), &dlogits);
    ranker.Backward(&ctx, dlogits);
    for (const auto& t : ranker.NamedTensors()) {
      const Matrix analytic = t.parameter->grad;
      const auto numeric = testing::NumericalGradient(&t.parameter->value, loss, 1e-3);
      if (numeric.cwiseAbs().maxCoeff() == 0.0) {
        // Out-of-vocabulary rows are in no bag of this batch: zero both ways.
        EXPECT_EQ(analytic.cwiseAbs().maxCoeff(), 0.0f) << t.name;
        continue;
      }
      EXPECT_TRUE(testing::GradientNear(analytic, numeric, 5e-3, 5e-4))
          << t.name << ", " << cross_layers << " cross layers";
    }
  }
}

TEST(RankerTest, ScoreEqualsForwardWithoutDropout) {
  EncodedFixture fx;
  Rng rng(4);
  Ranker ranker(RankerConfig(1, {8}, 0.5), fx.encoder, &rng);
  Vector inferred;
  ranker.Score(fx.xu, kUsers.data(), fx.xi, kItems.data(), 5, &inferred);
  // Dropout is on in Forward with a generator; without one (null) it draws no mask only if the
  // probability is 0, so compare with a p = 0 copy of the same weights.
  Rng same(4);
  Ranker no_dropout(RankerConfig(1, {8}, 0.0), fx.encoder, &same);
  RankerContext ctx;
  const Vector& trained =
      no_dropout.Forward(fx.xu, kUsers.data(), fx.xi, kItems.data(), 5, &ctx, nullptr);
  EXPECT_TRUE(trained.isApprox(inferred, 1e-6f));
  Rng dropout_rng(9);
  const Vector& dropped =
      ranker.Forward(fx.xu, kUsers.data(), fx.xi, kItems.data(), 5, &ctx, &dropout_rng);
  EXPECT_FALSE(dropped.isApprox(inferred, 1e-3f));  // dropout does act in training
}

TEST(RankerTest, RowsOutOfRangeAndMismatchedTablesAreRefused) {
  EncodedFixture fx;
  Rng rng(5);
  Ranker ranker(RankerConfig(1, {}, 0.0), fx.encoder, &rng);
  Vector logits;
  const std::vector<int32_t> bad = {7};
  const std::vector<int32_t> zero = {0};
  EXPECT_THAT([&] { ranker.Score(fx.xu, bad.data(), fx.xi, zero.data(), 1, &logits); },
              ::testing::ThrowsMessage<Error>(HasSubstr("user row 7 out of range [0, 3)")));
  EXPECT_THAT([&] { ranker.Score(fx.xi, zero.data(), fx.xi, zero.data(), 1, &logits); },
              ::testing::ThrowsMessage<Error>(HasSubstr("the encoded users table has 0 dense")));
}

TEST(RankerTest, ModelFileRoundTripAndEachLoaderRefusesTheOtherKind) {
  EncodedFixture fx;
  TempDir dir;
  Rng rng(6);
  Ranker ranker(RankerConfig(2, {4}, 0.1), fx.encoder, &rng);
  const std::string path = dir.File("ranker.safetensors");
  SaveRanker(path, ranker, fx.encoder, fx.schema, {{"note", "x"}});
  const LoadedRanker loaded = LoadRanker(path);
  EXPECT_EQ(loaded.config["note"], "x");
  EXPECT_EQ(loaded.fingerprint.size(), 64u);
  Vector a, b;
  ranker.Score(fx.xu, kUsers.data(), fx.xi, kItems.data(), 5, &a);
  loaded.model->Score(fx.xu, kUsers.data(), fx.xi, kItems.data(), 5, &b);
  EXPECT_EQ(a, b);  // the same float32 weights: bit-identical scores
  EXPECT_THAT([&] { LoadModel(path); },
              ::testing::ThrowsMessage<Error>(HasSubstr("is a ranker (model.kind: ranker)")));
  // A changed byte (the last weight's) is refused by the checksum (model_file.h).
  std::string bytes = twotower::testing::ReadBytes(path);
  bytes[bytes.size() - 2] = static_cast<char>(bytes[bytes.size() - 2] ^ 0x10);
  const std::string flipped = dir.Write("flipped.safetensors", bytes);
  EXPECT_THAT([&] { LoadRanker(flipped); },
              ::testing::ThrowsMessage<Error>(HasSubstr(flipped + ": checksum mismatch")));

  ModelConfig two_tower;
  two_tower.embedding_dim = 4;
  two_tower.user_hidden_dims = two_tower.item_hidden_dims = {};
  TwoTowerModel model(two_tower, fx.encoder, &rng);
  const std::string tt = dir.File("two_tower.safetensors");
  SaveModel(tt, model, fx.encoder, fx.schema, nlohmann::json::object());
  EXPECT_THAT([&] { LoadRanker(tt); },
              ::testing::ThrowsMessage<Error>(HasSubstr("is a two-tower model, not a ranker")));
}

}  // namespace
}  // namespace twotower::model
