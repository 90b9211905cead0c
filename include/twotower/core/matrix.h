// Dense float32 matrices used everywhere: row-major, `rows = batch`, `cols = features`.
// Thread-safety: as Eigen matrices (concurrent reads are safe).
#ifndef TWOTOWER_CORE_MATRIX_H_
#define TWOTOWER_CORE_MATRIX_H_

#include <Eigen/Core>
#include <cmath>

namespace twotower {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowVector = Eigen::Matrix<float, 1, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXf;

// The logistic function 1 / (1 + e^-z), in double: a logit's probability. The one copy the
// task heads, the shown scores of a pointwise model and a ranker's probabilities use.
inline double Sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

}  // namespace twotower

#endif  // TWOTOWER_CORE_MATRIX_H_
