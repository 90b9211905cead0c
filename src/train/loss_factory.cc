#include "twotower/train/loss_factory.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "twotower/core/dist.h"
#include "twotower/core/error.h"

namespace twotower::train {

std::unique_ptr<Loss> MakeLoss(const Config& config, const data::Interactions& train,
                               int64_t num_users, int64_t num_items, bool counts_across_ranks) {
  const TrainingConfig& t = config.training;
  if (t.loss == "bce") return std::make_unique<BceLoss>();
  const bool liked = t.positives == "liked";
  // Each item's count of training positives (exact integers in double), over every rank's part.
  std::vector<double> counts(static_cast<size_t>(num_items), 0.0);
  for (int64_t i = 0; i < train.size(); ++i) {
    if (!liked || train.label[i] == 1.0f) counts[train.item_row[i]] += 1.0;
  }
  if (counts_across_ranks) {
    dist::AllreduceSum(counts.data(), static_cast<int64_t>(counts.size()), dist::Traffic::kOther);
  }
  const bool plain_softmax =
      t.loss == "softmax" && t.num_hard_negatives == 0 && !t.exclude_history_negatives;
  if (plain_softmax) {
    SoftmaxOptions o;
    o.temperature = t.temperature;
    o.precision = TrainingPrecision(t);
    o.remove_accidental_hits = t.remove_accidental_hits;
    if (t.logq_correction) {
      // log q_j = log(max(count_j, 1) / number of positives): LogSamplingProbabilities' values.
      double total = 0.0;
      for (double c : counts) total += c;
      total = std::max(1.0, total);
      o.log_q.resize(counts.size());
      for (size_t j = 0; j < counts.size(); ++j) {
        o.log_q[j] = static_cast<float>(std::log(std::max(counts[j], 1.0) / total));
      }
    }
    return std::make_unique<InBatchSoftmaxLoss>(o);
  }
  SampledLossOptions o;
  if (t.loss == "softmax" || t.loss == "mixed") {
    o.objective = Objective::kSoftmax;
    o.sampler = t.loss == "mixed" ? Sampler::kMixed : Sampler::kInBatch;
    o.num_sampled = t.loss == "mixed" ? t.num_uniform_negatives : 0;
  } else if (t.loss == "bpr" || t.loss == "triplet") {
    o.objective = t.loss == "bpr" ? Objective::kBpr : Objective::kTriplet;
    o.sampler = t.sampler == "in_batch"     ? Sampler::kInBatch
                : t.sampler == "popularity" ? Sampler::kPopularity
                                            : Sampler::kUniform;
    o.num_sampled = o.sampler == Sampler::kInBatch ? 0 : t.num_negatives;
  } else {
    throw Error("training.loss: unknown loss " + Quote(t.loss) +
                " (expected: bce, softmax, mixed, bpr, triplet)");
  }
  o.precision = TrainingPrecision(t);
  o.num_hard_negatives = t.num_hard_negatives;
  o.num_easy_negatives = t.num_easy_negatives;
  o.temperature = t.temperature;
  o.margin = t.margin;
  o.logq_correction = t.logq_correction;
  o.remove_accidental_hits = t.remove_accidental_hits;
  o.num_items = num_items;
  // q_j: the item's share of the training positives (an item never seen gets one count, so
  // every item can be drawn and every correction is finite).
  double total = 0.0;
  for (double& c : counts) total += (c = std::max(c, 1.0));
  o.item_probability.resize(counts.size());
  for (size_t j = 0; j < counts.size(); ++j) o.item_probability[j] = counts[j] / total;
  if (t.exclude_history_negatives) {
    o.history = data::ItemsByUser({&train}, num_users, liked);
    for (auto& items : o.history) {  // sorted and unique: SampledLoss binary-searches them
      std::sort(items.begin(), items.end());
      items.erase(std::unique(items.begin(), items.end()), items.end());
    }
  }
  return std::make_unique<SampledLoss>(std::move(o));
}

}  // namespace twotower::train
