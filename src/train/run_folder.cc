#include "train/run_folder.h"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/train/plot.h"

namespace twotower::train {

std::string Fixed(double v, int digits) {
  if (std::isnan(v)) return "nan";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string MetricsCsv(const std::vector<EpochRecord>& history) {
  std::string csv = "epoch,train_loss,train_accuracy,train_auc,val_loss,val_accuracy,val_auc";
  const std::vector<int> ks = history.empty() ? std::vector<int>{} : history[0].val_ranking.ks;
  for (const char* metric : {"recall", "ndcg", "hitrate", "mrr", "coverage"}) {
    for (int k : ks)
      csv += ",val_" + std::string(metric) + std::string("@").append(std::to_string(k));
  }
  if (!history.empty()) {
    for (const std::string& name : history[0].task_names) csv.append(",").append(name);
  }
  csv += ",best\n";
  for (const EpochRecord& r : history) {
    csv += std::to_string(r.epoch) + "," + Fixed(r.train_loss, 6) + "," +
           Fixed(r.train_accuracy, 6) + "," + Fixed(r.train_auc, 6) + "," + Fixed(r.val_loss, 6) +
           "," + Fixed(r.val_accuracy, 6) + "," + Fixed(r.val_auc, 6);
    for (const char* metric : {"recall", "ndcg", "hitrate", "mrr", "coverage"}) {
      for (int k : ks) {
        // append, not "," + string: GCC 12 warns falsely on the latter (-Wrestrict, bug 105329).
        const double v =
            r.val_ranking.Get(std::string(metric).append("@").append(std::to_string(k)));
        csv.append(",").append(Fixed(v, 6));
      }
    }
    for (double v : r.val_tasks) csv.append(",").append(Fixed(v, 6));
    csv += std::string(",") + (r.best ? "1" : "0") + "\n";
  }
  return csv;
}

std::string CurvesSvg(const std::vector<EpochRecord>& history, const std::string& loss_name) {
  Series train_loss{"train", "#1f77b4", {}}, val_loss{"validation", "#d62728", {}};
  Series train_auc{"train", "#1f77b4", {}}, val_auc{"validation", "#d62728", {}};
  Series val_recall{"validation", "#d62728", {}};
  const std::vector<int> ks = history.empty() ? std::vector<int>{} : history[0].val_ranking.ks;
  for (const EpochRecord& r : history) {
    train_loss.values.push_back(r.train_loss);
    val_loss.values.push_back(r.val_loss);
    train_auc.values.push_back(r.train_auc);
    val_auc.values.push_back(r.val_auc);
    if (!ks.empty()) val_recall.values.push_back(r.val_ranking.recall[0]);
  }
  std::vector<Panel> panels = {{loss_name + " loss", {train_loss, val_loss}},
                               {"AUC", {train_auc, val_auc}}};
  if (!ks.empty()) panels.push_back({"Recall@" + std::to_string(ks[0]), {val_recall}});
  return RenderSvg(panels);
}

nlohmann::json RankingJson(const RankingMetrics& m) {
  auto num = [](double v) -> nlohmann::json {
    if (std::isnan(v)) return nullptr;
    return std::round(v * 1e6) / 1e6;
  };
  nlohmann::json j = {{"users", m.users}};
  for (size_t i = 0; i < m.ks.size(); ++i) {
    const std::string k = std::string("@").append(std::to_string(m.ks[i]));
    j["recall" + k] = num(m.recall[i]);
    j["ndcg" + k] = num(m.ndcg[i]);
    j["hitrate" + k] = num(m.hit_rate[i]);
    j["mrr" + k] = num(m.mrr[i]);
    j["coverage" + k] = num(m.coverage[i]);
  }
  return j;
}

std::string RankingSummary(const RankingMetrics& m) {
  if (m.ks.empty()) return "";
  const std::string k = std::string("@").append(std::to_string(m.ks[0]));
  return "recall" + k + " " + Fixed(m.recall[0]) + " ndcg" + k + " " + Fixed(m.ndcg[0]);
}

std::string TestMetricsJson(const TestReport& r) {
  auto num = [](double v) -> nlohmann::json {
    if (std::isnan(v)) return nullptr;
    return std::round(v * 1e6) / 1e6;
  };
  const EvalMetrics& m = r.test;
  nlohmann::ordered_json j;
  j["split"] = "test";
  if (!r.model_kind.empty()) j["model_kind"] = r.model_kind;
  j["count"] = m.count;
  j["loss"] = num(m.loss);
  j["accuracy"] = num(m.accuracy);
  j["auc"] = num(m.auc);
  j["oracle_auc"] = num(m.oracle_auc);
  j["training_loss"] = r.training_loss;
  j["refit_on_train_and_val"] = r.refit;
  if (!r.ranking.ks.empty()) {
    j["ranking"] = RankingJson(r.ranking);
    if (!r.ranking_scored.empty()) j["ranking"]["scored"] = r.ranking_scored;
    j["most_popular"] = RankingJson(r.most_popular);
  }
  if (!r.tasks.empty()) {
    nlohmann::ordered_json tasks;
    for (const TaskMetric& t : r.tasks) tasks[t.name] = {{t.metric, num(t.value)}};
    j["tasks"] = tasks;
  }
  j["best_epoch"] = r.best_epoch;
  j["train_seconds"] = std::round(r.train_seconds * 1e3) / 1e3;
  return j.dump(2) + "\n";
}

std::string CreateRunDirectory(const Config& config) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y%m%d_%H%M%S", &tm);
  const std::string base =
      (std::filesystem::path(config.output_dir) / (config.run_name + "_" + stamp)).string();
  MakeDirectories(config.output_dir);
  std::string dir = base;
  for (int i = 2;; ++i) {
    std::error_code ec;
    if (std::filesystem::create_directory(dir, ec)) return dir;
    if (ec) throw Error(dir + ": cannot create run folder: " + ec.message());
    dir = base + "_" + std::to_string(i);
  }
}

}  // namespace twotower::train
