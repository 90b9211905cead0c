#include "twotower/train/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "testing/temp_dir.h"
#include "twotower/core/error.h"

namespace twotower::train {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using twotower::testing::ErrorMessage;
using twotower::testing::TempDir;

std::string ParseError(const std::string& yaml) {
  return ErrorMessage([&] { Config::FromYamlString(yaml, "run.yaml"); });
}

// Every field compared one by one (Config has no operator==).
void ExpectSameConfig(const Config& a, const Config& b) {
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.threads, b.threads);
  EXPECT_EQ(a.data_dir, b.data_dir);
  EXPECT_EQ(a.users, b.users);
  EXPECT_EQ(a.items, b.items);
  EXPECT_EQ(a.train, b.train);
  EXPECT_EQ(a.val, b.val);
  EXPECT_EQ(a.test, b.test);
  EXPECT_EQ(a.model.embedding_dim, b.model.embedding_dim);
  EXPECT_EQ(a.model.user_hidden_dims, b.model.user_hidden_dims);
  EXPECT_EQ(a.model.item_hidden_dims, b.model.item_hidden_dims);
  EXPECT_EQ(a.model.dropout, b.model.dropout);
  EXPECT_EQ(a.model.score, b.model.score);
  EXPECT_EQ(a.model.initial_scale, b.model.initial_scale);
  EXPECT_EQ(a.training.batch_size, b.training.batch_size);
  EXPECT_EQ(a.training.learning_rate, b.training.learning_rate);
  EXPECT_EQ(a.training.epochs, b.training.epochs);
  EXPECT_EQ(a.training.early_stopping_patience, b.training.early_stopping_patience);
  EXPECT_EQ(a.training.sampler, b.training.sampler);
  EXPECT_EQ(a.training.num_negatives, b.training.num_negatives);
  EXPECT_EQ(a.training.num_uniform_negatives, b.training.num_uniform_negatives);
  EXPECT_EQ(a.training.num_hard_negatives, b.training.num_hard_negatives);
  EXPECT_EQ(a.training.num_easy_negatives, b.training.num_easy_negatives);
  EXPECT_EQ(a.training.exclude_history_negatives, b.training.exclude_history_negatives);
  EXPECT_EQ(a.training.margin, b.training.margin);
  EXPECT_EQ(a.training.optimizer, b.training.optimizer);
  EXPECT_EQ(a.output_dir, b.output_dir);
  EXPECT_EQ(a.run_name, b.run_name);
  EXPECT_EQ(data::ToJson(a.features), data::ToJson(b.features));
  EXPECT_EQ(a.ToJson(), b.ToJson());
}

TEST(ConfigTest, RepositoryConfigHasTheLabValues) {
  const Config c =
      Config::FromYamlFile(std::string(TWOTOWER_SOURCE_DIR) + "/config/ranking_config.yaml");
  EXPECT_EQ(c.model.embedding_dim, 128);
  EXPECT_THAT(c.model.user_hidden_dims, ElementsAre(256, 128));
  EXPECT_THAT(c.model.item_hidden_dims, ElementsAre(256, 128));
  EXPECT_DOUBLE_EQ(c.model.dropout, 0.3);
  EXPECT_EQ(c.model.score, model::ScoreMode::kLearned);
  EXPECT_EQ(c.training.batch_size, 256);
  EXPECT_DOUBLE_EQ(c.training.learning_rate, 0.001);
  EXPECT_EQ(c.training.epochs, 30);
  EXPECT_EQ(c.training.early_stopping_patience, 5);
  EXPECT_EQ(c.seed, 42u);
  EXPECT_EQ(c.threads, 0);
  EXPECT_EQ(c.data_dir, "data/recommendations/v1");
  EXPECT_EQ(c.users, "users.csv");
  EXPECT_EQ(c.items, "movies.csv");
  EXPECT_EQ(c.train, "train/interactions.csv");
  // No features section: the lab's schema.
  EXPECT_EQ(data::ToJson(c.features), data::ToJson(data::FeatureSchema::Lab()));
}

TEST(ConfigTest, DefaultsAreTheLabValues) {
  const Config c;
  EXPECT_EQ(c.model.embedding_dim, 128);
  EXPECT_THAT(c.model.user_hidden_dims, ElementsAre(256, 128));
  EXPECT_DOUBLE_EQ(c.model.dropout, 0.3);
  EXPECT_EQ(c.training.batch_size, 256);
  EXPECT_DOUBLE_EQ(c.training.learning_rate, 1e-3);
  EXPECT_EQ(c.training.epochs, 30);
  EXPECT_EQ(c.training.early_stopping_patience, 5);
  // An empty file keeps every default.
  ExpectSameConfig(Config::FromYamlString("", "empty.yaml"), c);
  ExpectSameConfig(Config::FromYamlString("# only a comment\n", "c.yaml"), c);
}

TEST(ConfigTest, ReadsEverySection) {
  const Config c = Config::FromYamlString(R"(
seed: 7
threads: 2
data: {dir: /data/x, users: u.csv, items: i.csv, train: tr.csv, val: va.csv, test: te.csv}
model:
  embedding_dim: 16
  user_hidden_dims: [32]
  item_hidden_dims: [64, 32, 16]
  dropout: 0
  score: cosine
  initial_scale: 2.5
training: {batch_size: 8, learning_rate: 1e-2, epochs: 3, early_stopping_patience: 0}
output: {dir: out, name: exp}
)",
                                          "x.yaml");
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.threads, 2);
  EXPECT_EQ(c.model.embedding_dim, 16);
  EXPECT_THAT(c.model.user_hidden_dims, ElementsAre(32));
  EXPECT_THAT(c.model.item_hidden_dims, ElementsAre(64, 32, 16));
  EXPECT_EQ(c.model.dropout, 0.0);
  EXPECT_EQ(c.model.score, model::ScoreMode::kCosine);
  EXPECT_EQ(c.model.initial_scale, 2.5);
  EXPECT_EQ(c.training.batch_size, 8);
  EXPECT_EQ(c.training.learning_rate, 0.01);
  EXPECT_EQ(c.training.epochs, 3);
  EXPECT_EQ(c.training.early_stopping_patience, 0);
  EXPECT_EQ(c.output_dir, "out");
  EXPECT_EQ(c.run_name, "exp");
  const data::DataPaths p = c.ResolvedPaths();
  EXPECT_EQ(p.users, "/data/x/u.csv");
  EXPECT_EQ(p.items, "/data/x/i.csv");
  EXPECT_EQ(p.train, "/data/x/tr.csv");
  EXPECT_EQ(p.val, "/data/x/va.csv");
  EXPECT_EQ(p.test, "/data/x/te.csv");
}

TEST(ConfigTest, AbsoluteDataPathsIgnoreTheDirectory) {
  const Config c = Config::FromYamlString("data: {dir: rel, users: /abs/users.csv}\n", "c.yaml");
  EXPECT_EQ(c.ResolvedPaths().users, "/abs/users.csv");
  EXPECT_EQ(c.ResolvedPaths().items, "rel/movies.csv");  // the lab schema: the lab's file
}

TEST(ConfigTest, UnknownKeyNamesFileLineAndKey) {
  EXPECT_EQ(ParseError("training:\n  epochs: 3\n  epohcs: 4\n"),
            "run.yaml:3: unknown key 'training.epohcs' (expected one of: batch_size, "
            "learning_rate, epochs, early_stopping_patience, loss, temperature, logq_correction, "
            "remove_accidental_hits, sampler, num_negatives, num_uniform_negatives, "
            "num_hard_negatives, num_easy_negatives, exclude_history_negatives, margin, "
            "optimizer, precision, weight_transform, weight_alpha, weight_eps, replica_check, "
            "positives, monitor, "
            "refit, "
            "checkpoint, embedding_l2)");
  const std::string top = ParseError("seed: 1\nlearning_rate: 0.1\n");
  EXPECT_THAT(top, HasSubstr("run.yaml:2: unknown key 'learning_rate'"));
  EXPECT_THAT(top, HasSubstr("training"));
}

TEST(ConfigTest, UnknownKeyInAFileNamesThePath) {
  TempDir dir;
  const std::string path = dir.Write("bad.yaml", "model:\n  embedding_dim: 8\n  layers: 3\n");
  EXPECT_THAT(ErrorMessage([&] { Config::FromYamlFile(path); }),
              HasSubstr(path + ":3: unknown key 'model.layers'"));
}

TEST(ConfigTest, MissingFileNamesThePath) {
  TempDir dir;
  const std::string path = dir.File("nope.yaml");
  EXPECT_THAT(ErrorMessage([&] { Config::FromYamlFile(path); }), HasSubstr(path + ": cannot open"));
}

TEST(ConfigTest, WrongTypesAreErrors) {
  EXPECT_EQ(ParseError("training:\n  epochs: ten\n"),
            "run.yaml:2: 'training.epochs': expected an integer, got \"ten\"");
  EXPECT_EQ(ParseError("model:\n  user_hidden_dims: 5\n"),
            "run.yaml:2: 'model.user_hidden_dims': expected a list of integers like [256, 128]");
  EXPECT_THAT(ParseError("model:\n  item_hidden_dims: [64, wide]\n"),
              HasSubstr("run.yaml:2: 'model.item_hidden_dims': expected a list of integers"));
  EXPECT_THAT(ParseError("training:\n  epochs: 2.5\n"),
              HasSubstr("'training.epochs': expected an integer, got \"2.5\""));
  EXPECT_THAT(ParseError("training:\n  learning_rate: fast\n"),
              HasSubstr("'training.learning_rate': expected a number, got \"fast\""));
  EXPECT_THAT(ParseError("model:\n  embedding_dim: [1, 2]\n"),
              HasSubstr("'model.embedding_dim': expected an integer, got a list"));
  // An integer that does not fit is out of range, not "not an integer".
  EXPECT_THAT(ParseError("seed: -1\n"),
              HasSubstr("'seed': \"-1\" is out of range (expected >= 0 and <= "
                        "18446744073709551615)"));
  EXPECT_THAT(ParseError("seed: 18446744073709551616\n"),
              HasSubstr("'seed': \"18446744073709551616\" is out of range"));
  EXPECT_THAT(ParseError("seed: x1\n"), HasSubstr("'seed': expected an integer >= 0, got \"x1\""));
  EXPECT_THAT(ParseError("training:\n  epochs: 99999999999999999999\n"),
              HasSubstr("'training.epochs': \"99999999999999999999\" is out of range (expected "
                        ">= 1 and <= "));
  EXPECT_THAT(ParseError("model: 5\n"), HasSubstr("run.yaml:1: 'model': expected a mapping"));
  EXPECT_THAT(ParseError("- a\n- b\n"), HasSubstr("run.yaml: expected a mapping"));
  EXPECT_THAT(ParseError("model: {embedding_dim: 8\n"), HasSubstr("invalid YAML"));
}

TEST(ConfigTest, OutOfRangeValuesAreErrors) {
  EXPECT_EQ(ParseError("training:\n  learning_rate: -0.001\n"),
            "run.yaml:2: 'training.learning_rate': -0.001 is out of range (expected > 0 and <= "
            "10)");
  EXPECT_THAT(ParseError("training:\n  learning_rate: 0\n"), HasSubstr("is out of range"));
  // Bounds print as written, not in the stream's six digits (1.04858e+06).
  EXPECT_EQ(ParseError("training:\n  num_negatives: 2000000\n"),
            "run.yaml:2: 'training.num_negatives': 2000000 is out of range (expected >= 1 and <= "
            "1048576)");
  EXPECT_THAT(ParseError("training:\n  batch_size: 0\n"),
              HasSubstr("'training.batch_size': 0 is out of range"));
  EXPECT_THAT(ParseError("model:\n  dropout: 1.5\n"),
              HasSubstr("'model.dropout': 1.5 is out of range"));
  EXPECT_THAT(ParseError("model:\n  user_hidden_dims: [64, 0]\n"),
              HasSubstr("'model.user_hidden_dims': 0 is out of range"));
  EXPECT_THAT(ParseError("threads: -2\n"), HasSubstr("'threads': -2 is out of range"));
}

TEST(ConfigTest, UnknownScoreMode) {
  EXPECT_EQ(ParseError("model:\n  score: dot\n"),
            "run.yaml:2: 'model.score': unknown value \"dot\" (expected: learned, cosine)");
}

TEST(ConfigTest, FeaturesSectionParsesACustomSchema) {
  const Config c = Config::FromYamlString(R"(
features:
  user_id: uid
  item_id: sku
  label: clicked
  p_true: prob
  user:
    - {column: age, type: numeric}
    - {column: country, type: categorical}
  item:
    - column: price
      type: numeric
)",
                                          "f.yaml");
  const data::FeatureSchema& s = c.features;
  EXPECT_EQ(s.user.id_column, "uid");
  EXPECT_EQ(s.item.id_column, "sku");
  EXPECT_EQ(s.label_column, "clicked");
  EXPECT_EQ(s.p_true_column, "prob");
  ASSERT_EQ(s.user.features.size(), 2u);
  EXPECT_EQ(s.user.features[0].column, "age");
  EXPECT_EQ(s.user.features[0].type, data::FeatureType::kNumeric);
  EXPECT_EQ(s.user.features[1].column, "country");
  EXPECT_EQ(s.user.features[1].type, data::FeatureType::kCategorical);
  ASSERT_EQ(s.item.features.size(), 1u);
  EXPECT_EQ(s.item.features[0].column, "price");
}

TEST(ConfigTest, FeaturesSectionOnlyOverridesWhatItNames) {
  const Config c = Config::FromYamlString("features:\n  label: clicked\n", "f.yaml");
  data::FeatureSchema expected = data::FeatureSchema::Lab();
  expected.label_column = "clicked";
  EXPECT_EQ(data::ToJson(c.features), data::ToJson(expected));
}

TEST(ConfigTest, RetrievalSettingsThatCannotWorkAreRefused) {
  EXPECT_THAT(ParseError("training: {loss: softmax, monitor: val_loss}\n"),
              HasSubstr("'training.monitor': val_loss is the pointwise (bce) loss"));
  EXPECT_THAT(ParseError("training: {loss: softmax, batch_size: 1}\n"),
              HasSubstr("'training.batch_size': in-batch negatives need at least 2 rows"));
  EXPECT_THAT(ParseError("evaluation: {k: [10, 10]}\n"),
              HasSubstr("'evaluation.k': 10 is listed twice"));
  EXPECT_THAT(ParseError("training: {monitor: val_recall@7}\n"),
              HasSubstr("unknown value \"val_recall@7\""));
}

// The sampled objectives' settings: each bad combination names its key.
TEST(ConfigTest, SampledLossSettingsThatCannotWorkAreRefused) {
  EXPECT_THAT(ParseError("training: {loss: triplet, margin: 2.5}\n"),
              HasSubstr("'training.margin'"));
  EXPECT_THAT(ParseError("training: {loss: triplet, margin: 0}\n"), HasSubstr("'training.margin'"));
  EXPECT_THAT(ParseError("training: {loss: bpr, temperature: 0}\n"),
              HasSubstr("'training.temperature'"));
  EXPECT_THAT(ParseError("training: {loss: bpr, temperature: -1}\n"),
              HasSubstr("'training.temperature'"));
  EXPECT_THAT(ParseError("training: {loss: bpr, sampler: gaussian}\n"),
              HasSubstr("'training.sampler'"));
  EXPECT_THAT(ParseError("training: {loss: softmax, sampler: uniform}\n"),
              HasSubstr("'training.sampler': softmax takes its negatives from the batch"));
  EXPECT_THAT(ParseError("training: {loss: mixed, sampler: popularity}\n"),
              HasSubstr("'training.sampler': mixed takes its negatives from the batch and"));
  EXPECT_THAT(ParseError("training: {loss: bce, sampler: uniform}\n"),
              HasSubstr("'training.sampler': bce trains on the labelled pairs"));
  EXPECT_THAT(ParseError("training: {loss: bpr, num_negatives: 8, num_hard_negatives: 9}\n"),
              HasSubstr("'training.num_hard_negatives': 9 is more than the 8 negatives a row "
                        "has (num_negatives)"));
  EXPECT_THAT(
      ParseError("training: {loss: mixed, batch_size: 4, num_uniform_negatives: 2, "
                 "num_hard_negatives: 6}\n"),
      HasSubstr(
          "6 is more than the 5 negatives a row has (batch_size - 1 + num_uniform_negatives)"));
  EXPECT_THAT(ParseError("training: {loss: bpr, sampler: in_batch, batch_size: 1}\n"),
              HasSubstr("'training.batch_size': in-batch negatives need at least 2 rows"));
  EXPECT_THAT(ParseError("training: {loss: bce, num_hard_negatives: 1}\n"),
              HasSubstr("'training.num_hard_negatives': bce draws no negatives"));
  EXPECT_THAT(ParseError("training: {loss: softmax, num_easy_negatives: 4}\n"),
              HasSubstr("'training.num_easy_negatives': easy negatives are kept beside hard "
                        "ones; set training.num_hard_negatives too"));
  EXPECT_THAT(ParseError("training: {loss: bpr, num_negatives: 8, num_hard_negatives: 8, "
                         "num_easy_negatives: 2}\n"),
              HasSubstr("'training.num_easy_negatives': num_hard_negatives (8) already keeps "
                        "all 8 negatives a row has"));
  EXPECT_THAT(ParseError("training: {loss: softmax, num_easy_negatives: -1}\n"),
              HasSubstr("'training.num_easy_negatives'"));
  EXPECT_THAT(ParseError("training: {loss: bpr, num_negatives: 0}\n"),
              HasSubstr("'training.num_negatives'"));
  EXPECT_THAT(ParseError("training: {optimizer: sgd}\n"), HasSubstr("'training.optimizer'"));
  // And the combinations that do fit parse.
  EXPECT_NO_THROW(Config::FromYamlString(
      "training: {loss: mixed, batch_size: 4, num_uniform_negatives: 2, num_hard_negatives: 5}\n",
      "run.yaml"));
  EXPECT_NO_THROW(
      Config::FromYamlString("training: {loss: triplet, sampler: popularity, margin: 2}\n", "r"));
}

TEST(ConfigTest, FeaturesSectionRejectsBadEntries) {
  EXPECT_EQ(ParseError("features:\n  user:\n    - {column: age, type: ordinal}\n"),
            "run.yaml:3: 'features.user': column 'age': unknown feature type \"ordinal\" "
            "(expected: numeric, categorical, id, multi_hot)");
  EXPECT_THAT(ParseError("features:\n  users: []\n"),
              HasSubstr("run.yaml:2: unknown key 'features.users'"));
  EXPECT_THAT(ParseError("features:\n  user:\n    - {column: age, type: numeric, scale: 2}\n"),
              HasSubstr("run.yaml:3: 'features.user': column 'age': unknown key 'scale' for type "
                        "numeric (expected: column, missing, type)"));
  EXPECT_THAT(ParseError("features:\n  user:\n    - {column: age}\n"),
              HasSubstr("run.yaml:3: 'features.user': expected {column: NAME, type: TYPE, ...}"));
  EXPECT_THAT(ParseError("features:\n  item: genre\n"),
              HasSubstr("run.yaml:2: 'features.item': expected a list"));
  EXPECT_THAT(ParseError("features:\n  user:\n    - {column: age, type: numeric}\n"
                         "    - {column: age, type: categorical}\n"),
              HasSubstr("features.user: column 'age' listed twice"));
  EXPECT_THAT(ParseError("features:\n  user: []\n"),
              HasSubstr("features.user: expected at least one feature column"));
  EXPECT_THAT(ParseError("features:\n  user:\n    - {column: user_id, type: id, dim: x}\n"),
              HasSubstr("run.yaml:3: 'features.user.dim': expected an integer, got \"x\""));
  EXPECT_THAT(ParseError("features:\n  user:\n    - {column: user_id, type: id, dim: 0}\n"),
              HasSubstr("run.yaml:3: 'features.user': column 'user_id': dim 0 is out of range "
                        "(expected 1..65536)"));
  EXPECT_THAT(ParseError("features:\n  user:\n    - {column: g, type: multi_hot, pooling: max}\n"),
              HasSubstr("column 'g': 'pooling': unknown value \"max\" (expected: mean, sum)"));
  EXPECT_THAT(ParseError("features:\n  item: []\n  item: []\n"),
              HasSubstr("run.yaml:3: key 'features.item' appears twice"));
  EXPECT_THAT(ParseError("features:\n  user:\n    - {column: a, type: id, column: b}\n"),
              HasSubstr("key 'column' appears twice"));
  EXPECT_THAT(ParseError("features: [1]\n"), HasSubstr("'features': expected a mapping"));
}

TEST(ConfigTest, SetAssignsDottedKeys) {
  Config c;
  c.Set("training.epochs=3", "--set");
  EXPECT_EQ(c.training.epochs, 3);
  c.Set("model.user_hidden_dims=64,32", "--set");
  EXPECT_THAT(c.model.user_hidden_dims, ElementsAre(64, 32));
  c.Set("model.item_hidden_dims=[16, 8]", "--set");
  EXPECT_THAT(c.model.item_hidden_dims, ElementsAre(16, 8));
  c.Set("model.score=cosine", "--set");
  EXPECT_EQ(c.model.score, model::ScoreMode::kCosine);
  c.Set("training.learning_rate=0.05", "--set");
  EXPECT_EQ(c.training.learning_rate, 0.05);
  c.Set("data.dir=/tmp/some=dir", "--set");  // only the first '=' separates
  EXPECT_EQ(c.data_dir, "/tmp/some=dir");
  c.Set("seed=18446744073709551615", "--set");
  EXPECT_EQ(c.seed, 18446744073709551615ULL);
}

TEST(ConfigTest, SetRejectsUnknownKeysBadValuesAndMissingEquals) {
  Config c;
  const std::string unknown = ErrorMessage([&] { c.Set("nope=1", "--set"); });
  EXPECT_THAT(unknown, HasSubstr("--set: unknown key 'nope' (expected one of: "));
  EXPECT_THAT(unknown, HasSubstr("training.learning_rate"));
  EXPECT_EQ(ErrorMessage([&] { c.Set("training.epochs", "--set"); }),
            "--set: expected key=value, got \"training.epochs\"");
  EXPECT_EQ(ErrorMessage([&] { c.Set("training.learning_rate=-1", "--set"); }),
            "--set: 'training.learning_rate': -1 is out of range (expected > 0 and <= 10)");
  EXPECT_EQ(ErrorMessage([&] { c.Set("training.epochs=many", "--set"); }),
            "--set: 'training.epochs': expected an integer, got \"many\"");
  EXPECT_THAT(ErrorMessage([&] { c.Set("model.score=dot", "--set"); }),
              HasSubstr("unknown value \"dot\" (expected: learned, cosine)"));
  // A failed Set leaves the old value.
  EXPECT_EQ(c.training.epochs, 30);
  EXPECT_EQ(c.training.learning_rate, 1e-3);
}

TEST(ConfigTest, ToYamlReparsesToAnEqualConfig) {
  Config c;
  c.seed = 123456789012345ULL;
  c.threads = 3;
  c.data_dir = "/data/my movies: v2";
  c.users = "u #1.csv";
  c.train = "splits/train.csv";
  c.model.embedding_dim = 24;
  c.model.user_hidden_dims = {48};
  c.model.item_hidden_dims = {96, 48, 24};
  c.model.dropout = 0.123456789;
  c.model.score = model::ScoreMode::kCosine;
  c.model.initial_scale = 7.25;
  c.training.batch_size = 100;
  c.training.learning_rate = 3e-4;
  c.training.epochs = 12;
  c.training.early_stopping_patience = 0;
  c.training.loss = "triplet";
  c.training.sampler = "popularity";
  c.training.num_negatives = 17;
  c.training.num_uniform_negatives = 33;
  c.training.num_hard_negatives = 5;
  c.training.num_easy_negatives = 7;
  c.training.exclude_history_negatives = true;
  c.training.margin = 0.375;
  c.training.optimizer = "lazy_adam";
  c.output_dir = "runs/out";
  c.run_name = "exp-1";
  c.features.label_column = "clicked";
  c.features.user.features.push_back({"zip", data::FeatureType::kCategorical});
  const Config back = Config::FromYamlString(c.ToYaml(), "resolved.yaml");
  ExpectSameConfig(back, c);
  // The defaults too.
  ExpectSameConfig(Config::FromYamlString(Config().ToYaml(), "defaults.yaml"), Config());
}

TEST(ConfigTest, ToYamlQuotesStringsThatLookLikeOtherYaml) {
  Config c;
  c.run_name = "null";
  c.output_dir = "123";
  c.users = "true";
  c.items = "- x";
  c.val = "[a]";
  const Config back = Config::FromYamlString(c.ToYaml(), "resolved.yaml");
  ExpectSameConfig(back, c);
}

TEST(ConfigTest, ToJsonHoldsEverySection) {
  Config c;
  c.training.epochs = 4;
  const nlohmann::json j = c.ToJson();
  EXPECT_EQ(j["training"]["epochs"], 4);
  EXPECT_EQ(j["model"]["embedding_dim"], 128);
  EXPECT_EQ(j["data"]["dir"], "data/recommendations/v1");
  EXPECT_EQ(j["output"]["name"], "ranking_model");
  EXPECT_EQ(j["features"]["label"], "liked");
}

TEST(ConfigTest, SettingsHelpListsEveryKey) {
  const std::vector<std::string> help = SettingsHelp();
  std::string all;
  for (const std::string& line : help) all += line + "\n";
  for (const char* key : {"seed",
                          "threads",
                          "data.dir",
                          "data.users",
                          "data.items",
                          "data.train",
                          "data.val",
                          "data.test",
                          "model.embedding_dim",
                          "model.user_hidden_dims",
                          "model.item_hidden_dims",
                          "model.dropout",
                          "model.score",
                          "model.initial_scale",
                          "training.batch_size",
                          "training.learning_rate",
                          "training.epochs",
                          "training.early_stopping_patience",
                          "output.dir",
                          "output.name"}) {
    EXPECT_THAT(all, HasSubstr(std::string(key) + " (")) << key;
  }
}

}  // namespace
}  // namespace twotower::train

namespace twotower::train {
namespace {

TEST(ConfigReviewTest, KeyGivenTwiceIsAnError) {
  const std::string message = twotower::testing::ErrorMessage(
      [] { Config::FromYamlString("training:\n  epochs: 10\n  epochs: 3\n", "run.yaml"); });
  EXPECT_THAT(message, ::testing::HasSubstr("run.yaml:3: key 'training.epochs' appears twice"));
  // Spelt once nested and once dotted (what a Python dict of settings can hold): still twice.
  EXPECT_EQ(twotower::testing::ErrorMessage([] {
              Config::FromYamlString("training:\n  epochs: 10\ntraining.epochs: 3\n", "run.yaml");
            }),
            "run.yaml:3: key 'training.epochs' appears twice (first at run.yaml:2)");
  EXPECT_EQ(twotower::testing::ErrorMessage([] {
              Config::FromYamlString("model.embedding_dim: 8\nmodel: {embedding_dim: 16}\n",
                                     "run.yaml");
            }),
            "run.yaml:2: key 'model.embedding_dim' appears twice (first at run.yaml:1)");
}

TEST(ConfigReviewTest, EmptyDataPathNamesTheKey) {
  Config c;
  const std::string message =
      twotower::testing::ErrorMessage([&] { c.Set("data.train=", "--set"); });
  EXPECT_THAT(message, ::testing::HasSubstr("'data.train' is empty"));
}

TEST(ConfigReviewTest, EmptyItemInAListIsAnError) {
  Config c;
  const std::string message =
      twotower::testing::ErrorMessage([&] { c.Set("model.user_hidden_dims=256,,128", "--set"); });
  EXPECT_THAT(message, ::testing::HasSubstr("expected a list of integers"));
}

TEST(ConfigReviewTest, SettingsHelpShowsDefaultsAndRanges) {
  bool found = false;
  for (const std::string& line : SettingsHelp()) {
    if (line.rfind("training.learning_rate", 0) == 0) {
      found = true;
      EXPECT_THAT(line, ::testing::HasSubstr("default 0.001"));
      EXPECT_THAT(line, ::testing::HasSubstr("> 0"));
    }
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace twotower::train
