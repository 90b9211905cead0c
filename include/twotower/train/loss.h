// Losses on logits. Thread-safe pure functions.
#ifndef TWOTOWER_TRAIN_LOSS_H_
#define TWOTOWER_TRAIN_LOSS_H_

#include "twotower/core/matrix.h"

namespace twotower::train {

// Mean binary cross-entropy from logits z and labels y in {0, 1}, computed stably as
// max(z, 0) - z y + log(1 + exp(-|z|)) (no overflow for any z). If dz is not null it receives
// d(mean loss)/dz = (sigmoid(z) - y) / n. Returns the mean loss (double accumulation).
double BinaryCrossEntropyWithLogits(const Vector& z, const float* y, Vector* dz);

}  // namespace twotower::train

#endif  // TWOTOWER_TRAIN_LOSS_H_
