#include "twotower/model/two_tower.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "testing/gradient_check.h"
#include "twotower/core/error.h"

namespace twotower::model {
namespace {

using ::testing::HasSubstr;
using twotower::testing::GradientNear;
using twotower::testing::MatrixD;
using twotower::testing::NumericalGradient;
using twotower::testing::RandomNormal;

constexpr int kUserIn = 5;
constexpr int kItemIn = 4;
constexpr int kRows = 6;

ModelConfig SmallConfig(ScoreMode score, double dropout) {
  ModelConfig config;
  config.embedding_dim = 3;
  config.user_hidden_dims = {6, 4};
  config.item_hidden_dims = {5};
  config.dropout = dropout;
  config.score = score;
  return config;
}

// Mean binary cross-entropy from logits, in double: softplus(z) - y z.
double MeanBce(const Vector& z, const std::vector<float>& y) {
  double total = 0;
  for (Eigen::Index i = 0; i < z.size(); ++i) {
    const double zi = z[i];
    total += std::max(zi, 0.0) + std::log1p(std::exp(-std::abs(zi))) - zi * y[i];
  }
  return total / static_cast<double>(z.size());
}

// d MeanBce / dz = (sigmoid(z) - y) / n.
Vector MeanBceGradient(const Vector& z, const std::vector<float>& y) {
  Vector dz(z.size());
  for (Eigen::Index i = 0; i < z.size(); ++i) {
    const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(z[i])));
    dz[i] = static_cast<float>((s - y[i]) / static_cast<double>(z.size()));
  }
  return dz;
}

// Smallest |pre-activation| over every ReLU of both towers (the Linear outputs feeding them).
float ReluMargin(const TwoTowerModel& model, const ModelContext& ctx) {
  float margin = HUGE_VALF;
  for (const auto* tower : {&model.user_tower().mlp(), &model.item_tower().mlp()}) {
    const nn::SequentialContext& seq =
        tower == &model.user_tower().mlp() ? ctx.user.mlp : ctx.item.mlp;
    for (size_t i = 0; i + 1 < tower->size(); ++i) {
      if (tower->layer(i + 1).TypeName() == "ReLU") {
        margin = std::min(margin, seq.layers[i].y.cwiseAbs().minCoeff());
      }
    }
  }
  return margin;
}

class TwoTowerGradientTest : public ::testing::TestWithParam<ScoreMode> {};

TEST_P(TwoTowerGradientTest, MeanBceGradientsMatchFiniteDifferences) {
  Rng init(17);
  TwoTowerModel model(SmallConfig(GetParam(), 0.0), kUserIn, kItemIn, &init);
  if (GetParam() == ScoreMode::kLearned) {
    // Away from the defaults, so a scale or bias used in the wrong place shows.
    for (auto& t : model.NamedTensors()) {
      if (t.name == "scorer.log_scale") t.parameter->value(0, 0) = std::log(3.0f);
      if (t.name == "scorer.bias") t.parameter->value(0, 0) = 0.4f;
    }
  }

  // Inputs whose ReLU pre-activations all sit at least 0.05 from the kink; a 1e-3 step in any
  // weight moves them by far less.
  Rng data(18);
  Matrix x_u, x_i;
  ModelContext ctx;
  Rng rng(19);
  for (int attempt = 0;; ++attempt) {
    ASSERT_LT(attempt, 1000) << "no input keeps the ReLU pre-activations away from 0";
    x_u = RandomNormal(kRows, kUserIn, &data);
    x_i = RandomNormal(kRows, kItemIn, &data);
    model.Forward(x_u, x_i, &ctx, &rng);
    if (ReluMargin(model, ctx) > 0.05f) break;
  }
  std::vector<float> labels;
  for (int i = 0; i < kRows; ++i) labels.push_back(i % 2 == 0 ? 1.0f : 0.0f);

  const std::vector<nn::Parameter*> params = model.TrainableParameters();
  nn::ZeroGrad(params);
  const Vector& logits = model.Forward(x_u, x_i, &ctx, &rng);
  model.Backward(&ctx, MeanBceGradient(logits, labels));

  ModelContext probe;
  const auto loss = [&] { return MeanBce(model.Forward(x_u, x_i, &probe, &rng), labels); };
  size_t checked = 0;
  for (auto& named : model.NamedTensors()) {
    const bool trainable = std::find(params.begin(), params.end(), named.parameter) != params.end();
    if (!trainable) continue;
    ++checked;
    const MatrixD numeric = NumericalGradient(&named.parameter->value, loss, 1e-3);
    EXPECT_TRUE(GradientNear(named.parameter->grad, numeric, 2e-2, 2e-4)) << named.name;
  }
  EXPECT_EQ(checked, params.size());
}

INSTANTIATE_TEST_SUITE_P(BothScoreModes, TwoTowerGradientTest,
                         ::testing::Values(ScoreMode::kLearned, ScoreMode::kCosine),
                         [](const ::testing::TestParamInfo<ScoreMode>& info) {
                           return std::string(ScoreModeName(info.param));
                         });

TEST(TwoTowerModelTest, LearnedModeTrainsScorerParameters) {
  Rng init(1);
  TwoTowerModel model(SmallConfig(ScoreMode::kLearned, 0.0), kUserIn, kItemIn, &init);
  EXPECT_NEAR(model.scale(), 5.0f, 1e-5f);  // config.initial_scale
  EXPECT_EQ(model.bias(), 0.0f);
  std::vector<std::string> trainable;
  const auto params = model.TrainableParameters();
  for (auto& t : model.NamedTensors()) {
    if (std::find(params.begin(), params.end(), t.parameter) != params.end()) {
      trainable.push_back(t.name);
    }
  }
  EXPECT_EQ(trainable.size(), params.size());
  EXPECT_NE(std::find(trainable.begin(), trainable.end(), "scorer.log_scale"), trainable.end());
  EXPECT_NE(std::find(trainable.begin(), trainable.end(), "scorer.bias"), trainable.end());
  // User tower 5->6->4->3: (30+6) + (24+4) + (12+3) = 79; item tower 4->5->3: (20+5) + (15+3) =
  // 43; plus log_scale and bias.
  EXPECT_EQ(model.ParameterCount(), 79 + 43 + 2);
}

TEST(TwoTowerModelTest, CosineModeHasUnitScaleZeroBiasAndNoScorerParameters) {
  Rng init(2);
  TwoTowerModel model(SmallConfig(ScoreMode::kCosine, 0.0), kUserIn, kItemIn, &init);
  EXPECT_EQ(model.scale(), 1.0f);
  EXPECT_EQ(model.bias(), 0.0f);
  const auto params = model.TrainableParameters();
  nn::Parameter* log_scale = nullptr;
  nn::Parameter* bias = nullptr;
  for (auto& t : model.NamedTensors()) {
    if (t.name == "scorer.log_scale") log_scale = t.parameter;
    if (t.name == "scorer.bias") bias = t.parameter;
  }
  ASSERT_NE(log_scale, nullptr);  // still in the model file
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(std::find(params.begin(), params.end(), log_scale), params.end());
  EXPECT_EQ(std::find(params.begin(), params.end(), bias), params.end());
  EXPECT_EQ(model.ParameterCount(), 79 + 43);

  // Logits are plain cosines, and Backward leaves the scorer alone.
  Rng data(3);
  const Matrix x_u = RandomNormal(kRows, kUserIn, &data);
  const Matrix x_i = RandomNormal(kRows, kItemIn, &data);
  Matrix u, v;
  model.EncodeUsers(x_u, &u);
  model.EncodeItems(x_i, &v);
  Vector logits;
  model.Predict(x_u, x_i, &logits);
  for (int r = 0; r < kRows; ++r) {
    EXPECT_NEAR(logits[r], u.row(r).dot(v.row(r)), 1e-6f) << "row " << r;
    EXPECT_LE(std::abs(logits[r]), 1.0f + 1e-6f);
  }
  ModelContext ctx;
  Rng rng(4);
  model.Forward(x_u, x_i, &ctx, &rng);
  model.Backward(&ctx, Vector::Ones(kRows));
  EXPECT_EQ(log_scale->grad(0, 0), 0.0f);
  EXPECT_EQ(bias->grad(0, 0), 0.0f);
}

TEST(TwoTowerModelTest, PredictIsScaleTimesDotPlusBias) {
  Rng init(5);
  TwoTowerModel model(SmallConfig(ScoreMode::kLearned, 0.3), kUserIn, kItemIn, &init);
  for (auto& t : model.NamedTensors()) {
    if (t.name == "scorer.log_scale") t.parameter->value(0, 0) = std::log(2.0f);
    if (t.name == "scorer.bias") t.parameter->value(0, 0) = 0.5f;
  }
  Rng data(6);
  const Matrix x_u = RandomNormal(kRows, kUserIn, &data);
  const Matrix x_i = RandomNormal(kRows, kItemIn, &data);
  Matrix u, v;
  model.EncodeUsers(x_u, &u);
  model.EncodeItems(x_i, &v);
  Vector logits;
  model.Predict(x_u, x_i, &logits);
  ASSERT_EQ(logits.size(), kRows);
  for (int r = 0; r < kRows; ++r) {
    EXPECT_NEAR(logits[r], 2.0f * u.row(r).dot(v.row(r)) + 0.5f, 1e-5f) << "row " << r;
  }
}

TEST(TwoTowerModelTest, TowerOutputsHaveUnitNorm) {
  Rng init(7);
  TwoTowerModel model(SmallConfig(ScoreMode::kLearned, 0.3), kUserIn, kItemIn, &init);
  Rng data(8);
  const Matrix x_u = 3.0f * RandomNormal(kRows, kUserIn, &data);
  const Matrix x_i = 3.0f * RandomNormal(kRows, kItemIn, &data);
  Matrix u, v;
  model.EncodeUsers(x_u, &u);
  model.EncodeItems(x_i, &v);
  ASSERT_EQ(u.rows(), kRows);
  ASSERT_EQ(u.cols(), 3);
  ASSERT_EQ(v.cols(), 3);
  for (int r = 0; r < kRows; ++r) {
    EXPECT_NEAR(u.row(r).norm(), 1.0f, 1e-5f) << "user row " << r;
    EXPECT_NEAR(v.row(r).norm(), 1.0f, 1e-5f) << "item row " << r;
  }
  // Also in training mode, with dropout on.
  ModelContext ctx;
  Rng rng(9);
  model.Forward(x_u, x_i, &ctx, &rng);
  for (int r = 0; r < kRows; ++r) {
    EXPECT_NEAR(ctx.user.mlp.layers.back().y.row(r).norm(), 1.0f, 1e-5f) << "user row " << r;
    EXPECT_NEAR(ctx.item.mlp.layers.back().y.row(r).norm(), 1.0f, 1e-5f) << "item row " << r;
  }
}

TEST(TwoTowerModelTest, NamedTensorsMatchPyTorchSequentialIndices) {
  ModelConfig config;
  config.embedding_dim = 3;
  config.user_hidden_dims = {8, 4};
  config.item_hidden_dims = {8, 4};
  Rng init(10);
  TwoTowerModel model(config, 5, 7, &init);
  struct Expected {
    std::string name;
    Eigen::Index rows, cols;
  };
  // nn.Sequential(Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear): Linears at 0, 3, 6.
  const std::vector<Expected> expected = {
      {"user_tower.layers.0.weight", 8, 5}, {"user_tower.layers.0.bias", 1, 8},
      {"user_tower.layers.3.weight", 4, 8}, {"user_tower.layers.3.bias", 1, 4},
      {"user_tower.layers.6.weight", 3, 4}, {"user_tower.layers.6.bias", 1, 3},
      {"item_tower.layers.0.weight", 8, 7}, {"item_tower.layers.0.bias", 1, 8},
      {"item_tower.layers.3.weight", 4, 8}, {"item_tower.layers.3.bias", 1, 4},
      {"item_tower.layers.6.weight", 3, 4}, {"item_tower.layers.6.bias", 1, 3},
      {"scorer.log_scale", 1, 1},           {"scorer.bias", 1, 1},
  };
  const auto named = model.NamedTensors();
  ASSERT_EQ(named.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(named[i].name, expected[i].name);
    EXPECT_EQ(named[i].parameter->value.rows(), expected[i].rows) << expected[i].name;
    EXPECT_EQ(named[i].parameter->value.cols(), expected[i].cols) << expected[i].name;
    EXPECT_EQ(named[i].parameter->grad.rows(), expected[i].rows) << expected[i].name;
    EXPECT_EQ(named[i].parameter->grad.cols(), expected[i].cols) << expected[i].name;
  }
}

TEST(TwoTowerModelTest, PredictEqualsForwardWithoutDropout) {
  Rng init(11);
  TwoTowerModel model(SmallConfig(ScoreMode::kLearned, 0.0), kUserIn, kItemIn, &init);
  Rng data(12);
  const Matrix x_u = RandomNormal(kRows, kUserIn, &data);
  const Matrix x_i = RandomNormal(kRows, kItemIn, &data);
  Vector predicted;
  model.Predict(x_u, x_i, &predicted);
  ModelContext ctx;
  Rng rng(13);
  const Vector trained = model.Forward(x_u, x_i, &ctx, &rng);
  ASSERT_EQ(predicted.size(), kRows);
  ASSERT_EQ(trained.size(), kRows);
  for (int r = 0; r < kRows; ++r) EXPECT_NEAR(predicted[r], trained[r], 1e-5f) << "row " << r;
}

TEST(TwoTowerModelTest, DropoutIsReproducibleFromTheSeed) {
  Rng init(14);
  TwoTowerModel model(SmallConfig(ScoreMode::kLearned, 0.5), kUserIn, kItemIn, &init);
  Rng data(15);
  const Matrix x_u = RandomNormal(kRows, kUserIn, &data);
  const Matrix x_i = RandomNormal(kRows, kItemIn, &data);
  ModelContext ctx_a, ctx_b, ctx_c;
  Rng rng_a(16), rng_b(16), rng_c(17);
  const Vector a = model.Forward(x_u, x_i, &ctx_a, &rng_a);
  const Vector b = model.Forward(x_u, x_i, &ctx_b, &rng_b);
  const Vector c = model.Forward(x_u, x_i, &ctx_c, &rng_c);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);  // dropout is on: another seed, other logits
  Vector predicted;
  model.Predict(x_u, x_i, &predicted);
  EXPECT_NE(a, predicted);
}

TEST(TwoTowerModelTest, ForwardRejectsBatchesOfDifferentSize) {
  Rng init(18);
  TwoTowerModel model(SmallConfig(ScoreMode::kLearned, 0.0), kUserIn, kItemIn, &init);
  ModelContext ctx;
  Rng rng(19);
  try {
    model.Forward(Matrix::Ones(3, kUserIn), Matrix::Ones(4, kItemIn), &ctx, &rng);
    ADD_FAILURE() << "accepted 3 users with 4 items";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("user and item batches differ in size"));
  }
}

TEST(TwoTowerModelTest, RejectsNonPositiveInputWidth) {
  Rng init(20);
  try {
    TwoTowerModel model(SmallConfig(ScoreMode::kLearned, 0.0), 0, kItemIn, &init);
    ADD_FAILURE() << "accepted a user input width of 0";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("input widths must be positive"));
  }
}

}  // namespace
}  // namespace twotower::model
