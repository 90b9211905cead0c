#include "twotower/data/encoder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "testing/fixtures.h"
#include "testing/temp_dir.h"
#include "twotower/core/error.h"
#include "twotower/data/dataset.h"

namespace twotower::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using twotower::testing::ErrorMessage;
using twotower::testing::MakeTable;
using twotower::testing::TempDir;

EntitySchema UserSchema() {
  EntitySchema s;
  s.id_column = "user_id";
  s.features = {{"age", FeatureType::kNumeric},
                {"gender", FeatureType::kCategorical},
                {"genre", FeatureType::kCategorical}};
  return s;
}

Table UserTable() {
  return MakeTable("users.csv", {"user_id", "age", "gender", "genre"},
                   {{"u1", "20", "M", "Drama"},
                    {"u2", "30", "F", "Action"},
                    {"u3", "40", "M", "Comedy"},
                    {"u4", "50", "F", "Drama"}});
}

TEST(EntityEncoderTest, StandardisesWithPopulationStd) {
  EntityEncoder enc(UserSchema());
  const Table table = UserTable();
  enc.Fit(table, {0, 1, 2, 3});
  // Ages 20, 30, 40, 50: mean 35, population variance (225 + 25 + 25 + 225) / 4 = 125.
  const double mean = 35.0, std = std::sqrt(125.0);
  const nlohmann::json j = enc.ToJson();
  EXPECT_DOUBLE_EQ(j["columns"][0]["mean"].get<double>(), mean);
  EXPECT_DOUBLE_EQ(j["columns"][0]["std"].get<double>(), std);
  Matrix x;
  enc.Encode(table, &x);
  ASSERT_EQ(x.rows(), 4);
  ASSERT_EQ(x.cols(), enc.width());
  const double ages[] = {20, 30, 40, 50};
  for (int r = 0; r < 4; ++r) EXPECT_FLOAT_EQ(x(r, 0), (ages[r] - mean) / std);
}

TEST(EntityEncoderTest, FitsOnTheGivenRowsOnly) {
  EntityEncoder enc(UserSchema());
  const Table table = UserTable();
  enc.Fit(table, {0, 2});  // ages 20 and 40; genres Drama, Comedy; gender M only
  const nlohmann::json j = enc.ToJson();
  EXPECT_DOUBLE_EQ(j["columns"][0]["mean"].get<double>(), 30.0);
  EXPECT_DOUBLE_EQ(j["columns"][0]["std"].get<double>(), 10.0);
  EXPECT_THAT(enc.OutputNames(), ElementsAre("age", "gender=M", "genre=Comedy", "genre=Drama"));
  Matrix x;
  enc.Encode(table, &x);
  // u2 (30, F, Action): both categories unseen -> zeros; age exactly the mean -> 0.
  EXPECT_FLOAT_EQ(x(1, 0), 0.0f);
  for (int c = 1; c < enc.width(); ++c) EXPECT_EQ(x(1, c), 0.0f) << c;
  // u4 (50): (50 - 30) / 10 = 2.
  EXPECT_FLOAT_EQ(x(3, 0), 2.0f);
}

TEST(EntityEncoderTest, ConstantColumnGetsStdOne) {
  EntitySchema s;
  s.id_column = "id";
  s.features = {{"x", FeatureType::kNumeric}};
  const Table table = MakeTable("t.csv", {"id", "x"}, {{"a", "7"}, {"b", "7"}, {"c", "9"}});
  EntityEncoder enc(s);
  enc.Fit(table, {0, 1});
  EXPECT_DOUBLE_EQ(enc.ToJson()["columns"][0]["std"].get<double>(), 1.0);
  Matrix x;
  enc.Encode(table, &x);
  EXPECT_FLOAT_EQ(x(0, 0), 0.0f);
  EXPECT_FLOAT_EQ(x(2, 0), 2.0f);  // (9 - 7) / 1
}

TEST(EntityEncoderTest, OneHotLayoutUsesSortedVocabulary) {
  EntityEncoder enc(UserSchema());
  const Table table = UserTable();
  enc.Fit(table, {0, 1, 2, 3});
  EXPECT_EQ(enc.width(), 1 + 2 + 3);
  EXPECT_THAT(enc.OutputNames(), ElementsAre("age", "gender=F", "gender=M", "genre=Action",
                                             "genre=Comedy", "genre=Drama"));
  Matrix x;
  enc.Encode(table, &x);
  // Columns: age | F M | Action Comedy Drama.
  const float expected[4][5] = {
      {0, 1, 0, 0, 1},  // u1 M Drama
      {1, 0, 1, 0, 0},  // u2 F Action
      {0, 1, 0, 1, 0},  // u3 M Comedy
      {1, 0, 0, 0, 1},  // u4 F Drama
  };
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 5; ++c) EXPECT_EQ(x(r, 1 + c), expected[r][c]) << r << "," << c;
  }
}

TEST(EntityEncoderTest, LayoutDoesNotDependOnRowOrder) {
  const Table table = UserTable();
  const Table reversed = MakeTable("users.csv", {"user_id", "age", "gender", "genre"},
                                   {{"u4", "50", "F", "Drama"},
                                    {"u3", "40", "M", "Comedy"},
                                    {"u2", "30", "F", "Action"},
                                    {"u1", "20", "M", "Drama"}});
  EntityEncoder a(UserSchema()), b(UserSchema());
  a.Fit(table, {0, 1, 2, 3});
  b.Fit(reversed, {0, 1, 2, 3});
  EXPECT_EQ(a.OutputNames(), b.OutputNames());
  Matrix xa, xb;
  a.Encode(table, &xa);
  b.Encode(reversed, &xb);
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < a.width(); ++c) EXPECT_FLOAT_EQ(xa(r, c), xb(3 - r, c));
  }
}

TEST(EntityEncoderTest, UnseenCategoryEncodesAsZeros) {
  EntityEncoder enc(UserSchema());
  enc.Fit(UserTable(), {0, 1, 2, 3});
  const Table other =
      MakeTable("new.csv", {"user_id", "age", "gender", "genre"}, {{"u9", "35", "X", "Western"}});
  Matrix x;
  enc.Encode(other, &x);
  ASSERT_EQ(x.rows(), 1);
  EXPECT_FLOAT_EQ(x(0, 0), 0.0f);
  for (int c = 1; c < enc.width(); ++c) EXPECT_EQ(x(0, c), 0.0f);

  std::vector<float> row(enc.width(), 42.0f);
  enc.EncodeRow({{"age", "35"}, {"gender", "X"}, {"genre", "Action"}}, "request", row.data());
  EXPECT_THAT(row, ElementsAre(0.0f, 0.0f, 0.0f, 1.0f, 0.0f, 0.0f));
}

TEST(EntityEncoderTest, EncodeRowMatchesEncodeAndChecksFields) {
  EntityEncoder enc(UserSchema());
  const Table table = UserTable();
  enc.Fit(table, {0, 1, 2, 3});
  Matrix x;
  enc.Encode(table, &x);
  std::vector<float> row(enc.width());
  // Extra fields are ignored, order does not matter.
  enc.EncodeRow({{"genre", "Comedy"}, {"zip", "123"}, {"gender", "M"}, {"age", "40"}}, "req",
                row.data());
  for (int c = 0; c < enc.width(); ++c) EXPECT_FLOAT_EQ(row[c], x(2, c));

  EXPECT_EQ(ErrorMessage([&] {
              enc.EncodeRow({{"age", "40"}, {"gender", "M"}}, "request body", row.data());
            }),
            "request body: missing field 'genre'");
  EXPECT_EQ(ErrorMessage([&] {
              enc.EncodeRow({{"age", "old"}, {"gender", "M"}, {"genre", "Drama"}}, "request body",
                            row.data());
            }),
            "request body: column 'age': expected a number, got \"old\"");
}

TEST(EntityEncoderTest, NonNumericValueNamesFileLineAndColumn) {
  EntityEncoder enc(UserSchema());
  const Table table = MakeTable("users.csv", {"user_id", "age", "gender", "genre"},
                                {{"u1", "20", "M", "Drama"}, {"u2", "abc", "F", "Action"}});
  EXPECT_EQ(ErrorMessage([&] {
              enc.Fit(table, {0, 1});
            }),
            "users.csv:3: column 'age': expected a number, got \"abc\"");
  // Encoding reads every row, also those the encoder was not fitted on.
  enc.Fit(table, {0});
  Matrix x;
  EXPECT_EQ(ErrorMessage([&] { enc.Encode(table, &x); }),
            "users.csv:3: column 'age': expected a number, got \"abc\"");
}

// One huge finite cell must not poison the model: its square would overflow the variance to
// infinity (a model file that cannot be loaded). A value beyond a 32-bit float's range is refused
// naming the file, row and column; the largest float still fits, with finite statistics.
TEST(EntityEncoderTest, AValueBeyondFloatRangeIsRefusedAndTheLargestFloatFits) {
  for (const char* huge : {"1e200", "8.98846567431158e307", "-3.5e38"}) {
    EntityEncoder enc(UserSchema());
    const Table table = MakeTable("users.csv", {"user_id", "age", "gender", "genre"},
                                  {{"u1", "20", "M", "Drama"}, {"u2", huge, "F", "Action"}});
    EXPECT_THAT(ErrorMessage([&] {
                  enc.Fit(table, {0, 1});
                }),
                HasSubstr("users.csv:3: column 'age': \"" + std::string(huge) +
                          "\" is outside the range of a 32-bit float"))
        << huge;
  }
  EntityEncoder enc(UserSchema());
  const Table table = MakeTable("users.csv", {"user_id", "age", "gender", "genre"},
                                {{"u1", "20", "M", "Drama"}, {"u2", "3.4e38", "F", "Action"}});
  enc.Fit(table, {0, 1});
  // By hand: mean (20 + 3.4e38) / 2, population std half the difference.
  const nlohmann::json j = enc.ToJson();
  EXPECT_DOUBLE_EQ(j["columns"][0]["mean"].get<double>(), (20 + 3.4e38) / 2);
  EXPECT_DOUBLE_EQ(j["columns"][0]["std"].get<double>(), (3.4e38 - 20) / 2);
  Matrix x;
  enc.Encode(table, &x);
  EXPECT_FLOAT_EQ(x(0, 0), -1.0f);
  EXPECT_FLOAT_EQ(x(1, 0), 1.0f);
}

TEST(EntityEncoderTest, MissingColumnNamesFileAndColumnsFound) {
  EntitySchema s = UserSchema();
  s.features.push_back({"income", FeatureType::kNumeric});
  EntityEncoder enc(s);
  EXPECT_EQ(ErrorMessage([&] {
              enc.Fit(UserTable(), {0, 1});
            }),
            "users.csv: missing column 'income' (found: user_id, age, gender, genre)");
}

TEST(EntityEncoderTest, JsonRoundTripPreservesState) {
  EntityEncoder enc(UserSchema());
  const Table table = UserTable();
  enc.Fit(table, {0, 1, 3});
  const nlohmann::json j = enc.ToJson();
  // The documented state: id, then per column its type and statistics or vocabulary.
  EXPECT_EQ(j["id"], "user_id");
  ASSERT_EQ(j["columns"].size(), 3u);
  EXPECT_EQ(j["columns"][0]["column"], "age");
  EXPECT_EQ(j["columns"][0]["type"], "numeric");
  EXPECT_DOUBLE_EQ(j["columns"][0]["mean"].get<double>(), (20.0 + 30.0 + 50.0) / 3.0);
  EXPECT_EQ(j["columns"][1]["type"], "categorical");
  EXPECT_EQ(j["columns"][1]["vocabulary"], nlohmann::json({"F", "M"}));
  EXPECT_EQ(j["columns"][2]["vocabulary"], nlohmann::json({"Action", "Drama"}));

  // Through text, as in a model file.
  const EntityEncoder back = EntityEncoder::FromJson(nlohmann::json::parse(j.dump()), "model");
  EXPECT_EQ(back.ToJson(), j);
  EXPECT_EQ(back.width(), enc.width());
  EXPECT_EQ(back.OutputNames(), enc.OutputNames());
  EXPECT_EQ(back.schema().id_column, "user_id");
  Matrix a, b;
  enc.Encode(table, &a);
  back.Encode(table, &b);
  ASSERT_EQ(a.rows(), b.rows());
  ASSERT_EQ(a.cols(), b.cols());
  EXPECT_EQ(a, b);
}

TEST(FeatureEncoderTest, JsonRoundTripAndMalformedState) {
  FeatureEncoder enc;
  enc.user = EntityEncoder(UserSchema());
  enc.user.Fit(UserTable(), {0, 1});
  EntitySchema items;
  items.id_column = "movie_id";
  items.features = {{"year", FeatureType::kNumeric}};
  enc.item = EntityEncoder(items);
  enc.item.Fit(MakeTable("movies.csv", {"movie_id", "year"}, {{"m1", "1990"}, {"m2", "2000"}}),
               {0, 1});
  const nlohmann::json j = enc.ToJson();
  const FeatureEncoder back = FeatureEncoder::FromJson(j, "m.safetensors");
  EXPECT_EQ(back.ToJson(), j);
  EXPECT_EQ(back.item.width(), 1);

  EXPECT_THAT(ErrorMessage([] { FeatureEncoder::FromJson(nlohmann::json::array(), "m.st"); }),
              HasSubstr("m.st: malformed encoder state"));
  nlohmann::json bad = j;
  bad["user"]["columns"][0].erase("std");
  EXPECT_THAT(ErrorMessage([&] { FeatureEncoder::FromJson(bad, "m.st"); }),
              HasSubstr("m.st: malformed encoder state"));
  bad = j;
  bad["user"]["columns"][0]["std"] = 0.0;
  EXPECT_THAT(ErrorMessage([&] { FeatureEncoder::FromJson(bad, "m.st"); }),
              HasSubstr("m.st: encoder column 'age': invalid mean/std"));
  bad = j;
  bad["user"]["columns"][1]["vocabulary"] = {"M", "F"};
  EXPECT_THAT(ErrorMessage([&] { FeatureEncoder::FromJson(bad, "m.st"); }),
              HasSubstr("m.st: encoder column 'gender': vocabulary not sorted"));
  bad = j;
  bad["user"]["columns"][1]["type"] = "ordinal";
  EXPECT_THAT(ErrorMessage([&] { FeatureEncoder::FromJson(bad, "m.st"); }),
              HasSubstr("unknown feature type \"ordinal\""));
}

// ---- LoadDataset: the encoder sees the training split only ------------------------------------

FeatureSchema SmallSchema() {
  FeatureSchema s;
  s.user.id_column = "user_id";
  s.user.features = {{"age", FeatureType::kNumeric}, {"gender", FeatureType::kCategorical}};
  s.item.id_column = "movie_id";
  s.item.features = {{"genre", FeatureType::kCategorical}, {"year", FeatureType::kNumeric}};
  return s;
}

DataPaths WriteSmallDataset(const TempDir& dir) {
  DataPaths p;
  // u4 appears only in val and test, u5 only in test; both have extreme ages and u4 a gender
  // never seen in train. m4 (Western, 1900) appears only in test.
  p.users = dir.Write("users.csv",
                      "user_id,age,gender\n"
                      "u1,20,M\n"
                      "u2,30,F\n"
                      "u3,40,M\n"
                      "u4,99,X\n"
                      "u5,1000,F\n");
  p.items = dir.Write("movies.csv",
                      "movie_id,genre,year\n"
                      "m1,Action,2000\n"
                      "m2,Drama,2010\n"
                      "m3,Comedy,1990\n"
                      "m4,Western,1900\n");
  // u1 occurs twice in train: the statistics are over entities, not interactions.
  p.train = dir.Write("train.csv",
                      "user_id,movie_id,liked\n"
                      "u1,m1,1\n"
                      "u2,m2,0\n"
                      "u3,m3,1\n"
                      "u1,m2,0\n");
  p.val = dir.Write("val.csv",
                    "user_id,movie_id,liked\n"
                    "u4,m1,1\n"
                    "u2,m3,0\n");
  p.test = dir.Write("test.csv",
                     "user_id,movie_id,liked\n"
                     "u4,m4,1\n"
                     "u5,m2,0\n"
                     "u1,m4,1\n");
  return p;
}

TEST(LoadDatasetTest, EncoderFitsOnTrainSplitOnly) {
  TempDir dir;
  const Dataset d = LoadDataset(WriteSmallDataset(dir), SmallSchema());
  // Train users u1, u2, u3: ages 20, 30, 40 -> mean 30, population std sqrt(200 / 3).
  const double user_mean = 30.0, user_std = std::sqrt(200.0 / 3.0);
  // Train movies m1, m2, m3: years 2000, 2010, 1990 -> mean 2000, std sqrt(200 / 3).
  const double item_mean = 2000.0, item_std = std::sqrt(200.0 / 3.0);
  const nlohmann::json user = d.encoder.user.ToJson();
  const nlohmann::json item = d.encoder.item.ToJson();
  EXPECT_DOUBLE_EQ(user["columns"][0]["mean"].get<double>(), user_mean);
  EXPECT_DOUBLE_EQ(user["columns"][0]["std"].get<double>(), user_std);
  EXPECT_EQ(user["columns"][1]["vocabulary"], nlohmann::json({"F", "M"}));  // no "X"
  EXPECT_EQ(item["columns"][0]["vocabulary"], nlohmann::json({"Action", "Comedy", "Drama"}));
  EXPECT_DOUBLE_EQ(item["columns"][1]["mean"].get<double>(), item_mean);
  EXPECT_DOUBLE_EQ(item["columns"][1]["std"].get<double>(), item_std);
  EXPECT_THAT(d.encoder.user.OutputNames(), ElementsAre("age", "gender=F", "gender=M"));
  EXPECT_THAT(d.encoder.item.OutputNames(),
              ElementsAre("genre=Action", "genre=Comedy", "genre=Drama", "year"));

  // Every entity is encoded, with the train statistics.
  ASSERT_EQ(d.user_features.rows(), 5);
  ASSERT_EQ(d.user_features.dense.cols(), 3);
  EXPECT_FLOAT_EQ(d.user_features.dense(3, 0), static_cast<float>((99.0 - user_mean) / user_std));
  EXPECT_EQ(d.user_features.dense(3, 1), 0.0f);  // gender X: unseen
  EXPECT_EQ(d.user_features.dense(3, 2), 0.0f);
  EXPECT_FLOAT_EQ(d.user_features.dense(4, 0), static_cast<float>((1000.0 - user_mean) / user_std));
  EXPECT_EQ(d.user_features.dense(4, 1), 1.0f);  // F
  ASSERT_EQ(d.item_features.rows(), 4);
  ASSERT_EQ(d.item_features.dense.cols(), 4);
  for (int c = 0; c < 3; ++c) EXPECT_EQ(d.item_features.dense(3, c), 0.0f);  // Western: unseen
  EXPECT_FLOAT_EQ(d.item_features.dense(3, 3), static_cast<float>((1900.0 - item_mean) / item_std));
  EXPECT_FLOAT_EQ(d.item_features.dense(0, 3), 0.0f);
}

TEST(LoadDatasetTest, InteractionsIndexTheEntityTables) {
  TempDir dir;
  const Dataset d = LoadDataset(WriteSmallDataset(dir), SmallSchema());
  EXPECT_THAT(d.user_index.ids, ElementsAre("u1", "u2", "u3", "u4", "u5"));
  EXPECT_EQ(d.user_index.Find("u3"), 2);
  EXPECT_EQ(d.user_index.Find("u9"), -1);
  EXPECT_THAT(d.train.user_row, ElementsAre(0, 1, 2, 0));
  EXPECT_THAT(d.train.item_row, ElementsAre(0, 1, 2, 1));
  EXPECT_THAT(d.train.label, ElementsAre(1.0f, 0.0f, 1.0f, 0.0f));
  EXPECT_DOUBLE_EQ(d.train.PositiveRate(), 0.5);
  EXPECT_FALSE(d.train.has_p_true());
  EXPECT_THAT(d.val.user_row, ElementsAre(3, 1));
  EXPECT_THAT(d.test.user_row, ElementsAre(3, 4, 0));
  EXPECT_THAT(d.test.item_row, ElementsAre(3, 1, 3));
  EXPECT_DOUBLE_EQ(d.test.PositiveRate(), 2.0 / 3.0);
}

TEST(ReferencedRowsTest, SortedUnique) {
  EXPECT_THAT(ReferencedRows({4, 1, 4, 0, 1}, 6), ElementsAre(0, 1, 4));
  EXPECT_THAT(ReferencedRows({}, 3), ::testing::IsEmpty());
}

}  // namespace
}  // namespace twotower::data
