// NumPy .npy files (format version 1.0, little-endian float32, C order): what numpy.load and
// FAISS users read as-is.
// Thread-safe: free functions with no shared state.
#ifndef TWOTOWER_DATA_NPY_H_
#define TWOTOWER_DATA_NPY_H_

#include <string>

#include "twotower/core/matrix.h"

namespace twotower::data {

// Writes `m` as a 2-D float32 array, atomically.
void WriteNpy(const std::string& path, const Matrix& m);
// Reads a 2-D float32 C-order .npy. Throws Error naming the file for anything else.
Matrix ReadNpy(const std::string& path);

}  // namespace twotower::data

#endif  // TWOTOWER_DATA_NPY_H_
