// nn/gemm.h: bf16 products against references computed here in double from operands rounded to
// bfloat16 by this file's own rounding (the float's value split at the 8th significand bit with
// frexp / ldexp, ties to even), hand-computed ties, and the layers' bf16 training paths against
// the same reference. A CPU without AVX512_BF16 / AMX-BF16 skips, naming why (GTEST_SKIP).
#include "twotower/nn/gemm.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>

#include "twotower/core/error.h"
#include "twotower/core/rng.h"
#include "twotower/nn/cross.h"
#include "twotower/nn/layer.h"

namespace twotower::nn {
namespace {

using ::testing::HasSubstr;
using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

#define SKIP_WITHOUT_BF16()                                             \
  do {                                                                  \
    const std::string why = Bf16Unavailable();                          \
    if (!why.empty()) GTEST_SKIP() << "no bf16 products here: " << why; \
  } while (0)

// x rounded to 8 significant bits, ties to even: x = f 2^e with f in [0.5, 1), so the kept
// significand is f 2^8 rounded to an integer (std::nearbyint rounds ties to even).
double RoundBf16(float x) {
  if (x == 0.0f || !std::isfinite(x)) return x;
  int e = 0;
  const double f = std::frexp(static_cast<double>(x), &e);
  return std::ldexp(std::nearbyint(std::ldexp(f, 8)), e - 8);
}

MatrixD Rounded(const Matrix& m) {
  MatrixD out(m.rows(), m.cols());
  for (Eigen::Index i = 0; i < m.size(); ++i) out.data()[i] = RoundBf16(m.data()[i]);
  return out;
}

Matrix Random(int rows, int cols, uint64_t seed) {
  Rng rng(seed);
  Matrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = 2.0f * rng.UniformFloat() - 1.0f;
  return m;
}

// The fp32 accumulation's error bound for k products of operands in [-1, 1]: each partial sum
// is rounded once, |error| <= k * 2^-24 * sum |a b| <= k^2 2^-24; a looser bound keeps the
// test about the rounding of the operands, which moves results by ~1e-2.
double Tolerance(int k) { return 4.0 * k * k * std::ldexp(1.0, -24) + 1e-6; }

TEST(Bf16Rounding, TiesGoToEvenAndCarryIntoTheExponent) {
  SKIP_WITHOUT_BF16();
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: to 1 (even). 1 + 3 2^-8 is halfway between
  // 1 + 2^-7 and 1 + 2^-6: to 1 + 2^-6 (even). 2 - 2^-9 rounds up across the binade to 2.
  Matrix a(1, 3);
  a << 1.0f + std::ldexp(1.0f, -8), 1.0f + 3.0f * std::ldexp(1.0f, -8), 2.0f - std::ldexp(1.0f, -9);
  Matrix one = Matrix::Ones(1, 1);
  Matrix c(3, 1);
  MatMulBf16(a, true, one, false, false, c);
  EXPECT_EQ(c(0, 0), 1.0f);
  EXPECT_EQ(c(1, 0), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_EQ(c(2, 0), 2.0f);
}

TEST(Bf16Rounding, NanStaysNanAndInfinityStaysInfinity) {
  SKIP_WITHOUT_BF16();
  Matrix a(2, 1);
  a << std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity();
  Matrix one = Matrix::Ones(1, 1);
  Matrix c(2, 1);
  MatMulBf16(a, false, one, false, false, c);
  EXPECT_TRUE(std::isnan(c(0, 0)));
  EXPECT_EQ(c(1, 0), std::numeric_limits<float>::infinity());
}

struct Case {
  bool trans_a, trans_b, accumulate;
};

class MatMulBf16Test : public ::testing::TestWithParam<Case> {};

TEST_P(MatMulBf16Test, EqualsTheProductOfRoundedOperands) {
  SKIP_WITHOUT_BF16();
  const Case p = GetParam();
  const int m = 37, k = 70, n = 29;  // odd sizes: no kernel's tile divides them
  const Matrix a = p.trans_a ? Random(k, m, 1) : Random(m, k, 1);
  const Matrix b = p.trans_b ? Random(n, k, 2) : Random(k, n, 2);
  Matrix c = Random(m, n, 3);
  const Matrix c0 = c;
  MatMulBf16(a, p.trans_a, b, p.trans_b, p.accumulate, c);
  MatrixD ra = Rounded(a), rb = Rounded(b);
  if (p.trans_a) ra.transposeInPlace();
  if (p.trans_b) rb.transposeInPlace();
  MatrixD expected = ra * rb;
  if (p.accumulate) expected += c0.cast<double>();
  EXPECT_LE((c.cast<double>() - expected).cwiseAbs().maxCoeff(), Tolerance(k));
  // And it differs from the fp32 product by the operands' rounding, not by nothing: the test
  // would notice a silent fp32 fallback.
  MatrixD fa = a.cast<double>(), fb = b.cast<double>();
  if (p.trans_a) fa.transposeInPlace();
  if (p.trans_b) fb.transposeInPlace();
  MatrixD exact = fa * fb;
  if (p.accumulate) exact += c0.cast<double>();
  EXPECT_GT((c.cast<double>() - exact).cwiseAbs().maxCoeff(), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(AllLayouts, MatMulBf16Test,
                         ::testing::Values(Case{false, false, false}, Case{false, true, false},
                                           Case{true, false, false}, Case{false, false, true},
                                           Case{true, false, true}, Case{false, true, true}));

TEST(MatMulBf16, WritesIntoRowsOfALargerMatrixAndReadsColumnsOfOne) {
  SKIP_WITHOUT_BF16();
  const Matrix g = Random(20, 50, 4);  // take columns 10..29 of it, transposed: 20 x 20
  const Matrix u = Random(20, 16, 5);
  Matrix out = Matrix::Constant(40, 16, 7.0f);
  MatMulBf16(g.middleCols(10, 20), true, u, false, false, out.middleRows(5, 20));
  const MatrixD expected = Rounded(Matrix(g.middleCols(10, 20))).transpose() * Rounded(u);
  EXPECT_LE((out.middleRows(5, 20).cast<double>() - expected).cwiseAbs().maxCoeff(), Tolerance(20));
  // Rows outside the block are untouched.
  EXPECT_EQ(out.topRows(5).maxCoeff(), 7.0f);
  EXPECT_EQ(out.bottomRows(15).minCoeff(), 7.0f);
}

// ---- fp32 products (MatMul: oneDNN's sgemm, or Eigen without oneDNN) ---------------------------

// The fp32 accumulation of k products of operands in [-1, 1] is within k^2 2^-24 of the exact
// sum (each partial sum rounded once); the double reference is exact to far below that.
double Fp32Tolerance(int k) { return 2.0 * k * k * std::ldexp(1.0, -24); }

class MatMulFp32Test : public ::testing::TestWithParam<Case> {};

TEST_P(MatMulFp32Test, EqualsTheProductInDouble) {
  const Case p = GetParam();
  for (const auto& [m, k, n] : {std::tuple{37, 70, 29}, {1, 64, 128}, {256, 12, 1}, {3, 1, 5}}) {
    SCOPED_TRACE(std::to_string(m) + " x " + std::to_string(k) + " x " + std::to_string(n));
    const Matrix a = p.trans_a ? Random(k, m, 1) : Random(m, k, 1);
    const Matrix b = p.trans_b ? Random(n, k, 2) : Random(k, n, 2);
    Matrix c = Random(m, n, 3);
    const Matrix c0 = c;
    MatMul(a, p.trans_a, b, p.trans_b, p.accumulate, c);
    MatrixD fa = a.cast<double>(), fb = b.cast<double>();
    if (p.trans_a) fa.transposeInPlace();
    if (p.trans_b) fb.transposeInPlace();
    MatrixD expected = fa * fb;
    if (p.accumulate) expected += c0.cast<double>();
    EXPECT_LE((c.cast<double>() - expected).cwiseAbs().maxCoeff(), Fp32Tolerance(k));
  }
}

INSTANTIATE_TEST_SUITE_P(AllLayouts, MatMulFp32Test,
                         ::testing::Values(Case{false, false, false}, Case{false, true, false},
                                           Case{true, false, false}, Case{true, true, false},
                                           Case{false, false, true}, Case{true, false, true},
                                           Case{false, true, true}));

TEST(MatMulFp32, BlocksOfLargerMatricesAndAPlainProductNeverReadsTheOutput) {
  const Matrix g = Random(20, 50, 4);  // columns 10..29, transposed: 20 x 20
  const Matrix u = Random(20, 16, 5);
  Matrix out = Matrix::Constant(40, 16, std::numeric_limits<float>::quiet_NaN());
  out.topRows(5).setConstant(7.0f);
  out.bottomRows(15).setConstant(7.0f);
  MatMul(g.middleCols(10, 20), true, u, false, false, out.middleRows(5, 20));
  const MatrixD expected = g.middleCols(10, 20).cast<double>().transpose() * u.cast<double>();
  // A NaN left in the output block (beta = 0 must not read it) would make this NaN.
  EXPECT_LE((out.middleRows(5, 20).cast<double>() - expected).cwiseAbs().maxCoeff(),
            Fp32Tolerance(20));
  EXPECT_EQ(out.topRows(5).maxCoeff(), 7.0f);
  EXPECT_EQ(out.bottomRows(15).minCoeff(), 7.0f);
  // One row of a wider matrix: its outer stride is the wide matrix's.
  Matrix one = Matrix::Zero(3, 16);
  MatMul(g.block(2, 10, 1, 20), false, u, false, false, one.middleRows(1, 1));
  const MatrixD row = g.block(2, 10, 1, 20).cast<double>() * u.cast<double>();
  EXPECT_LE((one.row(1).cast<double>() - row).cwiseAbs().maxCoeff(), Fp32Tolerance(20));
  EXPECT_EQ(one.row(0).cwiseAbs().maxCoeff(), 0.0f);
}

TEST(MatMulFp32, RefusesMismatchedShapesAndNamesTheEngine) {
  Matrix a(3, 4), b(5, 6), c(3, 6);
  EXPECT_THAT([&] { MatMul(a, false, b, false, false, c); },
              ::testing::ThrowsMessage<Error>(HasSubstr("op(a) is 3 x 4, op(b) 5 x 6")));
  Matrix e(3, 0), f(0, 2), g = Matrix::Ones(3, 2);
  MatMul(e, false, f, false, true, g);
  EXPECT_EQ(g.minCoeff(), 1.0f);
  MatMul(e, false, f, false, false, g);
  EXPECT_EQ(g.maxCoeff(), 0.0f);
  // A build with oneDNN (Bf16Unavailable names its absence otherwise) multiplies with its sgemm.
  if (Bf16Unavailable().find("no oneDNN") == std::string::npos) {
    EXPECT_THAT(Fp32Engine(), ::testing::StartsWith("oneDNN sgemm ("));
  } else {
    EXPECT_EQ(Fp32Engine(), "Eigen");
  }
}

// A ranker's last Linear(h -> 1): a one-column output forward, a one-row weight gradient.
TEST(MatMulBf16, OneRowAndOneColumnProducts) {
  SKIP_WITHOUT_BF16();
  const Matrix x = Random(50, 33, 11), w = Random(1, 33, 12), dy = Random(50, 1, 13);
  Matrix y(50, 1);
  MatMulBf16(x, false, w, true, false, y);
  EXPECT_LE((y.cast<double>() - Rounded(x) * Rounded(w).transpose()).cwiseAbs().maxCoeff(),
            Tolerance(33));
  Matrix dw = Matrix::Ones(1, 33);
  MatMulBf16(dy, true, x, false, true, dw);
  const MatrixD expected = Rounded(dy).transpose() * Rounded(x) + MatrixD::Ones(1, 33);
  EXPECT_LE((dw.cast<double>() - expected).cwiseAbs().maxCoeff(), Tolerance(50));
}

TEST(MatMulBf16, RefusesMismatchedShapes) {
  SKIP_WITHOUT_BF16();
  Matrix a(3, 4), b(5, 6), c(3, 6);
  EXPECT_THAT([&] { MatMulBf16(a, false, b, false, false, c); },
              ::testing::ThrowsMessage<Error>(HasSubstr("op(a) is 3 x 4, op(b) 5 x 6")));
}

TEST(MatMulBf16, AnEmptyDepthGivesZerosOrLeavesTheSum) {
  SKIP_WITHOUT_BF16();
  Matrix a(3, 0), b(0, 2), c = Matrix::Ones(3, 2);
  MatMulBf16(a, false, b, false, true, c);
  EXPECT_EQ(c.minCoeff(), 1.0f);
  MatMulBf16(a, false, b, false, false, c);
  EXPECT_EQ(c.maxCoeff(), 0.0f);
}

// Linear in bf16: forward x W^T + b and backward dW += dy^T x, dx = dy W, each from rounded
// operands; the bias gradient (a sum) and Infer stay fp32.
TEST(LinearBf16, ForwardAndBackwardUseRoundedOperands) {
  SKIP_WITHOUT_BF16();
  Rng rng(9);
  Linear layer(24, 10);
  layer.InitPyTorchDefault(&rng);
  layer.set_precision(Precision::kBf16);
  const Matrix x = Random(300, 24, 6);  // > kProductRows: several row blocks
  const Matrix dy = Random(300, 10, 7);
  Context ctx;
  const Matrix& y = layer.Forward(x, &ctx, nullptr);
  const MatrixD w = Rounded(layer.weight().value);
  MatrixD expected_y = Rounded(x) * w.transpose();
  expected_y.rowwise() += layer.bias().value.row(0).cast<double>();
  EXPECT_LE((y.cast<double>() - expected_y).cwiseAbs().maxCoeff(), Tolerance(24));
  Matrix dx;
  layer.Backward(ctx, dy, &dx);
  const MatrixD expected_dw = Rounded(dy).transpose() * Rounded(x);
  EXPECT_LE((layer.weight().grad.cast<double>() - expected_dw).cwiseAbs().maxCoeff(),
            Tolerance(300));
  const MatrixD expected_dx = Rounded(dy) * w;
  EXPECT_LE((dx.cast<double>() - expected_dx).cwiseAbs().maxCoeff(), Tolerance(10));
  const Eigen::RowVectorXd db = dy.cast<double>().colwise().sum();
  EXPECT_LE((layer.bias().grad.row(0).cast<double>() - db).cwiseAbs().maxCoeff(), 1e-4);
  // Infer is fp32: the exact product within fp32 rounding.
  Matrix inferred;
  layer.Infer(x, &inferred);
  MatrixD exact = x.cast<double>() * layer.weight().value.cast<double>().transpose();
  exact.rowwise() += layer.bias().value.row(0).cast<double>();
  EXPECT_LE((inferred.cast<double>() - exact).cwiseAbs().maxCoeff(), 1e-5);
}

// A cross layer in bf16 against the same network in fp32: the results differ by the operands'
// rounding (relative 2^-8 per operand), far more than fp32's rounding.
TEST(CrossNetworkBf16, StaysWithinTheOperandsRoundingOfFp32) {
  SKIP_WITHOUT_BF16();
  Rng rng(3);
  CrossNetwork fp32(16, 2), bf16(16, 2);
  fp32.InitPyTorchDefault(&rng);
  Rng same(3);
  bf16.InitPyTorchDefault(&same);
  bf16.set_precision(Precision::kBf16);
  const Matrix x = Random(64, 16, 8);
  CrossContext c32, c16;
  const Matrix y32 = fp32.Forward(x, &c32);
  const Matrix y16 = bf16.Forward(x, &c16);
  const double diff = (y32 - y16).cwiseAbs().maxCoeff();
  EXPECT_GT(diff, 1e-5);
  EXPECT_LT(diff, 0.05);
  const Matrix dy = Random(64, 16, 9);
  Matrix dx32, dx16;
  fp32.Backward(&c32, dy, &dx32);
  bf16.Backward(&c16, dy, &dx16);
  EXPECT_LT((dx32 - dx16).cwiseAbs().maxCoeff(), 0.05 * dx32.cwiseAbs().maxCoeff());
  EXPECT_GT((dx32 - dx16).cwiseAbs().maxCoeff(), 1e-6);
}

}  // namespace
}  // namespace twotower::nn
