#include "twotower/train/ranker_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include "train/replicas.h"
#include "train/run_folder.h"
#include "twotower/core/dist.h"
#include "twotower/core/error.h"
#include "twotower/core/failpoint.h"
#include "twotower/core/files.h"
#include "twotower/core/progress.h"
#include "twotower/model/model_file.h"
#include "twotower/train/fit.h"
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
                                          const std::vector<int>& ks, bool across_ranks) {
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
      SplitPositives(data, split, positives_only), ExcludedItems(data, split), ks, nullptr,
      across_ranks);
}

struct RankerTrainer::Replicas {
  GradientExchange exchange;
  Vector logits;  // the global batch's logits (allgathered)
  std::vector<int64_t> counts;
};

RankerTrainer::RankerTrainer(model::Ranker* ranker, nn::AdamOptions adam)
    : ranker_(ranker),
      params_(ranker->TrainableParameters()),
      adam_(ranker->TrainableParameters(), adam) {
  if (dist::Distributed()) replicas_ = std::make_unique<Replicas>();
}

RankerTrainer::~RankerTrainer() = default;

const Vector& RankerTrainer::logits() const {
  return replicas_ != nullptr ? replicas_->logits : ctx_.logits;
}

double RankerTrainer::Step(const data::EncodedTable& users, const int32_t* user_rows,
                           const data::EncodedTable& items, const int32_t* item_rows,
                           const float* labels, int64_t n, Rng* rng) {
  if (replicas_ == nullptr) {
    const Vector& logits = ranker_->Forward(users, user_rows, items, item_rows, n, &ctx_, rng);
    const double loss = BinaryCrossEntropyWithLogits(logits, labels, &dlogits_);
    nn::ZeroGrad(params_);
    ranker_->Backward(&ctx_, dlogits_);
    adam_.Step();
    return loss;
  }
  // Data-parallel (train/replicas.h): every rank holds the same global batch of n pairs and runs
  // the ranker on its contiguous share; the loss is the global batch's mean, so this share's
  // gradient is (sigmoid(z) - y) / n, and the ranks' gradients are summed. Dropout masks come
  // from a generator of (the shared stream's next value, rank): different per rank, resumable.
  FailPoint("train.distributed_step");
  const dist::Range share = dist::Share(n, dist::Rank(), dist::Size());
  Rng step_rng(rng->NextU64() ^ (0x8CB92BA72F3D8DD7ull * static_cast<uint64_t>(dist::Rank() + 1)));
  double loss = 0.0;
  nn::ZeroGrad(params_);
  if (share.size() > 0) {
    const Vector& z = ranker_->Forward(users, user_rows + share.begin, items,
                                       item_rows + share.begin, share.size(), &ctx_, &step_rng);
    const double part = static_cast<double>(share.size()) / static_cast<double>(n);
    loss = BinaryCrossEntropyWithLogits(z, labels + share.begin, &dlogits_) * part;
    dlogits_ *= static_cast<float>(part);
    ranker_->Backward(&ctx_, dlogits_);
  }
  replicas_->exchange.Run(params_);
  dist::AllreduceSum(&loss, 1, dist::Traffic::kOther);
  // Every pair's logit, for the epoch's train accuracy and AUC.
  const int size = dist::Size();
  replicas_->counts.resize(size);
  for (int r = 0; r < size; ++r) replicas_->counts[r] = dist::Share(n, r, size).size();
  replicas_->logits.resize(n);
  dist::Allgatherv(share.size() > 0 ? ctx_.logits.data() : nullptr, replicas_->counts,
                   replicas_->logits.data(), dist::Traffic::kOther);
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
  // `source`: the interactions trained on (their rated pairs are not drawn).
  UnratedSampler(const Config& config, const data::Dataset& data,
                 const data::Interactions& source) {
    const std::string& s = config.training.sampler;
    if (s.empty()) return;
    // Per rank, as training.batch_size: a step of N ranks draws N x num_negatives pairs.
    count_ = config.training.num_negatives * dist::Size();
    num_items_ = data.item_features.rows();
    rated_ = data::ItemsByUser({&source}, data.user_features.rows(), false);
    for (auto& items : rated_) {
      std::sort(items.begin(), items.end());
      items.erase(std::unique(items.begin(), items.end()), items.end());
    }
    if (s == "popularity") {
      std::vector<double> counts(static_cast<size_t>(num_items_), 1.0);
      for (int64_t i = 0; i < source.size(); ++i) {
        if (source.label[i] == 1.0f) counts[source.item_row[i]] += 1.0;
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

// training.batch_size is per rank: each step's global batch has N x batch_size labelled pairs.
int64_t GlobalBatch(const Config& config) {
  return config.training.batch_size * static_cast<int64_t>(dist::Size());
}

// The ranker as the fit loop sees it: the model, its RankerTrainer, the labelled pairs of one
// split (train; train + validation for a refit), the unrated-pair sampler and the generators.
class RankerFit final : public FitModel {
 public:
  RankerFit(const Config& config, const data::Dataset& data,
            std::unique_ptr<data::Interactions> owned, const data::Interactions* source)
      : config_(config),
        data_(data),
        owned_(std::move(owned)),
        source_(owned_ != nullptr ? *owned_ : *source),
        sampler_(config, data, source_) {
    // The two-tower trainer's streams (init, shuffle, dropout), then the unrated pairs'.
    Rng rng(config.seed);
    Rng init_rng = rng.Split();
    shuffle_rng_ = rng.Split();
    dropout_rng_ = rng.Split();
    negative_rng_ = rng.Split();
    model_ = std::make_unique<model::Ranker>(config.model, data.encoder, &init_rng);
    model_->set_training_precision(TrainingPrecision(config.training));
    nn::AdamOptions adam;
    adam.learning_rate = config.training.learning_rate;
    adam.lazy = config.training.optimizer == "lazy_adam";
    trainer_ = std::make_unique<RankerTrainer>(model_.get(), adam);
    const int64_t n = source_.size();
    if (n == 0) throw Error(source_.source + ": no labelled pairs to train the ranker on");
    order_.resize(n);
    std::iota(order_.begin(), order_.end(), 0);
    const int64_t batch = GlobalBatch(config);
    users_.resize(batch + sampler_.count());
    items_.resize(batch + sampler_.count());
    step_labels_.resize(batch + sampler_.count());
    labels_.resize(n);
    logits_.resize(n);
  }

  void TrainEpoch(bool progress, EpochRecord* r) override {
    Shuffle();
    const int64_t n = source_.size();
    const int64_t batch = GlobalBatch(config_);
    const int64_t steps = (n + batch - 1) / batch;
    double loss_sum = 0.0;
    ProgressBar bar("train", steps, progress);
    for (int64_t s = 0; s < steps; ++s) {
      CheckStop();
      const int64_t begin = s * batch;
      const int64_t m = std::min(batch, n - begin);
      for (int64_t i = 0; i < m; ++i) {
        const int64_t e = order_[begin + i];
        users_[i] = source_.user_row[e];
        items_[i] = source_.item_row[e];
        step_labels_[i] = labels_[begin + i] = source_.label[e];
      }
      // The labelled pairs, then the unrated ones (when training.sampler is set). The loss and
      // the train metrics are the mean over all of them, and the labelled pairs' AUC.
      const int64_t extra =
          sampler_.Draw(m, &users_, &items_, step_labels_.data() + m, &negative_rng_);
      const double loss =
          trainer_->Step(data_.user_features, users_.data(), data_.item_features, items_.data(),
                         step_labels_.data(), m + extra, &dropout_rng_);
      std::copy(trainer_->logits().data(), trainer_->logits().data() + m, logits_.data() + begin);
      loss_sum += loss * static_cast<double>(m);
      bar.Update(s + 1, "loss " + Fixed(loss_sum / static_cast<double>(begin + m)));
    }
    bar.Finish("loss " + Fixed(loss_sum / static_cast<double>(n)));
    r->train_loss = loss_sum / static_cast<double>(n);
    r->train_accuracy = Accuracy(logits_, labels_);
    r->train_auc = Auc(logits_, labels_);
  }

  void ReplayShuffles(int epochs) override {
    for (int e = 0; e < epochs; ++e) Shuffle();
  }

  void Validate(bool /*progress*/, EpochRecord* r) override {
    const EvalMetrics val =
        EvaluateRanker(*model_, data_.user_features, data_.item_features, data_.val);
    r->val_loss = val.loss;
    r->val_accuracy = val.accuracy;
    r->val_auc = val.auc;
    const std::string monitor = config_.Monitor();
    if (monitor != "val_auc" && monitor != "val_loss") {
      // Every item for every validation user through the ranker: the cost of a ranking monitor,
      // paid only when it decides.
      r->val_ranking = EvaluateRankerRankingSplit(
          *model_, data_, Split::kVal, config_.training.positives == "liked", config_.evaluation.k,
          /*across_ranks=*/true);
    }
  }

  std::string EpochSummary(const EpochRecord& r) const override {
    // append, not "a" + b: GCC 12 warns falsely on the latter (-Wrestrict, bug 105329).
    std::string out;
    out.append(" acc ").append(Fixed(r.train_accuracy)).append("  |  val loss ");
    out.append(Fixed(r.val_loss)).append(" acc ").append(Fixed(r.val_accuracy));
    out.append(" auc ").append(Fixed(r.val_auc));
    if (!r.val_ranking.ks.empty()) out.append(" ").append(RankingSummary(r.val_ranking));
    return out;
  }

  std::string LossName() const override { return "BCE"; }
  std::vector<Matrix> Snapshot() const override { return model_->Snapshot(); }
  void Restore(const std::vector<Matrix>& w) override { model_->Restore(w); }
  std::vector<nn::Parameter*> TrainableParameters() override {
    return model_->TrainableParameters();
  }
  nn::Adam& Optimizer() override { return trainer_->optimizer(); }
  std::vector<std::pair<std::string, Rng*>> Generators() override {
    return {{"dropout_rng", &dropout_rng_}, {"negative_rng", &negative_rng_}};
  }
  void Save(const std::string& path) const override {
    model::SaveRanker(path, *model_, data_.encoder, config_.features, config_.ToJson());
  }
  std::unique_ptr<FitModel> ForRefit() const override {
    return std::make_unique<RankerFit>(
        config_, data_,
        std::make_unique<data::Interactions>(data::Concatenate(data_.train, data_.val)), nullptr);
  }

  std::unique_ptr<model::Ranker> TakeModel() { return std::move(model_); }

 private:
  // The epoch's order: Fisher-Yates over the previous epoch's.
  void Shuffle() {
    for (int64_t i = static_cast<int64_t>(order_.size()) - 1; i > 0; --i) {
      std::swap(order_[i], order_[shuffle_rng_.Below(i + 1)]);
    }
  }

  const Config& config_;
  const data::Dataset& data_;
  std::unique_ptr<data::Interactions> owned_;
  const data::Interactions& source_;
  const UnratedSampler sampler_;
  Rng shuffle_rng_{0}, dropout_rng_{0}, negative_rng_{0};
  std::unique_ptr<model::Ranker> model_;
  std::unique_ptr<RankerTrainer> trainer_;
  std::vector<int64_t> order_;
  std::vector<int32_t> users_, items_;
  std::vector<float> labels_, logits_, step_labels_;
};

}  // namespace

RankerTrainResult TrainRanker(const Config& config, const data::Dataset& data,
                              const TrainOptions& options) {
  config.Validate("TrainRanker");
  if (config.model.kind != "ranker") throw Error("TrainRanker: model.kind is not ranker");
  const auto start = std::chrono::steady_clock::now();
  RankerFit fit(config, data, nullptr, &data.train);
  FitResult fitted = Fit(config, options, &fit);
  RankerTrainResult result;
  result.history = std::move(fitted.history);
  result.best_epoch = fitted.best_epoch;
  result.model = fit.TakeModel();
  if (fitted.refit != nullptr) {
    result.selected_model = std::move(result.model);
    result.model = static_cast<RankerFit&>(*fitted.refit).TakeModel();
    result.refit = true;
  }
  const model::Ranker& net = *result.model;
  result.train_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.test = EvaluateRanker(net, data.user_features, data.item_features, data.test);
  const std::vector<int>& ks = config.evaluation.k;
  const bool positives_only = config.training.positives == "liked";
  if (!ks.empty()) {
    result.test_ranking = EvaluateRankerRankingSplit(net, data, Split::kTest, positives_only, ks,
                                                     /*across_ranks=*/true);
    result.test_most_popular = EvaluateMostPopularSplit(data, Split::kTest, positives_only, ks);
  }
  if (!options.run_dir.empty() && dist::IsRoot()) {
    TestReport report;
    report.model_kind = "ranker";
    report.test = result.test;
    report.training_loss = "bce";
    report.refit = result.refit;
    report.ranking = result.test_ranking;
    report.ranking_scored = "every item for every user, by the ranker";
    report.most_popular = result.test_most_popular;
    report.best_epoch = result.best_epoch;
    report.train_seconds = result.train_seconds;
    WriteFileAtomically(options.run_dir + "/test_metrics.json", TestMetricsJson(report));
  }
  return result;
}

}  // namespace twotower::train
