#include "twotower/train/ranker_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include "train/run_files_internal.h"
#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/progress.h"
#include "twotower/model/model_file.h"
#include "twotower/train/loss.h"

namespace twotower::train {

EvalMetrics EvaluateRanker(const model::Ranker& ranker, const data::EncodedTable& users,
                           const data::EncodedTable& items, const data::Interactions& data) {
  Vector logits;
  ranker.Score(users, data.user_row.data(), items, data.item_row.data(), data.size(), &logits);
  EvalMetrics m;
  m.count = data.size();
  m.loss = BinaryCrossEntropyWithLogits(logits, data.label.data(), nullptr);
  const std::vector<float> scores(logits.data(), logits.data() + logits.size());
  m.accuracy = Accuracy(scores, data.label);
  m.auc = Auc(scores, data.label);
  m.oracle_auc = data.has_p_true() ? Auc(data.p_true, data.label) : std::nan("");
  return m;
}

RankingMetrics EvaluateRankerRankingSplit(const model::Ranker& ranker, const data::Dataset& data,
                                          Split split, bool positives_only,
                                          const std::vector<int>& ks) {
  const int64_t num_items = data.item_features.rows();
  std::vector<int32_t> item_rows(num_items), user_rows(num_items);
  std::iota(item_rows.begin(), item_rows.end(), 0);
  Vector logits;
  return EvaluateRankingByScores(
      data.user_features.rows(), num_items,
      [&](int32_t u, float* scores) {
        std::fill(user_rows.begin(), user_rows.end(), u);
        ranker.Score(data.user_features, user_rows.data(), data.item_features, item_rows.data(),
                     num_items, &logits);
        std::copy(logits.data(), logits.data() + num_items, scores);
      },
      SplitPositives(data, split, positives_only), ExcludedItems(data, split), ks);
}

RankerTrainer::RankerTrainer(model::Ranker* ranker, nn::AdamOptions adam)
    : ranker_(ranker),
      params_(ranker->TrainableParameters()),
      adam_(ranker->TrainableParameters(), adam) {}

double RankerTrainer::Step(const data::EncodedTable& users, const int32_t* user_rows,
                           const data::EncodedTable& items, const int32_t* item_rows,
                           const float* labels, int64_t n, Rng* rng) {
  const Vector& logits = ranker_->Forward(users, user_rows, items, item_rows, n, &ctx_, rng);
  const double loss = BinaryCrossEntropyWithLogits(logits, labels, &dlogits_);
  nn::ZeroGrad(params_);
  ranker_->Backward(&ctx_, dlogits_);
  adam_.Step();
  return loss;
}

namespace {

// Unrated pairs for a ranker (training.sampler uniform | popularity): each step adds
// num_negatives (user, item) pairs labelled 0, the users taken in turn from the batch's rows and
// the items drawn uniformly or with probability proportional to their training positives + 1 (so
// every item can be drawn, as MakeLoss's q). An item the user has in the training split (rated,
// liked or not) is drawn again, up to kRedraws times, then skipped. Without such pairs a ranker
// trained on rated pairs learns "liked among rated", not "liked among all items", and ranks
// unseen obscure items first (BENCHMARKS.md, "The lab's table").
class UnratedSampler {
 public:
  UnratedSampler(const Config& config, const data::Dataset& data) {
    const std::string& s = config.training.sampler;
    if (s.empty()) return;
    count_ = config.training.num_negatives;
    num_items_ = data.item_features.rows();
    rated_ = data::ItemsByUser({&data.train}, data.user_features.rows(), false);
    for (auto& items : rated_) {
      std::sort(items.begin(), items.end());
      items.erase(std::unique(items.begin(), items.end()), items.end());
    }
    if (s == "popularity") {
      std::vector<double> counts(static_cast<size_t>(num_items_), 1.0);
      for (int64_t i = 0; i < data.train.size(); ++i) {
        if (data.train.label[i] == 1.0f) counts[data.train.item_row[i]] += 1.0;
      }
      cumulative_.resize(counts.size());
      std::partial_sum(counts.begin(), counts.end(), cumulative_.begin());
    }
  }
  int count() const { return count_; }
  // Writes up to count() pairs for the batch's users[0..n) into users / items from position n
  // on and labels[0..) (0); returns how many.
  int64_t Draw(int64_t n, std::vector<int32_t>* users, std::vector<int32_t>* items, float* labels,
               Rng* rng) const {
    constexpr int kRedraws = 16;
    int64_t added = 0;
    for (int j = 0; j < count_; ++j) {
      const int32_t user = (*users)[j % n];
      const std::vector<int32_t>& rated = rated_[user];
      for (int attempt = 0; attempt < kRedraws; ++attempt) {
        const int32_t item = DrawItem(rng);
        if (std::binary_search(rated.begin(), rated.end(), item)) continue;
        (*users)[n + added] = user;
        (*items)[n + added] = item;
        labels[added] = 0.0f;
        ++added;
        break;
      }
    }
    return added;
  }

 private:
  int32_t DrawItem(Rng* rng) const {
    if (cumulative_.empty()) return static_cast<int32_t>(rng->Below(num_items_));
    const double u = rng->Uniform() * cumulative_.back();
    const auto it = std::upper_bound(cumulative_.begin(), cumulative_.end(), u);
    return static_cast<int32_t>(
        std::min<ptrdiff_t>(it - cumulative_.begin(), static_cast<ptrdiff_t>(num_items_) - 1));
  }

  int count_ = 0;
  int64_t num_items_ = 0;
  std::vector<std::vector<int32_t>> rated_;
  std::vector<double> cumulative_;
};

}  // namespace

RankerTrainResult TrainRanker(const Config& config, const data::Dataset& data,
                              const TrainOptions& options) {
  config.Validate("TrainRanker");
  if (config.model.kind != "ranker") throw Error("TrainRanker: model.kind is not ranker");
  if (options.resume) {
    throw Error("train --resume: a ranker run writes no checkpoint; train it again instead");
  }
  const auto start = std::chrono::steady_clock::now();
  // The same streams as the two-tower trainer: init, shuffle, dropout.
  Rng rng(config.seed);
  Rng init_rng = rng.Split();
  Rng shuffle_rng = rng.Split();
  Rng dropout_rng = rng.Split();
  Rng negative_rng = rng.Split();
  const UnratedSampler sampler(config, data);
  RankerTrainResult result;
  result.model = std::make_unique<model::Ranker>(config.model, data.encoder, &init_rng);
  model::Ranker& net = *result.model;
  nn::AdamOptions adam;
  adam.learning_rate = config.training.learning_rate;
  adam.lazy = config.training.optimizer == "lazy_adam";
  RankerTrainer trainer(&net, adam);
  const std::string monitor = config.Monitor();
  const bool lower_is_better = monitor == "val_loss";
  const int64_t n = data.train.size();
  if (n == 0) throw Error(data.train.source + ": no labelled pairs to train the ranker on");
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  const int64_t batch = config.training.batch_size;
  std::vector<int32_t> users(batch + sampler.count()), items(batch + sampler.count());
  std::vector<float> labels(n), logits(n), step_labels(batch + sampler.count());
  std::vector<Matrix> best_weights = net.Snapshot();
  double best_value = lower_is_better ? std::numeric_limits<double>::infinity() : -1.0;
  double best_loss = std::numeric_limits<double>::infinity();
  int since_best = 0;
  const nlohmann::json config_json = config.ToJson();
  const std::string& dir = options.run_dir;
  if (!dir.empty()) WriteFileAtomically(dir + "/config.yaml", config.ToYaml());

  for (int epoch = 1; epoch <= config.training.epochs; ++epoch) {
    const auto epoch_start = std::chrono::steady_clock::now();
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[shuffle_rng.Below(i + 1)]);
    const int64_t steps = (n + batch - 1) / batch;
    double loss_sum = 0.0;
    {
      ProgressBar bar("train", steps, options.progress);
      for (int64_t s = 0; s < steps; ++s) {
        const int64_t begin = s * batch;
        const int64_t m = std::min(batch, n - begin);
        for (int64_t i = 0; i < m; ++i) {
          const int64_t e = order[begin + i];
          users[i] = data.train.user_row[e];
          items[i] = data.train.item_row[e];
          step_labels[i] = labels[begin + i] = data.train.label[e];
        }
        // The labelled pairs, then the unrated ones (when training.sampler is set). The loss and
        // the train metrics are the mean over all of them, and the labelled pairs' AUC.
        const int64_t extra =
            sampler.Draw(m, &users, &items, step_labels.data() + m, &negative_rng);
        const double loss = trainer.Step(data.user_features, users.data(), data.item_features,
                                         items.data(), step_labels.data(), m + extra, &dropout_rng);
        std::copy(trainer.logits().data(), trainer.logits().data() + m, logits.data() + begin);
        loss_sum += loss * static_cast<double>(m);
        bar.Update(s + 1, "loss " + Fixed(loss_sum / static_cast<double>(begin + m)));
      }
      bar.Finish("loss " + Fixed(loss_sum / static_cast<double>(n)));
    }
    EpochRecord r;
    r.epoch = epoch;
    r.train_loss = loss_sum / static_cast<double>(n);
    r.train_accuracy = Accuracy(logits, labels);
    r.train_auc = Auc(logits, labels);
    const EvalMetrics val = EvaluateRanker(net, data.user_features, data.item_features, data.val);
    r.val_loss = val.loss;
    r.val_accuracy = val.accuracy;
    r.val_auc = val.auc;
    if (monitor != "val_auc" && monitor != "val_loss") {
      // Every item for every validation user through the ranker: the cost of a ranking monitor.
      r.val_ranking = EvaluateRankerRankingSplit(
          net, data, Split::kVal, config.training.positives == "liked", config.evaluation.k);
      r.monitored = r.val_ranking.Get(monitor.substr(4));
    } else {
      r.monitored = lower_is_better ? r.val_loss : r.val_auc;
    }
    // As the two-tower trainer: a one-class validation split has no AUC, and val loss decides.
    if (std::isnan(r.monitored)) {
      r.best = r.val_loss < best_loss || (std::isnan(r.val_loss) && result.best_epoch == 0);
    } else {
      r.best = lower_is_better ? r.monitored < best_value : r.monitored > best_value;
    }
    r.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    if (r.best) {
      if (!std::isnan(r.monitored)) best_value = r.monitored;
      best_loss = r.val_loss;
      result.best_epoch = epoch;
      since_best = 0;
      best_weights = net.Snapshot();
      if (!dir.empty()) {
        model::SaveRanker(dir + "/model_best.safetensors", net, data.encoder, config.features,
                          config_json);
      }
    } else {
      ++since_best;
    }
    result.history.push_back(r);
    if (options.log != nullptr) {
      *options.log << "epoch " << epoch << "/" << config.training.epochs << "  train loss "
                   << Fixed(r.train_loss) << " acc " << Fixed(r.train_accuracy) << "  |  val loss "
                   << Fixed(r.val_loss) << " acc " << Fixed(r.val_accuracy) << " auc "
                   << Fixed(r.val_auc)
                   << (r.val_ranking.ks.empty()
                           ? std::string()
                           : " recall@" + std::to_string(r.val_ranking.ks[0]) + " " +
                                 Fixed(r.val_ranking.recall[0]) + " ndcg@" +
                                 std::to_string(r.val_ranking.ks[0]) + " " +
                                 Fixed(r.val_ranking.ndcg[0]))
                   << "  (" << Fixed(r.seconds, 2) << "s)" << (r.best ? "  * best, saved" : "")
                   << std::endl;
    }
    if (!dir.empty()) {
      WriteFileAtomically(dir + "/metrics.csv", MetricsCsv(result.history));
      WriteFileAtomically(dir + "/training_curves.svg", CurvesSvg(result.history, "BCE"));
    }
    if (config.training.early_stopping_patience > 0 &&
        since_best >= config.training.early_stopping_patience) {
      if (options.log != nullptr) {
        const std::string shown = monitor == "val_auc" ? "val AUC" : monitor;
        *options.log << "early stopping: no better " << shown << " for "
                     << config.training.early_stopping_patience << " epochs (best epoch "
                     << result.best_epoch << ", " << shown << " " << Fixed(best_value) << ")"
                     << std::endl;
      }
      break;
    }
  }
  if (!dir.empty()) {
    model::SaveRanker(dir + "/model_last.safetensors", net, data.encoder, config.features,
                      config_json);
  }
  if (result.best_epoch > 0) net.Restore(best_weights);
  result.train_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.test = EvaluateRanker(net, data.user_features, data.item_features, data.test);
  const std::vector<int>& ks = config.evaluation.k;
  const bool positives_only = config.training.positives == "liked";
  if (!ks.empty()) {
    result.test_ranking = EvaluateRankerRankingSplit(net, data, Split::kTest, positives_only, ks);
    result.test_most_popular = EvaluateMostPopularSplit(data, Split::kTest, positives_only, ks);
  }
  if (!dir.empty()) {
    auto num = [](double v) -> nlohmann::json {
      if (std::isnan(v)) return nullptr;
      return std::round(v * 1e6) / 1e6;
    };
    nlohmann::ordered_json j;
    j["split"] = "test";
    j["model_kind"] = "ranker";
    j["count"] = result.test.count;
    j["loss"] = num(result.test.loss);
    j["accuracy"] = num(result.test.accuracy);
    j["auc"] = num(result.test.auc);
    j["oracle_auc"] = num(result.test.oracle_auc);
    j["training_loss"] = "bce";
    if (!ks.empty()) {
      j["ranking"] = RankingJson(result.test_ranking);
      j["ranking"]["scored"] = "every item for every user, by the ranker";
      j["most_popular"] = RankingJson(result.test_most_popular);
    }
    j["best_epoch"] = result.best_epoch;
    j["train_seconds"] = std::round(result.train_seconds * 1e3) / 1e3;
    WriteFileAtomically(dir + "/test_metrics.json", j.dump(2) + "\n");
  }
  return result;
}

}  // namespace twotower::train
