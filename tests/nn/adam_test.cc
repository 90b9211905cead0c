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

// Lazy Adam on an embedding table, against the paper's update per row (ReferenceAdam): rows 0
// and 2 are touched at every step (row 2 twice in one step: its gradients add up), row 1 at
// steps 1 and 3 only, row 3 never. A touched row follows Adam with the global step count; an
// untouched row stays exactly as it was (dense Adam would keep moving row 1 at step 2 by its
// momentum), and a row never touched is never changed. Dense parameters get dense Adam.
TEST(AdamTest, LazyModeUpdatesOnlyTouchedRowsOfSparseParameters) {
  Parameter table = MakeParameter(4, 2, {1, 2, 3, 4, 5, 6, 7, 8});
  table.sparse = true;
  Parameter dense = MakeParameter(1, 2, {0.5f, -0.5f});
  AdamOptions options;
  options.learning_rate = 0.01;
  options.lazy = true;
  Adam adam({&table, &dense}, options);
  ReferenceAdam ref[4][2], ref_dense[2];
  double expected[4][2], expected_dense[2] = {0.5, -0.5};
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 2; ++c) {
      ref[r][c].options = options;
      expected[r][c] = table.value(r, c);
    }
  }
  for (auto& d : ref_dense) d.options = options;
  const float g[3][4][2] = {{{0.1f, -0.2f}, {0.3f, 0.05f}, {-0.4f, 0.2f}, {0, 0}},
                            {{0.2f, 0.1f}, {0, 0}, {0.1f, -0.3f}, {0, 0}},
                            {{-0.1f, 0.4f}, {0.2f, -0.2f}, {0.05f, 0.05f}, {0, 0}}};
  for (int step = 0; step < 3; ++step) {
    ZeroGrad({&table, &dense});
    std::vector<int32_t> touched = {0, 2, 2};
    if (step != 1) touched.push_back(1);
    table.touched_rows = touched;
    for (int r = 0; r < 4; ++r) {
      for (int c = 0; c < 2; ++c) table.grad(r, c) = g[step][r][c];
    }
    dense.grad << 0.3f * (step + 1), -0.1f;
    adam.Step();
    for (int r : {0, 1, 2}) {
      if (r == 1 && step == 1) continue;
      for (int c = 0; c < 2; ++c) {
        // The global step: a row skipped at step 2 uses t = 3 at step 3, as SparseAdam does.
        ref[r][c].t = step;
        expected[r][c] = ref[r][c].Step(expected[r][c], g[step][r][c]);
      }
    }
    for (int c = 0; c < 2; ++c) {
      expected_dense[c] = ref_dense[c].Step(expected_dense[c], dense.grad(0, c));
    }
    for (int r = 0; r < 4; ++r) {
      for (int c = 0; c < 2; ++c) {
        EXPECT_NEAR(table.value(r, c), expected[r][c], 1e-6) << "step " << step << " row " << r;
      }
    }
    for (int c = 0; c < 2; ++c) EXPECT_NEAR(dense.value(0, c), expected_dense[c], 1e-6);
  }
  EXPECT_EQ(table.value(3, 0), 7.0f);  // never touched: exactly the initial value
  EXPECT_EQ(table.value(3, 1), 8.0f);
}

// Dense Adam restricted to the touched rows: when every step touches the same rows, lazy and
// dense Adam give those rows identical values, and lazy leaves the other rows alone.
TEST(AdamTest, LazyEqualsDenseOnRowsTouchedAtEveryStep) {
  Parameter lazy_table = MakeParameter(3, 2, {1, 2, 3, 4, 5, 6});
  Parameter dense_table = lazy_table;
  lazy_table.sparse = dense_table.sparse = true;
  AdamOptions lazy_options;
  lazy_options.lazy = true;
  Adam lazy({&lazy_table}, lazy_options), dense({&dense_table}, AdamOptions{});
  for (int step = 0; step < 5; ++step) {
    for (Parameter* p : {&lazy_table, &dense_table}) {
      ZeroGrad({p});
      p->touched_rows = {1};
      p->grad.row(1) << 0.1f * (step + 1), -0.2f;
    }
    lazy.Step();
    dense.Step();
  }
  EXPECT_EQ(lazy_table.value.row(1), dense_table.value.row(1));
  EXPECT_EQ(lazy_table.value(0, 0), 1.0f);
  EXPECT_EQ(lazy_table.value(2, 1), 6.0f);
}

}  // namespace
}  // namespace twotower::nn
