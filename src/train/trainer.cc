#include "twotower/train/trainer.h"

#include <omp.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <limits>
#include <numeric>
#include <ostream>

#include "train/run_files_internal.h"
#include "twotower/core/error.h"
#include "twotower/core/failpoint.h"
#include "twotower/core/files.h"
#include "twotower/core/hash.h"
#include "twotower/core/json.h"
#include "twotower/core/progress.h"
#include "twotower/core/threads.h"
#include "twotower/data/history.h"
#include "twotower/model/model_file.h"
#include "twotower/model/safetensors.h"
#include "twotower/nn/adam.h"
#include "twotower/train/loss.h"
#include "twotower/train/metrics.h"
#include "twotower/train/plot.h"
#include "twotower/train/tasks.h"

namespace twotower::train {
namespace {

nn::AdamOptions OptimizerOptions(const TrainingConfig& t) {
  nn::AdamOptions o;
  o.learning_rate = t.learning_rate;
  o.lazy = t.optimizer == "lazy_adam";
  return o;
}

// Mixed into config.seed for the negatives' generator, so it differs from the model's streams.
constexpr uint64_t kSamplingSeed = 0x6e65676174697665ull;  // "negative"

}  // namespace

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

namespace {

std::string MetricsJson(const TrainResult& r, const std::string& loss) {
  auto num = [](double v) -> nlohmann::json {
    if (std::isnan(v)) return nullptr;
    return std::round(v * 1e6) / 1e6;
  };
  const EvalMetrics& m = r.test;
  nlohmann::ordered_json j;
  j["split"] = "test";
  j["count"] = m.count;
  j["loss"] = num(m.loss);
  j["accuracy"] = num(m.accuracy);
  j["auc"] = num(m.auc);
  j["oracle_auc"] = num(m.oracle_auc);
  j["training_loss"] = loss;
  j["refit_on_train_and_val"] = r.refit;
  if (!r.test_ranking.ks.empty()) {
    j["ranking"] = RankingJson(r.test_ranking);
    j["most_popular"] = RankingJson(r.test_most_popular);
  }
  if (!r.test_tasks.empty()) {
    nlohmann::ordered_json tasks;
    for (const TaskMetric& t : r.test_tasks) tasks[t.name] = {{t.metric, num(t.value)}};
    j["tasks"] = tasks;
  }
  j["best_epoch"] = r.best_epoch;
  j["train_seconds"] = std::round(r.train_seconds * 1e3) / 1e3;
  return j.dump(2) + "\n";
}

// "recall@10 0.1234 ndcg@10 0.1111" for the first K.
std::string RankingSummary(const RankingMetrics& m) {
  if (m.ks.empty()) return "";
  const std::string k = std::string("@").append(std::to_string(m.ks[0]));
  return "recall" + k + " " + Fixed(m.recall[0]) + " ndcg" + k + " " + Fixed(m.ndcg[0]);
}

}  // namespace

EvalMetrics Evaluate(const model::TwoTowerModel& model, const data::EncodedTable& user_features,
                     const data::EncodedTable& item_features, const data::Interactions& data,
                     ProgressBar* progress) {
  int64_t done = 0;
  Matrix u, v;
  model.EncodeUsers(user_features, &u);
  if (progress != nullptr) progress->Update(++done);
  model.EncodeItems(item_features, &v);
  if (progress != nullptr) progress->Update(++done);
  return Evaluate(model, u, v, data, progress, done);
}

EvalMetrics Evaluate(const model::TwoTowerModel& model, const Matrix& u, const Matrix& v,
                     const data::Interactions& data, ProgressBar* progress, int64_t steps_done) {
  constexpr int64_t kChunk = 65536;
  const int64_t n = data.size();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  int64_t done = steps_done;
  Vector logits(n);
  const float scale = model.scale(), bias = model.bias();
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i) {
      logits[i] = scale * u.row(data.user_row[i]).dot(v.row(data.item_row[i])) + bias;
    }
    if (progress != nullptr) progress->Update(++done);
  }
  EvalMetrics m;
  m.count = n;
  m.loss = BinaryCrossEntropyWithLogits(logits, data.label.data(), nullptr);
  const std::vector<float> scores(logits.data(), logits.data() + n);
  m.accuracy = Accuracy(scores, data.label);
  m.auc = Auc(scores, data.label);
  m.oracle_auc = data.has_p_true() ? Auc(data.p_true, data.label) : std::nan("");
  return m;
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

std::vector<std::vector<int32_t>> ExcludedItems(const data::Dataset& data, Split split) {
  std::vector<const data::Interactions*> history = {&data.train};
  if (split == Split::kTest) history.push_back(&data.val);
  return data::ItemsByUser(history, data.users.num_rows(), false);
}

std::vector<std::vector<int32_t>> SplitPositives(const data::Dataset& data, Split split,
                                                 bool positives_only) {
  const data::Interactions& s = split == Split::kVal ? data.val : data.test;
  return data::ItemsByUser({&s}, data.users.num_rows(), positives_only);
}

RankingMetrics EvaluateRankingSplit(const model::TwoTowerModel& model, const data::Dataset& data,
                                    Split split, bool positives_only, const std::vector<int>& ks) {
  Matrix u, v;
  model.EncodeUsers(data.user_features, &u);
  model.EncodeItems(data.item_features, &v);
  return EvaluateRankingSplit(u, v, data, split, positives_only, ks);
}

RankingMetrics EvaluateRankingSplit(const Matrix& u, const Matrix& v, const data::Dataset& data,
                                    Split split, bool positives_only, const std::vector<int>& ks) {
  return EvaluateRanking(u, v, SplitPositives(data, split, positives_only),
                         ExcludedItems(data, split), ks);
}

RankingMetrics EvaluateMostPopularSplit(const data::Dataset& data, Split split, bool positives_only,
                                        const std::vector<int>& ks) {
  std::vector<double> counts(data.items.num_rows(), 0.0);
  for (const data::Interactions* s : {&data.train, &data.val}) {
    if (s == &data.val && split == Split::kVal) continue;
    for (int64_t i = 0; i < s->size(); ++i) {
      if (positives_only && s->label[i] != 1.0f) continue;
      counts[s->item_row[i]] += 1.0;
    }
  }
  return EvaluateMostPopular(counts, SplitPositives(data, split, positives_only),
                             ExcludedItems(data, split), ks);
}

Trainer::Trainer(model::TwoTowerModel* model, std::unique_ptr<Loss> loss, nn::AdamOptions adam,
                 double embedding_l2, uint64_t sampling_seed)
    : model_(model),
      loss_(std::move(loss)),
      params_(model->TrainableParameters()),
      adam_(params_, adam),
      embedding_l2_(embedding_l2),
      sampling_seed_(sampling_seed) {}

void Trainer::SetTasks(TaskTargets targets) { tasks_ = std::move(targets); }

double Trainer::Step(const data::EncodedTable& users, const int32_t* user_rows,
                     const data::EncodedTable& items, const int32_t* item_rows, const float* labels,
                     int64_t n, Rng* rng, const std::vector<const float*>* task_targets,
                     model::HistoryRows history) {
  // This step's negatives: a generator of its own per step (seed and step count).
  const uint64_t step_seed =
      sampling_seed_ ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(adam_.steps() + 1));
  loss_->DrawNegatives(user_rows, item_rows, n, step_seed, &negatives_);
  const int32_t* all_items = item_rows;
  if (!negatives_.empty()) {
    item_rows_.assign(item_rows, item_rows + n);
    item_rows_.insert(item_rows_.end(), negatives_.begin(), negatives_.end());
    all_items = item_rows_.data();
  }
  const int64_t n_items = n + static_cast<int64_t>(negatives_.size());
  model_->ForwardTowers(users, user_rows, n, history, items, all_items, n_items, &ctx_, rng);
  LossBatch batch;
  batch.u = &model::TwoTowerModel::user_output(ctx_);
  batch.v = &model::TwoTowerModel::item_output(ctx_);
  batch.item_rows = all_items;
  batch.user_rows = user_rows;
  batch.labels = labels;
  batch.scale = model_->scale();
  batch.bias = model_->bias();
  batch.seed = step_seed;
  loss_->Compute(batch, &out_);
  if (embedding_l2_ > 0.0) {
    // lambda (|U|^2 + |V|^2) / n: gradient 2 lambda U / n (and V).
    const double scale = embedding_l2_ / static_cast<double>(n);
    // On the batch's own items only, not on drawn negatives.
    out_.loss += scale * (static_cast<double>(batch.u->squaredNorm()) +
                          static_cast<double>(batch.v->topRows(n).squaredNorm()));
    const float g = static_cast<float>(2.0 * scale);
    out_.du += g * *batch.u;
    out_.dv.topRows(n) += g * batch.v->topRows(n);
  }
  nn::ZeroGrad(params_);
  model_->AddScorerGradient(out_.d_log_scale, out_.d_bias);
  if (!model_->config().tasks.empty()) {
    if (tasks_.target_index.size() != model_->config().tasks.size()) {
      throw Error("Trainer::Step: the model has tasks; call SetTasks with their targets first");
    }
    // The task heads read the same tower outputs; their gradients join the main loss's.
    TaskBatch& tb = task_batch_;
    tb.u = batch.u;
    tb.v = batch.v;
    tb.item_rows = item_rows;
    tb.n = n;
    tb.targets.clear();
    if (task_targets != nullptr) tb.targets.assign(task_targets->begin(), task_targets->end());
    out_.loss += TaskLosses(*model_, tasks_, tb, &out_.du, &out_.dv, &task_losses_, &task_scratch_);
  }
  model_->BackwardTowers(&ctx_, out_.du, out_.dv);
  adam_.Step();
  return out_.loss;
}

std::unique_ptr<Loss> MakeLoss(const Config& config, const data::Interactions& train,
                               int64_t num_users, int64_t num_items) {
  const TrainingConfig& t = config.training;
  if (t.loss == "bce") return std::make_unique<BceLoss>();
  const bool liked = t.positives == "liked";
  std::vector<int32_t> positives;
  for (int64_t i = 0; i < train.size(); ++i) {
    if (!liked || train.label[i] == 1.0f) positives.push_back(train.item_row[i]);
  }
  const bool plain_softmax =
      t.loss == "softmax" && t.num_hard_negatives == 0 && !t.exclude_history_negatives;
  if (plain_softmax) {
    SoftmaxOptions o;
    o.temperature = t.temperature;
    o.remove_accidental_hits = t.remove_accidental_hits;
    if (t.logq_correction) o.log_q = LogSamplingProbabilities(positives, num_items);
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
  o.num_hard_negatives = t.num_hard_negatives;
  o.num_easy_negatives = t.num_easy_negatives;
  o.temperature = t.temperature;
  o.margin = t.margin;
  o.logq_correction = t.logq_correction;
  o.remove_accidental_hits = t.remove_accidental_hits;
  o.num_items = num_items;
  // q_j: the item's share of the training positives (an item never seen gets one count, so
  // every item can be drawn and every correction is finite).
  std::vector<double> counts(static_cast<size_t>(num_items), 0.0);
  for (int32_t r : positives) counts[r] += 1.0;
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

namespace {

struct EpochBuffers {
  std::vector<int32_t> users, items, examples;  // examples: 0 .. batch - 1
  data::Bags history;                           // the batch's user histories
  std::vector<float> logits, labels;
  std::vector<std::vector<float>> targets;  // per task: the batch's regression targets
  std::vector<const float*> target_ptrs;
};

// The training examples of `source`: every labelled pair for a pointwise loss, else the positives.
std::vector<int64_t> Examples(const data::Interactions& source, bool pointwise, bool positives_only,
                              const std::string& positives) {
  std::vector<int64_t> order;
  for (int64_t i = 0; i < source.size(); ++i) {
    if (pointwise || !positives_only || source.label[i] == 1.0f) order.push_back(i);
  }
  if (order.empty()) {
    throw Error(source.source + ": no training positives (training.positives: " + positives +
                " and no interaction has label 1)");
  }
  return order;
}

// One pass of Trainer::Step over `order` (rows of `source`), shuffled first; returns the mean loss.
// For pointwise losses buf->logits / labels receive every example's logit and label.
// The example order of an epoch: Fisher-Yates from `rng` over the previous epoch's order.
void Shuffle(std::vector<int64_t>* order, Rng* rng) {
  const int64_t n = static_cast<int64_t>(order->size());
  for (int64_t i = n - 1; i > 0; --i) std::swap((*order)[i], (*order)[rng->Below(i + 1)]);
}

// history: the examples' user histories (null without a history feature).
double RunEpoch(Trainer* trainer, const data::Dataset& data, const data::Interactions& source,
                const data::ExampleHistories* history, std::vector<int64_t>* order, int64_t batch,
                Rng* shuffle_rng, Rng* dropout_rng, bool progress, EpochBuffers* buf,
                const TaskTargets& tasks) {
  const int64_t n = static_cast<int64_t>(order->size());
  buf->targets.resize(tasks.target_index.size());
  buf->target_ptrs.assign(tasks.target_index.size(), nullptr);
  for (size_t t = 0; t < tasks.target_index.size(); ++t) {
    if (tasks.target_index[t] < 0) continue;
    buf->targets[t].resize(batch);
    buf->target_ptrs[t] = buf->targets[t].data();
  }
  const int64_t steps = (n + batch - 1) / batch;
  const bool pointwise = trainer->loss().pointwise();
  buf->users.resize(batch);
  buf->items.resize(batch);
  buf->examples.resize(batch);
  buf->labels.resize(n);
  buf->logits.resize(pointwise ? n : 0);
  Shuffle(order, shuffle_rng);
  double loss_sum = 0.0;
  ProgressBar bar("train", steps, progress);
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t begin = s * batch;
    const int64_t m = std::min(batch, n - begin);
    const int64_t* idx = order->data() + begin;
    float* labels = buf->labels.data() + begin;
    for (int64_t i = 0; i < m; ++i) {
      buf->users[i] = source.user_row[idx[i]];
      buf->items[i] = source.item_row[idx[i]];
      buf->examples[i] = static_cast<int32_t>(i);
      labels[i] = source.label[idx[i]];
    }
    for (size_t t = 0; t < tasks.target_index.size(); ++t) {
      if (tasks.target_index[t] < 0) continue;
      const std::vector<float>& column = source.targets.at(tasks.target_index[t]);
      for (int64_t i = 0; i < m; ++i) buf->targets[t][i] = column[idx[i]];
    }
    if (history != nullptr) history->Gather(idx, buf->users.data(), m, &buf->history);
    const double loss = trainer->Step(
        data.user_features, buf->users.data(), data.item_features, buf->items.data(), labels, m,
        dropout_rng, buf->target_ptrs.empty() ? nullptr : &buf->target_ptrs,
        history != nullptr ? model::HistoryRows{&buf->history, buf->examples.data()}
                           : model::HistoryRows{});
    loss_sum += loss * static_cast<double>(m);
    if (pointwise) {
      std::copy(trainer->logits().data(), trainer->logits().data() + m, buf->logits.data() + begin);
    }
    bar.Update(s + 1, "loss " + Fixed(loss_sum / static_cast<double>(begin + m)));
  }
  bar.Finish("loss " + Fixed(loss_sum / static_cast<double>(n)));
  return loss_sum / static_cast<double>(n);
}

data::Interactions Concatenate(const data::Interactions& a, const data::Interactions& b) {
  data::Interactions out = a;
  out.source = a.source + " + " + b.source;
  out.user_row.insert(out.user_row.end(), b.user_row.begin(), b.user_row.end());
  out.item_row.insert(out.item_row.end(), b.item_row.begin(), b.item_row.end());
  out.label.insert(out.label.end(), b.label.begin(), b.label.end());
  if (a.has_timestamp() && b.has_timestamp()) {
    out.timestamp.insert(out.timestamp.end(), b.timestamp.begin(), b.timestamp.end());
  } else {
    out.timestamp.clear();
  }
  if (a.has_p_true() && b.has_p_true()) {
    out.p_true.insert(out.p_true.end(), b.p_true.begin(), b.p_true.end());
  } else {
    out.p_true.clear();
  }
  for (size_t t = 0; t < out.targets.size() && t < b.targets.size(); ++t) {
    out.targets[t].insert(out.targets[t].end(), b.targets[t].begin(), b.targets[t].end());
  }
  return out;
}

}  // namespace

namespace {

// ---- checkpoints -------------------------------------------------------------------------------

// Doubles as C99 hex floats ("%a"): exact, and NaN ("nan") survives, which JSON numbers cannot.
std::string HexDouble(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%a", v);
  return buf;
}

double ParseHexDouble(const nlohmann::json& j, const std::string& where) {
  if (!j.is_string()) throw Error(where + ": expected a hex-float string");
  const std::string text = j.get<std::string>();
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size()) {
    throw Error(where + ": " + Quote(text) + " is not a number");
  }
  return v;
}

// The per-K series of a RankingMetrics, by their names in a checkpoint's history.
constexpr std::pair<const char*, std::vector<double> RankingMetrics::*> kRankingSeries[] = {
    {"recall", &RankingMetrics::recall},
    {"ndcg", &RankingMetrics::ndcg},
    {"hit_rate", &RankingMetrics::hit_rate},
    {"mrr", &RankingMetrics::mrr},
    {"coverage", &RankingMetrics::coverage}};

nlohmann::json RecordJson(const EpochRecord& r) {
  nlohmann::json j = {{"epoch", r.epoch},
                      {"train_loss", HexDouble(r.train_loss)},
                      {"train_accuracy", HexDouble(r.train_accuracy)},
                      {"train_auc", HexDouble(r.train_auc)},
                      {"val_loss", HexDouble(r.val_loss)},
                      {"val_accuracy", HexDouble(r.val_accuracy)},
                      {"val_auc", HexDouble(r.val_auc)},
                      {"monitored", HexDouble(r.monitored)},
                      {"best", r.best},
                      {"seconds", HexDouble(r.seconds)},
                      {"ks", r.val_ranking.ks},
                      {"users", r.val_ranking.users}};
  for (const auto& [name, member] : kRankingSeries) {
    nlohmann::json list = nlohmann::json::array();
    for (double v : r.val_ranking.*member) list.push_back(HexDouble(v));
    j[name] = list;
  }
  j["task_names"] = r.task_names;
  nlohmann::json tasks = nlohmann::json::array();
  for (double v : r.val_tasks) tasks.push_back(HexDouble(v));
  j["val_tasks"] = tasks;
  return j;
}

EpochRecord RecordFromJson(const nlohmann::json& j, const std::string& where) {
  try {
    EpochRecord r;
    r.epoch = j.at("epoch").get<int>();
    r.train_loss = ParseHexDouble(j.at("train_loss"), where);
    r.train_accuracy = ParseHexDouble(j.at("train_accuracy"), where);
    r.train_auc = ParseHexDouble(j.at("train_auc"), where);
    r.val_loss = ParseHexDouble(j.at("val_loss"), where);
    r.val_accuracy = ParseHexDouble(j.at("val_accuracy"), where);
    r.val_auc = ParseHexDouble(j.at("val_auc"), where);
    r.monitored = ParseHexDouble(j.at("monitored"), where);
    r.best = j.at("best").get<bool>();
    r.seconds = ParseHexDouble(j.at("seconds"), where);
    r.val_ranking.ks = j.at("ks").get<std::vector<int>>();
    r.val_ranking.users = j.at("users").get<int64_t>();
    for (const auto& [name, member] : kRankingSeries) {
      std::vector<double>* values = &(r.val_ranking.*member);
      for (const nlohmann::json& v : j.at(name)) values->push_back(ParseHexDouble(v, where));
      if (values->size() != r.val_ranking.ks.size()) {
        throw Error(where + ": " + name + " has " + std::to_string(values->size()) +
                    " values for " + std::to_string(r.val_ranking.ks.size()) + " K");
      }
    }
    if (j.contains("task_names")) {  // checkpoints written before tasks existed have none
      r.task_names = j.at("task_names").get<std::vector<std::string>>();
      for (const nlohmann::json& v : j.at("val_tasks")) {
        r.val_tasks.push_back(ParseHexDouble(v, where));
      }
      if (r.val_tasks.size() != r.task_names.size()) {
        throw Error(where + ": val_tasks has " + std::to_string(r.val_tasks.size()) +
                    " values for " + std::to_string(r.task_names.size()) + " tasks");
      }
    }
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": malformed epoch record (" + e.what() + ")");
  }
}

// The early-stopping state after `epoch` completed epochs.
struct SelectionState {
  int epoch = 0;
  bool stopped = false;  // early stopping ended the epochs
  int best_epoch = 0;
  double best_value = 0, best_loss = 0;
  int since_best = 0;
};

// SHA-256 of each data file the config names (those that exist): a resumed run must see the
// same data.
nlohmann::json DataFingerprints(const Config& config) {
  const data::DataPaths p = config.ResolvedPaths();
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, path] : {std::pair<const char*, const std::string*>{"users", &p.users},
                                   {"items", &p.items},
                                   {"train", &p.train},
                                   {"val", &p.val},
                                   {"test", &p.test}}) {
    std::error_code ec;
    if (!path->empty() && std::filesystem::is_regular_file(*path, ec)) {
      j[name] = {{"path", *path}, {"sha256", Sha256FileHex(*path)}};
    }
  }
  return j;
}

model::Tensor ToTensor(const Matrix& m) {
  return model::Tensor{{m.rows(), m.cols()}, std::vector<float>(m.data(), m.data() + m.size())};
}

void SaveCheckpoint(const std::string& path, model::TwoTowerModel& net, Trainer& trainer,
                    const std::vector<Matrix>& best_weights, const SelectionState& state,
                    const std::vector<EpochRecord>& history, const Rng& dropout_rng,
                    const std::string& config_sha256, const nlohmann::json& data_sha256,
                    int threads) {
  model::SafetensorsFile f;
  const std::vector<nn::Parameter*> params = net.TrainableParameters();
  nn::Adam& adam = trainer.optimizer();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string n = std::to_string(i);
    f.tensors["weights." + n] = ToTensor(params[i]->value);
    f.tensors["adam.m." + n] = ToTensor(adam.first_moments()[i]);
    f.tensors["adam.v." + n] = ToTensor(adam.second_moments()[i]);
  }
  // The best weights are a Snapshot: every named tensor, the untrained scorer of cosine models
  // included.
  for (size_t i = 0; i < best_weights.size(); ++i) {
    f.tensors["best." + std::to_string(i)] = ToTensor(best_weights[i]);
  }
  nlohmann::json records = nlohmann::json::array();
  for (const EpochRecord& r : history) records.push_back(RecordJson(r));
  f.metadata = {{"format", "twotower.checkpoint"},
                {"format_version", "1"},
                {"epoch", std::to_string(state.epoch)},
                {"stopped", state.stopped ? "1" : "0"},
                {"best_epoch", std::to_string(state.best_epoch)},
                {"best_value", HexDouble(state.best_value)},
                {"best_loss", HexDouble(state.best_loss)},
                {"since_best", std::to_string(state.since_best)},
                {"dropout_rng", dropout_rng.SaveState()},
                {"adam_steps", std::to_string(adam.steps())},
                {"threads", std::to_string(threads)},
                {"history", records.dump()},
                {"config_sha256", config_sha256},
                {"data_sha256", data_sha256.dump()}};
  model::WriteSafetensors(path, f);
}

int ParseCount(const std::string& text, const std::string& where) {
  int v = -1;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || v < 0) {
    throw Error(where + ": " + Quote(text) + " is not a count");
  }
  return v;
}

// Restores what SaveCheckpoint wrote into `net`, `trainer`, best_weights, *state, *history and
// *dropout_rng, after checking that it was written with these settings and data.
void LoadCheckpoint(const std::string& path, model::TwoTowerModel& net, Trainer& trainer,
                    std::vector<Matrix>* best_weights, SelectionState* state,
                    std::vector<EpochRecord>* history, Rng* dropout_rng,
                    const std::string& config_sha256, const nlohmann::json& data_sha256,
                    int* threads) {
  const model::SafetensorsFile f = model::ReadSafetensors(path);
  auto meta = [&](const char* key) -> const std::string& {
    const auto it = f.metadata.find(key);
    if (it == f.metadata.end()) {
      throw Error(path + ": not a twotower checkpoint (no '" + key + "' in __metadata__)");
    }
    return it->second;
  };
  if (meta("format") != "twotower.checkpoint" || meta("format_version") != "1") {
    throw Error(path + ": not a twotower checkpoint of format 1 (format " + Quote(meta("format")) +
                ", version " + Quote(meta("format_version")) + ")");
  }
  if (meta("config_sha256") != config_sha256) {
    throw Error(path +
                ": written with other settings than the run's config.yaml (settings "
                "SHA-256 " +
                ShortFingerprint(meta("config_sha256")) + ", now " +
                ShortFingerprint(config_sha256) + "): resuming would not continue that run");
  }
  const nlohmann::json saved = ParseJsonStrict(meta("data_sha256"), path + ": data_sha256");
  if (saved != data_sha256) {
    for (const auto& [name, entry] : data_sha256.items()) {
      if (!saved.contains(name) || saved[name] != entry) {
        throw Error(path + ": the " + name + " data changed since the checkpoint (" +
                    entry.value("path", std::string()) + "): resuming would not continue that run");
      }
    }
    throw Error(path + ": the data files differ from those the checkpoint was written with");
  }
  const std::vector<nn::Parameter*> params = net.TrainableParameters();
  nn::Adam& adam = trainer.optimizer();
  auto restore = [&](const std::string& name, Matrix* into) {
    const auto it = f.tensors.find(name);
    if (it == f.tensors.end()) throw Error(path + ": tensor '" + name + "' is missing");
    const model::Tensor& t = it->second;
    if (t.shape.size() != 2 || t.shape[0] != into->rows() || t.shape[1] != into->cols()) {
      throw Error(path + ": tensor '" + name + "' does not have the model's shape " +
                  std::to_string(into->rows()) + " x " + std::to_string(into->cols()));
    }
    for (float x : t.data) {
      if (!std::isfinite(x)) throw Error(path + ": tensor '" + name + "' is not finite");
    }
    std::copy(t.data.begin(), t.data.end(), into->data());
  };
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string n = std::to_string(i);
    restore("weights." + n, &params[i]->value);
    restore("adam.m." + n, &adam.first_moments()[i]);
    restore("adam.v." + n, &adam.second_moments()[i]);
  }
  *best_weights = net.Snapshot();  // the shapes; the values come next
  for (size_t i = 0; i < best_weights->size(); ++i) {
    restore("best." + std::to_string(i), &(*best_weights)[i]);
  }
  const size_t expected = 3 * params.size() + best_weights->size();
  if (f.tensors.size() != expected) {
    throw Error(path + ": " + std::to_string(f.tensors.size()) + " tensors, expected " +
                std::to_string(expected) + " for this model");
  }
  *threads = ParseCount(meta("threads"), path + ": threads");
  adam.set_steps(ParseCount(meta("adam_steps"), path + ": adam_steps"));
  state->epoch = ParseCount(meta("epoch"), path + ": epoch");
  state->stopped = meta("stopped") == "1";
  state->best_epoch = ParseCount(meta("best_epoch"), path + ": best_epoch");
  state->best_value = ParseHexDouble(meta("best_value"), path + ": best_value");
  state->best_loss = ParseHexDouble(meta("best_loss"), path + ": best_loss");
  state->since_best = ParseCount(meta("since_best"), path + ": since_best");
  try {
    dropout_rng->LoadState(meta("dropout_rng"));
  } catch (const Error& e) {
    throw Error(path + ": dropout_rng: " + e.what());
  }
  history->clear();
  const nlohmann::json records = ParseJsonStrict(meta("history"), path + ": history");
  if (!records.is_array()) throw Error(path + ": history: expected a list");
  for (const nlohmann::json& r : records) {
    history->push_back(RecordFromJson(r, path + ": history"));
  }
  if (static_cast<int>(history->size()) != state->epoch || state->best_epoch > state->epoch) {
    throw Error(path + ": history holds " + std::to_string(history->size()) +
                " epochs, but the checkpoint is after epoch " + std::to_string(state->epoch));
  }
}

}  // namespace

namespace {

struct HistoryTables {
  bool enabled = false, test = false;
  int length = 0;
  const data::Bags* table_rows = nullptr;  // the item id feature's bag of the items table
  data::ExampleHistories train;            // per training example
  // A copy of the users table with each user's history: train's for validation, then train and
  // validation's for the test (AttachTestHistory).
  data::EncodedTable users;
};

HistoryTables MakeHistories(const data::Dataset& data) {
  HistoryTables h;
  const data::HistorySpec& spec = data.encoder.user.schema().history;
  if (!spec.enabled()) return h;
  h.enabled = true;
  h.length = spec.length;
  h.table_rows = &data.item_features.bags.at(data::HistoryTableBag(data.encoder.item));
  h.train = data::BuildExampleHistories(data.train, *h.table_rows, h.length);
  h.users = data.user_features;
  h.users.history =
      data::UserHistory({&data.train}, data.users.num_rows(), *h.table_rows, h.length);
  return h;
}

// After the last epoch on train: the histories the test reads (train and validation).
void AttachTestHistory(const data::Dataset& data, HistoryTables* h) {
  if (!h->enabled || h->test) return;
  h->test = true;
  h->train = {};  // no longer needed
  h->users.history =
      data::UserHistory({&data.train, &data.val}, data.users.num_rows(), *h->table_rows, h->length);
}

}  // namespace

TrainResult Train(const Config& config, const data::Dataset& data, const TrainOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  Rng rng(config.seed);
  Rng init_rng = rng.Split();
  Rng shuffle_rng = rng.Split();
  Rng dropout_rng = rng.Split();

  TrainResult result;
  // The item_class tasks' classes are fitted on the items table before the heads are sized.
  model::ModelConfig model_config = config.model;
  const std::vector<std::string> target_columns = TaskTargetColumns(model_config.tasks);
  for (const data::Interactions* split : {&data.train, &data.val, &data.test}) {
    bool ok = split->targets.size() == target_columns.size();
    for (size_t c = 0; ok && c < split->targets.size(); ++c) {
      ok = static_cast<int64_t>(split->targets[c].size()) == split->size();
    }
    if (!ok) {
      throw Error(split->source +
                  ": the tasks' target columns were not read (load the data "
                  "with LoadDataset's target_columns = TaskTargetColumns(config.model.tasks))");
    }
  }
  const TaskTargets task_targets = FitTaskTargets(&model_config.tasks, data);
  result.model = std::make_unique<model::TwoTowerModel>(model_config, data.encoder, &init_rng);
  model::TwoTowerModel& net = *result.model;
  Trainer trainer(&net, MakeLoss(config, data.train, data.users.num_rows(), data.items.num_rows()),
                  OptimizerOptions(config.training), config.training.embedding_l2,
                  config.seed ^ kSamplingSeed);
  trainer.SetTasks(task_targets);
  const bool pointwise = trainer.loss().pointwise();
  const bool positives_only = config.training.positives == "liked";
  const std::vector<int>& ks = config.evaluation.k;
  const std::string monitor = config.Monitor();
  const bool lower_is_better = monitor == "val_loss";
  std::vector<int64_t> order =
      Examples(data.train, pointwise, positives_only, config.training.positives);
  if (monitor != "val_auc" && monitor != "val_loss") {
    bool any = false;
    for (int64_t i = 0; i < data.val.size() && !any; ++i) {
      any = !positives_only || data.val.label[i] == 1.0f;
    }
    if (!any) {
      throw Error(data.val.source +
                  ": no positives (training.positives: " + config.training.positives + "), so " +
                  monitor + " is undefined: early stopping would have nothing to follow");
    }
  }
  const int64_t batch = config.training.batch_size;
  // The user-history feature: each training example reads the user's positives before it; an
  // evaluation reads everything before the split it scores (validation: train; test: train and
  // validation), attached to a copy of the users table.
  HistoryTables histories = MakeHistories(data);
  const data::ExampleHistories* train_history = histories.enabled ? &histories.train : nullptr;
  const data::EncodedTable& users = histories.enabled ? histories.users : data.user_features;
  EpochBuffers buf;
  std::vector<Matrix> best_weights = net.Snapshot();
  SelectionState state;
  state.best_value = lower_is_better ? std::numeric_limits<double>::infinity() : -1.0;
  state.best_loss = std::numeric_limits<double>::infinity();
  const nlohmann::json config_json = config.ToJson();
  const std::string& dir = options.run_dir;
  const bool checkpoint = !dir.empty() && config.training.checkpoint;
  const std::string checkpoint_path = dir + "/" + kCheckpointFile;
  const std::string config_sha256 = Sha256Hex(config.ToYaml());
  nlohmann::json data_sha256;
  if (checkpoint || options.resume) data_sha256 = DataFingerprints(config);
  if (options.resume) {
    if (dir.empty()) throw Error("resume: no run folder given");
    int threads = 0;
    LoadCheckpoint(checkpoint_path, net, trainer, &best_weights, &state, &result.history,
                   &dropout_rng, config_sha256, data_sha256, &threads);
    // `threads: 0` resolves to this machine's cores; the run continues with the count it had,
    // which the arithmetic's order (and so every result) depends on.
    const int now = omp_get_max_threads();
    if (threads != now) {
      SetThreads(threads);
      if (options.log != nullptr) {
        *options.log << "threads: " << threads << ", as the run had (not " << now << ")"
                     << std::endl;
      }
    }
    // The completed epochs' shuffles, replayed: the same order and generator state as then.
    for (int e = 0; e < state.epoch; ++e) Shuffle(&order, &shuffle_rng);
    result.best_epoch = state.best_epoch;
    if (options.log != nullptr) {
      *options.log << "resumed " << dir << " after epoch " << state.epoch << " (best epoch "
                   << state.best_epoch << (state.stopped ? ", early stopping had ended it" : "")
                   << ")" << std::endl;
    }
  } else if (!dir.empty()) {
    WriteFileAtomically(dir + "/config.yaml", config.ToYaml());
  }

  for (int epoch = state.epoch + 1; !state.stopped && epoch <= config.training.epochs; ++epoch) {
    const auto epoch_start = std::chrono::steady_clock::now();
    const double train_loss =
        RunEpoch(&trainer, data, data.train, train_history, &order, batch, &shuffle_rng,
                 &dropout_rng, options.progress, &buf, task_targets);
    EpochRecord r;
    r.epoch = epoch;
    r.train_loss = train_loss;
    r.train_accuracy = pointwise ? Accuracy(buf.logits, buf.labels) : std::nan("");
    r.train_auc = pointwise ? Auc(buf.logits, buf.labels) : std::nan("");
    // Both towers run once over every user and item; the pointwise and the ranking evaluation
    // share the embeddings.
    Matrix u, v;
    {
      ProgressBar val_bar("val", 2 + (data.val.size() + 65535) / 65536, options.progress);
      net.EncodeUsers(users, &u);
      val_bar.Update(1);
      net.EncodeItems(data.item_features, &v);
      val_bar.Update(2);
      const EvalMetrics val = Evaluate(net, u, v, data.val, &val_bar, 2);
      val_bar.Finish("loss " + Fixed(val.loss));
      // The scorer (scale, bias) is trained by pointwise losses only; otherwise its loss and
      // accuracy mean nothing, and only the ranking of <u, v> (AUC) is reported.
      r.val_loss = pointwise ? val.loss : std::nan("");
      r.val_accuracy = pointwise ? val.accuracy : std::nan("");
      r.val_auc = val.auc;
    }
    if (!ks.empty())
      r.val_ranking = EvaluateRankingSplit(u, v, data, Split::kVal, positives_only, ks);
    r.val_tasks = EvaluateTasks(net, task_targets, u, v, data.val);
    for (const model::TaskSpec& t : model_config.tasks) {
      r.task_names.push_back("val_" + t.name + "_" + TaskMetricName(t));
    }
    if (monitor == "val_auc") {
      r.monitored = r.val_auc;
    } else if (monitor == "val_loss") {
      r.monitored = r.val_loss;
    } else {
      r.monitored = r.val_ranking.Get(monitor.substr(4));
    }
    // Selection by the monitored value; a one-class validation split has no AUC (NaN), and then
    // val loss decides, so a best model is always kept.
    if (std::isnan(r.monitored)) {
      r.best = r.val_loss < state.best_loss || (std::isnan(r.val_loss) && state.best_epoch == 0);
    } else {
      r.best = lower_is_better ? r.monitored < state.best_value : r.monitored > state.best_value;
    }
    r.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    if (r.best) {
      if (!std::isnan(r.monitored)) state.best_value = r.monitored;
      state.best_loss = r.val_loss;
      state.best_epoch = epoch;
      result.best_epoch = epoch;
      state.since_best = 0;
      best_weights = net.Snapshot();
      if (!dir.empty()) {
        model::SaveModel(dir + "/model_best.safetensors", net, data.encoder, config.features,
                         config_json);
      }
    } else {
      ++state.since_best;
    }
    result.history.push_back(r);
    if (options.log != nullptr) {
      std::ostream& log = *options.log;
      log << "epoch " << epoch << "/" << config.training.epochs << "  train loss "
          << Fixed(r.train_loss);
      if (pointwise) {
        log << " acc " << Fixed(r.train_accuracy) << "  |  val loss " << Fixed(r.val_loss)
            << " acc " << Fixed(r.val_accuracy) << " auc " << Fixed(r.val_auc);
      } else {
        log << "  |  val auc " << Fixed(r.val_auc);
      }
      if (!ks.empty() && (!pointwise || monitor != "val_auc")) {
        log << " " << RankingSummary(r.val_ranking);
      }
      for (size_t t = 0; t < r.val_tasks.size(); ++t) {
        log << " " << r.task_names[t].substr(4) << " " << Fixed(r.val_tasks[t]);
      }
      log << "  (" << Fixed(r.seconds, 2) << "s)" << (r.best ? "  * best, saved" : "") << std::endl;
    }
    if (!dir.empty()) {
      WriteFileAtomically(dir + "/metrics.csv", MetricsCsv(result.history));
      WriteFileAtomically(dir + "/training_curves.svg",
                          CurvesSvg(result.history, pointwise ? "BCE" : "softmax"));
    }
    state.epoch = epoch;
    state.stopped = config.training.early_stopping_patience > 0 &&
                    state.since_best >= config.training.early_stopping_patience;
    if (checkpoint) {
      FailPoint("train.before_checkpoint");
      SaveCheckpoint(checkpoint_path, net, trainer, best_weights, state, result.history,
                     dropout_rng, config_sha256, data_sha256, omp_get_max_threads());
      FailPoint("train.after_checkpoint");
    }
    if (state.stopped && options.log != nullptr) {
      const std::string shown = monitor == "val_auc" ? "val AUC" : monitor;
      *options.log << "early stopping: no better " << shown << " for "
                   << config.training.early_stopping_patience << " epochs (best epoch "
                   << state.best_epoch << ", " << shown << " " << Fixed(state.best_value) << ")"
                   << std::endl;
    }
  }
  if (!dir.empty()) {
    model::SaveModel(dir + "/model_last.safetensors", net, data.encoder, config.features,
                     config_json);
  }
  if (result.best_epoch > 0) net.Restore(best_weights);
  if (config.training.refit && result.best_epoch > 0) {
    // The usual last step of model selection: the chosen settings and number of epochs, trained
    // again from the same initial weights on train + validation (what EASE-style baselines
    // refitted on both see too). The test split is still untouched.
    const data::Interactions both = Concatenate(data.train, data.val);
    Rng refit_rng(config.seed);
    Rng refit_init = refit_rng.Split();
    Rng refit_shuffle = refit_rng.Split();
    Rng refit_dropout = refit_rng.Split();
    auto refit = std::make_unique<model::TwoTowerModel>(model_config, data.encoder, &refit_init);
    Trainer refit_trainer(refit.get(),
                          MakeLoss(config, both, data.users.num_rows(), data.items.num_rows()),
                          OptimizerOptions(config.training), config.training.embedding_l2,
                          config.seed ^ kSamplingSeed);
    refit_trainer.SetTasks(task_targets);
    std::vector<int64_t> refit_order =
        Examples(both, pointwise, positives_only, config.training.positives);
    AttachTestHistory(data, &histories);
    data::ExampleHistories both_history;
    if (histories.enabled) {
      both_history = data::BuildExampleHistories(both, *histories.table_rows, histories.length);
    }
    for (int epoch = 1; epoch <= result.best_epoch; ++epoch) {
      const double loss = RunEpoch(
          &refit_trainer, data, both, histories.enabled ? &both_history : nullptr, &refit_order,
          batch, &refit_shuffle, &refit_dropout, options.progress, &buf, task_targets);
      if (options.log != nullptr) {
        *options.log << "refit epoch " << epoch << "/" << result.best_epoch
                     << " on train + val  train loss " << Fixed(loss) << std::endl;
      }
    }
    result.selected_model = std::move(result.model);
    result.model = std::move(refit);
    result.refit = true;
    if (!dir.empty()) {
      model::SaveModel(dir + "/model_refit.safetensors", *result.model, data.encoder,
                       config.features, config_json);
    }
  }
  model::TwoTowerModel& final_model = *result.model;
  result.train_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Matrix u, v;
  AttachTestHistory(data, &histories);
  final_model.EncodeUsers(users, &u);
  final_model.EncodeItems(data.item_features, &v);
  result.test = Evaluate(final_model, u, v, data.test);
  if (!pointwise) result.test.loss = result.test.accuracy = std::nan("");
  if (!ks.empty()) {
    result.test_ranking = EvaluateRankingSplit(u, v, data, Split::kTest, positives_only, ks);
    result.test_most_popular = EvaluateMostPopularSplit(data, Split::kTest, positives_only, ks);
  }
  const std::vector<double> test_tasks = EvaluateTasks(final_model, task_targets, u, v, data.test);
  for (size_t t = 0; t < model_config.tasks.size(); ++t) {
    result.test_tasks.push_back(
        {model_config.tasks[t].name, TaskMetricName(model_config.tasks[t]), test_tasks[t]});
  }
  if (!dir.empty()) {
    WriteFileAtomically(dir + "/test_metrics.json", MetricsJson(result, trainer.loss().name()));
  }
  return result;
}

}  // namespace twotower::train
