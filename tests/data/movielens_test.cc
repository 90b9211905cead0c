// `data movielens`: small files in each release's format, written here, converted and read back.
#include "twotower/data/movielens.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "testing/temp_dir.h"
#include "twotower/core/error.h"
#include "twotower/data/csv.h"
#include "twotower/train/config.h"

namespace twotower::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using twotower::testing::ErrorMessage;
using twotower::testing::ReadBytes;
using twotower::testing::TempDir;

// ml-100k with 4 users x 10 ratings over 12 movies; movie 3's title is Latin-1 ("Café", 0xE9)
// and movie 5 has neither a year in the title nor a release date.
void WriteMl100k(const TempDir& dir) {
  std::string data;
  for (int u = 1; u <= 4; ++u) {
    for (int k = 0; k < 10; ++k) {
      const int movie = 1 + (u * 3 + k) % 12;
      const int rating = 1 + (u + k) % 5;
      data += std::to_string(u) + "\t" + std::to_string(movie) + "\t" + std::to_string(rating) +
              "\t" + std::to_string(880000000 + 1000 * k + u) + "\n";
    }
  }
  dir.Write("src/u.data", data);
  dir.Write("src/u.user",
            "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n"
            "4|24|M|technician|43537\n");
  std::string items;
  for (int m = 1; m <= 12; ++m) {
    std::string title = "Movie " + std::to_string(m) + " (199" + std::to_string(m % 10) + ")";
    std::string date = "01-Jan-199" + std::to_string(m % 10);
    if (m == 3) title = "Caf\xE9 (1994)";
    if (m == 5) title = "Untitled", date = "";
    std::string flags;
    for (int g = 0; g < 19; ++g) flags += (g == m % 19 || g == (m + 5) % 19) ? "|1" : "|0";
    items += std::to_string(m) + "|" + title + "|" + date + "||http://x" + flags + "\n";
  }
  dir.Write("src/u.item", items);
}

std::multiset<std::string> Ratings(const TempDir& dir, const std::string& split) {
  std::multiset<std::string> out;
  const Table t = ReadTable(dir.File("out/" + split + "/interactions.csv"));
  for (int64_t r = 0; r < t.num_rows(); ++r) {
    out.insert(t.Column("user_id")[r] + "," + t.Column("movie_id")[r] + "," +
               t.Column("timestamp")[r]);
  }
  return out;
}

TEST(MovieLensTest, Ml100kRandomSplitIsAPartitionWithTheLabLayout) {
  TempDir dir;
  WriteMl100k(dir);
  MovieLensOptions o;
  o.seed = 3;
  const MovieLensSummary s = ConvertMovieLens(dir.File("src"), dir.File("out"), o);
  EXPECT_EQ(s.layout, "ml-100k");
  EXPECT_EQ(s.ratings, 40);
  EXPECT_EQ(s.train, 28);  // 40 - round(0.15 * 40) * 2
  EXPECT_EQ(s.val, 6);
  EXPECT_EQ(s.test, 6);
  std::multiset<std::string> all;
  for (const char* split : {"train", "val", "test"}) {
    for (const std::string& r : Ratings(dir, split)) all.insert(r);
  }
  EXPECT_EQ(all.size(), 40u);
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), 40u);  // each rating once

  const Table users = ReadTable(dir.File("out/users.csv"));
  EXPECT_THAT(users.columns, ElementsAre("user_id", "age", "gender", "occupation", "zip_prefix"));
  EXPECT_EQ(users.Column("zip_prefix")[1], "9");
  const Table movies = ReadTable(dir.File("out/movies.csv"));
  EXPECT_THAT(movies.columns, ElementsAre("movie_id", "title", "year", "genres"));
  EXPECT_EQ(movies.Column("title")[2], "Caf\xC3\xA9 (1994)");  // Latin-1 -> UTF-8
  EXPECT_EQ(movies.Column("year")[2], "1994");
  EXPECT_EQ(movies.Column("year")[4], "");  // no year anywhere: missing, not invented
  // Movie 1: flags 1 and 6 set -> the 2nd and 7th of the standard 19 genres.
  EXPECT_EQ(movies.Column("genres")[0], "Action|Crime");

  // liked = rating >= 4, every row.
  const Table train = ReadTable(dir.File("out/train/interactions.csv"));
  EXPECT_THAT(train.columns, ElementsAre("user_id", "movie_id", "rating", "liked", "timestamp"));
  for (int64_t r = 0; r < train.num_rows(); ++r) {
    EXPECT_EQ(train.Column("liked")[r], std::stod(train.Column("rating")[r]) >= 4 ? "1" : "0");
  }
  // The written config parses and points at this folder.
  const train::Config c = train::Config::FromYamlFile(dir.File("out/twotower.yaml"));
  EXPECT_EQ(c.ResolvedPaths().train, dir.File("out/train/interactions.csv"));
  EXPECT_EQ(c.training.loss, "softmax");
}

TEST(MovieLensTest, SameSeedSameSplitOtherSeedOtherSplit) {
  TempDir a, b;
  WriteMl100k(a);
  WriteMl100k(b);
  MovieLensOptions o;
  o.seed = 1;
  ConvertMovieLens(a.File("src"), a.File("out"), o);
  ConvertMovieLens(b.File("src"), b.File("out"), o);
  EXPECT_EQ(ReadBytes(a.File("out/test/interactions.csv")),
            ReadBytes(b.File("out/test/interactions.csv")));
  o.seed = 2;
  ConvertMovieLens(b.File("src"), b.File("out"), o);
  EXPECT_NE(ReadBytes(a.File("out/test/interactions.csv")),
            ReadBytes(b.File("out/test/interactions.csv")));
}

TEST(MovieLensTest, UserTemporalHoldsOutEachUsersLatestRatings) {
  TempDir dir;
  WriteMl100k(dir);
  MovieLensOptions o;
  o.split = "user-temporal";
  ConvertMovieLens(dir.File("src"), dir.File("out"), o);
  // Each user has 10 ratings at times 880000000 + 1000 k + u: test gets k = 8, 9 (round(1.5) =
  // 2), val k = 6, 7, train k = 0..5.
  std::map<std::string, std::vector<int>> ks;
  for (const char* split : {"train", "val", "test"}) {
    const Table t = ReadTable(dir.File(std::string("out/") + split + "/interactions.csv"));
    for (int64_t r = 0; r < t.num_rows(); ++r) {
      const int64_t ts = std::stoll(t.Column("timestamp")[r]);
      ks[split].push_back(static_cast<int>((ts - 880000000) / 1000));
    }
  }
  for (int k : ks["test"]) EXPECT_GE(k, 8);
  for (int k : ks["val"]) EXPECT_TRUE(k == 6 || k == 7) << k;
  for (int k : ks["train"]) EXPECT_LE(k, 5);
  EXPECT_EQ(ks["test"].size(), 8u);
  // The config written for this split adds the user history by timestamp (and the Linear it
  // needs); the random split's has none.
  const train::Config c = train::Config::FromYamlFile(dir.File("out/twotower.yaml"));
  EXPECT_EQ(c.features.timestamp_column, "timestamp");
  EXPECT_EQ(c.features.user.history.length, 50);
  EXPECT_EQ(c.features.user.history.pooling, "attention");
  EXPECT_TRUE(c.model.projection);
  o.split = "random";
  ConvertMovieLens(dir.File("src"), dir.File("out"), o);
  const train::Config r = train::Config::FromYamlFile(dir.File("out/twotower.yaml"));
  EXPECT_FALSE(r.features.user.history.enabled());
  EXPECT_FALSE(r.model.projection);
}

TEST(MovieLensTest, Ml1mDoubleColonFiles) {
  TempDir dir;
  dir.Write("src/movies.dat",
            "1::Toy Story (1995)::Animation|Children's|Comedy\n"
            "2::Jumanji (1995)::Adventure\n3::C (1990)::Drama\n4::D (1991)::Drama\n"
            "5::E (1992)::Drama\n");
  dir.Write("src/users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n");
  std::string ratings;
  for (int u = 1; u <= 2; ++u) {
    for (int k = 0; k < 5; ++k) {
      ratings += std::to_string(u) + "::" + std::to_string(1 + k) + "::" + std::to_string(1 + k) +
                 "::" + std::to_string(978300000 + k) + "\r\n";
    }
  }
  dir.Write("src/ratings.dat", ratings);
  MovieLensOptions o;
  o.split = "global-temporal";
  o.val = 0.2;
  o.test = 0.2;
  const MovieLensSummary s = ConvertMovieLens(dir.File("src"), dir.File("out"), o);
  EXPECT_EQ(s.layout, "ml-1m");
  EXPECT_EQ(s.train + s.val + s.test, 10);
  const Table users = ReadTable(dir.File("out/users.csv"));
  EXPECT_EQ(users.Column("age")[1], "56");
  EXPECT_EQ(users.Column("gender")[1], "M");
  // Global temporal: the test split holds the 2 latest ratings (k = 4 for both users).
  for (const std::string& r : Ratings(dir, "test")) EXPECT_THAT(r, HasSubstr(",978300004"));
}

TEST(MovieLensTest, LatestCsvWithQuotedTitlesAndNoUsers) {
  TempDir dir;
  dir.Write("src/movies.csv",
            "movieId,title,genres\n1,\"American President, The (1995)\",Comedy|Drama|Romance\n"
            "2,Heat (1995),Action|Crime|Thriller\n3,Some Film,(no genres listed)\n"
            "4,A (2001),Drama\n5,B (2002),Drama\n6,C (2003),Drama\n");
  std::string ratings = "userId,movieId,rating,timestamp\n";
  for (int u = 7; u <= 9; ++u) {
    for (int k = 0; k < 6; ++k) {
      ratings += std::to_string(u) + "," + std::to_string(1 + k) + ",4.5," +
                 std::to_string(1000 + k) + "\n";
    }
  }
  dir.Write("src/ratings.csv", ratings);
  const MovieLensSummary s = ConvertMovieLens(dir.File("src"), dir.File("out"), {});
  EXPECT_EQ(s.layout, "ml-latest");
  EXPECT_EQ(s.users, 3);
  const Table users = ReadTable(dir.File("out/users.csv"));
  EXPECT_THAT(users.columns, ElementsAre("user_id"));
  const Table movies = ReadTable(dir.File("out/movies.csv"));
  EXPECT_EQ(movies.Column("title")[0], "American President, The (1995)");
  EXPECT_EQ(movies.Column("year")[0], "1995");
  EXPECT_EQ(movies.Column("year")[2], "");
  const Table train = ReadTable(dir.File("out/train/interactions.csv"));
  EXPECT_EQ(train.Column("rating")[0], "4.5");
  EXPECT_EQ(train.Column("liked")[0], "1");
  // The same written config as for ml-100k: id features only.
  const train::Config c = train::Config::FromYamlFile(dir.File("out/twotower.yaml"));
  ASSERT_EQ(c.features.user.features.size(), 1u);
  EXPECT_EQ(c.features.user.features[0].type, FeatureType::kId);
}

TEST(MovieLensTest, ErrorsNameTheFolderFileLineOrUser) {
  TempDir dir;
  dir.Write("src/ratings.txt", "1 2 3\n");
  EXPECT_THAT(ErrorMessage([&] { ConvertMovieLens(dir.File("src"), dir.File("out"), {}); }),
              HasSubstr(dir.File("src") + ": not a MovieLens folder (expected u.data + u.item"));
  dir.Write("src/movies.dat", "1::A (1990)::Drama\n");
  dir.Write("src/ratings.dat", "1::1::5::100\n1::2::5::101\n");
  EXPECT_EQ(ErrorMessage([&] { ConvertMovieLens(dir.File("src"), dir.File("out"), {}); }),
            dir.File("src/ratings.dat") + ":2: movie 2 is not in the movies file");
  dir.Write("src/ratings.dat", "1::1::five::100\n");
  EXPECT_THAT(ErrorMessage([&] { ConvertMovieLens(dir.File("src"), dir.File("out"), {}); }),
              HasSubstr(dir.File("src/ratings.dat") + ":1: column 'Rating': expected a number"));
  // Ten users with one rating each and 90% held out: nine have nothing to train on.
  std::string ratings;
  for (int u = 1; u <= 10; ++u)
    ratings += std::to_string(u) + "::1::4::" + std::to_string(u) + "\n";
  dir.Write("src/ratings.dat", ratings);
  MovieLensOptions o;
  o.val = 0.0;
  o.test = 0.9;
  EXPECT_THAT(ErrorMessage([&] { ConvertMovieLens(dir.File("src"), dir.File("out"), o); }),
              HasSubstr("the random split leaves user "));
  o.test = 1.0;
  EXPECT_THAT(ErrorMessage([&] { ConvertMovieLens(dir.File("src"), dir.File("out"), o); }),
              HasSubstr("fractions must be >= 0 (test > 0) and sum to less than 1"));
  o.split = "random";
  o.test = 0.15;
  o.val = 0.15;
  dir.Write("src/ratings.dat", "1::1::4::100\n2::1::9::101\n");
  EXPECT_EQ(ErrorMessage([&] { ConvertMovieLens(dir.File("src"), dir.File("out"), o); }),
            dir.File("src/ratings.dat") + ":2: rating 9 is out of range (expected 0.5 to 5)");
  dir.Write("src/ratings.dat", "1::1::4::100\n2::1::3::101\n1::1::5::102\n");
  EXPECT_EQ(ErrorMessage([&] { ConvertMovieLens(dir.File("src"), dir.File("out"), o); }),
            dir.File("src/ratings.dat") + ":3: user 1 rated movie 1 again (first on line 1): a " +
                "repeated pair would be split across train and test");
  EXPECT_THAT(ErrorMessage([&] { ConvertMovieLens(dir.File("src"), dir.File("src"), o); }),
              HasSubstr("is the --src folder"));
  o.like_threshold = 7;
  EXPECT_EQ(ErrorMessage([&] { ConvertMovieLens(dir.File("src"), dir.File("out"), o); }),
            "--like-threshold: expected a rating in (0, 5] (MovieLens ratings are 0.5 to 5 stars), "
            "got 7");
  o.like_threshold = 4;
  o.split = "by-genre";
  EXPECT_EQ(ErrorMessage([&] { ConvertMovieLens(dir.File("src"), dir.File("out"), o); }),
            "--split: unknown split \"by-genre\" (expected: random, user-temporal, "
            "global-temporal)");
}

}  // namespace
}  // namespace twotower::data
