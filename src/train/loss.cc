#include "twotower/train/loss.h"

#include <cmath>

namespace twotower::train {

double BinaryCrossEntropyWithLogits(const Vector& z, const float* y, Vector* dz) {
  const Eigen::Index n = z.size();
  if (n == 0) return 0.0;
  if (dz != nullptr) dz->resize(n);
  double total = 0.0;
  const float inv_n = 1.0f / static_cast<float>(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const float zi = z[i];
    const float e = std::exp(-std::abs(zi));
    total += std::max(zi, 0.0f) - zi * y[i] + std::log1p(e);
    if (dz != nullptr) {
      // sigmoid(z) from e = exp(-|z|), stable for both signs.
      const float sig = zi >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
      (*dz)[i] = (sig - y[i]) * inv_n;
    }
  }
  return total / static_cast<double>(n);
}

}  // namespace twotower::train
