// User histories, checked against lists written out by hand: per training example only the
// positives strictly before it (timestamps, ties, file order without them), the length cap, the
// per-user histories over several files, the item -> table row mapping, and the timestamp column
// of an interactions file with its errors.
#include "twotower/data/history.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "testing/temp_dir.h"
#include "twotower/core/error.h"

namespace twotower::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using twotower::testing::TempDir;

// Item row i is table row 10 + i (as an id feature's bag of the items table would give).
Bags TableRows(int items) {
  Bags b;
  for (int i = 0; i < items; ++i) {
    b.ids.push_back(10 + i);
    b.offsets.push_back(i + 1);
  }
  return b;
}

std::vector<int32_t> Bag(const Bags& b, int64_t r) {
  return {b.ids.begin() + b.offsets[r], b.ids.begin() + b.offsets[r + 1]};
}

Interactions Make(std::vector<int32_t> users, std::vector<int32_t> items, std::vector<float> labels,
                  std::vector<double> times = {}) {
  Interactions x;
  x.source = "test.csv";
  x.user_row = std::move(users);
  x.item_row = std::move(items);
  x.label = std::move(labels);
  x.timestamp = std::move(times);
  return x;
}

TEST(HistoryTest, ExampleHistoryHoldsOnlyEarlierPositives) {
  // User 0 in file order: item 1 at t=30 (+), item 2 at t=10 (+), item 3 at t=20 (-),
  // item 4 at t=30 (+, same moment as item 1), item 5 at t=40 (+). User 1: item 0 at t=5 (+).
  const Interactions x =
      Make({0, 0, 0, 0, 1, 0}, {1, 2, 3, 4, 0, 5}, {1, 1, 0, 1, 1, 1}, {30, 10, 20, 30, 5, 40});
  const Bags h = ExampleHistory(x, TableRows(6), 10);
  ASSERT_EQ(h.rows(), 6);
  EXPECT_THAT(Bag(h, 0), ElementsAre(12));          // t=30: only item 2 (t=10) is earlier
  EXPECT_THAT(Bag(h, 1), ElementsAre());            // t=10: nothing before
  EXPECT_THAT(Bag(h, 2), ElementsAre(12));          // t=20: item 2; negatives never enter
  EXPECT_THAT(Bag(h, 3), ElementsAre(12));          // t=30: item 1 is not before (same moment)
  EXPECT_THAT(Bag(h, 4), ElementsAre());            // user 1 sees nothing of user 0
  EXPECT_THAT(Bag(h, 5), ElementsAre(12, 11, 14));  // oldest first; ties in file order
  // The length keeps the most recent.
  const Bags two = ExampleHistory(x, TableRows(6), 2);
  EXPECT_THAT(Bag(two, 5), ElementsAre(11, 14));
}

TEST(HistoryTest, GatherReadsAnyExamplesFromOneTimelinePerUser) {
  const Interactions x =
      Make({0, 0, 0, 0, 1, 0}, {1, 2, 3, 4, 0, 5}, {1, 1, 0, 1, 1, 1}, {30, 10, 20, 30, 5, 40});
  const ExampleHistories h = BuildExampleHistories(x, TableRows(6), 2);
  EXPECT_EQ(h.timelines.ids.size(), 5u);  // the positives once, not once per example
  const std::vector<int64_t> examples = {5, 4, 0};
  const std::vector<int32_t> users = {0, 1, 0};
  Bags out;
  h.Gather(examples.data(), users.data(), 3, &out);
  ASSERT_EQ(out.rows(), 3);
  EXPECT_THAT(Bag(out, 0), ElementsAre(11, 14));
  EXPECT_THAT(Bag(out, 1), ElementsAre());
  EXPECT_THAT(Bag(out, 2), ElementsAre(12));
  const std::vector<int32_t> wrong = {1};
  EXPECT_THAT([&] { h.Gather(examples.data(), wrong.data(), 1, &out); },
              ::testing::ThrowsMessage<Error>(HasSubstr("is not user row 1's")));
}

TEST(HistoryTest, WithoutTimestampsFileOrderIsTime) {
  const Interactions x = Make({0, 0, 0, 0}, {1, 2, 3, 4}, {1, 0, 1, 1});
  const Bags h = ExampleHistory(x, TableRows(5), 10);
  EXPECT_THAT(Bag(h, 0), ElementsAre());
  EXPECT_THAT(Bag(h, 1), ElementsAre(11));
  EXPECT_THAT(Bag(h, 2), ElementsAre(11));
  EXPECT_THAT(Bag(h, 3), ElementsAre(11, 13));
}

TEST(HistoryTest, UserHistoryIsEverythingInTheSourcesByTime) {
  const Interactions train = Make({0, 1, 0}, {1, 2, 3}, {1, 1, 1}, {50, 10, 20});
  const Interactions val = Make({0, 0, 2}, {4, 0, 2}, {0, 1, 0}, {60, 40, 70});
  const Bags h = UserHistory({&train, &val}, 4, TableRows(5), 10);
  ASSERT_EQ(h.rows(), 4);
  EXPECT_THAT(Bag(h, 0), ElementsAre(13, 10, 11));  // t=20, 40, 50; item 4 is a negative
  EXPECT_THAT(Bag(h, 1), ElementsAre(12));
  EXPECT_THAT(Bag(h, 2), ElementsAre());
  EXPECT_THAT(Bag(h, 3), ElementsAre());
  const Bags one = UserHistory({&train, &val}, 4, TableRows(5), 1);
  EXPECT_THAT(Bag(one, 0), ElementsAre(11));
  // Without timestamps: the sources in order, each in file order.
  const Interactions a = Make({0, 0}, {1, 2}, {1, 1});
  const Interactions b = Make({0}, {0}, {1});
  EXPECT_THAT(Bag(UserHistory({&a, &b}, 1, TableRows(3), 5), 0), ElementsAre(11, 12, 10));
}

TEST(HistoryTest, RefusesMixedTimestampsBadTablesAndLength) {
  const Interactions timed = Make({0}, {1}, {1}, {5});
  const Interactions untimed = Make({0}, {1}, {1});
  EXPECT_THAT(
      [&] {
        UserHistory({&timed, &untimed}, 1, TableRows(2), 3);
      },
      ::testing::ThrowsMessage<Error>(HasSubstr("timestamps in all or in none")));
  Bags two_rows = TableRows(2);
  two_rows.ids.push_back(7);
  two_rows.offsets.back() = 3;
  EXPECT_THAT(
      [&] {
        ExampleHistory(Make({0, 0}, {1, 1}, {1, 1}), two_rows, 3);
      },
      ::testing::ThrowsMessage<Error>(HasSubstr("(expected exactly one)")));
  EXPECT_THROW(ExampleHistory(timed, TableRows(2), 0), Error);
  EXPECT_THAT(Bag(HistoryOfItems({0, 1, 0}, TableRows(2), 2), 0), ElementsAre(11, 10));
}

TEST(HistoryTest, ReadsTheTimestampColumn) {
  TempDir dir;
  const auto users =
      EntityIndex::FromTable(ReadTable(dir.Write("users.csv", "user_id\nu1\n")), "user_id");
  const auto items =
      EntityIndex::FromTable(ReadTable(dir.Write("movies.csv", "movie_id\nm1\n")), "movie_id");
  FeatureSchema schema = FeatureSchema::Lab();
  schema.timestamp_column = "ts";
  const std::string path = dir.Write("i.csv", "user_id,movie_id,liked,ts\nu1,m1,1,881250949\n");
  const Interactions x = ReadInteractions(path, schema, users, items);
  EXPECT_THAT(x.timestamp, ElementsAre(881250949.0));
  dir.Write("i.csv", "user_id,movie_id,liked,ts\nu1,m1,1,soon\n");
  EXPECT_THAT([&] { ReadInteractions(path, schema, users, items); },
              ::testing::ThrowsMessage<Error>(HasSubstr(":2: column 'ts': expected a number")));
  dir.Write("i.csv", "user_id,movie_id,liked\nu1,m1,1\n");
  EXPECT_THAT([&] { ReadInteractions(path, schema, users, items); },
              ::testing::ThrowsMessage<Error>(HasSubstr("ts")));
}

}  // namespace
}  // namespace twotower::data
