// The run folder's per-epoch files, shared by the two-tower trainer (trainer.cc) and the ranker's
// (ranker_trainer.cc). Internal to the train module.
#ifndef TWOTOWER_SRC_TRAIN_RUN_FILES_INTERNAL_H_
#define TWOTOWER_SRC_TRAIN_RUN_FILES_INTERNAL_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "twotower/train/metrics.h"
#include "twotower/train/trainer.h"

namespace twotower::train {

// "%.{digits}f", or "nan".
std::string Fixed(double v, int digits = 4);
// metrics.csv: one row per epoch (train / val loss, accuracy, AUC, the val ranking metrics of
// every K, best).
std::string MetricsCsv(const std::vector<EpochRecord>& history);
// training_curves.svg: loss and AUC per epoch (and Recall@K when ranked).
std::string CurvesSvg(const std::vector<EpochRecord>& history, const std::string& loss_name);
// {"users": ..., "recall@10": ..., ...}, values rounded to 1e-6, NaN as null.
nlohmann::json RankingJson(const RankingMetrics& m);

}  // namespace twotower::train

#endif  // TWOTOWER_SRC_TRAIN_RUN_FILES_INTERNAL_H_
