#include "twotower/train/loss.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace twotower::train {
namespace {

Vector MakeVector(const std::vector<float>& values) {
  Vector v(static_cast<Eigen::Index>(values.size()));
  for (size_t i = 0; i < values.size(); ++i) v[static_cast<Eigen::Index>(i)] = values[i];
  return v;
}

// The textbook formula in double; fine at moderate logits, overflows at extreme ones.
double NaiveMeanBce(const std::vector<float>& z, const std::vector<float>& y) {
  double total = 0;
  for (size_t i = 0; i < z.size(); ++i) {
    const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(z[i])));
    total += -(y[i] * std::log(s) + (1.0 - y[i]) * std::log(1.0 - s));
  }
  return total / static_cast<double>(z.size());
}

TEST(BinaryCrossEntropyTest, MatchesNaiveFormulaAtModerateLogits) {
  const std::vector<float> z = {-3.0f, -1.5f, -0.2f, 0.0f, 0.7f, 2.5f, 4.0f};
  const std::vector<float> y = {0, 1, 1, 0, 1, 0, 1};
  const double loss = BinaryCrossEntropyWithLogits(MakeVector(z), y.data(), nullptr);
  EXPECT_NEAR(loss, NaiveMeanBce(z, y), 1e-6);
}

TEST(BinaryCrossEntropyTest, LogitZeroCostsLogTwo) {
  const std::vector<float> y = {1, 0};
  EXPECT_NEAR(BinaryCrossEntropyWithLogits(Vector::Zero(2), y.data(), nullptr), std::log(2.0),
              1e-7);
}

TEST(BinaryCrossEntropyTest, GradientIsSigmoidMinusLabelOverN) {
  const std::vector<float> z = {-3.0f, -1.5f, -0.2f, 0.0f, 0.7f, 2.5f};
  const std::vector<float> y = {0, 1, 1, 0, 1, 0};
  Vector dz;
  BinaryCrossEntropyWithLogits(MakeVector(z), y.data(), &dz);
  ASSERT_EQ(dz.size(), 6);
  for (size_t i = 0; i < z.size(); ++i) {
    const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(z[i])));
    EXPECT_NEAR(dz[static_cast<Eigen::Index>(i)], (s - y[i]) / 6.0, 1e-7) << "entry " << i;
  }
}

TEST(BinaryCrossEntropyTest, GradientMatchesFiniteDifferencesOfTheLoss) {
  const std::vector<float> z = {-2.0f, -0.6f, 0.3f, 1.1f, 3.0f};
  const std::vector<float> y = {1, 0, 0, 1, 1};
  Vector zv = MakeVector(z);
  Vector dz;
  BinaryCrossEntropyWithLogits(zv, y.data(), &dz);
  for (Eigen::Index i = 0; i < zv.size(); ++i) {
    const float original = zv[i];
    const float plus = original + 1e-2f, minus = original - 1e-2f;
    zv[i] = plus;
    const double f_plus = BinaryCrossEntropyWithLogits(zv, y.data(), nullptr);
    zv[i] = minus;
    const double f_minus = BinaryCrossEntropyWithLogits(zv, y.data(), nullptr);
    zv[i] = original;
    const double numeric = (f_plus - f_minus) / (static_cast<double>(plus) - minus);
    EXPECT_NEAR(dz[i], numeric, 1e-3 * std::abs(numeric) + 1e-5) << "entry " << i;
  }
}

TEST(BinaryCrossEntropyTest, StableAtExtremeLogits) {
  // Per example (n = 1): a confident right answer costs 0, a confident wrong one costs |z|;
  // the gradient sigmoid(z) - y is 0 when right and +-1 when wrong.
  struct Case {
    float z, y;
    double loss, grad;
  };
  const std::vector<Case> cases = {
      {100, 1, 0, 0},  {100, 0, 100, 1},   {-100, 0, 0, 0},  {-100, 1, 100, -1},
      {1000, 1, 0, 0}, {1000, 0, 1000, 1}, {-1000, 0, 0, 0}, {-1000, 1, 1000, -1},
  };
  for (const Case& c : cases) {
    Vector z(1);
    z << c.z;
    Vector dz;
    const double loss = BinaryCrossEntropyWithLogits(z, &c.y, &dz);
    ASSERT_TRUE(std::isfinite(loss)) << "z = " << c.z << ", y = " << c.y;
    ASSERT_TRUE(std::isfinite(dz[0])) << "z = " << c.z << ", y = " << c.y;
    // exp(-100) = 3.7e-44: the "0" losses are below any float resolution of interest.
    EXPECT_NEAR(loss, c.loss, 1e-6 * c.loss + 1e-30) << "z = " << c.z << ", y = " << c.y;
    EXPECT_NEAR(dz[0], c.grad, 1e-6) << "z = " << c.z << ", y = " << c.y;
  }
  // And as one batch: the mean of the per-example losses.
  const std::vector<float> z = {1000, -1000, 100, -100};
  const std::vector<float> y = {0, 0, 1, 1};
  EXPECT_NEAR(BinaryCrossEntropyWithLogits(MakeVector(z), y.data(), nullptr),
              (1000.0 + 0.0 + 0.0 + 100.0) / 4.0, 1e-4);
}

}  // namespace
}  // namespace twotower::train
