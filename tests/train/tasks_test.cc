// Auxiliary task heads (train/tasks.h): losses by hand, every gradient (u, v, heads) against
// finite differences with all three kinds of task at once, class fitting from item text, the
// metrics by hand, the config's `tasks:` section, the model file with heads, and an end-to-end
// run whose task metrics beat the trivial predictors on the lab's generated data.
#include "twotower/train/tasks.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "testing/gradient_check.h"
#include "testing/temp_dir.h"
#include "twotower/core/error.h"
#include "twotower/core/threads.h"
#include "twotower/data/generator.h"
#include "twotower/model/model_file.h"
#include "twotower/train/config.h"
#include "twotower/train/trainer.h"

namespace twotower::train {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using twotower::testing::TempDir;

model::TaskSpec Task(const std::string& name, const std::string& type, double weight,
                     std::vector<std::string> classes = {}, const std::string& delimiter = "") {
  model::TaskSpec t;
  t.name = name;
  t.type = type;
  t.column = name;
  t.weight = weight;
  t.classes = std::move(classes);
  t.delimiter = delimiter;
  return t;
}

// A dense two-tower model of dimension 3 with a regression, a one-label and a multi-label head.
model::TwoTowerModel ThreeTaskModel(Rng* rng) {
  model::ModelConfig c;
  c.embedding_dim = 3;
  c.user_hidden_dims = c.item_hidden_dims = {};
  c.normalize = false;
  c.tasks = {Task("rating", "regression", 0.7), Task("genre", "item_class", 0.5, {"a", "b", "c"}),
             Task("tags", "item_class", 2.0, {"x", "y"}, "|")};
  return model::TwoTowerModel(c, 2, 2, rng);
}

TEST(TaskLossesTest, RegressionByHand) {
  Rng rng(1);
  model::ModelConfig c;
  c.embedding_dim = 2;
  c.user_hidden_dims = c.item_hidden_dims = {};
  c.tasks = {Task("rating", "regression", 1.0)};
  model::TwoTowerModel m(c, 2, 2, &rng);
  m.task_head(0).weight().value << 2.0f, -1.0f;
  m.task_head(0).bias().value << 0.5f;
  Matrix u(2, 2), v(2, 2);
  u << 1, 2, 3, 4;
  v << 1, 1, 0.5f, -1;
  // z = 2 u0 v0 - u1 v1 + 0.5: row 0: 2 - 2 + 0.5 = 0.5; row 1: 3 + 4 + 0.5 = 7.5.
  const std::vector<float> y = {1.5f, 7.0f};  // residuals -1 and 0.5: MSE (1 + 0.25) / 2
  TaskBatch b;
  b.u = &u;
  b.v = &v;
  const std::vector<int32_t> items = {0, 1};
  b.item_rows = items.data();
  b.n = 2;
  b.targets = {y.data()};
  Matrix du = Matrix::Zero(2, 2), dv = Matrix::Zero(2, 2);
  std::vector<double> losses;
  nn::ZeroGrad(m.TrainableParameters());
  EXPECT_NEAR(TaskLosses(m, TaskTargets{{{}}, {0}}, b, &du, &dv, &losses), 0.625, 1e-6);
  EXPECT_NEAR(losses[0], 0.625, 1e-6);
  // dz = 2 r / n = (-1, 0.5); d/du0 = dz w * v: row 0 = -1 * (2 * 1, -1 * 1) = (-2, 1).
  EXPECT_FLOAT_EQ(du(0, 0), -2.0f);
  EXPECT_FLOAT_EQ(du(0, 1), 1.0f);
  EXPECT_FLOAT_EQ(m.task_head(0).bias().grad(0, 0), -0.5f);
}

TEST(TaskLossesTest, EveryGradientMatchesFiniteDifferences) {
  Rng rng(4);
  model::TwoTowerModel m = ThreeTaskModel(&rng);
  const int64_t n = 4;
  Matrix u = testing::RandomNormal(n, 3, &rng);
  Matrix v = testing::RandomNormal(n + 2, 3, &rng);  // two sampled negatives after the pairs
  const std::vector<int32_t> items = {0, 2, 1, 3};
  const std::vector<float> y = {4.0f, 1.0f, 3.0f, 5.0f};
  TaskTargets targets;
  targets.target_index = {0, -1, -1};
  // Item 3 has no genre; item 1 has both tags, item 2 none.
  targets.item_classes = {{}, {{0}, {2}, {1}, {}}, {{1}, {0, 1}, {}, {0}}};
  TaskBatch b;
  b.u = &u;
  b.v = &v;
  b.item_rows = items.data();
  b.n = n;
  b.targets = {y.data(), nullptr, nullptr};
  auto loss = [&] {
    Matrix du = Matrix::Zero(n, 3), dv = Matrix::Zero(n + 2, 3);
    std::vector<double> losses;
    return TaskLosses(m, targets, b, &du, &dv, &losses);
  };
  nn::ZeroGrad(m.TrainableParameters());
  Matrix du = Matrix::Zero(n, 3), dv = Matrix::Zero(n + 2, 3);
  std::vector<double> losses;
  TaskLosses(m, targets, b, &du, &dv, &losses);
  ASSERT_EQ(losses.size(), 3u);
  // The heads' gradients now, before the finite differences call TaskLosses (which adds) again.
  std::map<std::string, Matrix> head_grads;
  for (const auto& t : m.NamedTensors()) head_grads[t.name] = t.parameter->grad;
  EXPECT_TRUE(dv.bottomRows(2).isZero());  // negatives carry no task
  EXPECT_TRUE(testing::GradientNear(du, testing::NumericalGradient(&u, loss, 1e-3), 1e-3, 1e-5));
  const Matrix dv_pairs = dv;
  EXPECT_TRUE(
      testing::GradientNear(dv_pairs, testing::NumericalGradient(&v, loss, 1e-3), 1e-3, 1e-5));
  for (const auto& t : m.NamedTensors()) {
    if (t.name.rfind("tasks.", 0) != 0) continue;
    const Matrix& analytic = head_grads.at(t.name);
    EXPECT_TRUE(testing::GradientNear(
        analytic, testing::NumericalGradient(&t.parameter->value, loss, 1e-3), 1e-3, 1e-5))
        << t.name;
  }
}

TEST(TaskTargetsTest, ClassesAreFittedFromTheItemText) {
  data::Dataset d;
  d.items.source = "movies.csv";
  d.item_text["genre"] = {"b", "a", "", "b"};
  d.item_text["tags"] = {"x|y", "", "y", "z||x"};
  std::vector<model::TaskSpec> tasks = {Task("genre", "item_class", 1.0),
                                        Task("tags", "item_class", 1.0, {}, "|")};
  const TaskTargets t = FitTaskTargets(&tasks, d);
  EXPECT_THAT(tasks[0].classes, ElementsAre("a", "b"));
  EXPECT_THAT(tasks[1].classes, ElementsAre("x", "y", "z"));
  EXPECT_THAT(t.item_classes[0][0], ElementsAre(1));
  EXPECT_TRUE(t.item_classes[0][2].empty());  // an empty cell: no label
  EXPECT_THAT(t.item_classes[1][3], ElementsAre(0, 2));
  EXPECT_THAT(TaskItemColumns(tasks), ElementsAre("genre", "tags"));
  std::vector<model::TaskSpec> missing = {Task("year", "item_class", 1.0)};
  EXPECT_THAT([&] { FitTaskTargets(&missing, d); },
              ::testing::ThrowsMessage<Error>(HasSubstr("column 'year' was not loaded")));
}

TEST(TaskMetricsTest, RmseAndAccuracyByHand) {
  Rng rng(2);
  model::ModelConfig c;
  c.embedding_dim = 2;
  c.user_hidden_dims = c.item_hidden_dims = {};
  c.tasks = {Task("rating", "regression", 1.0), Task("genre", "item_class", 1.0, {"a", "b"})};
  model::TwoTowerModel m(c, 2, 2, &rng);
  m.task_head(0).weight().value << 1.0f, 1.0f;
  m.task_head(0).bias().value << 0.0f;
  m.task_head(1).weight().value << 1.0f, 0.0f, 0.0f, 1.0f;  // class = the larger coordinate
  m.task_head(1).bias().value << 0.0f, 0.0f;
  Matrix u(1, 2), v(3, 2);
  u << 1, 1;
  v << 2, 0, 0, 3, 1, 0;
  data::Interactions split;
  split.user_row = {0, 0, 0};
  split.item_row = {0, 1, 2};
  split.label = {1, 1, 0};
  split.targets = {{3.0f, 3.0f, 1.0f}};  // predictions 2, 3, 1: errors 1, 0, 0
  TaskTargets targets;
  targets.target_index = {0, -1};
  targets.item_classes = {{}, {{0}, {0}, {}}};  // item 1 predicted b: wrong; item 2 unlabelled
  const std::vector<double> metrics = EvaluateTasks(m, targets, u, v, split);
  EXPECT_NEAR(metrics[0], std::sqrt(1.0 / 3.0), 1e-6);
  EXPECT_DOUBLE_EQ(metrics[1], 0.5);
}

TEST(TaskConfigTest, TheTasksSectionIsReadValidatedAndWrittenBack) {
  const Config c = Config::FromYamlString(
      "tasks:\n"
      "  - {name: rating, type: regression, column: rating, weight: 0.2}\n"
      "  - {name: genres, type: item_class, column: genres, delimiter: '|'}\n",
      "cfg");
  ASSERT_EQ(c.model.tasks.size(), 2u);
  EXPECT_EQ(c.model.tasks[1].delimiter, "|");
  EXPECT_DOUBLE_EQ(c.model.tasks[0].weight, 0.2);
  const Config back = Config::FromYamlString(c.ToYaml(), "round trip");
  ASSERT_EQ(back.model.tasks.size(), 2u);
  EXPECT_EQ(back.model.tasks[1].column, "genres");
  EXPECT_THAT([] { Config::FromYamlString("tasks:\n  - {name: r, type: rank, column: x}\n", "f"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("f:2: 'tasks': task 'r': unknown type")));
  EXPECT_THAT(
      [] { Config::FromYamlString("tasks:\n  - {name: r, type: regression, colum: x}\n", "f"); },
      ::testing::ThrowsMessage<Error>(HasSubstr("unknown key 'tasks.colum'")));
  EXPECT_THAT(
      [] {
        Config::FromYamlString(
            "tasks:\n  - {name: r, type: regression, column: x}\n"
            "  - {name: r, type: regression, column: y}\n",
            "f");
      },
      ::testing::ThrowsMessage<Error>(HasSubstr("'tasks': the name 'r' is used twice")));
  EXPECT_THAT(
      [] {
        Config::FromYamlString("tasks:\n  - {name: r, type: regression, column: x, weight: 0}\n",
                               "f");
      },
      ::testing::ThrowsMessage<Error>(HasSubstr("weight must be a positive number")));
  EXPECT_THAT(
      [] {
        Config::FromYamlString(
            "model: {kind: ranker}\ntasks:\n  - {name: r, type: regression, column: x}\n", "f");
      },
      ::testing::ThrowsMessage<Error>(HasSubstr("a ranker")));
}

TEST(TaskModelFileTest, ClassesOutOfOrderOrOnARegressionAreRefused) {
  model::ModelConfig c;
  c.tasks = {Task("genre", "item_class", 1.0, {"b", "a"})};
  EXPECT_THAT([&] { model::ModelConfig::FromJson(c.ToJson(), "m"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("class 1 (\"a\") breaks the order")));
  c.tasks = {Task("rating", "regression", 1.0, {"x"})};
  EXPECT_THAT([&] { model::ModelConfig::FromJson(c.ToJson(), "m"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("a regression task has no classes")));
}

TEST(TaskTargetsTest, ATargetBeyondFloat32IsRefusedNamingLineAndColumn) {
  TempDir dir;
  data::DataPaths p;
  p.users = dir.Write("users.csv", "user_id\nu1\n");
  p.items = dir.Write("items.csv", "item_id\ni1\n");
  p.train = dir.Write("train.csv", "user_id,item_id,liked,rating\nu1,i1,1,4\nu1,i1,0,1e39\n");
  p.val = p.test = p.train;
  data::FeatureSchema schema;
  schema.user.id_column = "user_id";
  schema.item.id_column = "item_id";
  schema.user.features = {{"user_id", data::FeatureType::kId}};
  schema.item.features = {{"item_id", data::FeatureType::kId}};
  EXPECT_THAT([&] { data::LoadDataset(p, schema, {"rating"}); },
              ::testing::ThrowsMessage<Error>(
                  HasSubstr("train.csv:3: column 'rating': expected a number within float32")));
}

TEST(TaskModelFileTest, HeadsAndClassesRoundTrip) {
  TempDir dir;
  Rng rng(3);
  model::TwoTowerModel m = ThreeTaskModel(&rng);
  data::FeatureEncoder encoder;  // dense-only towers: widths 2 and 2
  data::FeatureSchema schema;
  schema.user.id_column = "user_id";
  schema.item.id_column = "item_id";
  schema.user.features = {{"a"}, {"b"}};
  schema.item.features = {{"c"}, {"d"}};
  data::Table users, items;
  users.source = "users.csv";
  users.columns = {"user_id", "a", "b"};
  users.cells = {{"1"}, {"0.5"}, {"2"}};
  users.lines = {2};
  items.source = "items.csv";
  items.columns = {"item_id", "c", "d"};
  items.cells = {{"1"}, {"1"}, {"3"}};
  items.lines = {2};
  encoder.user = data::EntityEncoder(schema.user);
  encoder.user.Fit(users, {0});
  encoder.item = data::EntityEncoder(schema.item);
  encoder.item.Fit(items, {0});
  const std::string path = dir.File("m.safetensors");
  model::SaveModel(path, m, encoder, schema, nlohmann::json::object());
  const model::LoadedModel loaded = model::LoadModel(path);
  ASSERT_EQ(loaded.model->config().tasks.size(), 3u);
  EXPECT_THAT(loaded.model->config().tasks[1].classes, ElementsAre("a", "b", "c"));
  EXPECT_EQ(loaded.model->task_head(1).weight().value, m.task_head(1).weight().value);
  EXPECT_EQ(loaded.model->task_head(2).bias().value, m.task_head(2).bias().value);
}

// On the lab's generated data (ratings from the generator's latent score), a bce model with a
// rating head and a genre head over an id-only item tower: the rating RMSE beats predicting the
// training mean, and the genre accuracy beats the most common genre.
TEST(TaskEndToEndTest, TaskMetricsBeatTheTrivialPredictors) {
  SetThreads(1);
  TempDir dir;
  data::GeneratorOptions g;
  g.users = 300;
  g.movies = 100;
  g.interactions = 6000;
  g.seed = 4;
  data::GenerateLabData(g, dir.path().string());
  Config c;
  c.seed = 3;
  c.threads = 1;
  c.data_dir = dir.path().string();
  c.users = "users.csv";  // the lab's tables (GenerateLabData)
  c.items = "movies.csv";
  c.model.embedding_dim = 16;
  c.model.user_hidden_dims = c.model.item_hidden_dims = {32};
  c.model.dropout = 0.0;
  c.training.batch_size = 64;
  c.training.learning_rate = 0.01;
  c.training.epochs = 15;
  c.training.early_stopping_patience = 0;
  c.evaluation.k = {};
  c.features = data::FeatureSchema::Lab();
  data::FeatureSpec mid{"movie_id", data::FeatureType::kId};
  mid.dim = 16;
  c.features.item.features = {mid};  // the genre is not an input of the item tower
  c.model.tasks = {Task("rating", "regression", 0.5), Task("genre", "item_class", 0.5)};
  c.Validate("test");
  const data::Dataset d =
      data::LoadDataset(c.ResolvedPaths(), c.features, TaskTargetColumns(c.model.tasks),
                        TaskItemColumns(c.model.tasks));
  TrainOptions quiet;
  quiet.progress = false;
  const TrainResult r = Train(c, d, quiet);
  ASSERT_EQ(r.test_tasks.size(), 2u);
  // The trivial predictors, from the files (independent of the heads).
  double mean = 0.0;
  for (float y : d.train.targets[0]) mean += y;
  mean /= static_cast<double>(d.train.size());
  double sq = 0.0;
  for (float y : d.test.targets[0]) sq += (y - mean) * (y - mean);
  const double mean_rmse = std::sqrt(sq / static_cast<double>(d.test.size()));
  // The most common genre among the distinct test items (the items the accuracy is over).
  std::set<int32_t> test_items(d.test.item_row.begin(), d.test.item_row.end());
  std::map<std::string, int> counts;
  for (int32_t item : test_items) ++counts[d.item_text.at("genre")[item]];
  int most = 0;
  for (const auto& [genre, count] : counts) most = std::max(most, count);
  const double majority = static_cast<double>(most) / static_cast<double>(test_items.size());
  SetThreads(0);
  // Measured over seeds 1-3: RMSE 1.14 - 1.15 against the mean's 1.40; accuracy 1.0 against a
  // majority share of about 0.2 (the item ids are embedded, and every test item is a training one).
  EXPECT_EQ(r.test_tasks[0].metric, "rmse");
  EXPECT_LT(r.test_tasks[0].value, mean_rmse - 0.05) << "mean predictor " << mean_rmse;
  EXPECT_EQ(r.test_tasks[1].metric, "accuracy");
  EXPECT_GT(r.test_tasks[1].value, majority + 0.2) << "majority " << majority;
}

}  // namespace
}  // namespace twotower::train
