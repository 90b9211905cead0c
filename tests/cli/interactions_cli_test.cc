// `data interactions` end to end through the real binary: an implicit-feedback log with string
// ids, repeated pairs and no users or items table, imported, trained with the written recipe,
// then recommended for every user.
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
#include "twotower/app/recommender.h"
#include "twotower/core/error.h"

namespace twotower {
namespace {

using testing::CliResult;
using testing::Fields;
using ::testing::HasSubstr;
using testing::Lines;
using testing::ReadBytes;
using testing::TempDir;
using testing::Words;

// 90 listeners, 60 artists in 3 taste groups: listener u plays the 20 artists of group u % 3
// (several times: each pair twice, one of them once more) and 4 of the next group once. A model
// that learns the groups ranks a listener's held-out artists first; popularity cannot.
std::string ClusteredPlays() {
  std::string log = "listener\tartist\tplays\n";
  for (int u = 1; u <= 90; ++u) {
    for (int k = 0; k < 24; ++k) {
      auto artist = [](int g, int j) { return (g == 0 ? 3 : g) + 3 * j; };
      const int a = k < 20 ? artist(u % 3, (k + u) % 20) : artist((u + 1) % 3, (k * 7 + u) % 20);
      const std::string row = "fan" + std::to_string(u) + "\tartist " + std::to_string(a) + "\t";
      log += row + (k < 20 ? "5" : "1") + "\n";
      if (k < 20 && k % 2 == 0) log += row + "2\n";  // a repeat: summed
    }
  }
  return log;
}

std::vector<double> TrainedRecallRow(const std::string& out) {
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

TEST(InteractionsCliTest, ImportTrainRecommendWithoutTables) {
  TempDir dir;
  dir.Write("plays.tsv", ClusteredPlays());
  const std::string data = dir.File("data");
  CliResult r = RunCli({"data", "interactions", "--interactions", dir.File("plays.tsv"), "--out",
                        data, "--user", "listener", "--item", "artist", "--weight", "plays"},
                       dir);
  testing::ExpectUserError(r, ":3: user \"fan1\" and item \"artist 4\" again (first on line 2)");
  r = RunCli({"data", "interactions", "--interactions", dir.File("plays.tsv"), "--out", data,
              "--user", "listener", "--item", "artist", "--weight", "plays", "--duplicates", "sum",
              "--positive", "plays>=3"},
             dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("3060 rows (900 repeats of a pair summed into 2160), 90 users, "
                               "60 items, positives (plays>=3) 83.3%"));
  const std::string yaml = ReadBytes(data + "/twotower.yaml");
  EXPECT_THAT(yaml, HasSubstr("  weight: plays\n"));
  EXPECT_THAT(yaml, HasSubstr("  weight_transform: log1p\n"));
  EXPECT_FALSE(std::filesystem::exists(data + "/users.csv"));
  EXPECT_FALSE(std::filesystem::exists(data + "/items.csv"));

  r = RunCli({"train", "--config", data + "/twotower.yaml", "--output-dir", dir.File("runs"),
              "--quiet", "--set", "training.batch_size=128", "--set", "training.epochs=12", "--set",
              "training.learning_rate=0.01"},
             dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<double> trained = TrainedRecallRow(r.out);
  ASSERT_EQ(trained.size(), 4u) << r.out;
  EXPECT_GT(trained[0], trained[2] + 0.2) << "the model should beat MostPop by far:\n" << r.out;
  std::string run;
  for (const std::string& line : Lines(r.out)) {
    if (line.rfind("model: ", 0) == 0) run = line.substr(7);
  }
  ASSERT_FALSE(run.empty()) << r.out;

  // Every listener gets 10 artists, none of them played in train or val; the header names the
  // log's own columns.
  const std::string recs = dir.File("recs.csv");
  r = RunCli({"recommend", "--model", run, "--all-users", "--exclude-seen", "--k", "10", "--out",
              recs, "--quiet"},
             dir);
  ASSERT_EQ(r.code, 0) << r.err;
  std::set<std::string> seen;
  for (const char* split : {"/train/interactions.csv", "/val/interactions.csv"}) {
    for (const std::string& line : Lines(ReadBytes(data + split))) {
      const std::vector<std::string> f = Fields(line, ',');
      if (f[3] == "1") seen.insert(f[0] + "," + f[1]);  // positives: what exclude-seen drops
    }
  }
  const std::vector<std::string> lines = Lines(ReadBytes(recs));
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines[0], HasSubstr("listener"));
  EXPECT_THAT(lines[0], HasSubstr("artist"));
  EXPECT_EQ(lines.size(), 1u + 900);
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::vector<std::string> f = Fields(lines[i], ',');
    EXPECT_EQ(seen.count(f[0] + "," + f[2]), 0u) << lines[i];
  }
}

// The weight column reaches the loss: rows that all weigh 0 train nothing (a loss of 0), and a
// config naming a weight column the file lacks is refused.
TEST(InteractionsCliTest, WeightsReachTheLoss) {
  TempDir dir;
  std::string rows = "user_id,item_id,label,w\n";
  for (int u = 0; u < 20; ++u) {
    for (int k = 0; k < 5; ++k) {
      rows += std::to_string(u) + "," + std::to_string((u + k) % 12) + ",1,0\n";
    }
  }
  for (const char* split : {"train", "val", "test"}) {
    dir.Write(std::string(split) + "/interactions.csv", rows);
  }
  const std::string config = dir.Write(
      "c.yaml", "data: {dir: " + dir.path().string() +
                    "}\nfeatures:\n  user_id: user_id\n  item_id: item_id\n  label: label\n"
                    "  weight: w\n  user: [{column: user_id, type: id, dim: 8}]\n"
                    "  item: [{column: item_id, type: id, dim: 8}]\n"
                    "model: {embedding_dim: 8, user_hidden_dims: [], item_hidden_dims: []}\n"
                    "training: {loss: softmax, epochs: 1, batch_size: 32}\n");
  CliResult r = RunCli({"train", "--config", config, "--output-dir", dir.File("runs")}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out + r.err, HasSubstr("loss 0.0000")) << r.out << r.err;
  r = RunCli({"train", "--config", config, "--set", "features.weight=plays", "--output-dir",
              dir.File("runs")},
             dir);
  testing::ExpectUserError(
      r, "features.weight: " + dir.File("train/interactions.csv") + " has no column 'plays'");
}

// Items and users in no training interaction: an item tower that is its id alone has nothing
// learned for such an item, so embed leaves it out (counted) and recommend never returns it; such
// a user gets the most popular items of train + val, flagged. Vocabularies of a refit include
// val, so a val-only item is trained there.
TEST(InteractionsCliTest, ItemsAndUsersWithoutTrainingRowsAreLeftOutOrFallBack) {
  TempDir dir;
  std::string train = "user_id,item_id,label\n", val = train, test = train;
  std::map<std::string, int> popularity;  // train + val positives, counted here
  for (int u = 0; u < 30; ++u) {
    for (int k = 0; k < 6; ++k) {
      const std::string item = "i" + std::to_string((u * 7 + k * k) % 15);
      (k < 5 ? train : val) += "u" + std::to_string(u) + "," + item + ",1\n";
      ++popularity[item];
    }
  }
  for (int u = 0; u < 20; ++u) {  // one item clearly the most popular
    train += "u" + std::to_string(u) + ",hit,1\n";
    ++popularity["hit"];
  }
  val += "u1,only_val,1\n";
  ++popularity["only_val"];
  test += "u2,only_test,1\nnewbie,i3,1\nu3,i4,1\n";
  dir.Write("d/train/interactions.csv", train);
  dir.Write("d/val/interactions.csv", val);
  dir.Write("d/test/interactions.csv", test);
  auto config = [&](bool refit) {
    return dir.Write(refit ? "refit.yaml" : "plain.yaml",
                     "data: {dir: " + dir.File("d") +
                         "}\nfeatures:\n  user_id: user_id\n  item_id: item_id\n  label: label\n"
                         "  user: [{column: user_id, type: id, dim: 8}]\n"
                         "  item: [{column: item_id, type: id, dim: 8}]\n"
                         "model: {embedding_dim: 8, user_hidden_dims: [], item_hidden_dims: [], "
                         "projection: false, dropout: 0}\n"
                         "training: {loss: softmax, epochs: 2, batch_size: 32, refit: " +
                         std::string(refit ? "true" : "false") + "}\n");
  };
  auto model_of = [](const CliResult& r) {  // the refit, else the best epoch's model
    std::string model;
    for (const std::string& line : Lines(r.out)) {
      if (line.rfind("run folder: ", 0) == 0 && model.empty()) {
        model = line.substr(12) + "model_best.safetensors";
      }
      if (line.rfind("model: ", 0) == 0) model = line.substr(7);
    }
    return model;
  };
  CliResult r = RunCli(
      {"train", "--config", config(false), "--quiet", "--output-dir", dir.File("runs")}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string plain = model_of(r);
  ASSERT_FALSE(plain.empty()) << r.out;
  r = RunCli({"embed", "--model", plain, "--out", dir.File("e.npy")}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("2 items left out: no trained embedding"));  // only_val, only_test
  const std::string ids = ReadBytes(dir.File("e.ids.txt"));
  EXPECT_THAT(ids, HasSubstr("hit"));
  EXPECT_THAT(ids, ::testing::Not(HasSubstr("only_")));

  const std::string recs = dir.File("recs.csv");
  r = RunCli({"recommend", "--model", plain, "--all-users", "--k", "3", "--out", recs, "--quiet"},
             dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("1 users in no training interaction got the most popular items"));
  EXPECT_THAT(r.out, HasSubstr("2 items without a trained embedding never recommended"));
  // The newbie's top 3: the most popular, ties by first appearance in the items' order.
  std::vector<std::pair<int, std::string>> ranked;
  for (const auto& [item, count] : popularity) {
    if (item != "only_val") ranked.emplace_back(-count, item);
  }
  std::sort(ranked.begin(), ranked.end());
  std::vector<std::string> newbie;
  for (const std::string& line : Lines(ReadBytes(recs))) {
    const std::vector<std::string> f = Fields(line, ',');
    EXPECT_EQ(f[2].rfind("only_", 0), std::string::npos) << line;
    if (f[0] == "newbie") newbie.push_back(f[2]);
  }
  ASSERT_EQ(newbie.size(), 3u);
  // The first is "hit", the strict maximum; the others have the next count (ties).
  EXPECT_EQ(newbie[0], ranked[0].second);
  for (const std::string& item : newbie) EXPECT_GE(popularity[item], -ranked[2].first) << item;
  r = RunCli({"recommend", "--model", plain, "--user-id", "newbie", "--k", "3"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("fallback: popularity"));

  // The same through the application core every front end calls (the server's replies carry
  // these fields): no similar items for an untrained item; the fallback flagged.
  app::RecommenderOptions options;
  options.model = plain;
  const std::unique_ptr<app::Recommender> rec = app::Recommender::Open(options);
  EXPECT_EQ(rec->untrained_items(), 2);
  app::RecommendRequest request;
  request.user.id = "newbie";
  request.k = 3;
  const app::Recommendations got = rec->Recommend(request);
  EXPECT_EQ(got.fallback, "popularity");
  EXPECT_EQ(got.untrained_excluded, 2);
  ASSERT_EQ(got.items.size(), 3u);
  EXPECT_EQ(got.items[0].id, "hit");
  request.user.id = "u5";
  EXPECT_EQ(rec->Recommend(request).fallback, "");
  try {
    rec->Similar("only_test", 3);
    ADD_FAILURE() << "Similar of an untrained item answered";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConflict);
    EXPECT_THAT(e.what(), HasSubstr("has no trained embedding"));
  }

  // A refit's vocabulary holds the val-only item: only the test-only item is left out.
  r = RunCli({"train", "--config", config(true), "--quiet", "--output-dir", dir.File("runs2")},
             dir);
  ASSERT_EQ(r.code, 0) << r.err;
  r = RunCli({"embed", "--model", model_of(r), "--out", dir.File("e2.npy")}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("1 items left out"));
  EXPECT_THAT(ReadBytes(dir.File("e2.ids.txt")), HasSubstr("only_val"));
}

}  // namespace
}  // namespace twotower

namespace twotower {
namespace {

// Files under `dir` (relative names) with their bytes; `dir`'s own path in them replaced by "DIR"
// (twotower.yaml names its folder).
std::map<std::string, std::string> FolderBytes(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string bytes = ReadBytes(e.path().string());
    for (size_t at = bytes.find(dir); at != std::string::npos; at = bytes.find(dir, at)) {
      bytes.replace(at, dir.size(), "DIR");
    }
    out[std::filesystem::relative(e.path(), dir).string()] = bytes;
  }
  return out;
}

// Ctrl-C or SIGTERM while `data interactions` renames its tables, splits and config into place
// waits until the last is in: the folder holds every file of a complete import (the same bytes
// as an import that was not interrupted), no temporary file, and the command fails.
TEST(InteractionsCliTest, AnInterruptedImportLeavesEveryFileOrWaits) {
  TempDir dir;
  dir.Write("plays.tsv", ClusteredPlays());
  const std::vector<std::string> args = {
      "data",         "interactions", "--interactions", dir.File("plays.tsv"),
      "--user",       "listener",     "--item",         "artist",
      "--duplicates", "sum",          "--out"};
  auto with_out = [&](const std::string& out) {
    std::vector<std::string> a = args;
    a.push_back(out);
    return a;
  };
  const std::string whole = dir.File("whole");
  ASSERT_EQ(RunCli(with_out(whole), dir).code, 0);
  const std::map<std::string, std::string> want = FolderBytes(whole);
  ASSERT_GE(want.size(), 4u);  // train, val, test, twotower.yaml
  for (const char* point : {"files.before_rename#1=INT", "files.before_rename#3=TERM"}) {
    SCOPED_TRACE(point);
    const std::string out = dir.File(std::string("cut") + point[20]);
    const CliResult r =
        RunCli(with_out(out), dir, std::string("TWOTOWER_FAILPOINT='") + point + "' ");
    EXPECT_NE(r.code, 0);
    const std::map<std::string, std::string> got = FolderBytes(out);
    std::vector<std::string> got_names, want_names;
    for (const auto& [name, bytes] : got) got_names.push_back(name);
    for (const auto& [name, bytes] : want) want_names.push_back(name);
    EXPECT_EQ(got_names, want_names);
    for (const auto& [name, bytes] : want) {
      EXPECT_TRUE(got.count(name) != 0 && got.at(name) == bytes) << name << " differs";
    }
  }
}

}  // namespace
}  // namespace twotower
