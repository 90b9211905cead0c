// Finite-difference gradient checking for tests (header-only).
//
// NumericalGradient perturbs every entry of a float matrix by +-h and differentiates a scalar
// function with the central difference (f(x + h) - f(x - h)) / (2h), evaluated in double. The
// step actually taken is the float-rounded one, so rounding x + h to float costs no accuracy.
// ExpectGradientNear compares an analytic gradient with a numerical one entry by entry:
// |analytic - numeric| <= atol + rtol * |numeric|, and reports the worst entry.
#ifndef TWOTOWER_TESTS_TESTING_GRADIENT_CHECK_H_
#define TWOTOWER_TESTS_TESTING_GRADIENT_CHECK_H_

#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cmath>
#include <functional>
#include <sstream>
#include <string>

#include "twotower/core/matrix.h"
#include "twotower/core/rng.h"

namespace twotower::testing {

using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// d f / d (*m), size m->rows() x m->cols(). f reads *m; *m is restored afterwards.
inline MatrixD NumericalGradient(Matrix* m, const std::function<double()>& f, double h) {
  MatrixD grad(m->rows(), m->cols());
  for (Eigen::Index i = 0; i < m->size(); ++i) {
    float& value = m->data()[i];
    const float original = value;
    const float plus = static_cast<float>(original + h);
    const float minus = static_cast<float>(original - h);
    value = plus;
    const double f_plus = f();
    value = minus;
    const double f_minus = f();
    value = original;
    grad.data()[i] = (f_plus - f_minus) / (static_cast<double>(plus) - static_cast<double>(minus));
  }
  return grad;
}

// Passes when every entry satisfies |analytic - numeric| <= atol + rtol * |numeric|, and the
// numerical gradient is not all zero (a check against zeros would prove nothing).
inline ::testing::AssertionResult GradientNear(const Matrix& analytic, const MatrixD& numeric,
                                               double rtol, double atol) {
  if (analytic.rows() != numeric.rows() || analytic.cols() != numeric.cols()) {
    return ::testing::AssertionFailure()
           << "shape " << analytic.rows() << " x " << analytic.cols() << ", expected "
           << numeric.rows() << " x " << numeric.cols();
  }
  if (numeric.cwiseAbs().maxCoeff() == 0.0) {
    return ::testing::AssertionFailure() << "numerical gradient is all zero";
  }
  double worst_excess = -1.0;
  Eigen::Index worst = 0;
  for (Eigen::Index i = 0; i < numeric.size(); ++i) {
    const double a = analytic.data()[i];
    const double n = numeric.data()[i];
    const double excess = std::abs(a - n) - (atol + rtol * std::abs(n));
    if (!std::isfinite(a) || excess > worst_excess) {
      worst_excess = std::isfinite(a) ? excess : HUGE_VAL;
      worst = i;
    }
  }
  if (worst_excess <= 0.0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "entry " << worst << " (row " << worst / numeric.cols() << ", col "
         << worst % numeric.cols() << "): analytic " << analytic.data()[worst] << ", numeric "
         << numeric.data()[worst] << " (rtol " << rtol << ", atol " << atol << ")";
}

// sum(y .* r) in double: a scalar loss whose gradient w.r.t. y is exactly r.
inline double WeightedSum(const Matrix& y, const Matrix& r) {
  return (y.cast<double>().array() * r.cast<double>().array()).sum();
}

// rows x cols standard normal values.
inline Matrix RandomNormal(int rows, int cols, Rng* rng) {
  Matrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(rng->Normal());
  return m;
}

}  // namespace twotower::testing

#endif  // TWOTOWER_TESTS_TESTING_GRADIENT_CHECK_H_
