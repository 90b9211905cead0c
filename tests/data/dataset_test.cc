#include "twotower/data/dataset.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "testing/temp_dir.h"
#include "twotower/core/error.h"

namespace twotower::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using twotower::testing::ErrorMessage;
using twotower::testing::TempDir;

class ReadInteractionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.File("interactions.csv");
    users_ = EntityIndex::FromTable(
        ReadTable(dir_.Write("users.csv", "user_id,age\nu1,20\nu2,30\n")), "user_id");
    items_ = EntityIndex::FromTable(
        ReadTable(dir_.Write("movies.csv", "movie_id,year\nm1,1990\nm2,2000\n")), "movie_id");
  }
  Interactions Read(const std::string& content) {
    dir_.Write("interactions.csv", content);
    return ReadInteractions(path_, FeatureSchema::Lab(), users_, items_);
  }
  std::string ReadError(const std::string& content) {
    return ErrorMessage([&] { Read(content); });
  }

  TempDir dir_;
  EntityIndex users_, items_;
  std::string path_;
};

TEST_F(ReadInteractionsTest, ReadsLabelsAndOptionalPTrue) {
  const Interactions a =
      Read("user_id,movie_id,rating,liked,p_true\nu2,m1,5,1,0.75\nu1,m2,2,0,0.1\n");
  EXPECT_EQ(a.source, path_);
  EXPECT_THAT(a.user_row, ElementsAre(1, 0));
  EXPECT_THAT(a.item_row, ElementsAre(0, 1));
  EXPECT_THAT(a.label, ElementsAre(1.0f, 0.0f));
  ASSERT_TRUE(a.has_p_true());
  EXPECT_THAT(a.p_true, ElementsAre(0.75f, 0.1f));
  // Column order does not matter, p_true is optional, true/false are labels too.
  const Interactions b = Read("liked,movie_id,user_id\ntrue,m2,u2\nFalse,m2,u1\n1,m1,u1\n");
  EXPECT_THAT(b.label, ElementsAre(1.0f, 0.0f, 1.0f));
  EXPECT_THAT(b.user_row, ElementsAre(1, 0, 0));
  EXPECT_FALSE(b.has_p_true());
  EXPECT_DOUBLE_EQ(b.PositiveRate(), 2.0 / 3.0);
}

TEST_F(ReadInteractionsTest, UnknownIdNamesFileLineAndTable) {
  std::string m = ReadError("user_id,movie_id,liked\nu1,m1,1\nu9,m1,0\n");
  EXPECT_EQ(m, path_ + ":3: column 'user_id': unknown id \"u9\" (not in the users table)");
  m = ReadError("user_id,movie_id,liked\nu1,m7,1\n");
  EXPECT_EQ(m, path_ + ":2: column 'movie_id': unknown id \"m7\" (not in the items table)");
}

TEST_F(ReadInteractionsTest, BadLabelOrProbabilityNamesFileLine) {
  EXPECT_EQ(ReadError("user_id,movie_id,liked\nu1,m1,2\n"),
            path_ + ":2: column 'liked': expected 0 or 1, got \"2\"");
  EXPECT_EQ(ReadError("user_id,movie_id,liked,p_true\nu1,m1,1,1.5\n"),
            path_ + ":2: column 'p_true': expected a probability in [0, 1], got \"1.5\"");
  EXPECT_EQ(ReadError("user_id,movie_id,liked,p_true\nu1,m1,1,high\n"),
            path_ + ":2: column 'p_true': expected a number, got \"high\"");
}

TEST_F(ReadInteractionsTest, MissingColumnAndNoRowsAreErrors) {
  EXPECT_EQ(ReadError("user_id,movie_id,rating\nu1,m1,5\n"),
            path_ + ": missing column 'liked' (found: user_id, movie_id, rating)");
  EXPECT_EQ(ReadError("user_id,movie_id,liked\n"),
            path_ + ": no interactions (expected at least one row)");
  EXPECT_EQ(ReadError("user_id,movie_id,liked\nu1,m1\n"), path_ + ":2: expected 3 columns, got 2");
}

TEST(EntityIndexTest, RejectsDuplicateAndEmptyIds) {
  TempDir dir;
  const std::string path = dir.Write("users.csv", "user_id,age\nu1,20\nu2,30\nu1,40\n");
  EXPECT_EQ(ErrorMessage([&] { EntityIndex::FromTable(ReadTable(path), "user_id"); }),
            path + ":4: column 'user_id': duplicate id \"u1\"");
  const std::string empty = dir.Write("e.csv", "user_id,age\nu1,20\n,30\n");
  EXPECT_EQ(ErrorMessage([&] { EntityIndex::FromTable(ReadTable(empty), "user_id"); }),
            empty + ":3: column 'user_id': empty id");
  EXPECT_THAT(ErrorMessage([&] { EntityIndex::FromTable(ReadTable(path), "id"); }),
              HasSubstr(path + ": missing column 'id' (found: user_id, age)"));
}

TEST(LoadDatasetErrorsTest, MissingFeatureColumnIsReportedBeforeReadingInteractions) {
  TempDir dir;
  DataPaths p;
  p.users = dir.Write("users.csv", "user_id,age\nu1,20\n");
  p.items = dir.Write("movies.csv", "movie_id,year\nm1,1990\n");
  // The interaction files do not exist: the schema error must come first.
  p.train = dir.File("train.csv");
  p.val = dir.File("val.csv");
  p.test = dir.File("test.csv");
  FeatureSchema s;
  s.user.id_column = "user_id";
  s.user.features = {{"age", FeatureType::kNumeric}, {"income", FeatureType::kNumeric}};
  s.item.id_column = "movie_id";
  s.item.features = {{"year", FeatureType::kNumeric}};
  EXPECT_EQ(ErrorMessage([&] { LoadDataset(p, s); }),
            p.users + ": missing column 'income' (found: user_id, age)");
}

}  // namespace
}  // namespace twotower::data
