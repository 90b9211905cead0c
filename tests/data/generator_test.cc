#include "twotower/data/generator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "testing/temp_dir.h"
#include "twotower/core/error.h"

namespace twotower::data {
namespace {

using ::testing::HasSubstr;
using twotower::testing::ErrorMessage;
using twotower::testing::ReadBytes;
using twotower::testing::TempDir;

// A generated CSV file, parsed naively (the generator never quotes): header + rows of fields.
struct Csv {
  std::string header;
  std::vector<std::vector<std::string>> rows;
};

Csv ParseCsv(const std::string& path) {
  std::istringstream in(ReadBytes(path));
  Csv csv;
  std::getline(in, csv.header);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields;
    std::string field;
    std::istringstream ls(line);
    while (std::getline(ls, field, ',')) fields.push_back(field);
    csv.rows.push_back(fields);
  }
  return csv;
}

// AUC by counting pairs: P(score of a positive > score of a negative) + 0.5 P(tie). Sorting the
// negatives and binary searching keeps it O(n log n) but it is the textbook definition.
double PairCountAuc(const std::vector<double>& scores, const std::vector<int>& labels) {
  std::vector<double> negatives;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] == 0) negatives.push_back(scores[i]);
  }
  std::sort(negatives.begin(), negatives.end());
  double wins = 0.0, positives = 0.0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] != 1) continue;
    positives += 1;
    const auto lo = std::lower_bound(negatives.begin(), negatives.end(), scores[i]);
    const auto hi = std::upper_bound(negatives.begin(), negatives.end(), scores[i]);
    wins += static_cast<double>(lo - negatives.begin()) + 0.5 * static_cast<double>(hi - lo);
  }
  return wins / (positives * static_cast<double>(negatives.size()));
}

TEST(PairCountAucTest, HandComputedExample) {
  // Positives 0.9, 0.4; negatives 0.5, 0.4, 0.1: pairs won 3 + (1 + 0.5) = 4.5 of 6.
  EXPECT_DOUBLE_EQ(PairCountAuc({0.9, 0.4, 0.5, 0.4, 0.1}, {1, 1, 0, 0, 0}), 0.75);
}

class GeneratorDefaultsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    summary_ = GenerateLabData(GeneratorOptions{}, dir_->path().string());
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string File(const std::string& name) { return dir_->File(name); }

  static TempDir* dir_;
  static GeneratorSummary summary_;
};

TempDir* GeneratorDefaultsTest::dir_ = nullptr;
GeneratorSummary GeneratorDefaultsTest::summary_;

TEST_F(GeneratorDefaultsTest, WritesTheDocumentedFilesAndHeaders) {
  EXPECT_EQ(ParseCsv(File("users.csv")).header, "user_id,age,gender,favorite_genre,activity_level");
  EXPECT_EQ(ParseCsv(File("movies.csv")).header, "movie_id,genre,year,duration,avg_rating");
  for (const char* split : {"train", "val", "test"}) {
    EXPECT_EQ(ParseCsv(File(std::string(split) + "/interactions.csv")).header,
              "user_id,movie_id,rating,liked,p_true")
        << split;
  }
  // Nothing else, in particular no temporary files.
  std::set<std::string> names;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir_->path())) {
    names.insert(std::filesystem::relative(e.path(), dir_->path()).string());
  }
  EXPECT_EQ(names, (std::set<std::string>{"users.csv", "movies.csv", "train", "val", "test",
                                          "train/interactions.csv", "val/interactions.csv",
                                          "test/interactions.csv"}));
}

TEST_F(GeneratorDefaultsTest, SplitSizesAre70_15_15) {
  EXPECT_EQ(ParseCsv(File("users.csv")).rows.size(), 1000u);
  EXPECT_EQ(ParseCsv(File("movies.csv")).rows.size(), 500u);
  EXPECT_EQ(ParseCsv(File("train/interactions.csv")).rows.size(), 7000u);
  EXPECT_EQ(ParseCsv(File("val/interactions.csv")).rows.size(), 1500u);
  EXPECT_EQ(ParseCsv(File("test/interactions.csv")).rows.size(), 1500u);
  EXPECT_EQ(summary_.train, 7000);
  EXPECT_EQ(summary_.val, 1500);
  EXPECT_EQ(summary_.test, 1500);
}

TEST_F(GeneratorDefaultsTest, EntityValuesAreInTheDocumentedRanges) {
  const Csv users = ParseCsv(File("users.csv"));
  const std::set<std::string> genres = {"Action", "Comedy", "Drama", "Horror", "Sci-Fi", "Romance"};
  for (size_t i = 0; i < users.rows.size(); ++i) {
    const auto& r = users.rows[i];
    ASSERT_EQ(r.size(), 5u);
    EXPECT_EQ(r[0], std::to_string(i + 1));
    const int age = std::stoi(r[1]);
    EXPECT_GE(age, 18);
    EXPECT_LE(age, 70);
    EXPECT_TRUE(r[2] == "M" || r[2] == "F") << r[2];
    EXPECT_TRUE(genres.count(r[3])) << r[3];
    EXPECT_TRUE(r[4] == "low" || r[4] == "medium" || r[4] == "high") << r[4];
  }
  const Csv movies = ParseCsv(File("movies.csv"));
  for (size_t i = 0; i < movies.rows.size(); ++i) {
    const auto& r = movies.rows[i];
    ASSERT_EQ(r.size(), 5u);
    EXPECT_EQ(r[0], std::to_string(i + 1));
    EXPECT_TRUE(genres.count(r[1])) << r[1];
    const int year = std::stoi(r[2]);
    EXPECT_GE(year, 1970);
    EXPECT_LE(year, 2023);
    EXPECT_GT(std::stoi(r[3]), 0);
    const double rating = std::stod(r[4]);
    EXPECT_GE(rating, 1.0);
    EXPECT_LE(rating, 5.0);
  }
}

TEST_F(GeneratorDefaultsTest, LikedIsRatingAtLeastFourAndPairsAreDistinct) {
  std::set<std::pair<int, int>> pairs;
  int64_t rows = 0, liked = 0;
  double p_sum = 0.0;
  for (const char* split : {"train", "val", "test"}) {
    const Csv csv = ParseCsv(File(std::string(split) + "/interactions.csv"));
    for (const auto& r : csv.rows) {
      ASSERT_EQ(r.size(), 5u);
      const int user = std::stoi(r[0]), movie = std::stoi(r[1]), rating = std::stoi(r[2]);
      EXPECT_GE(user, 1);
      EXPECT_LE(user, 1000);
      EXPECT_GE(movie, 1);
      EXPECT_LE(movie, 500);
      EXPECT_GE(rating, 1);
      EXPECT_LE(rating, 5);
      EXPECT_EQ(r[3], rating >= 4 ? "1" : "0") << "rating " << rating;
      const double p = std::stod(r[4]);
      EXPECT_GT(p, 0.0);
      EXPECT_LT(p, 1.0);
      EXPECT_TRUE(pairs.insert({user, movie}).second) << "duplicate pair " << user << "," << movie;
      ++rows;
      liked += r[3] == "1";
      p_sum += p;
    }
  }
  EXPECT_EQ(rows, 10000);
  const double rate = static_cast<double>(liked) / rows;
  EXPECT_GE(rate, 0.50);
  EXPECT_LE(rate, 0.58);
  EXPECT_NEAR(summary_.liked_rate, rate, 1e-12);
  // liked ~ Bernoulli(p_true): the mean of p_true matches the liked rate (sd ~ 0.005).
  EXPECT_NEAR(p_sum / rows, rate, 0.02);
}

TEST_F(GeneratorDefaultsTest, PTrueIsCalibrated) {
  // Within bins of p_true, the liked rate matches the mean p_true.
  std::map<int, std::pair<double, double>> bins;  // bin -> (sum p, sum liked)
  std::map<int, int> counts;
  for (const char* split : {"train", "val", "test"}) {
    for (const auto& r : ParseCsv(File(std::string(split) + "/interactions.csv")).rows) {
      const double p = std::stod(r[4]);
      const int bin = std::min(4, static_cast<int>(p * 5));
      bins[bin].first += p;
      bins[bin].second += r[3] == "1";
      ++counts[bin];
    }
  }
  int checked = 0;
  for (const auto& [bin, sums] : bins) {
    if (counts[bin] < 500) continue;
    ++checked;
    EXPECT_NEAR(sums.second / counts[bin], sums.first / counts[bin], 0.05) << "bin " << bin;
  }
  EXPECT_GE(checked, 2);
}

TEST_F(GeneratorDefaultsTest, OracleAucOnTestSplitIsAbout085) {
  const Csv test = ParseCsv(File("test/interactions.csv"));
  std::vector<double> p;
  std::vector<int> y;
  for (const auto& r : test.rows) {
    p.push_back(std::stod(r[4]));
    y.push_back(r[3] == "1" ? 1 : 0);
  }
  const double auc = PairCountAuc(p, y);
  EXPECT_GE(auc, 0.80);
  EXPECT_LE(auc, 0.90);
}

TEST_F(GeneratorDefaultsTest, ActiveUsersAreDrawnMoreOften) {
  const Csv users = ParseCsv(File("users.csv"));
  std::map<std::string, int> level_users, level_rows;
  std::vector<std::string> level(users.rows.size() + 1);
  for (const auto& r : users.rows) {
    level[std::stoi(r[0])] = r[4];
    ++level_users[r[4]];
  }
  for (const char* split : {"train", "val", "test"}) {
    for (const auto& r : ParseCsv(File(std::string(split) + "/interactions.csv")).rows) {
      ++level_rows[level[std::stoi(r[0])]];
    }
  }
  auto per_user = [&](const std::string& l) {
    return static_cast<double>(level_rows[l]) / level_users[l];
  };
  // Weights 1 / 2 / 4 by activity level.
  EXPECT_NEAR(per_user("medium") / per_user("low"), 2.0, 0.3);
  EXPECT_NEAR(per_user("high") / per_user("low"), 4.0, 0.6);
}

TEST(GeneratorTest, SameSeedSameBytesDifferentSeedDifferentBytes) {
  TempDir a, b, c;
  GeneratorOptions options;
  options.users = 50;
  options.movies = 40;
  options.interactions = 300;
  options.seed = 7;
  GenerateLabData(options, a.path().string());
  GenerateLabData(options, b.path().string());
  options.seed = 8;
  GenerateLabData(options, c.path().string());
  for (const char* f : {"users.csv", "movies.csv", "train/interactions.csv", "val/interactions.csv",
                        "test/interactions.csv"}) {
    const std::string bytes = ReadBytes(a.File(f));
    EXPECT_FALSE(bytes.empty()) << f;
    EXPECT_EQ(bytes, ReadBytes(b.File(f))) << f;
    EXPECT_NE(bytes, ReadBytes(c.File(f))) << f;
  }
}

TEST(GeneratorTest, CustomSplitFractions) {
  TempDir dir;
  GeneratorOptions options;
  options.users = 30;
  options.movies = 30;
  options.interactions = 200;
  options.train_fraction = 0.5;
  options.val_fraction = 0.2;
  const GeneratorSummary s = GenerateLabData(options, dir.path().string());
  EXPECT_EQ(s.train, 100);
  EXPECT_EQ(s.val, 40);
  EXPECT_EQ(s.test, 60);
  EXPECT_EQ(ParseCsv(dir.File("test/interactions.csv")).rows.size(), 60u);
}

TEST(GeneratorTest, BadOptionsThrowAndWriteNothing) {
  TempDir dir;
  const std::string out = dir.File("out");
  auto error = [&](GeneratorOptions o) { return ErrorMessage([&] { GenerateLabData(o, out); }); };
  GeneratorOptions o;
  o.users = 0;
  EXPECT_THAT(error(o), HasSubstr("--users: expected a count from 1 to 100000000"));
  o = {};
  o.movies = -3;
  EXPECT_THAT(error(o), HasSubstr("--movies: expected a count from 1 to 100000000"));
  o = {};
  o.interactions = 2;
  EXPECT_THAT(error(o), HasSubstr("interactions: expected at least 3"));
  o = {};
  o.users = 10;
  o.movies = 10;
  o.interactions = 60;  // more than half of the 100 pairs
  EXPECT_THAT(error(o), HasSubstr("more than half of the 100 possible user-movie pairs"));
  o = {};
  o.users = 10;
  o.movies = 10;
  o.interactions = 3;  // 15% of 3 rounds to 0 validation rows
  EXPECT_THAT(error(o), HasSubstr("too few to split"));
  o = {};
  o.users = 20;
  o.movies = 20;
  o.interactions = 100;
  o.train_fraction = 1.2;
  EXPECT_THAT(error(o), HasSubstr("too few to split"));
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace twotower::data
