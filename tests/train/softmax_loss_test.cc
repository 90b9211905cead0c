// In-batch softmax: the loss against a hand computation, gradients against finite differences,
// logQ and accidental hits by their definitions (loss.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "testing/gradient_check.h"
#include "twotower/core/error.h"
#include "twotower/train/loss.h"
#include "twotower/train/trainer.h"

namespace twotower::train {
namespace {

using testing::GradientNear;
using testing::NumericalGradient;
using testing::RandomNormal;

double Loss(InBatchSoftmaxLoss* loss, const Matrix& u, const Matrix& v,
            const std::vector<int32_t>& items) {
  LossBatch b;
  b.u = &u;
  b.v = &v;
  b.item_rows = items.data();
  LossOutput out;
  loss->Compute(b, &out);
  return out.loss;
}

TEST(InBatchSoftmaxLossTest, TwoRowsMatchHandComputation) {
  // u = [[1, 0], [0, 1]], v = [[1, 0], [1, 1]], temperature 0.5: logits U V^T / t =
  // [[2, 2], [0, 2]]. Row 0: logsumexp(2, 2) - 2 = log 2. Row 1: log(e^0 + e^2) - 2.
  Matrix u(2, 2), v(2, 2);
  u << 1, 0, 0, 1;
  v << 1, 0, 1, 1;
  InBatchSoftmaxLoss loss({0.5, {}, true});
  const double expected = (std::log(2.0) + std::log(1.0 + std::exp(2.0)) - 2.0) / 2.0;
  EXPECT_NEAR(Loss(&loss, u, v, {0, 1}), expected, 1e-6);
}

TEST(InBatchSoftmaxLossTest, LogQCorrectionSubtractsLogProbabilityOfEachColumn) {
  // Same batch, log q = [log 0.5, log 0.25] for items 0 and 1: logits become
  // [[2 - log .5, 2 - log .25], [0 - log .5, 2 - log .25]].
  Matrix u(2, 2), v(2, 2);
  u << 1, 0, 0, 1;
  v << 1, 0, 1, 1;
  const float a = std::log(0.5f), b = std::log(0.25f);
  InBatchSoftmaxLoss loss({0.5, {a, b}, true});
  auto lse = [](double x, double y) { return std::log(std::exp(x) + std::exp(y)); };
  const double row0 = lse(2 - a, 2 - b) - (2 - a);
  const double row1 = lse(0 - a, 2 - b) - (2 - b);
  EXPECT_NEAR(Loss(&loss, u, v, {0, 1}), (row0 + row1) / 2.0, 1e-5);
}

TEST(InBatchSoftmaxLossTest, AccidentalHitIsNotANegative) {
  // Rows 0 and 1 share item 7: with removal, each row's softmax runs over itself and row 2 only,
  // which equals the loss of the batch without the duplicate column for that row.
  Rng rng(5);
  const Matrix u = RandomNormal(3, 4, &rng), v = RandomNormal(3, 4, &rng);
  InBatchSoftmaxLoss removing({1.0, {}, true});
  InBatchSoftmaxLoss keeping({1.0, {}, false});
  const Matrix s = u * v.transpose();
  auto row_loss = [&](int i, std::vector<int> cols) {
    double sum = 0;
    for (int j : cols) sum += std::exp(static_cast<double>(s(i, j)));
    return std::log(sum) - s(i, i);
  };
  const double expected = (row_loss(0, {0, 2}) + row_loss(1, {1, 2}) + row_loss(2, {0, 1, 2})) / 3;
  EXPECT_NEAR(Loss(&removing, u, v, {7, 7, 3}), expected, 1e-5);
  const double all = (row_loss(0, {0, 1, 2}) + row_loss(1, {0, 1, 2}) + row_loss(2, {0, 1, 2})) / 3;
  EXPECT_NEAR(Loss(&keeping, u, v, {7, 7, 3}), all, 1e-5);
}

TEST(InBatchSoftmaxLossTest, GradientsMatchFiniteDifferences) {
  Rng rng(11);
  Matrix u = RandomNormal(6, 5, &rng) * 0.5f, v = RandomNormal(6, 5, &rng) * 0.5f;
  const std::vector<int32_t> items = {0, 1, 2, 1, 3, 4};  // rows 1 and 3: an accidental hit
  std::vector<float> log_q = {-1.0f, -2.0f, -0.5f, -3.0f, -1.5f};
  InBatchSoftmaxLoss loss({0.3, log_q, true});
  LossBatch b;
  b.u = &u;
  b.v = &v;
  b.item_rows = items.data();
  LossOutput out;
  loss.Compute(b, &out);
  const Matrix du = out.du, dv = out.dv;
  EXPECT_TRUE(GradientNear(du,
                           NumericalGradient(
                               &u, [&] { return Loss(&loss, u, v, items); }, 1e-3),
                           2e-3, 2e-4));
  EXPECT_TRUE(GradientNear(dv,
                           NumericalGradient(
                               &v, [&] { return Loss(&loss, u, v, items); }, 1e-3),
                           2e-3, 2e-4));
}

TEST(InBatchSoftmaxLossTest, StableForLargeLogits) {
  Matrix u(2, 1), v(2, 1);
  u << 100, -100;
  v << 100, 100;
  InBatchSoftmaxLoss loss({0.01, {}, true});
  const double l = Loss(&loss, u, v, {0, 1});
  EXPECT_TRUE(std::isfinite(l));
  // Row 0: logits 1e6 and 1e6 -> log 2. Row 1: -1e6 (target) vs -1e6 -> log 2.
  EXPECT_NEAR(l, std::log(2.0), 1e-6);
}

TEST(InBatchSoftmaxLossTest, RejectsNonPositiveTemperature) {
  EXPECT_THROW(InBatchSoftmaxLoss({0.0, {}, true}), Error);
}

TEST(LogSamplingProbabilitiesTest, FrequenciesOfThePositives) {
  const std::vector<float> q = LogSamplingProbabilities({0, 0, 2, 0}, 4);
  EXPECT_NEAR(q[0], std::log(0.75), 1e-6);
  EXPECT_NEAR(q[2], std::log(0.25), 1e-6);
  EXPECT_NEAR(q[1], std::log(0.25), 1e-6);  // never seen: finite, log(1 / total)
  EXPECT_NEAR(q[3], std::log(0.25), 1e-6);
}

TEST(BceLossTest, GradientsMatchFiniteDifferencesThroughTheScorer) {
  Rng rng(2);
  Matrix u = RandomNormal(5, 3, &rng), v = RandomNormal(5, 3, &rng);
  const std::vector<float> y = {1, 0, 1, 1, 0};
  BceLoss loss;
  auto f = [&](float scale, float bias) {
    LossBatch b;
    b.u = &u;
    b.v = &v;
    b.labels = y.data();
    b.scale = scale;
    b.bias = bias;
    LossOutput out;
    loss.Compute(b, &out);
    return out;
  };
  const LossOutput out = f(2.0f, 0.3f);
  const Matrix du = out.du, dv = out.dv;
  EXPECT_TRUE(GradientNear(du,
                           NumericalGradient(
                               &u, [&] { return f(2.0f, 0.3f).loss; }, 1e-3),
                           1e-3, 1e-5));
  EXPECT_TRUE(GradientNear(dv,
                           NumericalGradient(
                               &v, [&] { return f(2.0f, 0.3f).loss; }, 1e-3),
                           1e-3, 1e-5));
  // d/d log_scale at scale s: (f(s e^h) - f(s e^-h)) / 2h; d/d bias likewise.
  const double h = 1e-3;
  const double d_log_scale =
      (f(2.0f * std::exp(h), 0.3f).loss - f(2.0f * std::exp(-h), 0.3f).loss) / (2 * h);
  const double d_bias = (f(2.0f, 0.3f + h).loss - f(2.0f, 0.3f - h).loss) / (2 * h);
  EXPECT_NEAR(out.d_log_scale, d_log_scale, 1e-3);
  EXPECT_NEAR(out.d_bias, d_bias, 1e-3);
}

}  // namespace
}  // namespace twotower::train

namespace twotower::train {
namespace {

TEST(TrainerStepTest, EmbeddingL2AddsLambdaTimesMeanSquaredNorms) {
  // Unit-norm tower outputs (normalize: true): the penalty lambda (sum |u|^2 + sum |v|^2) / n is
  // exactly 2 lambda, whatever the weights.
  model::ModelConfig config;
  config.embedding_dim = 4;
  config.user_hidden_dims = {5};
  config.item_hidden_dims = {5};
  config.dropout = 0.0;
  Rng rng_a(1), rng_b(1);
  model::TwoTowerModel a(config, 3, 2, &rng_a), b(config, 3, 2, &rng_b);
  Trainer plain(&a, std::make_unique<BceLoss>(), {1e-3}, 0.0);
  Trainer penalised(&b, std::make_unique<BceLoss>(), {1e-3}, 0.25);
  data::EncodedTable users, items;
  Rng data_rng(7);
  users.dense = testing::RandomNormal(6, 3, &data_rng);
  items.dense = testing::RandomNormal(6, 2, &data_rng);
  const std::vector<int32_t> rows = {0, 1, 2, 3, 4, 5};
  const std::vector<float> y = {1, 0, 1, 0, 0, 1};
  Rng step_a(3), step_b(3);
  const double la = plain.Step(users, rows.data(), items, rows.data(), y.data(), 6, &step_a);
  const double lb = penalised.Step(users, rows.data(), items, rows.data(), y.data(), 6, &step_b);
  EXPECT_NEAR(lb - la, 2 * 0.25, 1e-5);
}

}  // namespace
}  // namespace twotower::train

namespace twotower::train {
namespace {

// Row shares (data-parallel training): the rows' terms computed in three parts, each against
// the whole batch's items, add up to the whole batch's loss and dv, and their du rows are the
// whole batch's rows, with logQ, accidental hits (items repeat) and weights on.
TEST(InBatchSoftmaxLossTest, RowSharesSumToTheWholeBatch) {
  Rng rng(11);
  const int n = 10, d = 4;
  const Matrix u = testing::RandomNormal(n, d, &rng), v = testing::RandomNormal(n, d, &rng);
  const std::vector<int32_t> items = {0, 1, 2, 1, 3, 4, 0, 5, 6, 2};
  const std::vector<float> weights = {1, 2, 0.5, 1, 3, 1, 1, 0.25, 2, 1};
  std::vector<float> log_q(7);
  for (int j = 0; j < 7; ++j) log_q[j] = std::log(0.05f + 0.1f * j);
  InBatchSoftmaxLoss whole_loss({0.3, log_q, true}), share_loss({0.3, log_q, true});
  LossBatch b;
  b.u = &u;
  b.v = &v;
  b.item_rows = items.data();
  b.weights = weights.data();
  LossOutput whole;
  whole_loss.Compute(b, &whole);
  double loss = 0.0;
  Matrix dv = Matrix::Zero(n, d);
  for (const auto& [begin, end] : {std::pair{0, 4}, std::pair{4, 7}, std::pair{7, 10}}) {
    const Matrix part = u.middleRows(begin, end - begin);
    LossBatch s = b;
    s.u = &part;
    s.row_offset = begin;
    s.rows_total = n;
    LossOutput out;
    share_loss.Compute(s, &out);
    loss += out.loss;
    dv += out.dv;
    ASSERT_EQ(out.du.rows(), end - begin);
    for (int r = 0; r < end - begin; ++r) {
      for (int c = 0; c < d; ++c) EXPECT_NEAR(out.du(r, c), whole.du(begin + r, c), 1e-6);
    }
  }
  EXPECT_NEAR(loss, whole.loss, 1e-6);
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < d; ++c) EXPECT_NEAR(dv(r, c), whole.dv(r, c), 1e-6);
  }
  // A share past the batch is refused.
  const Matrix part = u.topRows(4);
  LossBatch bad = b;
  bad.u = &part;
  bad.row_offset = 8;
  bad.rows_total = n;
  LossOutput out;
  EXPECT_THROW(share_loss.Compute(bad, &out), Error);
}

}  // namespace
}  // namespace twotower::train
