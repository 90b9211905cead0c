#include "twotower/train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "testing/reference_metrics.h"
#include "testing/temp_dir.h"
#include "twotower/core/threads.h"
#include "twotower/data/generator.h"
#include "twotower/model/model_file.h"

namespace twotower::train {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using twotower::testing::ReadBytes;
using twotower::testing::TempDir;

// One shared small data set for the suite (generated once, read-only afterwards).
class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SetThreads(1);
    dir_ = new TempDir;
    data::GeneratorOptions g;
    g.users = 300;
    g.movies = 200;
    g.interactions = 4000;
    g.seed = 3;
    data::GenerateLabData(g, dir_->path().string());
    data::DataPaths p;
    p.users = dir_->File("users.csv");
    p.items = dir_->File("movies.csv");
    p.train = dir_->File("train/interactions.csv");
    p.val = dir_->File("val/interactions.csv");
    p.test = dir_->File("test/interactions.csv");
    data_ = new data::Dataset(data::LoadDataset(p, data::FeatureSchema::Lab()));
  }
  static void TearDownTestSuite() {
    delete data_;
    delete dir_;
    data_ = nullptr;
    dir_ = nullptr;
    SetThreads(0);
  }

  static Config SmallConfig() {
    Config c;
    c.seed = 11;
    c.threads = 1;
    c.model.embedding_dim = 16;
    c.model.user_hidden_dims = {32};
    c.model.item_hidden_dims = {32};
    c.model.dropout = 0.1;
    c.training.batch_size = 64;
    c.training.learning_rate = 0.01;
    c.training.epochs = 6;
    c.training.early_stopping_patience = 0;
    return c;
  }
  static TrainOptions Quiet(const std::string& run_dir = "") {
    TrainOptions o;
    o.progress = false;
    o.log = nullptr;
    o.run_dir = run_dir;
    return o;
  }

  static TempDir* dir_;
  static data::Dataset* data_;
};

TempDir* TrainerTest::dir_ = nullptr;
data::Dataset* TrainerTest::data_ = nullptr;

TEST_F(TrainerTest, LearnsClearlyBetterThanChance) {
  const TrainResult r = Train(SmallConfig(), *data_, Quiet());
  ASSERT_NE(r.model, nullptr);
  EXPECT_EQ(r.history.size(), 6u);
  EXPECT_GT(r.test.auc, 0.7);
  EXPECT_EQ(r.test.count, data_->test.size());
  // The oracle AUC is the AUC of the generator's p_true on the test split.
  std::vector<double> p(data_->test.p_true.begin(), data_->test.p_true.end());
  EXPECT_NEAR(r.test.oracle_auc, twotower::testing::PairwiseAuc(p, data_->test.label), 1e-9);

  // Recompute the test metrics from the returned model's embeddings, in double.
  Matrix u, v;
  r.model->EncodeUsers(data_->user_features, &u);
  r.model->EncodeItems(data_->item_features, &v);
  const data::Interactions& test = data_->test;
  std::vector<double> logits(test.size());
  double loss = 0.0;
  int correct = 0;
  for (int64_t i = 0; i < test.size(); ++i) {
    double dot = 0.0;
    for (int k = 0; k < u.cols(); ++k) {
      dot += static_cast<double>(u(test.user_row[i], k)) * v(test.item_row[i], k);
    }
    const double z = r.model->scale() * dot + r.model->bias();
    logits[i] = z;
    const double y = test.label[i];
    loss += std::log1p(std::exp(-std::abs(z))) + std::max(z, 0.0) - z * y;
    correct += (z >= 0) == (y == 1.0);
  }
  EXPECT_NEAR(r.test.auc, twotower::testing::PairwiseAuc(logits, test.label), 2e-3);
  EXPECT_NEAR(r.test.loss, loss / test.size(), 1e-4);
  EXPECT_NEAR(r.test.accuracy, static_cast<double>(correct) / test.size(), 2e-3);
}

TEST_F(TrainerTest, KeepsTheBestEpochsWeights) {
  Config c = SmallConfig();
  c.training.epochs = 5;
  const TrainResult r = Train(c, *data_, Quiet());
  ASSERT_EQ(r.history.size(), 5u);
  // The best epoch is the first one with the highest val AUC, and flags mark each improvement.
  int best = 0;
  double best_auc = -1.0;
  for (const EpochRecord& e : r.history) {
    EXPECT_EQ(e.best, e.val_auc > best_auc) << "epoch " << e.epoch;
    if (e.val_auc > best_auc) {
      best_auc = e.val_auc;
      best = e.epoch;
    }
  }
  EXPECT_EQ(r.best_epoch, best);
  // The returned model holds that epoch's weights.
  const EvalMetrics val =
      Evaluate(*r.model, data_->user_features, data_->item_features, data_->val);
  EXPECT_DOUBLE_EQ(val.auc, r.history[best - 1].val_auc);
  for (size_t i = 0; i < r.history.size(); ++i)
    EXPECT_EQ(r.history[i].epoch, static_cast<int>(i) + 1);
}

TEST_F(TrainerTest, EarlyStoppingFollowsThePatienceRule) {
  for (int patience : {1, 2}) {
    Config c = SmallConfig();
    c.training.epochs = 30;
    c.training.learning_rate = 0.03;
    c.training.early_stopping_patience = patience;
    const TrainResult r = Train(c, *data_, Quiet());
    // Replay the rule on the recorded val AUCs: stop once `patience` epochs brought nothing better.
    double best_auc = -1.0;
    int since = 0, best = 0, stop = c.training.epochs;
    for (const EpochRecord& e : r.history) {
      if (e.val_auc > best_auc) {
        best_auc = e.val_auc;
        best = e.epoch;
        since = 0;
      } else {
        ++since;
      }
      if (since >= patience) {
        stop = e.epoch;
        break;
      }
    }
    EXPECT_LT(r.history.size(), 30u) << "patience " << patience;
    EXPECT_EQ(static_cast<int>(r.history.size()), stop) << "patience " << patience;
    EXPECT_EQ(r.best_epoch, best) << "patience " << patience;
    EXPECT_EQ(r.best_epoch, static_cast<int>(r.history.size()) - patience);
  }
}

TEST_F(TrainerTest, SameSeedSameMetricsBytes) {
  TempDir a, b;
  Config c = SmallConfig();
  c.training.epochs = 3;
  Train(c, *data_, Quiet(a.path().string()));
  Train(c, *data_, Quiet(b.path().string()));
  const std::string metrics = ReadBytes(a.File("metrics.csv"));
  EXPECT_FALSE(metrics.empty());
  EXPECT_EQ(metrics, ReadBytes(b.File("metrics.csv")));
  c.seed = 12;
  TempDir d;
  Train(c, *data_, Quiet(d.path().string()));
  EXPECT_NE(metrics, ReadBytes(d.File("metrics.csv")));
}

TEST_F(TrainerTest, WritesTheRunFolder) {
  TempDir dir;
  const std::string run = dir.File("run");
  Config c = SmallConfig();
  c.training.epochs = 3;
  const TrainResult r = Train(c, *data_, Quiet(run));

  // metrics.csv: a header and one row per epoch matching the history.
  std::istringstream metrics(ReadBytes(run + "/metrics.csv"));
  std::string line;
  ASSERT_TRUE(std::getline(metrics, line));
  EXPECT_EQ(line,
            "epoch,train_loss,train_accuracy,train_auc,val_loss,val_accuracy,val_auc,"
            "val_recall@10,val_recall@20,val_ndcg@10,val_ndcg@20,val_hitrate@10,val_hitrate@20,"
            "val_mrr@10,val_mrr@20,val_coverage@10,val_coverage@20,best");
  size_t rows = 0;
  while (std::getline(metrics, line)) {
    ASSERT_LT(rows, r.history.size());
    const EpochRecord& e = r.history[rows];
    std::vector<std::string> f;
    std::string field;
    std::istringstream ls(line);
    while (std::getline(ls, field, ',')) f.push_back(field);
    ASSERT_EQ(f.size(), 18u) << line;
    EXPECT_EQ(std::stoi(f[0]), e.epoch);
    EXPECT_NEAR(std::stod(f[1]), e.train_loss, 1e-6);
    EXPECT_NEAR(std::stod(f[6]), e.val_auc, 1e-6);
    EXPECT_NEAR(std::stod(f[7]), e.val_ranking.recall[0], 1e-6);
    EXPECT_NEAR(std::stod(f[9]), e.val_ranking.ndcg[0], 1e-6);
    EXPECT_EQ(f[17], e.best ? "1" : "0");
    ++rows;
  }
  EXPECT_EQ(rows, r.history.size());
  EXPECT_EQ(rows, 3u);

  // The best model loads and scores exactly like the returned (best) model.
  const model::LoadedModel best = model::LoadModel(run + "/model_best.safetensors");
  Matrix xu(5, data_->user_features.dense.cols()), xi(5, data_->item_features.dense.cols());
  for (int i = 0; i < 5; ++i) {
    xu.row(i) = data_->user_features.dense.row(data_->test.user_row[i]);
    xi.row(i) = data_->item_features.dense.row(data_->test.item_row[i]);
  }
  Vector expected, got;
  r.model->Predict(xu, xi, &expected);
  best.model->Predict(xu, xi, &got);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(got[i], expected[i]);
  EXPECT_EQ(best.encoder.ToJson(), data_->encoder.ToJson());
  EXPECT_EQ(best.config["training"]["epochs"], 3);
  EXPECT_NO_THROW(model::LoadModel(run + "/model_last.safetensors"));

  const nlohmann::json test = nlohmann::json::parse(ReadBytes(run + "/test_metrics.json"));
  EXPECT_EQ(test["split"], "test");
  EXPECT_EQ(test["count"], data_->test.size());
  EXPECT_EQ(test["best_epoch"], r.best_epoch);
  EXPECT_NEAR(test["auc"].get<double>(), r.test.auc, 1e-6);
  EXPECT_NEAR(test["oracle_auc"].get<double>(), r.test.oracle_auc, 1e-6);

  EXPECT_THAT(ReadBytes(run + "/training_curves.svg"), StartsWith("<svg"));
  const Config saved = Config::FromYamlString(ReadBytes(run + "/config.yaml"), "config.yaml");
  EXPECT_EQ(saved.ToJson(), c.ToJson());

  // Nothing else (no temporary files left behind).
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(run)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"checkpoint.safetensors", "config.yaml", "metrics.csv",
                                             "model_best.safetensors", "model_last.safetensors",
                                             "test_metrics.json", "training_curves.svg"}));
}

TEST_F(TrainerTest, LogsOneLinePerEpoch) {
  Config c = SmallConfig();
  c.training.epochs = 2;
  std::ostringstream log;
  TrainOptions o = Quiet();
  o.log = &log;
  Train(c, *data_, o);
  EXPECT_THAT(log.str(), HasSubstr("epoch 1/2"));
  EXPECT_THAT(log.str(), HasSubstr("epoch 2/2"));
}

// TrainOptions::stop: set before the first batch, training stops there with kUnavailable and
// writes nothing an epoch would (the run folder has its config only).
TEST_F(TrainerTest, AStopFlagStopsBeforeTheNextBatch) {
  TempDir dir;
  const std::string run = dir.File("run");
  std::filesystem::create_directories(run);
  std::atomic<bool> stop{true};
  TrainOptions o = Quiet(run);
  o.stop = &stop;
  try {
    Train(SmallConfig(), *data_, o);
    ADD_FAILURE() << "training did not stop";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_THAT(e.what(), HasSubstr("training interrupted"));
  }
  EXPECT_TRUE(std::filesystem::exists(run + "/config.yaml"));
  EXPECT_FALSE(std::filesystem::exists(run + "/metrics.csv"));
  // Unset, the same options train to the end.
  stop = false;
  Config c = SmallConfig();
  c.training.epochs = 1;
  EXPECT_EQ(Train(c, *data_, o).history.size(), 1u);
}

TEST_F(TrainerTest, OneClassValidationSplitStillWritesTheBestModel) {
  // All validation labels equal: the val AUC is undefined (NaN) every epoch. The run folder must
  // still hold model_best.safetensors, as trainer.h promises: the CLI's next steps (evaluate,
  // embed, recommend) read it.
  data::Dataset d = *data_;
  std::fill(d.val.label.begin(), d.val.label.end(), 1.0f);
  TempDir dir;
  const std::string run = dir.File("run");
  Config c = SmallConfig();
  c.training.epochs = 2;
  const TrainResult r = Train(c, d, Quiet(run));
  ASSERT_EQ(r.history.size(), 2u);
  EXPECT_TRUE(std::isnan(r.history[0].val_auc));
  EXPECT_TRUE(std::filesystem::exists(run + "/model_best.safetensors"));
}

TEST(CreateRunDirectoryTest, MakesUniqueFoldersNamedAfterTheRun) {
  TempDir dir;
  Config c;
  c.output_dir = dir.File("runs");
  c.run_name = "exp";
  const std::string a = CreateRunDirectory(c);
  const std::string b = CreateRunDirectory(c);
  EXPECT_NE(a, b);
  EXPECT_TRUE(std::filesystem::is_directory(a));
  EXPECT_TRUE(std::filesystem::is_directory(b));
  EXPECT_THAT(std::filesystem::path(a).filename().string(), StartsWith("exp_"));
  EXPECT_EQ(std::filesystem::path(a).parent_path(), std::filesystem::path(c.output_dir));
}

}  // namespace
}  // namespace twotower::train
