// Adam against Kingma & Ba (2015), Algorithm 1, written out here in double:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   mhat = m / (1 - b1^t);  vhat = v / (1 - b2^t);  p -= lr * mhat / (sqrt(vhat) + eps)
#include "twotower/nn/adam.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "twotower/nn/layer.h"

namespace twotower::nn {
namespace {

// The paper's update for one scalar, step by step.
struct ReferenceAdam {
  AdamOptions options;
  double m = 0, v = 0;
  int t = 0;

  double Step(double p, double g) {
    ++t;
    m = options.beta1 * m + (1 - options.beta1) * g;
    v = options.beta2 * v + (1 - options.beta2) * g * g;
    const double mhat = m / (1 - std::pow(options.beta1, t));
    const double vhat = v / (1 - std::pow(options.beta2, t));
    return p - options.learning_rate * mhat / (std::sqrt(vhat) + options.eps);
  }
};

Parameter MakeParameter(int rows, int cols, std::vector<float> values) {
  Parameter p{"p", Matrix(rows, cols), Matrix::Zero(rows, cols), false, {}};
  for (int i = 0; i < rows * cols; ++i) p.value.data()[i] = values[i];
  return p;
}

TEST(AdamTest, FirstStepMovesEachParameterByLearningRateAgainstTheGradientSign) {
  Parameter p = MakeParameter(1, 2, {1.0f, -2.0f});
  p.grad << 0.5f, -0.01f;
  AdamOptions options;
  options.learning_rate = 0.1;
  Adam adam({&p}, options);
  adam.Step();
  // Step 1: mhat = g, vhat = g^2, so the move is lr * g / (|g| + 1e-8) = 0.1 * sign(g),
  // whatever |g| is: 1.0 - 0.1 = 0.9 and -2.0 + 0.1 = -1.9.
  EXPECT_NEAR(p.value(0, 0), 0.9f, 1e-6f);
  EXPECT_NEAR(p.value(0, 1), -1.9f, 1e-6f);
  EXPECT_EQ(adam.steps(), 1);
}

TEST(AdamTest, FirstStepWithCustomBetasAndEps) {
  Parameter p = MakeParameter(1, 1, {1.0f});
  p.grad << 0.5f;
  Adam adam({&p}, AdamOptions{0.1, 0.5, 0.75, 0.1});
  adam.Step();
  // m = 0.5 * 0.5 = 0.25, mhat = 0.25 / (1 - 0.5) = 0.5;
  // v = 0.25 * 0.25 = 0.0625, vhat = 0.0625 / (1 - 0.75) = 0.25, sqrt(vhat) = 0.5;
  // p = 1 - 0.1 * 0.5 / (0.5 + 0.1) = 1 - 0.083333 = 0.916667.
  EXPECT_NEAR(p.value(0, 0), 0.9166667f, 1e-6f);
}

TEST(AdamTest, ThreeStepsMatchThePaperFormula) {
  // Two tensors of different shapes, so per-tensor state is exercised too.
  Parameter a = MakeParameter(1, 2, {1.0f, -2.0f});
  Parameter b = MakeParameter(2, 1, {0.25f, 3.0f});
  const std::vector<std::vector<float>> grads_a = {{0.5f, -0.1f}, {-0.3f, 0.2f}, {0.1f, 0.0f}};
  const std::vector<std::vector<float>> grads_b = {{2.0f, 0.0f}, {1.0f, -4.0f}, {-0.5f, 0.3f}};
  AdamOptions options;
  options.learning_rate = 0.05;
  options.beta1 = 0.8;
  options.beta2 = 0.9;
  options.eps = 1e-3;  // large enough to matter at these gradient sizes
  Adam adam({&a, &b}, options);

  std::vector<ReferenceAdam> ref(4, ReferenceAdam{options});
  std::vector<double> expected = {1.0, -2.0, 0.25, 3.0};
  for (int step = 0; step < 3; ++step) {
    for (int j = 0; j < 2; ++j) {
      a.grad(0, j) = grads_a[step][j];
      b.grad(j, 0) = grads_b[step][j];
      expected[j] = ref[j].Step(expected[j], grads_a[step][j]);
      expected[2 + j] = ref[2 + j].Step(expected[2 + j], grads_b[step][j]);
    }
    adam.Step();
    EXPECT_NEAR(a.value(0, 0), expected[0], 1e-6) << "step " << step + 1;
    EXPECT_NEAR(a.value(0, 1), expected[1], 1e-6) << "step " << step + 1;
    EXPECT_NEAR(b.value(0, 0), expected[2], 1e-6) << "step " << step + 1;
    EXPECT_NEAR(b.value(1, 0), expected[3], 1e-6) << "step " << step + 1;
  }
  EXPECT_EQ(adam.steps(), 3);
  // Sanity of the reference itself: the second entry of b saw g = 0 first, then a move.
  EXPECT_NE(expected[3], 3.0);
}

TEST(AdamTest, ZeroGradientFromTheStartLeavesParameterUnchanged) {
  Parameter p = MakeParameter(1, 2, {0.5f, -0.5f});
  Adam adam({&p}, AdamOptions{});
  for (int i = 0; i < 3; ++i) adam.Step();
  EXPECT_EQ(p.value(0, 0), 0.5f);
  EXPECT_EQ(p.value(0, 1), -0.5f);
}

}  // namespace
}  // namespace twotower::nn
