// Conformance suite for every layer in nn/layer.h and for nn::Sequential: finite-difference
// gradients (input and parameters), Infer == Forward where deterministic, gradient accumulation,
// shape errors. Layer-specific behaviour (dropout statistics, PyTorch init bounds, hand-computed
// outputs) follows the suite.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "testing/gradient_check.h"
#include "twotower/core/error.h"
#include "twotower/nn/layer.h"
#include "twotower/nn/mlp.h"

namespace twotower::nn {
namespace {

using ::testing::HasSubstr;
using twotower::testing::GradientNear;
using twotower::testing::MatrixD;
using twotower::testing::NumericalGradient;
using twotower::testing::RandomNormal;
using twotower::testing::WeightedSum;

constexpr uint64_t kDropoutSeed = 1234;
// Float32 forward passes: a step of 1e-2 keeps rounding noise (~1e-7 |f| / h) and truncation
// error (~h^2 f''' / 6) both far below the 1e-2 relative tolerance.
constexpr double kStep = 1e-2;
constexpr double kRtol = 1e-2;
constexpr double kAtol = 1e-4;

// One interface over a single Layer or a Sequential, so one suite checks both.
class Subject {
 public:
  virtual ~Subject() = default;
  virtual int in_dim() const = 0;
  virtual int out_dim() const = 0;
  virtual void Infer(const Matrix& x, Matrix* y) const = 0;
  // Training forward with a fresh Rng(kDropoutSeed), so every call draws the same dropout mask.
  virtual const Matrix& Forward(const Matrix& x) = 0;
  virtual void Backward(const Matrix& dy, Matrix* dx) = 0;
  virtual std::vector<Parameter*> Parameters() = 0;
  // An input for which the function is smooth within +-kStep of every entry (no ReLU kinks).
  virtual Matrix MakeInput(int rows, Rng* rng) const = 0;
};

class LayerSubject : public Subject {
 public:
  explicit LayerSubject(std::unique_ptr<Layer> layer, bool away_from_zero = false)
      : layer_(std::move(layer)), away_from_zero_(away_from_zero) {}
  int in_dim() const override { return layer_->in_dim(); }
  int out_dim() const override { return layer_->out_dim(); }
  void Infer(const Matrix& x, Matrix* y) const override { layer_->Infer(x, y); }
  const Matrix& Forward(const Matrix& x) override {
    Rng rng(kDropoutSeed);
    return layer_->Forward(x, &ctx_, &rng);
  }
  void Backward(const Matrix& dy, Matrix* dx) override { layer_->Backward(ctx_, dy, dx); }
  std::vector<Parameter*> Parameters() override { return layer_->Parameters(); }
  Matrix MakeInput(int rows, Rng* rng) const override {
    Matrix x = RandomNormal(rows, in_dim(), rng);
    if (away_from_zero_) {
      // |x| in [0.2, 1.2]: ReLU's kink at 0 is 20 steps away.
      for (Eigen::Index i = 0; i < x.size(); ++i) {
        const float magnitude = 0.2f + rng->UniformFloat();
        x.data()[i] = x.data()[i] < 0 ? -magnitude : magnitude;
      }
    }
    return x;
  }

 private:
  std::unique_ptr<Layer> layer_;
  bool away_from_zero_;
  Context ctx_;
};

class SequentialSubject : public Subject {
 public:
  explicit SequentialSubject(float dropout) {
    Rng init(7);
    auto first = std::make_unique<Linear>(5, 6);
    first->InitPyTorchDefault(&init);
    auto second = std::make_unique<Linear>(6, 3);
    second->InitPyTorchDefault(&init);
    seq_.Add(std::move(first));
    seq_.Add(std::make_unique<ReLU>(6));
    seq_.Add(std::make_unique<Dropout>(6, dropout));
    seq_.Add(std::move(second));
    seq_.Add(std::make_unique<L2Normalize>(3));
  }
  int in_dim() const override { return seq_.in_dim(); }
  int out_dim() const override { return seq_.out_dim(); }
  void Infer(const Matrix& x, Matrix* y) const override { seq_.Infer(x, y); }
  const Matrix& Forward(const Matrix& x) override {
    Rng rng(kDropoutSeed);
    return seq_.Forward(x, &ctx_, &rng);
  }
  void Backward(const Matrix& dy, Matrix* dx) override { seq_.Backward(&ctx_, dy, dx); }
  std::vector<Parameter*> Parameters() override { return seq_.Parameters(); }
  Matrix MakeInput(int rows, Rng* rng) const override {
    // Redraw until every ReLU pre-activation is at least 0.1 from its kink; perturbing any input
    // or first-layer weight by kStep moves a pre-activation by far less than that.
    for (int attempt = 0; attempt < 1000; ++attempt) {
      Matrix x = RandomNormal(rows, in_dim(), rng);
      Matrix pre;
      seq_.layer(0).Infer(x, &pre);
      if (pre.cwiseAbs().minCoeff() > 0.1f) return x;
    }
    ADD_FAILURE() << "no input keeps the ReLU pre-activations away from 0";
    return Matrix::Zero(rows, in_dim());
  }

 private:
  Sequential seq_;
  SequentialContext ctx_;
};

struct LayerCase {
  std::string name;
  std::function<std::unique_ptr<Subject>()> make;
  bool deterministic;      // Infer == Forward
  size_t parameter_count;  // tensors
  std::string type_name;   // in error messages ("" for Sequential)
};
// gtest prints a parameter in test listings and failures; without this, the raw bytes.
void PrintTo(const LayerCase& c, std::ostream* os) { *os << c.name; }

std::vector<LayerCase> AllCases() {
  return {
      {"Linear",
       [] {
         auto linear = std::make_unique<Linear>(5, 3);
         Rng init(3);
         linear->InitPyTorchDefault(&init);
         return std::make_unique<LayerSubject>(std::move(linear));
       },
       true, 2, "Linear"},
      {"ReLU", [] { return std::make_unique<LayerSubject>(std::make_unique<ReLU>(4), true); }, true,
       0, "ReLU"},
      {"Dropout", [] { return std::make_unique<LayerSubject>(std::make_unique<Dropout>(6, 0.4f)); },
       false, 0, "Dropout"},
      {"DropoutZero",
       [] { return std::make_unique<LayerSubject>(std::make_unique<Dropout>(6, 0.0f)); }, true, 0,
       "Dropout"},
      {"ReLUDropout",
       [] { return std::make_unique<LayerSubject>(std::make_unique<ReLUDropout>(6, 0.4f), true); },
       false, 0, "ReLUDropout"},
      {"ReLUDropoutZero",
       [] { return std::make_unique<LayerSubject>(std::make_unique<ReLUDropout>(4, 0.0f), true); },
       true, 0, "ReLUDropout"},
      {"L2Normalize",
       [] { return std::make_unique<LayerSubject>(std::make_unique<L2Normalize>(4)); }, true, 0,
       "L2Normalize"},
      {"Sequential", [] { return std::make_unique<SequentialSubject>(0.3f); }, false, 4, ""},
      {"SequentialNoDropout", [] { return std::make_unique<SequentialSubject>(0.0f); }, true, 4,
       ""},
  };
}

class LayerConformanceTest : public ::testing::TestWithParam<LayerCase> {};

constexpr int kRows = 4;

TEST_P(LayerConformanceTest, InputGradientMatchesFiniteDifferences) {
  auto subject = GetParam().make();
  Rng rng(11);
  Matrix x = subject->MakeInput(kRows, &rng);
  const Matrix r = RandomNormal(kRows, subject->out_dim(), &rng);

  subject->Forward(x);
  Matrix dx;
  subject->Backward(r, &dx);

  const MatrixD numeric = NumericalGradient(
      &x, [&] { return WeightedSum(subject->Forward(x), r); }, kStep);
  EXPECT_TRUE(GradientNear(dx, numeric, kRtol, kAtol));
}

TEST_P(LayerConformanceTest, ParameterGradientsMatchFiniteDifferences) {
  auto subject = GetParam().make();
  const std::vector<Parameter*> params = subject->Parameters();
  ASSERT_EQ(params.size(), GetParam().parameter_count);
  if (params.empty()) return;  // nothing more to check
  Rng rng(12);
  const Matrix x = subject->MakeInput(kRows, &rng);
  const Matrix r = RandomNormal(kRows, subject->out_dim(), &rng);

  ZeroGrad(params);
  subject->Forward(x);
  Matrix dx;
  subject->Backward(r, &dx);

  for (size_t i = 0; i < params.size(); ++i) {
    const MatrixD numeric = NumericalGradient(
        &params[i]->value, [&] { return WeightedSum(subject->Forward(x), r); }, kStep);
    EXPECT_TRUE(GradientNear(params[i]->grad, numeric, kRtol, kAtol))
        << "parameter " << i << " (" << params[i]->name << ")";
  }
}

TEST_P(LayerConformanceTest, BackwardAddsIntoParameterGradients) {
  auto subject = GetParam().make();
  const std::vector<Parameter*> params = subject->Parameters();
  ASSERT_EQ(params.size(), GetParam().parameter_count);
  if (params.empty()) return;  // nothing more to check
  Rng rng(13);
  const Matrix x = subject->MakeInput(kRows, &rng);
  const Matrix r = RandomNormal(kRows, subject->out_dim(), &rng);

  ZeroGrad(params);
  subject->Forward(x);
  subject->Backward(r, nullptr);  // no input gradient wanted: parameters still get theirs
  std::vector<Matrix> once;
  for (Parameter* p : params) once.push_back(p->grad);
  subject->Backward(r, nullptr);
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_GT(once[i].cwiseAbs().maxCoeff(), 0.0f) << params[i]->name;
    EXPECT_TRUE(params[i]->grad.isApprox(2.0f * once[i], 1e-6f)) << params[i]->name;
  }
  ZeroGrad(params);
  for (Parameter* p : params) EXPECT_EQ(p->grad.cwiseAbs().maxCoeff(), 0.0f) << p->name;
}

TEST_P(LayerConformanceTest, InferMatchesForwardUnlessDropoutIsOn) {
  auto subject = GetParam().make();
  Rng rng(14);
  const Matrix x = subject->MakeInput(kRows, &rng);
  Matrix inferred;
  subject->Infer(x, &inferred);
  const Matrix trained = subject->Forward(x);
  ASSERT_EQ(inferred.rows(), kRows);
  ASSERT_EQ(inferred.cols(), subject->out_dim());
  if (GetParam().deterministic) {
    EXPECT_TRUE(inferred.isApprox(trained, 1e-6f)) << inferred << "\nvs\n" << trained;
  } else {
    // Dropout is on in training: some values differ from inference.
    EXPECT_FALSE(inferred.isApprox(trained, 1e-3f)) << inferred << "\nvs\n" << trained;
  }
}

TEST_P(LayerConformanceTest, RejectsInputOfWrongWidth) {
  auto subject = GetParam().make();
  const Matrix x = Matrix::Ones(kRows, subject->in_dim() + 1);
  const std::string expected = "expected input with " + std::to_string(subject->in_dim()) +
                               " columns, got " + std::to_string(subject->in_dim() + 1);
  Matrix y;
  try {
    subject->Infer(x, &y);
    ADD_FAILURE() << "Infer accepted a wrong width";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(expected));
    EXPECT_THAT(e.what(), HasSubstr(GetParam().type_name));
  }
  try {
    subject->Forward(x);
    ADD_FAILURE() << "Forward accepted a wrong width";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(expected));
  }
}

TEST_P(LayerConformanceTest, BackwardRejectsGradientOfWrongShape) {
  auto subject = GetParam().make();
  Rng rng(15);
  const Matrix x = subject->MakeInput(kRows, &rng);
  subject->Forward(x);
  const Matrix dy = Matrix::Ones(kRows + 1, subject->out_dim());
  Matrix dx;
  try {
    subject->Backward(dy, &dx);
    ADD_FAILURE() << "Backward accepted a wrong gradient shape";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("expected output gradient of shape"));
    EXPECT_THAT(e.what(), HasSubstr(std::to_string(kRows + 1) + " x "));
  }
}

INSTANTIATE_TEST_SUITE_P(AllLayers, LayerConformanceTest, ::testing::ValuesIn(AllCases()),
                         [](const ::testing::TestParamInfo<LayerCase>& info) {
                           return info.param.name;
                         });

TEST(LinearTest, ForwardComputesXWTransposePlusBias) {
  Linear linear(2, 3);
  linear.weight().value << 1, 2, 3, 4, 5, 6;  // out x in
  linear.bias().value << 0.5f, -1, 0;
  Matrix x(2, 2);
  x << 1, -1, 0, 2;
  Matrix y;
  linear.Infer(x, &y);
  Matrix expected(2, 3);
  // Row 0: [1-2+0.5, 3-4-1, 5-6+0]; row 1: [4+0.5, 8-1, 12+0].
  expected << -0.5f, -2, -1, 4.5f, 7, 12;
  EXPECT_EQ(y, expected);
}

TEST(LinearTest, InitPyTorchDefaultIsUniformWithinOneOverSqrtFanIn) {
  Linear linear(16, 64);
  Rng rng(5);
  linear.InitPyTorchDefault(&rng);
  const float bound = 1.0f / 4.0f;  // 1 / sqrt(16)
  const Matrix& w = linear.weight().value;
  const Matrix& b = linear.bias().value;
  ASSERT_EQ(w.rows(), 64);
  ASSERT_EQ(w.cols(), 16);
  ASSERT_EQ(b.size(), 64);
  EXPECT_LE(w.cwiseAbs().maxCoeff(), bound);
  EXPECT_LE(b.cwiseAbs().maxCoeff(), bound);
  // 1024 uniform draws fill the interval: extremes near +-bound, mean near 0, and the variance
  // near bound^2 / 3 (a narrower or shifted distribution fails).
  EXPECT_GT(w.maxCoeff(), 0.95f * bound);
  EXPECT_LT(w.minCoeff(), -0.95f * bound);
  EXPECT_NEAR(w.mean(), 0.0, 0.03);
  const double variance = w.cwiseProduct(w).mean() - w.mean() * w.mean();
  EXPECT_NEAR(variance, bound * bound / 3.0, 0.15 * bound * bound / 3.0);
  EXPECT_GT(b.cwiseAbs().maxCoeff(), 0.5f * bound);
  // Zero gradients to start.
  EXPECT_EQ(linear.weight().grad.cwiseAbs().maxCoeff(), 0.0f);
}

TEST(ReLUTest, ClampsNegativesToZero) {
  ReLU relu(4);
  Matrix x(1, 4);
  x << -2, -0.5f, 0.5f, 3;
  Matrix y;
  relu.Infer(x, &y);
  Matrix expected(1, 4);
  expected << 0, 0, 0.5f, 3;
  EXPECT_EQ(y, expected);
}

TEST(L2NormalizeTest, DividesEachRowByItsNorm) {
  L2Normalize norm(2);
  Matrix x(2, 2);
  x << 3, 4, 0, -2;
  Matrix y;
  norm.Infer(x, &y);
  EXPECT_NEAR(y(0, 0), 0.6f, 1e-6f);
  EXPECT_NEAR(y(0, 1), 0.8f, 1e-6f);
  EXPECT_NEAR(y(1, 0), 0.0f, 1e-6f);
  EXPECT_NEAR(y(1, 1), -1.0f, 1e-6f);
}

// Entries past 1.8e19 square to inf in float: the plain norm was inf and the row came out all
// zeros (an item with an absurd feature value embedded as 0, scoring like nothing). The row's
// direction is still (3, 4) / 5.
TEST(L2NormalizeTest, HugeRowsKeepTheirDirection) {
  L2Normalize norm(2);
  Matrix x(3, 2);
  // The last row's norm, 4e38, is past float's range (3.4e38) itself.
  x << 3e30f, 4e30f, -3e37f, 4e37f, 2.4e38f, -3.2e38f;
  Matrix y;
  norm.Infer(x, &y);
  const float expected[3][2] = {{0.6f, 0.8f}, {-0.6f, 0.8f}, {0.6f, -0.8f}};
  for (int r = 0; r < 3; ++r) {
    EXPECT_NEAR(y(r, 0), expected[r][0], 1e-6f) << "row " << r;
    EXPECT_NEAR(y(r, 1), expected[r][1], 1e-6f) << "row " << r;
  }
  Context ctx;
  Rng rng(1);
  const Matrix& f = norm.Forward(x, &ctx, &rng);
  EXPECT_TRUE(f.isApprox(y, 1e-6f));
}

TEST(L2NormalizeTest, ZeroRowStaysZeroAndFinite) {
  L2Normalize norm(3);
  const Matrix x = Matrix::Zero(1, 3);
  Context ctx;
  Rng rng(1);
  const Matrix& y = norm.Forward(x, &ctx, &rng);
  EXPECT_EQ(y, Matrix::Zero(1, 3));
  Matrix dx;
  norm.Backward(ctx, Matrix::Ones(1, 3), &dx);
  EXPECT_TRUE(dx.allFinite());
}

TEST(DropoutTest, InferIsIdentity) {
  Dropout dropout(5, 0.5f);
  Rng rng(2);
  const Matrix x = RandomNormal(3, 5, &rng);
  Matrix y;
  dropout.Infer(x, &y);
  EXPECT_EQ(y, x);
}

TEST(DropoutTest, KeepsAboutOneMinusPAndScalesKeptValues) {
  constexpr float kP = 0.3f;
  Dropout dropout(50, kP);
  // Values in [1, 2), so a dropped value (0) is never confused with a kept one.
  Matrix x(200, 50);
  Rng data(3);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = 1.0f + data.UniformFloat();
  Context ctx;
  Rng rng(4);
  const Matrix& y = dropout.Forward(x, &ctx, &rng);
  int kept = 0;
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    if (y.data()[i] == 0.0f) continue;
    ++kept;
    ASSERT_NEAR(y.data()[i], x.data()[i] / (1.0f - kP), 1e-5f) << "entry " << i;
  }
  // 10000 Bernoulli(0.7) draws: standard deviation of the fraction is 0.0046.
  EXPECT_NEAR(kept / static_cast<double>(x.size()), 1.0 - kP, 0.02);

  // The backward pass applies the same mask and scale.
  Matrix dx;
  dropout.Backward(ctx, Matrix::Ones(200, 50), &dx);
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    ASSERT_FLOAT_EQ(dx.data()[i], y.data()[i] == 0.0f ? 0.0f : 1.0f / (1.0f - kP));
  }
}

TEST(DropoutTest, SameSeedGivesSameMaskOtherSeedAnother) {
  Dropout dropout(20, 0.5f);
  const Matrix x = Matrix::Ones(4, 20);
  Context a, b, c;
  Rng rng_a(9), rng_b(9), rng_c(10);
  dropout.Forward(x, &a, &rng_a);
  dropout.Forward(x, &b, &rng_b);
  dropout.Forward(x, &c, &rng_c);
  EXPECT_EQ(a.y, b.y);
  EXPECT_NE(a.y, c.y);
}

TEST(DropoutTest, RejectsProbabilityOutsideZeroOne) {
  for (float p : {-0.1f, 1.0f, 1.5f}) {
    try {
      Dropout dropout(3, p);
      ADD_FAILURE() << "accepted p = " << p;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("probability must be in [0, 1)"));
    }
  }
}

TEST(DropoutTest, ForwardWithoutGeneratorThrows) {
  Dropout dropout(3, 0.5f);
  const Matrix x = Matrix::Ones(2, 3);
  Context ctx;
  try {
    dropout.Forward(x, &ctx, nullptr);
    ADD_FAILURE() << "Forward ran without a random generator";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("random generator"));
  }
}

TEST(LayerTest, BackwardBeforeForwardThrows) {
  Linear linear(2, 2);
  Context ctx;
  Matrix dx;
  try {
    linear.Backward(ctx, Matrix::Ones(1, 2), &dx);
    ADD_FAILURE() << "Backward ran without a Forward";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("Linear: Backward called before Forward"));
  }
}

TEST(SequentialTest, AddRejectsMismatchedWidths) {
  Sequential seq;
  seq.Add(std::make_unique<Linear>(4, 8));
  try {
    seq.Add(std::make_unique<ReLU>(6));
    ADD_FAILURE() << "accepted a 6-wide layer after an 8-wide one";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("ReLU expects 6 inputs but the previous layer gives 8"));
  }
  EXPECT_EQ(seq.size(), 1u);
}

TEST(SequentialTest, NamedParametersFollowPyTorchIndices) {
  Sequential seq;
  seq.Add(std::make_unique<Linear>(4, 8));
  seq.Add(std::make_unique<ReLU>(8));
  seq.Add(std::make_unique<Dropout>(8, 0.1f));
  seq.Add(std::make_unique<Linear>(8, 2));
  const std::vector<NamedParameter> named = seq.NamedParameters("tower.");
  ASSERT_EQ(named.size(), 4u);
  EXPECT_EQ(named[0].name, "tower.0.weight");
  EXPECT_EQ(named[1].name, "tower.0.bias");
  EXPECT_EQ(named[2].name, "tower.3.weight");
  EXPECT_EQ(named[3].name, "tower.3.bias");
  EXPECT_EQ(named[0].parameter->value.rows(), 8);
  EXPECT_EQ(named[0].parameter->value.cols(), 4);
  EXPECT_EQ(named[2].parameter->value.rows(), 2);
  EXPECT_EQ(named[2].parameter->value.cols(), 8);
  EXPECT_EQ(seq.in_dim(), 4);
  EXPECT_EQ(seq.out_dim(), 2);
}

}  // namespace
}  // namespace twotower::nn

namespace twotower::nn {
namespace {

TEST(ReLUDropoutTest, EqualsDropoutOfReLUWithTheSameGenerator) {
  Rng data(11);
  Matrix x(8, 16);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(data.Normal());
  ReLU relu(16);
  Dropout dropout(16, 0.3f);
  ReLUDropout fused(16, 0.3f);
  Context c1, c2, c3;
  Rng r1(5), r2(5);
  const Matrix& separate = dropout.Forward(relu.Forward(x, &c1, &r1), &c2, &r1);
  const Matrix& together = fused.Forward(x, &c3, &r2);
  EXPECT_TRUE(separate.isApprox(together)) << separate << "\n\n" << together;
  Matrix dy = Matrix::Ones(8, 16), d_separate, d_mid, d_together;
  dropout.Backward(c2, dy, &d_mid);
  relu.Backward(c1, d_mid, &d_separate);
  fused.Backward(c3, dy, &d_together);
  EXPECT_TRUE(d_separate.isApprox(d_together));
}

TEST(SequentialTest, FusedLayerKeepsPyTorchIndices) {
  Sequential seq;
  seq.Add(std::make_unique<Linear>(3, 4));
  seq.Add(std::make_unique<ReLUDropout>(4, 0.1f));
  seq.Add(std::make_unique<Linear>(4, 2));
  std::vector<std::string> names;
  for (const auto& p : seq.NamedParameters("t.")) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"t.0.weight", "t.0.bias", "t.3.weight", "t.3.bias"}));
}

}  // namespace
}  // namespace twotower::nn
