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

// The part of a user is CRC-32C of its id modulo shards. Expected values: the CRC-32C check value
// of "123456789" (0xE3069283, RFC 3720 / the iSCSI test vectors) and those of "u1", "u3",
// "alice", "bob" from a bit-at-a-time CRC-32C (polynomial 0x82F63B78) written in Python.
TEST(UserPartsTest, AUsersPartIsCrc32cOfItsIdModuloShards) {
  TempDir dir;
  const EntityIndex users = EntityIndex::FromTable(
      ReadTable(dir.Write("users.csv", "user_id\n123456789\nu1\nu3\nalice\nbob\n")), "user_id");
  EXPECT_THAT(UserParts(users, 1), ElementsAre(0, 0, 0, 0, 0));
  // 0xE3069283 = 3808858755; u1 3516436556, u3 816046267, alice 4211212942, bob 3996272340.
  EXPECT_THAT(UserParts(users, 2), ElementsAre(1, 0, 1, 0, 0));
  EXPECT_THAT(UserParts(users, 3), ElementsAre(0, 2, 1, 1, 0));
  EXPECT_THAT(UserParts(users, 1000), ElementsAre(755, 556, 267, 942, 340));
}

TEST_F(ReadInteractionsTest, APartKeepsItsUsersRowsInFileOrderAndStillChecksEveryRow) {
  const std::string rows =
      "user_id,movie_id,liked,rating\nu1,m1,1,5\nu2,m2,0,2\nu2,m1,1,4\nu1,m2,0,1\nu2,m2,1,3\n";
  dir_.Write("interactions.csv", rows);
  const std::vector<int32_t> part = {1, 0};  // u1 in part 1, u2 in part 0
  const Interactions p0 =
      ReadInteractions(path_, FeatureSchema::Lab(), users_, items_, {"rating"}, &part, 0);
  EXPECT_THAT(p0.user_row, ElementsAre(1, 1, 1));
  EXPECT_THAT(p0.item_row, ElementsAre(1, 0, 1));
  EXPECT_THAT(p0.label, ElementsAre(0.0f, 1.0f, 1.0f));
  ASSERT_EQ(p0.targets.size(), 1u);
  EXPECT_THAT(p0.targets[0], ElementsAre(2.0f, 4.0f, 3.0f));
  const Interactions p1 =
      ReadInteractions(path_, FeatureSchema::Lab(), users_, items_, {"rating"}, &part, 1);
  EXPECT_THAT(p1.user_row, ElementsAre(0, 0));
  EXPECT_THAT(p1.targets[0], ElementsAre(5.0f, 1.0f));
  // A part may be empty; a bad row of another part is still an error naming its line.
  const std::vector<int32_t> all_in_one = {1, 1};
  EXPECT_EQ(
      ReadInteractions(path_, FeatureSchema::Lab(), users_, items_, {}, &all_in_one, 0).size(), 0);
  dir_.Write("interactions.csv", "user_id,movie_id,liked\nu1,m1,1\nu2,m9,1\n");
  EXPECT_THAT(ErrorMessage([&] {
                ReadInteractions(path_, FeatureSchema::Lab(), users_, items_, {}, &part, 1);
              }),
              HasSubstr(":3: column 'movie_id': unknown id \"m9\""));
  // KeepPart: the same rows from a whole read.
  dir_.Write("interactions.csv", rows);
  const Interactions whole =
      ReadInteractions(path_, FeatureSchema::Lab(), users_, items_, {"rating"});
  const Interactions kept = KeepPart(whole, part, 0);
  EXPECT_EQ(kept.user_row, p0.user_row);
  EXPECT_EQ(kept.item_row, p0.item_row);
  EXPECT_EQ(kept.label, p0.label);
  EXPECT_EQ(kept.targets, p0.targets);
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
