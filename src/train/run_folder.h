// The run folder's files (fit.h's file comment lists them), written by the one fit loop (fit.cc)
// and by each model kind's test step (trainer.cc, ranker_trainer.cc). Internal to the train
// module.
#ifndef TWOTOWER_SRC_TRAIN_RUN_FOLDER_H_
#define TWOTOWER_SRC_TRAIN_RUN_FOLDER_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "twotower/train/fit.h"
#include "twotower/train/metrics.h"

namespace twotower::train {

// "%.{digits}f", or "nan".
std::string Fixed(double v, int digits = 4);
// metrics.csv: one row per epoch (train / val loss, accuracy, AUC, the val ranking metrics of
// every K, the tasks' metrics, best).
std::string MetricsCsv(const std::vector<EpochRecord>& history);
// training_curves.svg: loss and AUC per epoch (and Recall@K when ranked).
std::string CurvesSvg(const std::vector<EpochRecord>& history, const std::string& loss_name);
// {"users": ..., "recall@10": ..., ...}, values rounded to 1e-6, NaN as null.
nlohmann::json RankingJson(const RankingMetrics& m);
// "recall@10 0.1234 ndcg@10 0.1111" for the first K ("" when not ranked): the epoch line's.
std::string RankingSummary(const RankingMetrics& m);
// What a model kind reports on the test split: test_metrics.json's content.
struct TestReport {
  std::string model_kind;  // "" for the two-tower model (files before rankers had no key)
  EvalMetrics test;
  std::string training_loss;  // the loss's name
  bool refit = false;
  RankingMetrics ranking, most_popular;  // empty ks: not ranked
  std::string ranking_scored;            // how the ranking was scored, when not by embeddings
  std::vector<TaskMetric> tasks;
  int best_epoch = 0;
  double train_seconds = 0;
};
// test_metrics.json: values rounded to 1e-6 (seconds to 1e-3), NaN as null.
std::string TestMetricsJson(const TestReport& r);

}  // namespace twotower::train

#endif  // TWOTOWER_SRC_TRAIN_RUN_FOLDER_H_
