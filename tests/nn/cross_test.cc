// DCN-v2 cross network: a hand-computed forward, finite-difference gradients of the input and of
// every W_l and b_l, Infer == Forward, gradient accumulation, the identity with no layers, and
// shape errors.
#include "twotower/nn/cross.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "testing/gradient_check.h"
#include "twotower/core/error.h"

namespace twotower::nn {
namespace {

using ::testing::HasSubstr;
using twotower::testing::GradientNear;
using twotower::testing::NumericalGradient;
using twotower::testing::RandomNormal;
using twotower::testing::WeightedSum;

TEST(CrossNetworkTest, OneLayerByHand) {
  // d = 2: x0 = [1, 2], W = [[1, 0], [1, 1]], b = [0.5, -1]:
  //   z = W x0 + b = [1 + 0.5, 1 + 2 - 1] = [1.5, 2];  x1 = x0 * z + x0 = [1.5 + 1, 4 + 2].
  CrossNetwork cross(2, 1);
  auto params = cross.NamedParameters("cross.");
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].name, "cross.0.weight");
  EXPECT_EQ(params[1].name, "cross.0.bias");
  params[0].parameter->value << 1, 0, 1, 1;
  params[1].parameter->value << 0.5f, -1;
  Matrix x(1, 2);
  x << 1, 2;
  Matrix y;
  cross.Infer(x, &y);
  EXPECT_FLOAT_EQ(y(0, 0), 2.5f);
  EXPECT_FLOAT_EQ(y(0, 1), 6.0f);
}

TEST(CrossNetworkTest, NoLayersIsTheIdentity) {
  CrossNetwork cross(3, 0);
  Rng rng(1);
  const Matrix x = RandomNormal(4, 3, &rng);
  Matrix y;
  cross.Infer(x, &y);
  EXPECT_EQ(y, x);
  CrossContext ctx;
  EXPECT_EQ(cross.Forward(x, &ctx), x);
  Matrix dx;
  const Matrix dy = RandomNormal(4, 3, &rng);
  cross.Backward(&ctx, dy, &dx);
  EXPECT_EQ(dx, dy);
}

TEST(CrossNetworkTest, GradientsMatchFiniteDifferences) {
  for (int layers : {1, 3}) {
    CrossNetwork cross(5, layers);
    Rng rng(7 + layers);
    cross.InitPyTorchDefault(&rng);
    Matrix x = RandomNormal(6, 5, &rng);
    const Matrix r = RandomNormal(6, 5, &rng);  // loss = sum(y .* r)
    auto loss = [&] {
      Matrix y;
      cross.Infer(x, &y);
      return WeightedSum(y, r);
    };
    ZeroGrad(cross.Parameters());
    CrossContext ctx;
    const Matrix& y = cross.Forward(x, &ctx);
    Matrix y_infer;
    cross.Infer(x, &y_infer);
    EXPECT_TRUE(y.isApprox(y_infer, 1e-6f));
    Matrix dx;
    cross.Backward(&ctx, r, &dx);
    EXPECT_TRUE(GradientNear(dx, NumericalGradient(&x, loss, 1e-2), 1e-2, 1e-3))
        << "input, " << layers << " layers";
    for (const NamedParameter& p : cross.NamedParameters("")) {
      const Matrix analytic = p.parameter->grad;
      EXPECT_TRUE(
          GradientNear(analytic, NumericalGradient(&p.parameter->value, loss, 1e-2), 1e-2, 1e-3))
          << p.name << ", " << layers << " layers";
    }
  }
}

TEST(CrossNetworkTest, BackwardAddsIntoTheGradients) {
  CrossNetwork cross(3, 2);
  Rng rng(2);
  cross.InitPyTorchDefault(&rng);
  const Matrix x = RandomNormal(4, 3, &rng);
  const Matrix dy = RandomNormal(4, 3, &rng);
  ZeroGrad(cross.Parameters());
  CrossContext ctx;
  Matrix dx;
  cross.Forward(x, &ctx);
  cross.Backward(&ctx, dy, &dx);
  const Matrix once = cross.Parameters()[0]->grad;
  cross.Forward(x, &ctx);
  cross.Backward(&ctx, dy, &dx);
  EXPECT_TRUE(cross.Parameters()[0]->grad.isApprox(2 * once, 1e-5f));
}

TEST(CrossNetworkTest, ShapeErrors) {
  CrossNetwork cross(3, 1);
  Matrix x(2, 4), y;
  EXPECT_THAT([&] { cross.Infer(x, &y); },
              ::testing::ThrowsMessage<Error>(HasSubstr("expected input with 3 columns, got 4")));
  CrossContext ctx;
  Matrix dx;
  EXPECT_THAT([&] { cross.Backward(&ctx, Matrix(2, 3), &dx); },
              ::testing::ThrowsMessage<Error>(HasSubstr("before Forward")));
  Matrix x3 = Matrix::Zero(2, 3);
  cross.Forward(x3, &ctx);
  EXPECT_THAT(
      [&] { cross.Backward(&ctx, Matrix(3, 3), &dx); },
      ::testing::ThrowsMessage<Error>(HasSubstr("expected output gradient of shape 2 x 3")));
  EXPECT_THROW(CrossNetwork(0, 1), Error);
}

}  // namespace
}  // namespace twotower::nn
