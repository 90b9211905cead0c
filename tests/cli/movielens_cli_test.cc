// The MovieLens path end to end through the real binary: convert a small release written here,
// train with the written config, then evaluate and recommend with the same protocol.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "testing/cli_runner.h"
#include "testing/temp_dir.h"

namespace twotower {
namespace {

using testing::CliResult;
using testing::Fields;
using ::testing::HasSubstr;
using testing::Lines;
using testing::ReadBytes;
using testing::TempDir;
using testing::Words;

// 90 users, 60 movies in 3 taste groups: user u rates all 20 movies m with m % 3 == u % 3 with
// 5 and four others with 2. Once a user's train and val movies are excluded, the held-out liked
// movies compete with ~36 unrated movies of other groups: a model that learns the groups ranks
// them first, while popularity (equal within a group) cannot tell the groups apart.
void WriteClusteredMl100k(const TempDir& dir) {
  std::string data, users, items;
  for (int u = 1; u <= 90; ++u) {
    users += std::to_string(u) + "|" + std::to_string(20 + u % 40) + "|" + (u % 2 ? "M" : "F") +
             "|other|12345\n";
    for (int k = 0; k < 24; ++k) {
      // The j-th movie (0..19) of group g among ids 1..60 is (g == 0 ? 3 : g) + 3 j. k < 20: the
      // user's own group, rotated per user; then four distinct movies of the next group.
      auto movie = [](int g, int j) { return (g == 0 ? 3 : g) + 3 * j; };
      const int m = k < 20 ? movie(u % 3, (k + u) % 20) : movie((u + 1) % 3, (k * 7 + u) % 20);
      const int rating = k < 20 ? 5 : 2;
      data += std::to_string(u) + "\t" + std::to_string(m) + "\t" + std::to_string(rating) + "\t" +
              std::to_string(880000000 + 97 * k + u) + "\n";
    }
  }
  for (int m = 1; m <= 60; ++m) {
    std::string flags;
    for (int g = 0; g < 19; ++g) flags += g == 1 + m % 3 ? "|1" : "|0";
    items +=
        std::to_string(m) + "|Film " + std::to_string(m) + " (1990)|01-Jan-1990||u" + flags + "\n";
  }
  dir.Write("src/u.data", data);
  dir.Write("src/u.user", users);
  dir.Write("src/u.item", items);
}

// The Recall row of a ranking table: {model @10, model @20, MostPop @10, MostPop @20}.
std::vector<double> RecallRow(const std::string& out) {
  for (const std::string& line : Lines(out)) {
    std::vector<std::string> w = Words(line);
    if (!w.empty() && w[0] == "Recall") {
      std::vector<double> v;
      for (const std::string& x : w) {
        if (x != "Recall" && x != "|") v.push_back(std::stod(x));
      }
      return v;
    }
  }
  return {};
}

TEST(MovieLensCliTest, ConvertTrainEvaluateRecommend) {
  TempDir dir;
  WriteClusteredMl100k(dir);
  const std::string data = dir.File("data");
  CliResult r = RunCli({"data", "movielens", "--src", dir.File("src"), "--out", data}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("(ml-100k): 90 users, 60 movies, 2160 ratings"));

  r = RunCli({"train", "--config", data + "/twotower.yaml", "--output-dir", dir.File("runs"),
              "--quiet", "--set", "training.batch_size=128", "--set", "training.epochs=12", "--set",
              "training.learning_rate=0.01"},
             dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("refitted on train + val"));
  const std::vector<double> trained = RecallRow(r.out);
  ASSERT_EQ(trained.size(), 4u) << r.out;
  EXPECT_GT(trained[0], trained[2] + 0.2) << "the model should beat MostPop by far:\n" << r.out;
  std::string run;
  for (const std::string& line : Lines(r.out)) {
    if (line.rfind("model: ", 0) == 0) run = line.substr(7);
  }
  ASSERT_FALSE(run.empty()) << r.out;

  // evaluate on the test file excludes the model's train and val files: the same numbers.
  r = RunCli({"evaluate", "--model", run, "--interactions", data + "/test/interactions.csv"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<double> evaluated = RecallRow(r.out);
  ASSERT_EQ(evaluated.size(), 4u) << r.out;
  EXPECT_NEAR(evaluated[0], trained[0], 1e-4);
  EXPECT_NEAR(evaluated[1], trained[1], 1e-4);
  EXPECT_NEAR(evaluated[2], trained[2], 1e-4);  // MostPop: the same history counted
  testing::ExpectUserError(
      RunCli({"evaluate", "--model", run, "--interactions", data + "/test/interactions.csv",
              "--exclude", data + "/test/interactions.csv"},
             dir),
      "is the file being evaluated");

  // recommend --all-users --exclude-seen never returns a movie rated in train or val.
  const std::string recs = dir.File("recs.csv");
  r = RunCli({"recommend", "--model", run, "--all-users", "--exclude-seen", "--k", "10", "--out",
              recs, "--quiet"},
             dir);
  ASSERT_EQ(r.code, 0) << r.err;
  std::set<std::string> seen;
  for (const char* split : {"/train/interactions.csv", "/val/interactions.csv"}) {
    for (const std::string& line : Lines(ReadBytes(data + split))) {
      const std::vector<std::string> f = Fields(line, ',');
      seen.insert(f[0] + "," + f[1]);
    }
  }
  int rows = 0;
  for (const std::string& line : Lines(ReadBytes(recs))) {
    const std::vector<std::string> f = Fields(line, ',');
    if (f[0] == "user_id") continue;
    ++rows;
    EXPECT_EQ(seen.count(f[0] + "," + f[2]), 0u) << line;
  }
  EXPECT_EQ(rows, 900);

  // k far beyond the catalogue: every movie for every user, memory sized by the 60 movies.
  r = RunCli(
      {"recommend", "--model", run, "--all-users", "--k", "1000000", "--out", recs, "--quiet"},
      dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Lines(ReadBytes(recs)).size(), 1u + 90 * 60);
}

TEST(MovieLensCliTest, SetGivenTwiceIsRefused) {
  TempDir dir;
  const CliResult r =
      RunCli({"train", "--set", "training.epochs=3", "--set", "training.epochs=4"}, dir);
  testing::ExpectUserError(r, "--set: key 'training.epochs' given twice");
}

TEST(MovieLensCliTest, ParquetOutputHoldsTheCsvOutputsTables) {
  TempDir dir;
  WriteClusteredMl100k(dir);
  ASSERT_EQ(
      RunCli({"data", "movielens", "--src", dir.File("src"), "--out", dir.File("csv")}, dir).code,
      0);
  const CliResult r = RunCli({"data", "movielens", "--src", dir.File("src"), "--out",
                              dir.File("pq"), "--format", "parquet"},
                             dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("users.parquet"));
  EXPECT_THAT(ReadBytes(dir.File("pq/twotower.yaml")),
              HasSubstr("train: train/interactions.parquet"));
  for (const char* name :
       {"users", "movies", "train/interactions", "val/interactions", "test/interactions"}) {
    EXPECT_FALSE(std::filesystem::exists(dir.File(std::string("pq/") + name + ".csv"))) << name;
    // Read back as CSV by convert: the CSV loader's bytes exactly.
    std::string flat = name;
    std::replace(flat.begin(), flat.end(), '/', '_');
    const std::string back = dir.File("back_" + flat + ".csv");
    ASSERT_EQ(RunCli({"convert", dir.File(std::string("pq/") + name + ".parquet"), back}, dir).code,
              0);
    EXPECT_EQ(ReadBytes(back), ReadBytes(dir.File(std::string("csv/") + name + ".csv"))) << name;
  }
  testing::ExpectUserError(RunCli({"data", "movielens", "--src", dir.File("src"), "--out",
                                   dir.File("x"), "--format", "orc"},
                                  dir),
                           "--format: unknown format \"orc\" (expected: csv, parquet)");
}

TEST(MovieLensCliTest, UnknownLayoutIsAClearError) {
  TempDir dir;
  dir.Write("src/readme.txt", "hello\n");
  const CliResult r =
      RunCli({"data", "movielens", "--src", dir.File("src"), "--out", dir.File("o")}, dir);
  testing::ExpectUserError(r, dir.File("src") + ": not a MovieLens folder");
}

}  // namespace
}  // namespace twotower
