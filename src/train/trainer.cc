#include "twotower/train/trainer.h"

#include <omp.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <limits>
#include <numeric>
#include <ostream>
#include <type_traits>

#include "train/replicas.h"
#include "train/run_folder.h"
#include "twotower/core/dist.h"
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

namespace {
// The user parts when this rank holds one part of the training split under mpirun, else null.
const std::vector<int32_t>* HeldParts(const data::Dataset& data) {
  return data.shard.held >= 0 && dist::Distributed() ? &data.user_part : nullptr;
}
}  // namespace

RankingMetrics EvaluateRankingSplit(const Matrix& u, const Matrix& v, const data::Dataset& data,
                                    Split split, bool positives_only, const std::vector<int>& ks) {
  // Training data held by part (data.shards under mpirun): each rank ranks its part's users.
  return EvaluateRankingAcrossRanks(u, v, SplitPositives(data, split, positives_only),
                                    ExcludedItems(data, split), ks, HeldParts(data));
}

RankingMetrics EvaluateMostPopularSplit(const data::Dataset& data, Split split, bool positives_only,
                                        const std::vector<int>& ks) {
  std::vector<double> counts(data.items.num_rows(), 0.0);
  const auto count = [&](const data::Interactions& s) {
    for (int64_t i = 0; i < s.size(); ++i) {
      if (positives_only && s.label[i] != 1.0f) continue;
      counts[s.item_row[i]] += 1.0;
    }
  };
  count(data.train);
  const std::vector<int32_t>* parts = HeldParts(data);
  if (parts != nullptr) {
    // Each rank holds its part of train (val is read whole): the train counts summed.
    dist::AllreduceSum(counts.data(), static_cast<int64_t>(counts.size()), dist::Traffic::kOther);
  }
  if (split != Split::kVal) count(data.val);
  return EvaluateMostPopular(counts, SplitPositives(data, split, positives_only),
                             ExcludedItems(data, split), ks, parts);
}

struct Trainer::Replicas {
  Matrix u, v;    // the global batch's tower outputs (allgathered)
  Matrix du, dv;  // this rank's rows of their gradients
  GradientExchange exchange;
};

Trainer::Trainer(model::TwoTowerModel* model, std::unique_ptr<Loss> loss, nn::AdamOptions adam,
                 double embedding_l2, uint64_t sampling_seed)
    : model_(model),
      loss_(std::move(loss)),
      params_(model->TrainableParameters()),
      adam_(params_, adam),
      embedding_l2_(embedding_l2),
      sampling_seed_(sampling_seed) {
  if (dist::Distributed()) replicas_ = std::make_unique<Replicas>();
}

Trainer::~Trainer() = default;

void Trainer::SetTasks(TaskTargets targets) { tasks_ = std::move(targets); }

double Trainer::Step(const data::EncodedTable& users, const int32_t* user_rows,
                     const data::EncodedTable& items, const int32_t* item_rows, const float* labels,
                     int64_t n, Rng* rng, const std::vector<const float*>* task_targets,
                     model::HistoryRows history, const float* weights) {
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
  LossBatch batch;
  dist::Range user_share{0, n}, item_share{0, n_items};
  // The task heads read every user's output: with tasks the users are allgathered too.
  const bool has_tasks = !model_->config().tasks.empty();
  const bool row_shares = replicas_ != nullptr && loss_->SupportsRowShares() && !has_tasks;
  if (replicas_ != nullptr) {
    FailPoint("train.distributed_step");
    // This rank's share of the users and of the items (the batch's, then the negatives).
    user_share = dist::Share(n, dist::Rank(), dist::Size());
    item_share = dist::Share(n_items, dist::Rank(), dist::Size());
    // Dropout masks differ between ranks, from a generator of (step, rank): resumable.
    Rng step_rng(step_seed ^ (0x8CB92BA72F3D8DD7ull * static_cast<uint64_t>(dist::Rank() + 1)));
    model::HistoryRows local_history = history;
    if (local_history.rows != nullptr) local_history.rows += user_share.begin;
    model_->ForwardTowers(users, user_rows + user_share.begin, user_share.size(), local_history,
                          items, all_items + item_share.begin, item_share.size(), &ctx_, &step_rng);
    // Every rank's items (global in-batch negatives). A loss that takes row shares (in-batch
    // softmax) then computes this rank's users' rows against them, and the shares of dv are
    // summed below; any other loss gets every user too and computes the whole batch on each
    // rank (correct, but that part does not scale).
    const int d = model_->config().embedding_dim;
    GatherRows(model::TwoTowerModel::item_output(ctx_), n_items, d, &replicas_->v);
    batch.v = &replicas_->v;
    if (row_shares) {
      batch.u = &model::TwoTowerModel::user_output(ctx_);
      batch.row_offset = user_share.begin;
      batch.rows_total = n;
    } else {
      GatherRows(model::TwoTowerModel::user_output(ctx_), n, d, &replicas_->u);
      batch.u = &replicas_->u;
    }
  } else {
    model_->ForwardTowers(users, user_rows, n, history, items, all_items, n_items, &ctx_, rng);
    batch.u = &model::TwoTowerModel::user_output(ctx_);
    batch.v = &model::TwoTowerModel::item_output(ctx_);
  }
  batch.item_rows = all_items;
  batch.user_rows = user_rows;
  batch.labels = labels;
  batch.weights = weights;
  batch.scale = model_->scale();
  batch.bias = model_->bias();
  batch.seed = step_seed;
  loss_->Compute(batch, &out_);
  double u_squared_norm = embedding_l2_ > 0.0 ? static_cast<double>(batch.u->squaredNorm()) : 0.0;
  if (row_shares) {
    // The ranks' shares summed: dv over every column, and the scalars.
    dist::AllreduceSum(out_.dv.data(), out_.dv.size(), dist::Traffic::kEmbeddings);
    double sums[4] = {out_.loss, out_.d_log_scale, out_.d_bias, u_squared_norm};
    dist::AllreduceSum(sums, 4, dist::Traffic::kOther);
    out_.loss = sums[0];
    out_.d_log_scale = sums[1];
    out_.d_bias = sums[2];
    u_squared_norm = sums[3];
  }
  if (embedding_l2_ > 0.0) {
    // lambda (|U|^2 + |V|^2) / n: gradient 2 lambda U / n (and V).
    const double scale = embedding_l2_ / static_cast<double>(n);
    // On the batch's own items only, not on drawn negatives.
    out_.loss += scale * (u_squared_norm + static_cast<double>(batch.v->topRows(n).squaredNorm()));
    const float g = static_cast<float>(2.0 * scale);
    out_.du += g * *batch.u;
    out_.dv.topRows(n) += g * batch.v->topRows(n);
  }
  nn::ZeroGrad(params_);
  // The scorer's gradient comes whole from the global loss: added once (rank 0), so the sum
  // over ranks counts it once.
  if (replicas_ == nullptr || dist::IsRoot()) {
    model_->AddScorerGradient(out_.d_log_scale, out_.d_bias);
  }
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
    if (replicas_ != nullptr && !dist::IsRoot()) {
      // Every rank computed the heads' gradients from the whole batch: as the scorer's, they
      // count once in the sum over ranks (rank 0's). Their du / dv go back through each share.
      for (size_t t = 0; t < model_->config().tasks.size(); ++t) {
        model_->task_head(t).weight().grad.setZero();
        model_->task_head(t).bias().grad.setZero();
      }
    }
  }
  if (replicas_ != nullptr) {
    // Back through this rank's share only; then the gradients summed over the ranks.
    // (With row shares out_.du holds this rank's rows already.)
    if (!row_shares) replicas_->du = out_.du.middleRows(user_share.begin, user_share.size());
    replicas_->dv = out_.dv.middleRows(item_share.begin, item_share.size());
    model_->BackwardTowers(&ctx_, row_shares ? out_.du : replicas_->du, replicas_->dv);
    replicas_->exchange.Run(params_);
  } else {
    model_->BackwardTowers(&ctx_, out_.du, out_.dv);
  }
  adam_.Step();
  model_->ZeroOovRows();
  if (replicas_ != nullptr && check_every_step_) {
    dist::CheckSame(ParameterFingerprint(params_),
                    "the parameters' fingerprint after step " + std::to_string(adam_.steps()),
                    "a replica diverged: a bug to report");
  }
  return out_.loss;
}

namespace {

struct EpochBuffers {
  std::vector<int32_t> users, items, examples;  // examples: 0 .. batch - 1
  // Under mpirun with data.shards: this rank's part of a step's batch, before the allgather.
  std::vector<int32_t> part_ints;
  std::vector<float> part_floats;
  std::vector<int64_t> part_counts;
  data::Bags history;  // the batch's user histories
  std::vector<float> logits, labels, weights;
  std::vector<std::vector<float>> targets;  // per task: the batch's regression targets
  std::vector<const float*> target_ptrs;
};

}  // namespace

std::vector<float> LossWeights(const Config& config, const data::Interactions& source) {
  const std::string& column = config.features.weight_column;
  if (column.empty()) return {};
  // (A rank's empty part of the file has no rows to hold the column.)
  if (!source.has_weight() && source.size() > 0) {
    throw Error("features.weight: " + source.source + " has no column '" + column + "'");
  }
  const TrainingConfig& t = config.training;
  std::vector<float> w(source.weight.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const double x = source.weight[i];
    const double v = t.weight_transform == "log1p" ? std::log1p(x)
                     : t.weight_transform == "confidence"
                         ? t.weight_alpha * std::log1p(x / t.weight_eps)
                         : x;
    w[i] = static_cast<float>(v);
  }
  return w;
}

namespace {

// The training examples of `source`: every labelled pair for a pointwise loss, else the positives.
// With `local` (a rank holding one part) an empty result is not an error here: the parts
// together are checked (MakePlan).
std::vector<int64_t> Examples(const data::Interactions& source, bool pointwise, bool positives_only,
                              const std::string& positives, bool local = false) {
  std::vector<int64_t> order;
  for (int64_t i = 0; i < source.size(); ++i) {
    if (pointwise || !positives_only || source.label[i] == 1.0f) order.push_back(i);
  }
  if (order.empty() && !local) {
    throw Error(source.source + ": no training positives (training.positives: " + positives +
                " and no interaction has label 1)");
  }
  return order;
}

// The example order of an epoch: Fisher-Yates from `rng` over the previous epoch's order.
void Shuffle(std::vector<int64_t>* order, Rng* rng) {
  const int64_t n = static_cast<int64_t>(order->size());
  for (int64_t i = n - 1; i > 0; --i) std::swap((*order)[i], (*order)[rng->Below(i + 1)]);
}

// The examples of an epoch and how a step draws its global batch from them.
// shards 1: one order over every example; step s takes [s B, (s + 1) B) of it (B the global
// batch). data.shards S > 1: one order per part (the examples of the part's users), each
// shuffled by its own generator; step s takes part k's examples [s b_k, (s + 1) b_k) with
// b_k = dist::Share(B, k, S), in part order, until every part is used up (a part that is used
// up gives nothing, so the last steps' batches are smaller). One process holds every part
// (held -1); rank r of an mpirun with S ranks holds part r and the step's batch is allgathered.
struct EpochPlan {
  int shards = 1;
  int held = -1;
  std::vector<std::vector<int64_t>> order;  // per part (shards 1: one), rows of the source
  std::vector<Rng> rng;                     // per part (shards > 1)
  std::vector<int64_t> sizes;               // every part's example count (held or not)

  int64_t total() const {
    int64_t n = 0;
    for (int64_t v : sizes) n += v;
    return n;
  }
  // Part k's examples in step s, of the global batch `batch`: [begin, begin + count).
  void Slice(int k, int64_t s, int64_t batch, int64_t* begin, int64_t* count) const {
    const int64_t b = dist::Share(batch, k, shards).size();
    *begin = s * b;
    *count = std::clamp<int64_t>(sizes[k] - *begin, 0, b);
  }
  int64_t Steps(int64_t batch) const {
    int64_t steps = 0;
    for (int k = 0; k < static_cast<int>(sizes.size()); ++k) {
      const int64_t b = dist::Share(batch, k, shards).size();
      if (b == 0) continue;
      steps = std::max(steps, (sizes[k] + b - 1) / b);
    }
    return steps;
  }
  void ShuffleAll(Rng* shuffle_rng) {
    if (shards == 1) return Shuffle(&order[0], shuffle_rng);
    for (int k = 0; k < shards; ++k) {
      if (held < 0 || held == k) Shuffle(&order[k], &rng[k]);
    }
  }
};

// Writes examples idx[0..m) of `source` into the batch arrays from position `at` on.
void FillBatch(const data::Interactions& source, const int64_t* idx, int64_t m, int64_t at,
               const std::vector<float>* weights, const TaskTargets& tasks, EpochBuffers* buf,
               float* labels) {
  for (int64_t i = 0; i < m; ++i) {
    buf->users[at + i] = source.user_row[idx[i]];
    buf->items[at + i] = source.item_row[idx[i]];
    buf->examples[at + i] = static_cast<int32_t>(at + i);
    labels[at + i] = source.label[idx[i]];
  }
  if (weights != nullptr) {
    for (int64_t i = 0; i < m; ++i) buf->weights[at + i] = (*weights)[idx[i]];
  }
  for (size_t t = 0; t < tasks.target_index.size(); ++t) {
    if (tasks.target_index[t] < 0) continue;
    const std::vector<float>& column = source.targets.at(tasks.target_index[t]);
    for (int64_t i = 0; i < m; ++i) buf->targets[t][at + i] = column[idx[i]];
  }
}

// Under mpirun with data.shards = ranks: this rank's part's examples of step s written at their
// place in the global batch (after the parts before it), then every rank's allgathered, so that
// every rank holds the global batch one process holding every part builds. Returns its size.
int64_t GatherPartBatches(const data::Interactions& source, const EpochPlan& plan, int64_t s,
                          int64_t batch, const std::vector<float>* weights,
                          const TaskTargets& tasks, EpochBuffers* buf, float* labels) {
  std::vector<int64_t>& counts = buf->part_counts;
  counts.assign(static_cast<size_t>(plan.shards), 0);
  int64_t m = 0, mine = 0, first = 0;
  for (int k = 0; k < plan.shards; ++k) {
    int64_t begin = 0;
    plan.Slice(k, s, batch, &begin, &counts[k]);
    if (k == plan.held) mine = m, first = begin;
    m += counts[k];
  }
  const int64_t count = counts[plan.held];
  if (count > 0) {
    FillBatch(source, plan.order[plan.held].data() + first, count, mine, weights, tasks, buf,
              labels);
  }
  const auto gather = [&](auto* data) {
    using T = std::remove_pointer_t<decltype(data)>;
    auto& part = [&]() -> std::vector<T>& {
      if constexpr (std::is_same_v<T, int32_t>) {
        return buf->part_ints;
      } else {
        return buf->part_floats;
      }
    }();
    part.assign(data + mine, data + mine + count);
    dist::Allgatherv(part.data(), counts, data, dist::Traffic::kOther);
  };
  gather(buf->users.data());
  gather(buf->items.data());
  gather(labels);
  if (weights != nullptr) gather(buf->weights.data());
  for (size_t t = 0; t < tasks.target_index.size(); ++t) {
    if (tasks.target_index[t] >= 0) gather(buf->targets[t].data());
  }
  return m;
}

// One pass of Trainer::Step over the plan's examples (rows of `source`), shuffled first; returns
// the mean loss. For pointwise losses buf->logits / labels receive every example's logit and
// label (the global batches', in step order).
// history: the examples' user histories (null without a history feature; shards 1 only).
// weights: each row of `source`'s loss weight (null: all 1).
double RunEpoch(Trainer* trainer, const data::Dataset& data, const data::Interactions& source,
                const data::ExampleHistories* history, const std::vector<float>* weights,
                EpochPlan* plan, int64_t batch, Rng* shuffle_rng, Rng* dropout_rng, bool progress,
                EpochBuffers* buf, const TaskTargets& tasks,
                const std::function<void()>& check_stop) {
  const int64_t n = plan->total();
  buf->targets.resize(tasks.target_index.size());
  buf->target_ptrs.assign(tasks.target_index.size(), nullptr);
  for (size_t t = 0; t < tasks.target_index.size(); ++t) {
    if (tasks.target_index[t] < 0) continue;
    buf->targets[t].resize(batch);
    buf->target_ptrs[t] = buf->targets[t].data();
  }
  const int64_t steps = plan->shards == 1 ? (n + batch - 1) / batch : plan->Steps(batch);
  const bool pointwise = trainer->loss().pointwise();
  buf->users.resize(batch);
  buf->items.resize(batch);
  buf->examples.resize(batch);
  buf->weights.resize(weights != nullptr ? batch : 0);
  buf->labels.resize(n);
  buf->logits.resize(pointwise ? n : 0);
  plan->ShuffleAll(shuffle_rng);
  double loss_sum = 0.0;
  int64_t begin = 0;  // examples before this step
  ProgressBar bar("train", steps, progress);
  for (int64_t s = 0; s < steps; ++s) {
    check_stop();
    float* labels = buf->labels.data() + begin;
    int64_t m = 0;
    if (plan->shards == 1) {
      m = std::min(batch, n - begin);
      const int64_t* idx = plan->order[0].data() + begin;
      FillBatch(source, idx, m, 0, weights, tasks, buf, labels);
      if (history != nullptr) history->Gather(idx, buf->users.data(), m, &buf->history);
    } else if (plan->held < 0) {
      for (int k = 0; k < plan->shards; ++k) {
        int64_t first = 0, count = 0;
        plan->Slice(k, s, batch, &first, &count);
        if (count == 0) continue;
        FillBatch(source, plan->order[k].data() + first, count, m, weights, tasks, buf, labels);
        m += count;
      }
    } else {
      m = GatherPartBatches(source, *plan, s, batch, weights, tasks, buf, labels);
    }
    const double loss = trainer->Step(
        data.user_features, buf->users.data(), data.item_features, buf->items.data(), labels, m,
        dropout_rng, buf->target_ptrs.empty() ? nullptr : &buf->target_ptrs,
        history != nullptr ? model::HistoryRows{&buf->history, buf->examples.data()}
                           : model::HistoryRows{},
        weights != nullptr ? buf->weights.data() : nullptr);
    loss_sum += loss * static_cast<double>(m);
    if (pointwise) {
      std::copy(trainer->logits().data(), trainer->logits().data() + m, buf->logits.data() + begin);
    }
    begin += m;
    bar.Update(s + 1, "loss " + Fixed(loss_sum / static_cast<double>(begin)));
  }
  bar.Finish("loss " + Fixed(loss_sum / static_cast<double>(n)));
  return loss_sum / static_cast<double>(n);
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

// The two-tower model as the fit loop sees it: the model, its Trainer (loss, Adam), the
// examples of one split (train; train + validation for a refit) and the generators.
class TwoTowerFit final : public FitModel {
 public:
  // `source`: the examples' interactions (owned when `owned` holds them); `histories`: shared by
  // the model and its refit (both read the users table with its histories).
  TwoTowerFit(const Config& config, const model::ModelConfig& model_config,
              const data::Dataset& data, const TaskTargets& tasks, HistoryTables* histories,
              std::unique_ptr<data::Interactions> owned, const data::Interactions* source)
      : config_(config),
        model_config_(model_config),
        data_(data),
        tasks_(tasks),
        histories_(histories),
        owned_(std::move(owned)),
        source_(owned_ != nullptr ? *owned_ : *source) {
    // The same streams, in the same order, for a model and its refit: init, shuffle, dropout.
    Rng rng(config.seed);
    Rng init_rng = rng.Split();
    shuffle_rng_ = rng.Split();
    dropout_rng_ = rng.Split();
    model_ = std::make_unique<model::TwoTowerModel>(model_config, data.encoder, &init_rng);
    model_->set_training_precision(TrainingPrecision(config.training));
    trainer_ = std::make_unique<Trainer>(model_.get(),
                                         MakeLoss(config, source_, data.users.num_rows(),
                                                  data.items.num_rows(), data.shard.held >= 0),
                                         OptimizerOptions(config.training),
                                         config.training.embedding_l2, config.seed ^ kSamplingSeed);
    trainer_->SetTasks(tasks);
    trainer_->CheckReplicasEveryStep(config.training.replica_check == "step");
    pointwise_ = trainer_->loss().pointwise();
    positives_only_ = config.training.positives == "liked";
    MakePlan(config, data);
    weights_ = LossWeights(config, source_);
    if (histories_->enabled) {
      example_history_ = owned_ == nullptr ? &histories_->train : &own_history_;
      if (owned_ != nullptr) {
        own_history_ =
            data::BuildExampleHistories(source_, *histories_->table_rows, histories_->length);
      }
    }
  }

  void TrainEpoch(bool progress, EpochRecord* r) override {
    r->train_loss =
        RunEpoch(trainer_.get(), data_, source_, example_history_,
                 // From the config, not from emptiness: every rank passes the same (a rank's
                 // part may be empty), or their collectives would differ.
                 config_.features.weight_column.empty() ? nullptr : &weights_, &plan_,
                 // Under mpirun: batch_size per rank, the global batch Size() times as large.
                 config_.training.batch_size * static_cast<int64_t>(dist::Size()), &shuffle_rng_,
                 &dropout_rng_, progress, &buf_, tasks_, [this] { CheckStop(); });
    r->train_accuracy = pointwise_ ? Accuracy(buf_.logits, buf_.labels) : std::nan("");
    r->train_auc = pointwise_ ? Auc(buf_.logits, buf_.labels) : std::nan("");
  }

  void ReplayShuffles(int epochs) override {
    for (int e = 0; e < epochs; ++e) plan_.ShuffleAll(&shuffle_rng_);
  }

  void Validate(bool progress, EpochRecord* r) override {
    // Both towers run once over every user and item; the pointwise and the ranking evaluation
    // share the embeddings.
    Matrix u, v;
    {
      ProgressBar val_bar("val", 2 + (data_.val.size() + 65535) / 65536, progress);
      model_->EncodeUsers(users(), &u);
      val_bar.Update(1);
      model_->EncodeItems(data_.item_features, &v);
      val_bar.Update(2);
      const EvalMetrics val = Evaluate(*model_, u, v, data_.val, &val_bar, 2);
      val_bar.Finish("loss " + Fixed(val.loss));
      // The scorer (scale, bias) is trained by pointwise losses only; otherwise its loss and
      // accuracy mean nothing, and only the ranking of <u, v> (AUC) is reported.
      r->val_loss = pointwise_ ? val.loss : std::nan("");
      r->val_accuracy = pointwise_ ? val.accuracy : std::nan("");
      r->val_auc = val.auc;
    }
    const std::vector<int>& ks = config_.evaluation.k;
    if (!ks.empty()) {
      r->val_ranking = EvaluateRankingSplit(u, v, data_, Split::kVal, positives_only_, ks);
    }
    r->val_tasks = EvaluateTasks(*model_, tasks_, u, v, data_.val);
    for (const model::TaskSpec& t : model_config_.tasks) {
      r->task_names.push_back("val_" + t.name + "_" + TaskMetricName(t));
    }
  }

  std::string EpochSummary(const EpochRecord& r) const override {
    // append, not "a" + b: GCC 12 warns falsely on the latter (-Wrestrict, bug 105329).
    std::string out;
    if (pointwise_) {
      out.append(" acc ").append(Fixed(r.train_accuracy)).append("  |  val loss ");
      out.append(Fixed(r.val_loss)).append(" acc ").append(Fixed(r.val_accuracy));
      out.append(" auc ").append(Fixed(r.val_auc));
    } else if (!std::isnan(r.val_auc)) {
      // Undefined (no negatives) on implicit data: not printed.
      out.append("  |  val auc ").append(Fixed(r.val_auc));
    } else {
      out.append("  |  val");
    }
    if (!config_.evaluation.k.empty() && (!pointwise_ || config_.Monitor() != "val_auc")) {
      out.append(" ").append(RankingSummary(r.val_ranking));
    }
    for (size_t t = 0; t < r.val_tasks.size(); ++t) {
      out.append(" ").append(r.task_names[t].substr(4)).append(" ").append(Fixed(r.val_tasks[t]));
    }
    return out;
  }

  std::string LossName() const override { return pointwise_ ? "BCE" : "softmax"; }
  std::vector<Matrix> Snapshot() const override { return model_->Snapshot(); }
  void Restore(const std::vector<Matrix>& w) override { model_->Restore(w); }
  std::vector<nn::Parameter*> TrainableParameters() override {
    return model_->TrainableParameters();
  }
  nn::Adam& Optimizer() override { return trainer_->optimizer(); }
  std::vector<std::pair<std::string, Rng*>> Generators() override {
    return {{"dropout_rng", &dropout_rng_}};
  }
  void Save(const std::string& path) const override {
    model::SaveModel(path, *model_, data_.encoder, config_.features, config_.ToJson());
  }

  std::unique_ptr<FitModel> ForRefit() const override {
    // The test's histories (train and validation) from here on: the refit's examples read
    // theirs from train + validation.
    AttachTestHistory(data_, histories_);
    return std::make_unique<TwoTowerFit>(
        config_, model_config_, data_, tasks_, histories_,
        std::make_unique<data::Interactions>(data::Concatenate(
            data_.train, data_.shard.held >= 0
                             ? data::KeepPart(data_.val, data_.user_part, data_.shard.held)
                             : data_.val)),
        nullptr);
  }

  // The epoch plan of source_'s examples: one order (data.shards 1), or one per part of the
  // users, held here (every part in one process; its own under mpirun), with every part's size.
  void MakePlan(const Config& config, const data::Dataset& data) {
    const data::DataShard& shard = data.shard;
    plan_.shards = shard.shards;
    plan_.held = shard.held;
    const bool local = shard.held >= 0;
    std::vector<int64_t> examples =
        Examples(source_, pointwise_, positives_only_, config.training.positives, local);
    if (shard.shards == 1) {
      plan_.sizes = {static_cast<int64_t>(examples.size())};
      plan_.order = {std::move(examples)};
      return;
    }
    plan_.order.assign(shard.shards, {});
    for (int64_t e : examples) {
      plan_.order[data.user_part.at(source_.user_row[e])].push_back(e);
    }
    if (local) {
      const std::vector<int64_t> sizes = dist::Allgather(
          static_cast<int64_t>(plan_.order[shard.held].size()), dist::Traffic::kOther);
      if (static_cast<int>(sizes.size()) != shard.shards) {
        throw Error(ErrorCode::kInternal, "data.shards: not one part per rank");
      }
      plan_.sizes = sizes;
    } else {
      for (const std::vector<int64_t>& o : plan_.order) plan_.sizes.push_back(o.size());
    }
    if (plan_.total() == 0) {
      throw Error(source_.source + ": no training positives (training.positives: " +
                  config.training.positives + " and no interaction has label 1)");
    }
    // Each part's generator: the k-th value of a copy of the shuffle stream, the same in one
    // process and on every rank.
    Rng stream = shuffle_rng_;
    for (int k = 0; k < shard.shards; ++k) plan_.rng.emplace_back(stream.NextU64());
  }

  // The users table the towers read (with the histories when the model has that feature).
  const data::EncodedTable& users() const {
    return histories_->enabled ? histories_->users : data_.user_features;
  }
  model::TwoTowerModel& model() { return *model_; }
  std::unique_ptr<model::TwoTowerModel> TakeModel() { return std::move(model_); }
  const Trainer& trainer() const { return *trainer_; }

 private:
  const Config& config_;
  const model::ModelConfig& model_config_;
  const data::Dataset& data_;
  const TaskTargets& tasks_;
  HistoryTables* histories_;
  std::unique_ptr<data::Interactions> owned_;
  const data::Interactions& source_;
  Rng shuffle_rng_{0}, dropout_rng_{0};
  std::unique_ptr<model::TwoTowerModel> model_;
  std::unique_ptr<Trainer> trainer_;
  bool pointwise_ = false, positives_only_ = false;
  std::vector<float> weights_;  // per row of source_: its loss weight; empty: all 1
  EpochPlan plan_;
  data::ExampleHistories own_history_;
  const data::ExampleHistories* example_history_ = nullptr;
  EpochBuffers buf_;
};

}  // namespace

TrainResult Train(const Config& config, const data::Dataset& data, const TrainOptions& options) {
  const auto start = std::chrono::steady_clock::now();
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
  // The user-history feature: each training example reads the user's positives before it; an
  // evaluation reads everything before the split it scores (validation: train; test: train and
  // validation), attached to a copy of the users table.
  HistoryTables histories = MakeHistories(data);
  TwoTowerFit fit(config, model_config, data, task_targets, &histories, nullptr, &data.train);
  const bool pointwise = fit.trainer().loss().pointwise();
  const bool positives_only = config.training.positives == "liked";
  const std::vector<int>& ks = config.evaluation.k;
  const std::string monitor = config.Monitor();
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
  FitResult fitted = Fit(config, options, &fit);
  result.history = std::move(fitted.history);
  result.best_epoch = fitted.best_epoch;
  result.model = fit.TakeModel();
  if (fitted.refit != nullptr) {
    result.selected_model = std::move(result.model);
    result.model = static_cast<TwoTowerFit&>(*fitted.refit).TakeModel();
    result.refit = true;
  }
  model::TwoTowerModel& final_model = *result.model;
  result.train_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Matrix u, v;
  AttachTestHistory(data, &histories);
  final_model.EncodeUsers(fit.users(), &u);
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
  if (!options.run_dir.empty() && dist::IsRoot()) {
    TestReport report;
    report.test = result.test;
    report.training_loss = fit.trainer().loss().name();
    report.refit = result.refit;
    report.ranking = result.test_ranking;
    report.most_popular = result.test_most_popular;
    report.tasks = result.test_tasks;
    report.best_epoch = result.best_epoch;
    report.train_seconds = result.train_seconds;
    WriteFileAtomically(options.run_dir + "/test_metrics.json", TestMetricsJson(report));
  }
  return result;
}

}  // namespace twotower::train
