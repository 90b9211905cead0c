#include "twotower/model/two_tower.h"

#include <cmath>
#include <exception>
#include <set>

#include "twotower/core/error.h"
#include "twotower/core/parallel.h"
#include "twotower/data/history.h"

namespace twotower::model {
namespace {

// Runs the two tower jobs concurrently when a second thread is free to take one, else in order
// (core/parallel.h: under CPU contention the caller runs both rather than wait for a thread the
// OS has descheduled). Neither job's result depends on which thread runs it.
template <typename UserJob, typename ItemJob>
void RunTowers(const UserJob& user_job, const ItemJob& item_job) {
  ParallelInvoke(0, user_job, item_job);
}

}  // namespace

std::ostream& operator<<(std::ostream& os, ScoreMode mode) { return os << ScoreModeName(mode); }

nlohmann::json TasksJson(const std::vector<TaskSpec>& tasks) {
  nlohmann::json out = nlohmann::json::array();
  for (const TaskSpec& t : tasks) {
    out.push_back({{"name", t.name},
                   {"type", t.type},
                   {"column", t.column},
                   {"weight", t.weight},
                   {"delimiter", t.delimiter},
                   {"classes", t.classes}});
  }
  return out;
}

void ValidateTask(const TaskSpec& t, const std::string& where) {
  if (t.name.empty() ||
      t.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789_") != std::string::npos) {
    throw Error(where + ": task name " + Quote(t.name) +
                " must be letters, digits and '_' (it names the head's tensors)");
  }
  if (t.type != "regression" && t.type != "item_class") {
    throw Error(where + ": task '" + t.name + "': unknown type " + Quote(t.type) +
                " (expected regression or item_class)");
  }
  if (t.column.empty()) throw Error(where + ": task '" + t.name + "': no column");
  if (!(t.weight > 0.0) || !std::isfinite(t.weight)) {
    throw Error(where + ": task '" + t.name + "': weight must be a positive number");
  }
  if (t.type == "regression" && !t.delimiter.empty()) {
    throw Error(where + ": task '" + t.name + "': a delimiter is for item_class tasks");
  }
}

const char* ScoreModeName(ScoreMode mode) {
  return mode == ScoreMode::kLearned ? "learned" : "cosine";
}

nlohmann::json ModelConfig::ToJson() const {
  return {{"embedding_dim", embedding_dim},
          {"user_hidden_dims", user_hidden_dims},
          {"item_hidden_dims", item_hidden_dims},
          {"dropout", dropout},
          {"score", ScoreModeName(score)},
          {"initial_scale", initial_scale},
          {"normalize", normalize},
          {"projection", projection},
          {"kind", kind},
          {"cross_layers", cross_layers},
          {"ranker_hidden_dims", ranker_hidden_dims},
          {"tasks", TasksJson(tasks)}};
}

ModelConfig ModelConfig::FromJson(const nlohmann::json& json, const std::string& where) {
  ModelConfig c;
  try {
    c.embedding_dim = json.at("embedding_dim").get<int>();
    c.user_hidden_dims = json.at("user_hidden_dims").get<std::vector<int>>();
    c.item_hidden_dims = json.at("item_hidden_dims").get<std::vector<int>>();
    c.dropout = json.at("dropout").get<double>();
    const std::string score = json.at("score").get<std::string>();
    if (score == "learned") {
      c.score = ScoreMode::kLearned;
    } else if (score == "cosine") {
      c.score = ScoreMode::kCosine;
    } else {
      throw Error(where + ": unknown score mode " + Quote(score));
    }
    if (json.contains("initial_scale")) c.initial_scale = json["initial_scale"].get<double>();
    if (json.contains("normalize")) c.normalize = json["normalize"].get<bool>();
    if (json.contains("projection")) c.projection = json["projection"].get<bool>();
    // Files written before rankers existed are two-tower models.
    if (json.contains("kind")) c.kind = json["kind"].get<std::string>();
    if (json.contains("cross_layers")) c.cross_layers = json["cross_layers"].get<int>();
    if (json.contains("ranker_hidden_dims")) {
      c.ranker_hidden_dims = json["ranker_hidden_dims"].get<std::vector<int>>();
    }
    if (json.contains("tasks")) {
      for (const nlohmann::json& t : json.at("tasks")) {
        TaskSpec task;
        task.name = t.at("name").get<std::string>();
        task.type = t.at("type").get<std::string>();
        task.column = t.at("column").get<std::string>();
        task.weight = t.at("weight").get<double>();
        task.delimiter = t.at("delimiter").get<std::string>();
        task.classes = t.at("classes").get<std::vector<std::string>>();
        c.tasks.push_back(std::move(task));
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": malformed model config: " + e.what());
  }
  if (c.embedding_dim <= 0) throw Error(where + ": embedding_dim must be positive");
  if (c.kind != "two_tower" && c.kind != "ranker") {
    throw Error(where + ": unknown model kind " + Quote(c.kind) +
                " (expected two_tower or ranker)");
  }
  std::set<std::string> task_names;
  for (const TaskSpec& t : c.tasks) {
    ValidateTask(t, where);
    if (!task_names.insert(t.name).second) {
      throw Error(where + ": task '" + t.name + "' is listed twice");
    }
    if (t.type == "item_class" && t.classes.size() > (size_t{1} << 20)) {
      throw Error(where + ": task '" + t.name + "' has more than 2^20 classes");
    }
    if (t.type == "regression" && !t.classes.empty()) {
      throw Error(where + ": task '" + t.name + "': a regression task has no classes");
    }
    for (size_t k = 0; k < t.classes.size(); ++k) {
      if (t.classes[k].empty() || (k > 0 && !(t.classes[k - 1] < t.classes[k])) ||
          (!t.delimiter.empty() && t.classes[k].find(t.delimiter) != std::string::npos)) {
        throw Error(where + ": task '" + t.name + "': class " + std::to_string(k) + " (" +
                    Quote(t.classes[k]) +
                    ") breaks the order (expected distinct non-empty labels, sorted, without the "
                    "delimiter)");
      }
    }
  }
  if (!c.tasks.empty() && c.kind != "two_tower") {
    throw Error(where + ": tasks are heads on a two-tower model's towers; a ranker has none");
  }
  if (c.cross_layers < 0 || c.cross_layers > 16) {
    throw Error(where + ": cross_layers must be in [0, 16], got " + std::to_string(c.cross_layers));
  }
  if (!(c.dropout >= 0.0 && c.dropout < 1.0)) throw Error(where + ": dropout must be in [0, 1)");
  for (const auto* dims : {&c.user_hidden_dims, &c.item_hidden_dims, &c.ranker_hidden_dims}) {
    for (int h : *dims) {
      if (h <= 0) throw Error(where + ": hidden widths must be positive");
    }
  }
  return c;
}

TowerSpec MakeTowerSpec(const ModelConfig& config, const data::FeatureEncoder& both, bool user) {
  const data::EntityEncoder& encoder = user ? both.user : both.item;
  TowerSpec spec;
  if (user && encoder.schema().history.enabled()) {
    spec.history = encoder.schema().history;
    spec.history_dim = both.item.learned()[data::HistoryTableBag(both.item)].dim;
  }
  spec.dense_dim = encoder.width();
  spec.learned = encoder.learned();
  spec.hidden_dims = user ? config.user_hidden_dims : config.item_hidden_dims;
  spec.embedding_dim = config.embedding_dim;
  spec.dropout = static_cast<float>(config.dropout);
  spec.normalize = config.normalize;
  spec.projection = config.projection;
  return spec;
}

TwoTowerModel::TwoTowerModel(const ModelConfig& config, int user_input_dim, int item_input_dim,
                             Rng* init_rng)
    : config_(config) {
  if (user_input_dim <= 0 || item_input_dim <= 0) {
    throw Error("TwoTowerModel: input widths must be positive (got " +
                std::to_string(user_input_dim) + " and " + std::to_string(item_input_dim) + ")");
  }
  TowerSpec spec;
  spec.embedding_dim = config.embedding_dim;
  spec.dropout = static_cast<float>(config.dropout);
  spec.normalize = config.normalize;
  spec.projection = config.projection;
  spec.dense_dim = user_input_dim;
  spec.hidden_dims = config.user_hidden_dims;
  user_tower_ = Tower(spec, init_rng);
  spec.dense_dim = item_input_dim;
  spec.hidden_dims = config.item_hidden_dims;
  item_tower_ = Tower(spec, init_rng);
  InitScorer();
  InitTasks(init_rng);
}

TwoTowerModel::TwoTowerModel(const ModelConfig& config, const data::FeatureEncoder& encoder,
                             Rng* init_rng)
    : config_(config) {
  try {
    user_tower_ = Tower(MakeTowerSpec(config, encoder, true), init_rng);
  } catch (const Error& e) {
    throw Error(std::string("user tower: ") + e.what());
  }
  try {
    item_tower_ = Tower(MakeTowerSpec(config, encoder, false), init_rng);
  } catch (const Error& e) {
    throw Error(std::string("item tower: ") + e.what());
  }
  if (user_tower_.has_history()) {
    history_table_ = &item_tower_.bag(data::HistoryTableBag(encoder.item)).weight();
    user_tower_.SetHistoryTable(&history_table_->value);
  }
  InitScorer();
  InitTasks(init_rng);
}

void TwoTowerModel::InitTasks(Rng* init_rng) {
  // After everything else, so a model without tasks draws what it always did.
  for (const TaskSpec& t : config_.tasks) {
    if (t.outputs() < 1) {
      throw Error("task '" + t.name + "': no classes (the item_class column has no values)");
    }
    auto head = std::make_unique<nn::Linear>(config_.embedding_dim, t.outputs());
    head->InitPyTorchDefault(init_rng);
    task_heads_.push_back(std::move(head));
  }
}

void TwoTowerModel::InitScorer() {
  const float log_scale = config_.score == ScoreMode::kLearned
                              ? static_cast<float>(std::log(config_.initial_scale))
                              : 0;
  log_scale_ = {
      "scorer.log_scale", Matrix::Constant(1, 1, log_scale), Matrix::Zero(1, 1), false, {}};
  bias_ = {"scorer.bias", Matrix::Zero(1, 1), Matrix::Zero(1, 1), false, {}};
}

void TwoTowerModel::ScorePairs(const Matrix& u, const Matrix& v, Vector* logits) const {
  *logits = (u.cwiseProduct(v).rowwise().sum().array() * scale() + bias()).matrix();
}

void TwoTowerModel::Predict(const Matrix& x_u, const Matrix& x_i, Vector* logits) const {
  Matrix u, v;
  EncodeUsers(x_u, &u);
  EncodeItems(x_i, &v);
  ScorePairs(u, v, logits);
}

void TwoTowerModel::ForwardTowers(const data::EncodedTable& users, const int32_t* user_rows,
                                  int64_t n_users, const data::EncodedTable& items,
                                  const int32_t* item_rows, int64_t n_items, ModelContext* ctx,
                                  Rng* rng) {
  ForwardTowers(users, user_rows, n_users, HistoryRows{}, items, item_rows, n_items, ctx, rng);
}

void TwoTowerModel::ForwardTowers(const data::EncodedTable& users, const int32_t* user_rows,
                                  int64_t n_users, HistoryRows history,
                                  const data::EncodedTable& items, const int32_t* item_rows,
                                  int64_t n_items, ModelContext* ctx, Rng* rng) {
  // The towers are independent until the loss: with two or more threads each tower runs on its
  // own thread (Eigen stays single-threaded inside an OpenMP region), which scales far better
  // than splitting the small matrix products of one tower. Each tower gets its own generator
  // split off `rng`, so the result does not depend on the thread count.
  Rng user_rng = rng != nullptr ? rng->Split() : Rng(0);
  Rng item_rng = rng != nullptr ? rng->Split() : Rng(0);
  RunTowers([&] { user_tower_.Forward(users, user_rows, n_users, &ctx->user, &user_rng, history); },
            [&] { item_tower_.Forward(items, item_rows, n_items, &ctx->item, &item_rng); });
}

void TwoTowerModel::BackwardTowers(ModelContext* ctx, const Matrix& du, const Matrix& dv) {
  RunTowers([&] { user_tower_.Backward(&ctx->user, du); },
            [&] { item_tower_.Backward(&ctx->item, dv); });
  // After both: the item tower's backward writes the same table.
  if (history_table_ != nullptr) user_tower_.ScatterHistoryGradient(ctx->user, history_table_);
}

void TwoTowerModel::AddScorerGradient(double d_log_scale, double d_bias) {
  if (config_.score != ScoreMode::kLearned) return;
  log_scale_.grad(0, 0) += static_cast<float>(d_log_scale);
  bias_.grad(0, 0) += static_cast<float>(d_bias);
}

const Vector& TwoTowerModel::Forward(const Matrix& x_u, const Matrix& x_i, ModelContext* ctx,
                                     Rng* rng) {
  if (x_u.rows() != x_i.rows()) {
    throw Error("TwoTowerModel::Forward: user and item batches differ in size");
  }
  Rng user_rng = rng != nullptr ? rng->Split() : Rng(0);
  Rng item_rng = rng != nullptr ? rng->Split() : Rng(0);
  RunTowers([&] { user_tower_.Forward(x_u, &ctx->user, &user_rng); },
            [&] { item_tower_.Forward(x_i, &ctx->item, &item_rng); });
  const Matrix& u = user_output(*ctx);
  const Matrix& v = item_output(*ctx);
  ctx->dot.resize(u.rows());
  ctx->dot.noalias() = u.cwiseProduct(v).rowwise().sum();
  ctx->logits.resize(u.rows());
  ctx->logits.array() = ctx->dot.array() * scale() + bias();
  return ctx->logits;
}

void TwoTowerModel::Backward(ModelContext* ctx, const Vector& dlogits) {
  const float s = scale();
  if (config_.score == ScoreMode::kLearned) {
    // d logit / d log_scale = scale * dot; d logit / d bias = 1.
    log_scale_.grad(0, 0) += s * dlogits.dot(ctx->dot);
    bias_.grad(0, 0) += dlogits.sum();
  }
  const Matrix& u = user_output(*ctx);
  const Matrix& v = item_output(*ctx);
  ctx->du.resize(u.rows(), u.cols());
  ctx->dv.resize(v.rows(), v.cols());
  // d logit / du = scale * v (and symmetrically); the scaled dlogits live in the context so
  // this allocates nothing.
  ctx->dscaled.resize(dlogits.size());
  ctx->dscaled.array() = dlogits.array() * s;
  ctx->du.array() = v.array().colwise() * ctx->dscaled.array();
  ctx->dv.array() = u.array().colwise() * ctx->dscaled.array();
  BackwardTowers(ctx, ctx->du, ctx->dv);
}

std::vector<nn::NamedParameter> TwoTowerModel::NamedTensors() {
  std::vector<nn::NamedParameter> out = user_tower_.NamedParameters("user_tower.");
  for (auto& p : item_tower_.NamedParameters("item_tower.")) out.push_back(p);
  out.push_back({log_scale_.name, &log_scale_});
  out.push_back({bias_.name, &bias_});
  for (size_t t = 0; t < task_heads_.size(); ++t) {
    for (auto& p : std::vector<nn::NamedParameter>{
             {"tasks." + config_.tasks[t].name + ".weight", &task_heads_[t]->weight()},
             {"tasks." + config_.tasks[t].name + ".bias", &task_heads_[t]->bias()}}) {
      out.push_back(p);
    }
  }
  return out;
}

std::vector<nn::Parameter*> TwoTowerModel::TrainableParameters() {
  std::vector<nn::Parameter*> out = user_tower_.Parameters();
  for (auto* p : item_tower_.Parameters()) out.push_back(p);
  if (config_.score == ScoreMode::kLearned) {
    out.push_back(&log_scale_);
    out.push_back(&bias_);
  }
  for (auto& head : task_heads_) {
    out.push_back(&head->weight());
    out.push_back(&head->bias());
  }
  return out;
}

int64_t TwoTowerModel::ParameterCount() {
  int64_t n = 0;
  for (nn::Parameter* p : TrainableParameters()) n += p->value.size();
  return n;
}

std::vector<Matrix> TwoTowerModel::Snapshot() {
  std::vector<Matrix> out;
  for (auto& t : NamedTensors()) out.push_back(t.parameter->value);
  return out;
}

void TwoTowerModel::Restore(const std::vector<Matrix>& snapshot) {
  auto tensors = NamedTensors();
  if (snapshot.size() != tensors.size()) throw Error("TwoTowerModel::Restore: wrong snapshot");
  for (size_t i = 0; i < tensors.size(); ++i) tensors[i].parameter->value = snapshot[i];
}

}  // namespace twotower::model
