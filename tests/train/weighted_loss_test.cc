// Per-row weights (implicit feedback, LossBatch::weights): every loss returns the weighted mean
// sum_i w_i L_i / sum_i w_i of its rows' losses. The expected values are written out here from
// the losses' definitions (loss.h); gradients against finite differences.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "testing/gradient_check.h"
#include "twotower/core/error.h"
#include "twotower/data/dataset.h"
#include "twotower/train/config.h"
#include "twotower/train/loss.h"
#include "twotower/train/trainer.h"

namespace twotower::train {
namespace {

using testing::GradientNear;
using testing::NumericalGradient;
using testing::RandomNormal;

LossOutput RunLoss(Loss* loss, const Matrix& u, const Matrix& v, const std::vector<int32_t>& items,
                   const std::vector<float>* weights, const std::vector<float>* labels = nullptr) {
  LossBatch b;
  b.u = &u;
  b.v = &v;
  b.item_rows = items.data();
  b.weights = weights ? weights->data() : nullptr;
  b.labels = labels ? labels->data() : nullptr;
  b.scale = 2.0f;
  b.bias = -0.5f;
  LossOutput out;
  loss->Compute(b, &out);
  return out;
}

double WeightedMean(const std::vector<double>& per_row, const std::vector<float>& w) {
  double num = 0, den = 0;
  for (size_t i = 0; i < w.size(); ++i) num += w[i] * per_row[i], den += w[i];
  return num / den;
}

struct Batch {
  Matrix u, v;
  std::vector<int32_t> items = {0, 1, 2, 3};
  std::vector<float> w = {3.0f, 0.5f, 0.0f, 1.5f};
  Batch() {
    Rng rng(3);
    u = RandomNormal(4, 3, &rng) * 0.7f;
    v = RandomNormal(4, 3, &rng) * 0.7f;
  }
  double s(int i, int j) const { return static_cast<double>(u.row(i).dot(v.row(j))); }
};

TEST(WeightedLossTest, InBatchSoftmaxIsTheWeightedMeanOfItsRows) {
  Batch b;
  const double t = 0.5;
  InBatchSoftmaxLoss loss({t, {}, true});
  std::vector<double> rows;
  for (int i = 0; i < 4; ++i) {
    double sum = 0;
    for (int j = 0; j < 4; ++j) sum += std::exp(b.s(i, j) / t);
    rows.push_back(std::log(sum) - b.s(i, i) / t);
  }
  EXPECT_NEAR(RunLoss(&loss, b.u, b.v, b.items, &b.w).loss, WeightedMean(rows, b.w), 1e-5);
  // Equal weights are no weights.
  const std::vector<float> ones(4, 2.0f);
  EXPECT_NEAR(RunLoss(&loss, b.u, b.v, b.items, &ones).loss,
              RunLoss(&loss, b.u, b.v, b.items, nullptr).loss, 1e-6);
}

TEST(WeightedLossTest, BceIsTheWeightedMeanOfItsRows) {
  Batch b;
  BceLoss loss;
  const std::vector<float> y = {1, 0, 1, 0};
  std::vector<double> rows;
  for (int i = 0; i < 4; ++i) {
    const double z = 2.0 * b.s(i, i) - 0.5;
    const double p = 1.0 / (1.0 + std::exp(-z));
    rows.push_back(-(y[i] * std::log(p) + (1 - y[i]) * std::log(1 - p)));
  }
  EXPECT_NEAR(RunLoss(&loss, b.u, b.v, b.items, &b.w, &y).loss, WeightedMean(rows, b.w), 1e-5);
}

TEST(WeightedLossTest, BprAndTripletAreTheWeightedMeansOfTheirRows) {
  Batch b;
  for (Objective obj : {Objective::kBpr, Objective::kTriplet}) {
    SampledLossOptions o;
    o.objective = obj;
    o.sampler = Sampler::kInBatch;
    o.logq_correction = false;  // uniform weights over a row's negatives: 1 / 3 each
    o.item_probability = std::vector<double>(4, 0.25);
    o.num_items = 4;
    o.temperature = 0.5;
    o.margin = 1.0;
    SampledLoss loss(o);
    std::vector<double> rows;
    for (int i = 0; i < 4; ++i) {
      double sum = 0;
      for (int j = 0; j < 4; ++j) {
        if (j == i) continue;
        const double gap = b.s(i, i) - b.s(i, j);
        sum += obj == Objective::kBpr ? std::log1p(std::exp(-gap / 0.5)) : std::max(0.0, 1.0 - gap);
      }
      rows.push_back(sum / 3);
    }
    EXPECT_NEAR(RunLoss(&loss, b.u, b.v, b.items, &b.w).loss, WeightedMean(rows, b.w), 1e-5)
        << static_cast<int>(obj);
  }
}

TEST(WeightedLossTest, GradientsMatchFiniteDifferences) {
  Batch b;
  std::vector<std::unique_ptr<Loss>> losses;
  losses.push_back(std::make_unique<InBatchSoftmaxLoss>(SoftmaxOptions{0.4, {-1, -2, -1.5, -3}}));
  losses.push_back(std::make_unique<BceLoss>());
  for (Objective obj : {Objective::kSoftmax, Objective::kBpr, Objective::kTriplet}) {
    SampledLossOptions o;
    o.objective = obj;
    o.sampler = Sampler::kInBatch;
    o.item_probability = {0.1, 0.2, 0.3, 0.4};
    o.num_items = 4;
    o.temperature = 0.5;
    o.margin = 1.5;
    losses.push_back(std::make_unique<SampledLoss>(o));
  }
  const std::vector<float> y = {1, 0, 1, 1};
  for (auto& loss : losses) {
    SCOPED_TRACE(loss->name());
    const LossOutput r = RunLoss(loss.get(), b.u, b.v, b.items, &b.w, &y);
    auto f = [&] { return RunLoss(loss.get(), b.u, b.v, b.items, &b.w, &y).loss; };
    EXPECT_TRUE(GradientNear(r.du, NumericalGradient(&b.u, f, 1e-3), 2e-2, 2e-4));
    EXPECT_TRUE(GradientNear(r.dv, NumericalGradient(&b.v, f, 1e-3), 2e-2, 2e-4));
  }
}

TEST(WeightedLossTest, IntegerWeightsEqualRepeatedRowsForAPointwiseLoss) {
  // BCE rows are independent: weights (2, 1) are row 0 twice and row 1 once.
  Batch b;
  BceLoss loss;
  const Matrix u2 = b.u.topRows(2), v2 = b.v.topRows(2);
  const std::vector<float> w = {2.0f, 1.0f}, y = {1, 0};
  Matrix u3(3, 3), v3(3, 3);
  u3 << b.u.row(0), b.u.row(0), b.u.row(1);
  v3 << b.v.row(0), b.v.row(0), b.v.row(1);
  const std::vector<float> y3 = {1, 1, 0};
  EXPECT_NEAR(RunLoss(&loss, u2, v2, {0, 1}, &w, &y).loss,
              RunLoss(&loss, u3, v3, {0, 0, 1}, nullptr, &y3).loss, 1e-6);
}

TEST(WeightedLossTest, ZeroWeightsGiveNoLossAndNoGradient) {
  Batch b;
  InBatchSoftmaxLoss loss({0.5, {}, true});
  const std::vector<float> zero(4, 0.0f);
  const LossOutput r = RunLoss(&loss, b.u, b.v, b.items, &zero);
  EXPECT_EQ(r.loss, 0.0);
  EXPECT_EQ(r.du.norm(), 0.0f);
  EXPECT_EQ(r.dv.norm(), 0.0f);
}

TEST(LossWeightsTest, TheTransformsAreTheDocumentedFunctions) {
  Config c;
  data::Interactions s;
  s.source = "train.csv";
  s.weight = {0.0f, 1.0f, 9.0f, 324663.0f};
  EXPECT_TRUE(LossWeights(c, s).empty());  // no weight column named: all 1
  c.features.weight_column = "plays";
  EXPECT_EQ(LossWeights(c, s), s.weight);  // none: as read
  c.training.weight_transform = "log1p";
  std::vector<float> w = LossWeights(c, s);
  EXPECT_NEAR(w[2], std::log(10.0), 1e-6);
  EXPECT_NEAR(w[3], std::log(324664.0), 1e-5);
  c.training.weight_transform = "confidence";
  c.training.weight_alpha = 40;
  c.training.weight_eps = 0.5;
  w = LossWeights(c, s);
  EXPECT_EQ(w[0], 0.0f);
  EXPECT_NEAR(w[1], 40 * std::log(1 + 1 / 0.5), 1e-4);
  data::Interactions none;
  none.source = "val.csv";
  none.label = {1};
  EXPECT_THAT([&] { LossWeights(c, none); },
              ::testing::ThrowsMessage<twotower::Error>(
                  ::testing::HasSubstr("features.weight: val.csv has no column 'plays'")));
}

}  // namespace
}  // namespace twotower::train
