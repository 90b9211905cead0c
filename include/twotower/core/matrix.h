// Dense float32 matrices used everywhere: row-major, `rows = batch`, `cols = features`.
// Thread-safety: as Eigen matrices (concurrent reads are safe).
#ifndef TWOTOWER_CORE_MATRIX_H_
#define TWOTOWER_CORE_MATRIX_H_

#include <Eigen/Core>

namespace twotower {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowVector = Eigen::Matrix<float, 1, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXf;

}  // namespace twotower

#endif  // TWOTOWER_CORE_MATRIX_H_
