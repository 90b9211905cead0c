// The loss factory: builds the Loss (loss.h) that config.training names. Beside the losses
// (loss.cc, sampled_loss.cc) so that a new objective is added in one place.
#ifndef TWOTOWER_TRAIN_LOSS_FACTORY_H_
#define TWOTOWER_TRAIN_LOSS_FACTORY_H_

#include <cstdint>
#include <memory>

#include "twotower/data/dataset.h"
#include "twotower/train/config.h"
#include "twotower/train/loss.h"

namespace twotower::train {

// The loss of config.training (training.loss: bce | softmax | mixed | bpr | triplet, with its
// negatives, temperature, margin, logQ correction and accidental-hit settings). q (the logQ
// correction, the popularity sampler) comes from the positives of `train` over num_items rows
// (training.positives decides what counts); with training.exclude_history_negatives, each of the
// num_users users' positives in `train` are never its negatives. Rows of `train` must be below
// num_users / num_items. With counts_across_ranks (under mpirun, `train` one rank's part of the
// training split: data.shards) the item counts q comes from are summed over the ranks first, so
// every rank gets the one-process q. Throws Error("training.loss: unknown loss ...") for an
// unknown name.
std::unique_ptr<Loss> MakeLoss(const Config& config, const data::Interactions& train,
                               int64_t num_users, int64_t num_items,
                               bool counts_across_ranks = false);

}  // namespace twotower::train

#endif  // TWOTOWER_TRAIN_LOSS_FACTORY_H_
