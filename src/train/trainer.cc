#include "twotower/train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <limits>
#include <numeric>
#include <ostream>

#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/progress.h"
#include "twotower/model/model_file.h"
#include "twotower/nn/adam.h"
#include "twotower/train/loss.h"
#include "twotower/train/metrics.h"
#include "twotower/train/plot.h"

namespace twotower::train {
namespace {

std::string Fixed(double v, int digits = 4) {
  if (std::isnan(v)) return "nan";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

// Copies rows `idx[begin, end)` of `src` into `dst` (resized only when the count changes).
void Gather(const Matrix& src, const std::vector<int32_t>& rows, const int64_t* idx, int64_t n,
            Matrix* dst) {
  if (dst->rows() != n || dst->cols() != src.cols()) dst->resize(n, src.cols());
  for (int64_t i = 0; i < n; ++i) dst->row(i) = src.row(rows[idx[i]]);
}

std::string MetricsCsv(const std::vector<EpochRecord>& history) {
  std::string csv =
      "epoch,train_loss,train_accuracy,train_auc,val_loss,val_accuracy,val_auc,best\n";
  for (const EpochRecord& r : history) {
    csv += std::to_string(r.epoch) + "," + Fixed(r.train_loss, 6) + "," +
           Fixed(r.train_accuracy, 6) + "," + Fixed(r.train_auc, 6) + "," + Fixed(r.val_loss, 6) +
           "," + Fixed(r.val_accuracy, 6) + "," + Fixed(r.val_auc, 6) + "," + (r.best ? "1" : "0") +
           "\n";
  }
  return csv;
}

std::string CurvesSvg(const std::vector<EpochRecord>& history) {
  Series train_loss{"train", "#1f77b4", {}}, val_loss{"validation", "#d62728", {}};
  Series train_auc{"train", "#1f77b4", {}}, val_auc{"validation", "#d62728", {}};
  for (const EpochRecord& r : history) {
    train_loss.values.push_back(r.train_loss);
    val_loss.values.push_back(r.val_loss);
    train_auc.values.push_back(r.train_auc);
    val_auc.values.push_back(r.val_auc);
  }
  return RenderSvg({{"BCE loss", {train_loss, val_loss}}, {"AUC", {train_auc, val_auc}}});
}

std::string MetricsJson(const EvalMetrics& m, int best_epoch, double seconds) {
  auto num = [](double v) { return std::isnan(v) ? std::string("null") : Fixed(v, 6); };
  return "{\n  \"split\": \"test\",\n  \"count\": " + std::to_string(m.count) +
         ",\n  \"loss\": " + num(m.loss) + ",\n  \"accuracy\": " + num(m.accuracy) +
         ",\n  \"auc\": " + num(m.auc) + ",\n  \"oracle_auc\": " + num(m.oracle_auc) +
         ",\n  \"best_epoch\": " + std::to_string(best_epoch) +
         ",\n  \"train_seconds\": " + Fixed(seconds, 3) + "\n}\n";
}

}  // namespace

EvalMetrics Evaluate(const model::TwoTowerModel& model, const Matrix& user_features,
                     const Matrix& item_features, const data::Interactions& data,
                     ProgressBar* progress) {
  constexpr int64_t kChunk = 65536;
  const int64_t n = data.size();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  int64_t done = 0;
  Matrix u, v;
  model.EncodeUsers(user_features, &u);
  if (progress != nullptr) progress->Update(++done);
  model.EncodeItems(item_features, &v);
  if (progress != nullptr) progress->Update(++done);
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

TrainResult Train(const Config& config, const data::Dataset& data, const TrainOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  Rng rng(config.seed);
  Rng init_rng = rng.Split();
  Rng shuffle_rng = rng.Split();
  Rng dropout_rng = rng.Split();

  TrainResult result;
  result.model = std::make_unique<model::TwoTowerModel>(config.model, data.encoder.user.width(),
                                                        data.encoder.item.width(), &init_rng);
  model::TwoTowerModel& net = *result.model;
  std::vector<nn::Parameter*> params = net.TrainableParameters();
  nn::Adam adam(params, {config.training.learning_rate});

  const data::Interactions& train = data.train;
  const int64_t n = train.size();
  const int64_t batch = config.training.batch_size;
  const int64_t steps = (n + batch - 1) / batch;
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);

  model::ModelContext ctx;
  Matrix xu, xi;
  Vector dz;
  std::vector<float> epoch_logits(n), epoch_labels(n);
  std::vector<Matrix> best_weights = net.Snapshot();
  double best_auc = -1.0;
  double best_loss = std::numeric_limits<double>::infinity();
  int since_best = 0;
  const nlohmann::json config_json = config.ToJson();
  const std::string& dir = options.run_dir;
  if (!dir.empty()) WriteFileAtomically(dir + "/config.yaml", config.ToYaml());

  for (int epoch = 1; epoch <= config.training.epochs; ++epoch) {
    const auto epoch_start = std::chrono::steady_clock::now();
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[shuffle_rng.Below(i + 1)]);
    double loss_sum = 0.0;
    ProgressBar bar("train", steps, options.progress);
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t begin = s * batch;
      const int64_t m = std::min(batch, n - begin);
      const int64_t* idx = order.data() + begin;
      Gather(data.user_features, train.user_row, idx, m, &xu);
      Gather(data.item_features, train.item_row, idx, m, &xi);
      float* labels = epoch_labels.data() + begin;
      for (int64_t i = 0; i < m; ++i) labels[i] = train.label[idx[i]];
      const Vector& logits = net.Forward(xu, xi, &ctx, &dropout_rng);
      const double loss = BinaryCrossEntropyWithLogits(logits, labels, &dz);
      nn::ZeroGrad(params);
      net.Backward(&ctx, dz);
      adam.Step();
      loss_sum += loss * static_cast<double>(m);
      std::copy(logits.data(), logits.data() + m, epoch_logits.data() + begin);
      bar.Update(s + 1, "loss " + Fixed(loss_sum / static_cast<double>(begin + m)));
    }
    bar.Finish("loss " + Fixed(loss_sum / static_cast<double>(n)));

    EpochRecord r;
    r.epoch = epoch;
    r.train_loss = loss_sum / static_cast<double>(n);
    r.train_accuracy = Accuracy(epoch_logits, epoch_labels);
    r.train_auc = Auc(epoch_logits, epoch_labels);
    {
      ProgressBar val_bar("val", 2 + (data.val.size() + 65535) / 65536, options.progress);
      const EvalMetrics val =
          Evaluate(net, data.user_features, data.item_features, data.val, &val_bar);
      val_bar.Finish("loss " + Fixed(val.loss));
      r.val_loss = val.loss;
      r.val_accuracy = val.accuracy;
      r.val_auc = val.auc;
    }
    // Selection by val AUC; a one-class validation split has no AUC (NaN), and then val loss
    // decides, so a best model is always kept.
    r.best = std::isnan(r.val_auc) ? r.val_loss < best_loss : r.val_auc > best_auc;
    r.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    if (r.best) {
      if (!std::isnan(r.val_auc)) best_auc = r.val_auc;
      best_loss = r.val_loss;
      result.best_epoch = epoch;
      since_best = 0;
      best_weights = net.Snapshot();
      if (!dir.empty()) {
        model::SaveModel(dir + "/model_best.safetensors", net, data.encoder, config.features,
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
                   << Fixed(r.val_auc) << "  (" << Fixed(r.seconds, 2) << "s)"
                   << (r.best ? "  * best, saved" : "") << std::endl;
    }
    if (!dir.empty()) {
      WriteFileAtomically(dir + "/metrics.csv", MetricsCsv(result.history));
      WriteFileAtomically(dir + "/training_curves.svg", CurvesSvg(result.history));
    }
    if (config.training.early_stopping_patience > 0 &&
        since_best >= config.training.early_stopping_patience) {
      if (options.log != nullptr) {
        *options.log << "early stopping: no better val AUC for "
                     << config.training.early_stopping_patience << " epochs (best epoch "
                     << result.best_epoch << ", val AUC " << Fixed(best_auc) << ")" << std::endl;
      }
      break;
    }
  }
  if (!dir.empty()) {
    model::SaveModel(dir + "/model_last.safetensors", net, data.encoder, config.features,
                     config_json);
  }
  if (result.best_epoch > 0) net.Restore(best_weights);
  result.train_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.test = Evaluate(net, data.user_features, data.item_features, data.test);
  if (!dir.empty()) {
    WriteFileAtomically(dir + "/test_metrics.json",
                        MetricsJson(result.test, result.best_epoch, result.train_seconds));
  }
  return result;
}

}  // namespace twotower::train
