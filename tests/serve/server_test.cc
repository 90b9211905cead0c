// twotower serve, driven over HTTP as a client would: a real server on an ephemeral port, a
// model trained by the real binary, cpp-httplib's client.
#include "twotower/serve/server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "testing/cli_runner.h"
#include "testing/serve_client.h"
#include "testing/temp_dir.h"
#include "testing/trained_models.h"
#include "twotower/core/error.h"
#include "twotower/data/dataset.h"
#include "twotower/index/item_index.h"
#include "twotower/serve/experiment.h"

// After the twotower headers (Eigen): see src/serve/server.cc.
#include <httplib.h>

namespace twotower::serve {
namespace {

using ::testing::HasSubstr;
using twotower::testing::Answer;
using twotower::testing::BusiestUser;
using twotower::testing::Call;
using twotower::testing::Fields;
using twotower::testing::HistoryModel;
using twotower::testing::Lines;
using twotower::testing::ReadBytes;
using twotower::testing::ResultRows;
using twotower::testing::RunCli;
using twotower::testing::Running;
using twotower::testing::Shared;
using twotower::testing::TempDir;
using Json = nlohmann::json;

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(Shared().ok) << "could not train the test models"; }
  // Each call its own events log: servers running side by side cannot share one (events.h);
  // a test restarting a server on the same log copies the config.
  ServeConfig OneModel() {
    ServeConfig c;
    c.events = scratch_.File("events-" + std::to_string(configs_++) + ".jsonl");
    c.variants = {{"default", Shared().a, "", 1.0, "", 200}};
    return c;
  }
  TempDir scratch_;
  int configs_ = 0;
};

// The service answers what `twotower recommend` answers for the same user.
TEST_F(ServerTest, RecommendEqualsTheCli) {
  Running s(OneModel());
  auto c = s.Client();
  const std::string user = BusiestUser(Shared().data);
  const auto cli =
      RunCli({"recommend", "--model", Shared().a, "--user-id", user, "--k", "5", "--exclude-seen"},
             scratch_);
  ASSERT_EQ(cli.code, 0) << cli.err;
  const auto rows = ResultRows(cli.out);
  ASSERT_EQ(rows.size(), 5u);
  const Answer a = Call(c, "POST", "/v1/recommend",
                        Json{{"user_id", user}, {"k", 5}, {"exclude_seen", true}}.dump());
  ASSERT_EQ(a.status, 200) << a.text;
  EXPECT_EQ(a.body["variant"], "default");
  ASSERT_EQ(a.body["items"].size(), 5u);
  // Without the cache of user embeddings the tower runs per request: the same answer.
  ServeConfig uncached = OneModel();
  uncached.user_cache_mb = 0;
  Running s2(uncached);
  auto c2 = s2.Client();
  const Answer b = Call(c2, "POST", "/v1/recommend",
                        Json{{"user_id", user}, {"k", 5}, {"exclude_seen", true}}.dump());
  ASSERT_EQ(b.status, 200) << b.text;
  ASSERT_EQ(b.body["items"].size(), a.body["items"].size());
  for (size_t i = 0; i < a.body["items"].size(); ++i) {  // a batch GEMM against one GEMV
    EXPECT_EQ(b.body["items"][i]["item_id"], a.body["items"][i]["item_id"]) << i;
    EXPECT_NEAR(b.body["items"][i]["score"].get<double>(),
                a.body["items"][i]["score"].get<double>(), 1e-6);
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(a.body["items"][i]["item_id"], rows[i].first) << i;
    EXPECT_NEAR(a.body["items"][i]["score"].get<double>(), rows[i].second, 5e-5) << i;
  }
  // Each item carries its row of movies.csv (read here with a plain split: the generator writes
  // no quoted fields), every column but the id, as strings.
  std::map<std::string, std::vector<std::string>> movies;
  const std::vector<std::string> lines =
      Lines(twotower::testing::ReadBytes(Shared().data + "/movies.csv"));
  const std::vector<std::string> header = Fields(lines.at(0), ',');
  for (size_t l = 1; l < lines.size(); ++l) {
    const std::vector<std::string> cells = Fields(lines[l], ',');
    movies[cells.at(0)] = cells;
  }
  for (const Json& item : a.body["items"]) {
    const std::vector<std::string>& row = movies.at(item["item_id"].get<std::string>());
    EXPECT_EQ(item.size(), header.size() + 1) << item.dump();  // + item_id + score - movie_id
    for (size_t c = 1; c < header.size(); ++c) {
      EXPECT_EQ(item.value(header[c], std::string("(absent)")), row[c]) << header[c];
    }
  }
  // A new user given by features, and /v1/score for the first item, agree with each other.
  const Answer by_features = Call(
      c, "POST", "/v1/recommend",
      Json{
          {"user",
           {{"age", 30}, {"gender", "F"}, {"favorite_genre", "Drama"}, {"activity_level", "high"}}},
          {"k", 3}}
          .dump());
  ASSERT_EQ(by_features.status, 200) << by_features.text;
  const std::string top = by_features.body["items"][0]["item_id"];
  const Answer scored = Call(
      c, "POST", "/v1/score",
      Json{
          {"user",
           {{"age", 30}, {"gender", "F"}, {"favorite_genre", "Drama"}, {"activity_level", "high"}}},
          {"item_ids", {top}}}
          .dump());
  ASSERT_EQ(scored.status, 200) << scored.text;
  EXPECT_NEAR(scored.body["scores"][0]["score"].get<double>(),
              by_features.body["items"][0]["score"].get<double>(), 1e-6);
}

// A variant with a ranker answers what `recommend --rerank` answers; a new user by features and a
// live item (PUT) are re-ranked from their own features; a live copy of an item scores as the
// item does.
TEST_F(ServerTest, RerankedVariantEqualsTheCli) {
  const auto trained =
      RunCli({"train", "--config", std::string(TWOTOWER_SOURCE_DIR) + "/config/ranking_config.yaml",
              "--set", "data.dir=" + Shared().data, "--set", "model.kind=ranker", "--set",
              "model.ranker_hidden_dims=16", "--epochs", "2", "--threads", "1", "--quiet",
              "--output-dir", scratch_.File("rk")},
             scratch_);
  ASSERT_EQ(trained.code, 0) << trained.err;
  std::string ranker;
  for (const std::string& line : Lines(trained.out)) {
    if (line.rfind("run folder: ", 0) == 0) ranker = line.substr(12) + "model_best.safetensors";
  }
  ServeConfig config = OneModel();
  config.variants[0].rerank = ranker;
  config.variants[0].candidates = 30;
  Running s(config);
  auto c = s.Client();
  const std::string user = BusiestUser(Shared().data);
  const auto cli = RunCli({"recommend", "--model", Shared().a, "--user-id", user, "--k", "5",
                           "--exclude-seen", "--rerank", ranker, "--candidates", "30"},
                          scratch_);
  ASSERT_EQ(cli.code, 0) << cli.err;
  const auto rows = ResultRows(cli.out);
  ASSERT_EQ(rows.size(), 5u);
  const Answer a = Call(c, "POST", "/v1/recommend",
                        Json{{"user_id", user}, {"k", 5}, {"exclude_seen", true}}.dump());
  ASSERT_EQ(a.status, 200) << a.text;
  ASSERT_EQ(a.body["items"].size(), 5u);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(a.body["items"][i]["item_id"], rows[i].first) << i;
    EXPECT_NEAR(a.body["items"][i]["score"].get<double>(), rows[i].second, 5e-5) << i;
  }
  // /v1/score on the variant shows what /v1/recommend shows: the ranker's probability.
  const Answer scored =
      Call(c, "POST", "/v1/score",
           Json{{"user_id", user}, {"item_ids", {a.body["items"][1]["item_id"]}}}.dump());
  ASSERT_EQ(scored.status, 200) << scored.text;
  EXPECT_NEAR(scored.body["scores"][0]["score"].get<double>(),
              a.body["items"][1]["score"].get<double>(), 1e-6);
  EXPECT_EQ(scored.body["ranker_version"], a.body["ranker_version"]);
  const Json features = {
      {"age", 30}, {"gender", "F"}, {"favorite_genre", "Drama"}, {"activity_level", "high"}};
  const Answer by_features =
      Call(c, "POST", "/v1/recommend", Json{{"user", features}, {"k", 3}}.dump());
  ASSERT_EQ(by_features.status, 200) << by_features.text;
  ASSERT_EQ(by_features.body["items"].size(), 3u);
  // The top item again under a new id: the ranker sees the same features, so the same score.
  Json copy = a.body["items"][0];
  const double score = copy["score"];
  copy.erase("score");
  copy.erase("item_id");
  copy["movie_id"] = "fresh-ranked";
  ASSERT_EQ(Call(c, "PUT", "/v1/items", Json{{"items", {copy}}}.dump()).status, 200);
  const Answer after = Call(c, "POST", "/v1/recommend",
                            Json{{"user_id", user}, {"k", 2}, {"exclude_seen", true}}.dump());
  ASSERT_EQ(after.status, 200) << after.text;
  bool found = false;
  for (const Json& item : after.body["items"]) {
    if (item["item_id"] == "fresh-ranked") {
      found = true;
      EXPECT_NEAR(item["score"].get<double>(), score, 1e-6);
    }
  }
  EXPECT_TRUE(found) << after.text;
  const Answer models = Call(c, "GET", "/v1/models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(models.body["models"][0]["rerank"]["candidates"], 30);
  EXPECT_EQ(a.body["ranker_version"], models.body["models"][0]["rerank"]["model_version"]);

  // A two-tower model reading the genre alone, re-ranked by the ranker reading every column: a
  // live item the ranker cannot read is refused at PUT, and the service goes on answering.
  const std::string genre_only = scratch_.Write(
      "genre_only.yaml",
      "data: {users: users.csv, items: movies.csv}\n"
      "features:\n  item: [{column: genre, type: categorical}]\nmodel: {embedding_dim: 8, "
      "user_hidden_dims: [16], item_hidden_dims: [16]}\n");
  const auto tt =
      RunCli({"train", "--config", genre_only, "--set", "data.dir=" + Shared().data, "--epochs",
              "1", "--threads", "1", "--quiet", "--output-dir", scratch_.File("genre_only")},
             scratch_);
  ASSERT_EQ(tt.code, 0) << tt.err;
  std::string genre_model;
  for (const std::string& line : Lines(tt.out)) {
    if (line.rfind("run folder: ", 0) == 0) {
      genre_model = line.substr(12) + "model_best.safetensors";
    }
  }
  ServeConfig two = OneModel();
  two.variants = {{"default", genre_model, "", 1.0, ranker, 30}};
  two.events = scratch_.File("events2.jsonl");
  Running s2(two);
  auto c2 = s2.Client();
  const Answer refused = Call(c2, "PUT", "/v1/items",
                              Json{{"items", {{{"movie_id", "n1"}, {"genre", "Drama"}}}}}.dump());
  EXPECT_EQ(refused.status, 400) << refused.text;
  EXPECT_THAT(refused.body.value("error", ""), HasSubstr("re-ranks with"));
  EXPECT_EQ(Call(c2, "POST", "/v1/recommend", Json{{"user_id", user}, {"k", 3}}.dump()).status,
            200);
}

// Every kind of bad input gets a 4xx naming the field, and the server keeps serving.
// The features of a user of the generated users table, without its id, from the file.
Json UserFeatures(const std::string& user) {
  Json features;
  const std::vector<std::string> lines = Lines(ReadBytes(Shared().data + "/users.csv"));
  const std::vector<std::string> header = Fields(lines[0], ',');
  for (const std::string& line : lines) {
    const std::vector<std::string> f = Fields(line, ',');
    if (f[0] != user) continue;
    for (size_t k = 0; k < f.size(); ++k) {
      if (header[k] != "user_id") features[header[k]] = f[k];
    }
  }
  return features;
}

// The items `user` liked in the generated train and val files, in file order.
std::vector<std::string> LikedInFiles(const std::string& user) {
  std::vector<std::string> liked;
  for (const char* split : {"/train/interactions.csv", "/val/interactions.csv"}) {
    const std::vector<std::string> lines = Lines(ReadBytes(Shared().data + split));
    const std::vector<std::string> h = Fields(lines[0], ',');
    const auto col = [&](const char* name) {
      return std::find(h.begin(), h.end(), name) - h.begin();
    };
    for (size_t l = 1; l < lines.size(); ++l) {
      const std::vector<std::string> f = Fields(lines[l], ',');
      if (f[col("user_id")] == user && f[col("liked")] == "1") liked.push_back(f[col("movie_id")]);
    }
  }
  return liked;
}

// A model with a user history: by id the server reads the history from the train and val files
// (as `recommend` does); a new user given by features reads the request's "history". The same
// features and the same history (read here from the files: the user's liked movies, train then
// val, in file order, the last 4) give the same answer as the user's id.
TEST_F(ServerTest, HistoryByIdEqualsTheCliAndByFeaturesWithTheSameHistory) {
  const std::string model = HistoryModel();
  ASSERT_FALSE(model.empty()) << "could not train the history model";
  ServeConfig config = OneModel();
  config.variants[0].model = model;
  Running s(config);
  auto c = s.Client();
  const std::string user = BusiestUser(Shared().data);
  const auto cli = RunCli({"recommend", "--model", model, "--user-id", user, "--k", "5"}, scratch_);
  ASSERT_EQ(cli.code, 0) << cli.err;
  const auto rows = ResultRows(cli.out);
  ASSERT_EQ(rows.size(), 5u);
  const Answer by_id = Call(c, "POST", "/v1/recommend", Json{{"user_id", user}, {"k", 5}}.dump());
  ASSERT_EQ(by_id.status, 200) << by_id.text;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(by_id.body["items"][i]["item_id"], rows[i].first) << i;
    EXPECT_NEAR(by_id.body["items"][i]["score"].get<double>(), rows[i].second, 5e-5) << i;
  }
  // The user's features and history, from the files.
  const Json features = UserFeatures(user);
  const std::vector<std::string> liked = LikedInFiles(user);
  ASSERT_GE(liked.size(), 4u);
  const Json history(std::vector<std::string>(liked.end() - 4, liked.end()));
  const Answer by_features = Call(c, "POST", "/v1/recommend",
                                  Json{{"user", features}, {"history", history}, {"k", 5}}.dump());
  ASSERT_EQ(by_features.status, 200) << by_features.text;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(by_features.body["items"][i]["item_id"], rows[i].first) << i;
    EXPECT_NEAR(by_features.body["items"][i]["score"].get<double>(), rows[i].second, 5e-5) << i;
  }
  // Features naming the user's id, without a history: the user's loaded history.
  Json with_own_id = features;
  with_own_id["user_id"] = user;
  const Answer own = Call(c, "POST", "/v1/recommend", Json{{"user", with_own_id}, {"k", 5}}.dump());
  ASSERT_EQ(own.status, 200) << own.text;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(own.body["items"][i]["item_id"], rows[i].first) << i;
  }
  // exclude_seen drops a new user's request history from the answer.
  const Json first_two = Json::array({rows[0].first, rows[1].first});
  const Answer seen = Call(
      c, "POST", "/v1/recommend",
      Json{{"user", features}, {"history", first_two}, {"k", 5}, {"exclude_seen", true}}.dump());
  ASSERT_EQ(seen.status, 200) << seen.text;
  for (const Json& item : seen.body["items"]) {
    EXPECT_NE(item["item_id"], rows[0].first);
    EXPECT_NE(item["item_id"], rows[1].first);
  }
  // `recommend --train` without --exclude-seen names a history model's history file.
  const auto other = RunCli({"recommend", "--model", model, "--user-id", user, "--k", "5",
                             "--train", Shared().data + "/val/interactions.csv"},
                            scratch_);
  EXPECT_EQ(other.code, 0) << other.err;
  // Without the history the same features score otherwise.
  const Answer none = Call(
      c, "POST", "/v1/score",
      Json{{"user", features}, {"history", Json::array()}, {"item_ids", {rows[0].first}}}.dump());
  ASSERT_EQ(none.status, 200) << none.text;
  EXPECT_GT(std::abs(none.body["scores"][0]["score"].get<double>() - rows[0].second), 1e-4);
  // Refused, naming the field: a history with a user id, an unknown item, a model without one.
  const Answer with_id =
      Call(c, "POST", "/v1/recommend", Json{{"user_id", user}, {"history", history}}.dump());
  EXPECT_EQ(with_id.status, 400);
  EXPECT_EQ(with_id.body["field"], "history");
  const Answer unknown = Call(c, "POST", "/v1/recommend",
                              Json{{"user", features}, {"history", {"no-such-movie"}}}.dump());
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.body["field"], "history[0]");
  // An A/B test of the history model against the lab model (same user columns, no history): a
  // request's history is read by the variant whose model reads one and ignored by the other, so
  // every user is answered.
  ServeConfig ab = OneModel();
  ab.variants = {{"lab", Shared().a, "", 1.0, "", 200}, {"history", model, "", 1.0, "", 200}};
  Running both(ab);
  auto cb = both.Client();
  std::set<std::string> variants;
  for (int i = 0; i < 20; ++i) {
    Json lab_user = features;
    lab_user["age"] = std::to_string(20 + i);
    const Answer r = Call(cb, "POST", "/v1/recommend",
                          Json{{"user", lab_user}, {"history", history}, {"k", 3}}.dump());
    ASSERT_EQ(r.status, 200) << r.text;
    variants.insert(r.body["variant"].get<std::string>());
  }
  EXPECT_EQ(variants.size(), 2u);
  Running plain(OneModel());
  auto p = plain.Client();
  const Answer no_history =
      Call(p, "POST", "/v1/recommend",
           Json{{"user", Json{{"age", "30"}}}, {"history", Json::array()}}.dump());
  EXPECT_EQ(no_history.status, 400);
  EXPECT_EQ(no_history.body["field"], "history");
}

// Likes sent to /v1/feedback join the user's history and seen items (live_history): by id the
// user is then answered as a new user with its features and, as request history, the last 4 of
// its liked movies in the files followed by the new likes; exclude_seen drops the new likes; a
// restart replays them from the event log; the same model content copied again (a new file time)
// keeps them at reload, a model with other content (retrained) drops them; with live_history off
// they change nothing.
TEST_F(ServerTest, LikesJoinTheHistoryAndSeenItems) {
  const std::string trained = HistoryModel();
  ASSERT_FALSE(trained.empty()) << "could not train the history model";
  const std::string model = scratch_.File("model.safetensors");
  std::filesystem::copy_file(trained, model);
  ServeConfig config = OneModel();
  config.variants[0].model = model;
  const std::string user = BusiestUser(Shared().data);
  const Json features = UserFeatures(user);
  const std::vector<std::string> liked = LikedInFiles(user);
  ASSERT_GE(liked.size(), 4u);
  const Json by_id = {{"user_id", user}, {"k", 5}};
  // The by-id answers before and after the likes, as (item, score).
  std::vector<std::pair<std::string, double>> before, after;
  const auto same_as = [](const Answer& a, const std::vector<std::pair<std::string, double>>& b,
                          const char* what) {
    SCOPED_TRACE(what);
    ASSERT_EQ(a.status, 200) << a.text;
    ASSERT_EQ(a.body["items"].size(), b.size());
    for (size_t i = 0; i < b.size(); ++i) {
      EXPECT_EQ(a.body["items"][i]["item_id"], b[i].first) << i;
      EXPECT_NEAR(a.body["items"][i]["score"].get<double>(), b[i].second, 1e-6) << i;
    }
  };
  {
    Running s(config);
    auto c = s.Client();
    const Answer first = Call(c, "POST", "/v1/recommend", by_id.dump());
    ASSERT_EQ(first.status, 200) << first.text;
    for (const Json& item : first.body["items"]) {
      before.emplace_back(item["item_id"], item["score"].get<double>());
    }
    // The two top items, liked now; an impression and a like of an unknown item change nothing.
    for (const std::string& item : {before[0].first, before[1].first}) {
      const Answer fed = Call(c, "POST", "/v1/feedback",
                              Json{{"user_id", user}, {"item_id", item}, {"event", "like"}}.dump());
      ASSERT_EQ(fed.status, 202) << fed.text;
    }
    for (const Json& other :
         {Json{{"user_id", user}, {"item_id", before[2].first}, {"event", "click"}},
          Json{{"user_id", user}, {"item_id", "no-such"}, {"event", "like"}}}) {
      ASSERT_EQ(Call(c, "POST", "/v1/feedback", other.dump()).status, 202);
    }
    std::vector<std::string> expected_history(liked.end() - 2, liked.end());
    expected_history.push_back(before[0].first);
    expected_history.push_back(before[1].first);
    const Answer expected =
        Call(c, "POST", "/v1/recommend",
             Json{{"user", features}, {"history", expected_history}, {"k", 5}}.dump());
    ASSERT_EQ(expected.status, 200) << expected.text;
    const Answer now = Call(c, "POST", "/v1/recommend", by_id.dump());
    ASSERT_EQ(now.status, 200) << now.text;
    ASSERT_EQ(now.body["items"].size(), 5u);
    for (size_t i = 0; i < 5; ++i) {
      EXPECT_EQ(now.body["items"][i]["item_id"], expected.body["items"][i]["item_id"]) << i;
      EXPECT_NEAR(now.body["items"][i]["score"].get<double>(),
                  expected.body["items"][i]["score"].get<double>(), 1e-6)
          << i;
      after.emplace_back(now.body["items"][i]["item_id"],
                         now.body["items"][i]["score"].get<double>());
    }
    const Answer scores = Call(c, "POST", "/v1/score",
                               Json{{"user_id", user}, {"item_ids", {before[0].first}}}.dump());
    ASSERT_EQ(scores.status, 200) << scores.text;
    EXPECT_GT(std::abs(scores.body["scores"][0]["score"].get<double>() - before[0].second), 1e-5)
        << "the likes did not change the user's embedding";
    // Every item unless seen: the new likes are among them, then excluded.
    const auto ids_of = [](const Answer& a) {
      std::set<std::string> ids;
      for (const Json& item : a.body["items"]) ids.insert(item["item_id"].get<std::string>());
      return ids;
    };
    const Answer all = Call(c, "POST", "/v1/recommend", Json{{"user_id", user}, {"k", 100}}.dump());
    const Answer unseen = Call(c, "POST", "/v1/recommend",
                               Json{{"user_id", user}, {"k", 100}, {"exclude_seen", true}}.dump());
    ASSERT_EQ(all.status, 200) << all.text;
    ASSERT_EQ(unseen.status, 200) << unseen.text;
    EXPECT_EQ(ids_of(all).count(before[0].first), 1u);
    EXPECT_EQ(ids_of(unseen).count(before[0].first), 0u);
    EXPECT_EQ(ids_of(unseen).count(before[1].first), 0u);
    EXPECT_EQ(ids_of(unseen).count(before[2].first), ids_of(all).count(before[2].first))
        << "a click is not a like";
    const Answer models = Call(c, "GET", "/v1/models");
    EXPECT_EQ(models.body["models"][0]["live_likes"]["users"], 1);
    EXPECT_EQ(models.body["models"][0]["live_likes"]["history_items"], 2);
  }
  // A restart replays the likes from the event log.
  {
    Running s(config);
    auto c = s.Client();
    same_as(Call(c, "POST", "/v1/recommend", by_id.dump()), after, "restart");
    // The same model copied again, with a new file time: the same content, so the likes stay.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::filesystem::copy_file(trained, model, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::last_write_time(model, std::filesystem::file_time_type::clock::now());
    ASSERT_EQ(Call(c, "POST", "/v1/admin/reload", "{}").status, 200);
    same_as(Call(c, "POST", "/v1/recommend", by_id.dump()), after, "the same content again");
    // A model with other content (retrained on data holding the likes) drops them at reload:
    // it answers as that model does without likes (a server of its own with an empty log).
    const std::string& retrained = twotower::testing::RetrainedHistoryModel();
    ASSERT_FALSE(retrained.empty());
    std::filesystem::copy_file(retrained, model, std::filesystem::copy_options::overwrite_existing);
    ASSERT_EQ(Call(c, "POST", "/v1/admin/reload", "{}").status, 200);
    ServeConfig fresh = config;
    fresh.events = scratch_.File("events-fresh.jsonl");
    Running r(fresh);
    auto rc = r.Client();
    const Answer without = Call(rc, "POST", "/v1/recommend", by_id.dump());
    ASSERT_EQ(without.status, 200) << without.text;
    std::vector<std::pair<std::string, double>> expected;
    for (const Json& item : without.body["items"]) {
      expected.emplace_back(item["item_id"], item["score"].get<double>());
    }
    same_as(Call(c, "POST", "/v1/recommend", by_id.dump()), expected, "another model");
    EXPECT_EQ(Call(c, "GET", "/v1/models").body["models"][0]["live_likes"]["users"], 0);
  }
  // With live_history off, likes change nothing.
  ServeConfig off = config;
  off.events = scratch_.File("events-off.jsonl");
  off.live_history = false;
  off.variants[0].model = trained;  // `model` now holds the retrained one
  Running s(off);
  auto c = s.Client();
  ASSERT_EQ(Call(c, "POST", "/v1/feedback",
                 Json{{"user_id", user}, {"item_id", before[0].first}, {"event", "like"}}.dump())
                .status,
            202);
  same_as(Call(c, "POST", "/v1/recommend", by_id.dump()), before, "live_history off");
}

TEST_F(ServerTest, BadInputIsA4xxNamingTheField) {
  ServeConfig config = OneModel();
  config.max_k = 50;
  config.max_list = 3;
  config.max_body_bytes = 4096;
  Running s(config);
  auto c = s.Client();
  struct Case {
    std::string path, body;
    int status;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"/v1/recommend", "{not json", 400, ""},
      {"/v1/recommend", "[1, 2]", 400, ""},
      {"/v1/recommend", R"({"user_id": "1", "user_id": "2"})", 400, ""},
      {"/v1/recommend", R"({"user_id": "1", "kk": 3})", 400, "kk"},
      {"/v1/recommend", R"({"k": 3})", 400, "user_id"},
      {"/v1/recommend", R"({"user_id": 1.5})", 400, "user_id"},
      {"/v1/recommend", R"({"user_id": "1", "k": 0})", 400, "k"},
      {"/v1/recommend", R"({"user_id": "1", "k": 51})", 400, "k"},
      {"/v1/recommend", R"({"user_id": "1", "k": "3"})", 400, "k"},
      {"/v1/recommend", R"({"user_id": "1", "exclude": [1, 2, 3, 4]})", 400, "exclude"},
      {"/v1/recommend", R"({"user_id": "1", "exclude": ["no-such-item"]})", 404, "exclude[0]"},
      {"/v1/recommend", R"({"user_id": "no-such-user"})", 404, "user_id"},
      {"/v1/recommend", R"({"user": {"age": 30}})", 400, "user"},
      {"/v1/recommend", R"({"user": {"age": 30, "height": 2}})", 400, "user.height"},
      {"/v1/score", R"({"user_id": "1"})", 400, "item_ids"},
      {"/v1/score", R"({"user_id": "1", "item_ids": ["1", "nope"]})", 404, "item_ids[1]"},
      {"/v1/similar", R"({"item_id": "nope"})", 404, "item_id"},
      {"/v1/feedback", R"({"user_id": "1", "item_id": "2", "event": "purchase"})", 400, "event"},
      {"/v1/feedback", R"({"user_id": "1", "item_id": "2", "event": "click", "variant": "x"})", 404,
       "variant"},
  };
  const std::vector<Case> puts = {
      {"/v1/items", R"({"items": [{"movie_id": "n1", "genre": "Drama", "colour": "red"}]})", 400,
       "items[0].colour"},
      {"/v1/items", R"({"items": [{"genre": "Drama"}]})", 400, "items[0].movie_id"},
  };
  for (const Case& k : puts) {
    SCOPED_TRACE(k.path + " " + k.body);
    const Answer a = Call(c, "PUT", k.path, k.body);
    EXPECT_EQ(a.status, k.status) << a.text;
    EXPECT_EQ(a.body.value("field", std::string("?")), k.field) << a.text;
  }
  for (const Case& k : cases) {
    SCOPED_TRACE(k.path + " " + k.body);
    const Answer a = Call(c, "POST", k.path, k.body);
    EXPECT_EQ(a.status, k.status) << a.text;
    EXPECT_EQ(a.body.value("field", std::string("?")), k.field) << a.text;
    EXPECT_FALSE(a.body.value("error", std::string()).empty()) << a.text;
  }
  const Answer large = Call(c, "POST", "/v1/recommend", std::string(5000, ' '));
  EXPECT_EQ(large.status, 413);
  EXPECT_THAT(large.body.value("error", std::string()), HasSubstr("max_body_bytes"));
  EXPECT_THAT(large.body.value("error", std::string()), ::testing::Not(HasSubstr("curl -d")))
      << "a JSON body is not told to send JSON";
  const auto form =
      c.Post("/v1/recommend", std::string(9000, 'a'), "application/x-www-form-urlencoded");
  ASSERT_TRUE(form);
  EXPECT_EQ(form->status, 413);
  EXPECT_THAT(form->body, HasSubstr("send Content-Type: application/json"));
  // Found by a helper trying to break the server: these were 500s, or bypassed the body limit.
  EXPECT_EQ(Call(c, "POST", "/v1/recommend", R"({"user_id": "1", "k": 1e400})").status, 400);
  const Answer bad_utf8 = Call(c, "POST", "/v1/recommend", "{\"user_id\": \"\xff\xfe\"}");
  EXPECT_EQ(bad_utf8.status, 400) << bad_utf8.text;           // not UTF-8: not JSON
  EXPECT_EQ(Call(c, "DELETE", "/v1/items/%FF").status, 404);  // echoed with U+FFFD, not a 500
  httplib::Headers chunked = {{"Transfer-Encoding", "chunked"}};
  const auto streamed = c.Post(
      "/v1/recommend", chunked,
      [](size_t offset, httplib::DataSink& sink) {
        if (offset == 0) {
          const std::string body = "{}";  // small: sent with the headers, before the refusal
          sink.write(body.data(), body.size());
        }
        sink.done();
        return true;
      },
      "application/json");
  // The server refuses before reading the body; a client still writing may see the connection
  // close instead of the 411.
  if (streamed) {
    EXPECT_EQ(streamed->status, 411);
  }
  EXPECT_EQ(Call(c, "GET", "/v1/experiments/other").status, 404);
  EXPECT_EQ(Call(c, "DELETE", "/v1/items/nope").status, 404);
  EXPECT_EQ(Call(c, "GET", "/no/such/route").status, 404);
  const Answer wrong_method = Call(c, "GET", "/v1/recommend");
  EXPECT_EQ(wrong_method.status, 405) << wrong_method.text;
  EXPECT_THAT(wrong_method.body.value("error", std::string()), HasSubstr("allowed: POST"));
  EXPECT_EQ(Call(c, "GET", "/healthz").status, 200);  // still serving
  const std::string metrics = Call(c, "GET", "/metrics").text;
  EXPECT_THAT(metrics, HasSubstr("twotower_requests_total{route=\"/v1/recommend\",status=\"400\""));
}

// A request past its deadline is a 503 that changes nothing; the server goes on serving.
TEST_F(ServerTest, ARequestPastItsDeadlineIsA503) {
  ServeConfig config = OneModel();
  config.deadline_seconds = 1e-6;  // passed before the first stage of any request
  Running s(config);
  auto c = s.Client();
  const Answer late = Call(c, "POST", "/v1/recommend", R"({"user_id": "1"})");
  EXPECT_EQ(late.status, 503) << late.text;
  EXPECT_THAT(late.body.value("error", std::string()), HasSubstr("serve.deadline_seconds"));
  const Answer put = Call(c, "PUT", "/v1/items",
                          R"({"items": [{"movie_id": "late-1", "genre": "Drama", "year": 2020,
                              "duration": 100, "avg_rating": 3.5}]})");
  EXPECT_EQ(put.status, 503) << put.text;
  EXPECT_EQ(Call(c, "GET", "/healthz").status, 200);
  EXPECT_THAT(Call(c, "GET", "/metrics").text,
              HasSubstr("twotower_requests_total{route=\"/v1/recommend\",status=\"503\""));
}

// --host takes a host name as other servers do: "localhost" binds its IPv4 address; a name that
// does not resolve is refused naming the host (it was "not an IP address" for any name).
TEST_F(ServerTest, AHostNameIsResolvedBeforeBinding) {
  ServeConfig config = OneModel();
  config.host = "localhost";
  Running s(config);
  auto c = s.Client();  // 127.0.0.1
  EXPECT_EQ(Call(c, "GET", "/healthz").status, 200);
  s.Stop();
  ServeConfig unknown = OneModel();
  unknown.host = "no-such-host.invalid";  // RFC 2606: never resolves
  {
    Server server(unknown);
    EXPECT_THAT([&] { server.Bind(); },
                ::testing::ThrowsMessage<Error>(
                    HasSubstr("cannot bind no-such-host.invalid: not an IP address, and not a "
                              "host name this machine resolves")));
  }
  // The server never served: it leaves no events log behind (it created an empty one).
  EXPECT_FALSE(std::filesystem::exists(unknown.events)) << unknown.events;
  // An empty host is refused, not resolved to every interface.
  ServeConfig empty = OneModel();
  empty.host = "";
  EXPECT_THAT(
      [&] {
        Server nowhere(empty);
        nowhere.Bind();
      },
      ::testing::ThrowsMessage<Error>(HasSubstr("serve.host: empty; expected an IP address")));
}

// An item only the index holds (added to the index file with a vector of its own, no row in the
// items table) is found by /v1/similar through its vector in the index: here a copy of movie
// ids()[0]'s vector, so that movie comes first with the score <v, v> computed here.
TEST_F(ServerTest, SimilarFindsAnItemOnlyTheIndexHolds) {
  const std::string npy = scratch_.File("items.npy"), path = scratch_.File("items.index");
  ASSERT_EQ(RunCli({"embed", "--model", Shared().a, "--out", npy}, scratch_).code, 0);
  const auto build = RunCli({"index", "build", "--embeddings", npy, "--out", path}, scratch_);
  ASSERT_EQ(build.code, 0) << build.err;
  std::unique_ptr<index::ItemIndex> idx = index::LoadIndex(path, 0);
  std::vector<float> v(static_cast<size_t>(idx->dim()));
  idx->GetVector(0, v.data());
  const std::string first = idx->ids()[0];
  idx->Add(v.data(), 1, {"outside-1"});
  // And movie ids()[1] updated in the index (as `index add` of new features does) to movie
  // ids()[2]'s vector: its neighbours follow the index, not the items table's old row.
  std::vector<float> w(static_cast<size_t>(idx->dim()));
  idx->GetVector(2, w.data());
  const std::string updated = idx->ids()[1], twin = idx->ids()[2];
  idx->Add(w.data(), 1, {updated});
  idx->Save(path);
  double twin_self = 0;
  for (float x : w) twin_self += static_cast<double>(x) * x;
  double self = 0;
  for (float x : v) self += static_cast<double>(x) * x;
  ServeConfig config = OneModel();
  config.variants[0].index = path;
  Running s(config);
  auto c = s.Client();
  const Answer a = Call(c, "POST", "/v1/similar", Json{{"item_id", "outside-1"}, {"k", 3}}.dump());
  ASSERT_EQ(a.status, 200) << a.text;
  ASSERT_EQ(a.body["items"].size(), 3u);
  EXPECT_EQ(a.body["items"][0]["item_id"], first);
  EXPECT_NEAR(a.body["items"][0]["score"].get<double>(), self, 1e-5);
  for (const Json& item : a.body["items"]) EXPECT_NE(item["item_id"], "outside-1");
  EXPECT_EQ(Call(c, "POST", "/v1/similar", Json{{"item_id", "outside-2"}}.dump()).status, 404);
  const Answer u = Call(c, "POST", "/v1/similar", Json{{"item_id", updated}, {"k", 1}}.dump());
  ASSERT_EQ(u.status, 200) << u.text;
  EXPECT_EQ(u.body["items"][0]["item_id"], twin);
  EXPECT_NEAR(u.body["items"][0]["score"].get<double>(), twin_self, 1e-5);
}

// An item put into the live index is recommended by the next request; a deleted one is not.
TEST_F(ServerTest, LiveItemsAreRetrievableAtOnce) {
  Running s(OneModel());
  auto c = s.Client();
  const std::string user = BusiestUser(Shared().data);
  const Answer before = Call(c, "POST", "/v1/recommend", Json{{"user_id", user}, {"k", 1}}.dump());
  ASSERT_EQ(before.status, 200) << before.text;
  // A copy of the user's top item under a new id scores the same, so it ties for first.
  Json copy = before.body["items"][0];
  const double score = copy["score"];
  copy.erase("score");
  copy.erase("item_id");
  copy["movie_id"] = "fresh-1";
  const Answer put = Call(c, "PUT", "/v1/items", Json{{"items", {copy}}}.dump());
  ASSERT_EQ(put.status, 200) << put.text;
  EXPECT_EQ(put.body["added"], 1);
  const Answer after = Call(c, "POST", "/v1/recommend", Json{{"user_id", user}, {"k", 2}}.dump());
  ASSERT_EQ(after.status, 200);
  std::vector<std::string> ids;
  for (const Json& item : after.body["items"]) {
    ids.push_back(item["item_id"]);
    EXPECT_NEAR(item["score"].get<double>(), score, 1e-6);
  }
  EXPECT_THAT(ids, ::testing::Contains("fresh-1"));
  EXPECT_EQ(Call(c, "DELETE", "/v1/items/fresh-1").status, 200);
  const Answer gone = Call(c, "POST", "/v1/recommend", Json{{"user_id", user}, {"k", 2}}.dump());
  for (const Json& item : gone.body["items"]) EXPECT_NE(item["item_id"], "fresh-1");
  EXPECT_EQ(Call(c, "POST", "/v1/similar", Json{{"item_id", "fresh-1"}}.dump()).status, 404);
  // A live item's columns come back as sent, escapes and all.
  Json odd = copy;
  odd["movie_id"] = "odd \"1\"\\";
  odd["genre"] = "Dr\"a\\ma\n\u00e9\u2603";
  const Answer put_odd = Call(c, "PUT", "/v1/items", Json{{"items", {odd}}}.dump());
  ASSERT_EQ(put_odd.status, 200) << put_odd.text;
  const Answer only = Call(c, "POST", "/v1/recommend",
                           Json{{"user_id", user}, {"allow", {odd["movie_id"]}}}.dump());
  ASSERT_EQ(only.status, 200) << only.text;
  ASSERT_EQ(only.body["items"].size(), 1u) << only.text;
  EXPECT_EQ(only.body["items"][0]["item_id"], odd["movie_id"]);
  EXPECT_EQ(only.body["items"][0]["genre"], odd["genre"]);
  EXPECT_EQ(only.body["items"][0]["year"], odd["year"]);
  ASSERT_EQ(Call(c, "DELETE", "/v1/items/odd%20%221%22%5C").status, 200);
  // An id with a slash can be deleted too.
  copy["movie_id"] = "a/b";
  ASSERT_EQ(Call(c, "PUT", "/v1/items", Json{{"items", {copy}}}.dump()).status, 200);
  EXPECT_EQ(Call(c, "DELETE", "/v1/items/a%2Fb").status, 200);
}

// Reloads while requests run: no request fails, and the models answer with their versions.
TEST_F(ServerTest, ReloadWhileRequestsRunFailsNone) {
  Running s(OneModel());
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&, t] {
      auto c = s.Client();
      for (int i = 0; !stop; ++i) {
        const Answer a = Call(c, "POST", "/v1/recommend",
                              Json{{"user_id", std::to_string(1 + (t * 31 + i) % 200)}}.dump());
        (a.status == 200 ? ok : failed)++;
      }
    });
  }
  auto c = s.Client();
  for (int i = 0; i < 4; ++i) {
    const Answer r = Call(c, "POST", "/v1/admin/reload", i == 3 ? "" : "{}");
    EXPECT_EQ(r.status, 200) << r.text;
  }
  // A body that is not an empty object is refused, naming what was wrong, and nothing reloads
  // (the count below stays 4).
  const Answer list = Call(c, "POST", "/v1/admin/reload", "[1]");
  EXPECT_EQ(list.status, 400) << list.text;
  EXPECT_THAT(list.text, HasSubstr("request body: expected a JSON object"));
  const Answer field = Call(c, "POST", "/v1/admin/reload", R"({"force": true})");
  EXPECT_EQ(field.status, 400) << field.text;
  EXPECT_EQ(field.body["field"], "force");
  EXPECT_THAT(field.text, HasSubstr("a reload takes no fields"));
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  const Answer models = Call(c, "GET", "/v1/models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(models.body["models"][0]["model_version"].get<std::string>().size(), 64u);
  EXPECT_EQ(Call(c, "GET", "/readyz").status, 200);
  EXPECT_EQ(Call(c, "GET", "/openapi.json").body["openapi"], "3.0.3");
  EXPECT_THAT(Call(c, "GET", "/metrics").text,
              HasSubstr("twotower_reloads_total{result=\"ok\"} 4"));
}

// A reload over HTTP is logged as a SIGHUP one is; one that fails is a 500 that keeps the old
// model serving, logged with why, and OpenAPI lists that 500.
TEST_F(ServerTest, ReloadsAreLoggedAndAFailedOneIsA500) {
  const std::string model = scratch_.File("served.safetensors");
  std::filesystem::copy_file(Shared().a, model);
  ServeConfig config = OneModel();
  config.variants[0].model = model;
  std::mutex mutex;
  std::vector<std::string> lines;
  Running s(config, [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(mutex);
    lines.push_back(line);
  });
  auto c = s.Client();
  ASSERT_EQ(Call(c, "POST", "/v1/admin/reload").status, 200);
  {
    std::ofstream broken(model, std::ios::binary | std::ios::trunc);
    broken << "not a model";
  }
  const Answer failed = Call(c, "POST", "/v1/admin/reload");
  EXPECT_EQ(failed.status, 500) << failed.text;
  EXPECT_THAT(failed.text, HasSubstr("reload failed, still serving the previous models: "));
  EXPECT_EQ(Call(c, "POST", "/v1/recommend", R"({"user_id": "1"})").status, 200);
  s.Stop();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "reloaded (POST /v1/admin/reload)");
  EXPECT_THAT(lines[1], HasSubstr("reload (POST /v1/admin/reload) failed, still serving the "
                                  "previous models: " +
                                  model));
  Running again(OneModel());
  auto c2 = again.Client();
  const Json api = Call(c2, "GET", "/openapi.json").body;
  EXPECT_TRUE(api["paths"]["/v1/admin/reload"]["post"]["responses"].contains("500"));
}

// Two variants 70 / 30: 10,000 users split close to the weights, each user always in the same
// variant; the events survive a restart.
TEST_F(ServerTest, ABAssignmentAndEventsSurviveARestart) {
  ServeConfig config = OneModel();
  config.experiment = "home";
  config.salt = "s1";
  config.variants = {{"control", Shared().a, "", 70, "", 200},
                     {"treatment", Shared().b, "", 30, "", 200}};
  std::map<std::string, int> by_variant;
  {
    Running s(config);
    auto c = s.Client();
    for (int u = 0; u < 10000; ++u) {
      const Answer a = Call(c, "POST", "/v1/feedback",
                            Json{{"user_id", std::string("u").append(std::to_string(u))},
                                 {"item_id", "1"},
                                 {"event", u % 10 == 0 ? "click" : "impression"}}
                                .dump());
      ASSERT_EQ(a.status, 202) << a.text;
      ++by_variant[a.body["variant"]];
    }
    // Stable: the same user again, and a recommendation for a known user names its variant.
    const Answer again = Call(c, "POST", "/v1/feedback",
                              Json{{"user_id", "u7"}, {"item_id", "1"}, {"event", "like"}}.dump());
    const Answer first = Call(c, "POST", "/v1/feedback",
                              Json{{"user_id", "u7"}, {"item_id", "1"}, {"event", "like"}}.dump());
    EXPECT_EQ(again.body["variant"], first.body["variant"]);
    const Answer rec = Call(c, "POST", "/v1/recommend", Json{{"user_id", "3"}}.dump());
    ASSERT_EQ(rec.status, 200);
    EXPECT_EQ(rec.body["variant"].get<std::string>(),
              config.variants[AssignVariant(Bucket("s1", "3"), {70, 30})].name);
  }
  EXPECT_NEAR(by_variant["control"], 7000, 183);  // 4 sd of Binomial(10000, 0.7)
  Running s(config);                              // a restart replays the log
  auto c = s.Client();
  const Answer r = Call(c, "GET", "/v1/experiments/home");
  ASSERT_EQ(r.status, 200) << r.text;
  int64_t users = 0, impressions = 0, clicks = 0;
  for (const Json& v : r.body["variants"]) {
    users += v["users"].get<int64_t>();
    impressions += v["impressions"].get<int64_t>();
    clicks += v["clicks"].get<int64_t>();
    EXPECT_EQ(v["users"].get<int64_t>(), by_variant[v["name"]]);
  }
  EXPECT_EQ(users, 10000);
  EXPECT_EQ(impressions, 9000);
  EXPECT_EQ(clicks, 1000);
  EXPECT_EQ(r.body["sample_ratio"]["mismatch"], false);
  EXPECT_EQ(r.body["comparisons"][0]["variant"], "treatment");
  // The offline readout of the same log counts the same.
  const auto report = RunCli({"experiment", "report", "--events", config.events}, scratch_);
  ASSERT_EQ(report.code, 0) << report.err;
  EXPECT_THAT(report.out, HasSubstr("10002 events in"));  // 10,000 + the two likes of u7
  int rows = 0;
  for (const std::string& line : Lines(report.out)) {
    const auto w = twotower::testing::Words(line);
    if (w.size() >= 7 && w[1] == "1.0" && (w[0] == "control" || w[0] == "treatment")) {
      EXPECT_EQ(w[2], std::to_string(by_variant[w[0]])) << line;
      ++rows;
    }
  }
  EXPECT_EQ(rows, 2) << report.out;
  EXPECT_THAT(report.out, HasSubstr("control: control (the first variant in the log)"));
  EXPECT_THAT(report.out, HasSubstr("treatment vs control: CTR difference"));
  // --control picks the other one; the events of a logged variant the config does not list are
  // shown apart, with a warning.
  const auto flipped = RunCli(
      {"experiment", "report", "--events", config.events, "--control", "treatment"}, scratch_);
  ASSERT_EQ(flipped.code, 0) << flipped.err;
  EXPECT_THAT(flipped.out, HasSubstr("control vs treatment: CTR difference"));
  twotower::testing::ExpectUserError(
      RunCli({"experiment", "report", "--events", config.events, "--control", "nope"}, scratch_),
      "--control: no variant \"nope\" (the variants: control, treatment)");
  const std::string yaml = scratch_.File("serve.yaml");
  std::ofstream(yaml) << "serve:\n  experiment: home\n  variants:\n    - name: control\n"
                      << "      model: " << Shared().a << "\n";
  const auto unlisted =
      RunCli({"experiment", "report", "--events", config.events, "--config", yaml}, scratch_);
  ASSERT_EQ(unlisted.code, 0) << unlisted.err;
  EXPECT_THAT(unlisted.err,
              HasSubstr("events name variant \"treatment\", which " + yaml + " does not list"));
  bool shown = false;
  for (const std::string& line : Lines(unlisted.out)) {
    const auto w = twotower::testing::Words(line);
    if (w.size() >= 7 && w[0] == "treatment" && w[1] == "-") {
      EXPECT_EQ(w[2], std::to_string(by_variant["treatment"])) << line;
      EXPECT_THAT(line, HasSubstr("(not in the config)"));
      shown = true;
    }
  }
  EXPECT_TRUE(shown) << unlisted.out;
}

// `twotower compare`: a model against itself differs by exactly 0; against another, each side's
// means are what `evaluate` reports for it, and the interval holds the difference.
TEST_F(ServerTest, CompareReportsPairedDifferences) {
  const std::string test = Shared().data + "/test/interactions.csv";
  const auto same =
      RunCli({"compare", "--models", Shared().a, Shared().a, "--interactions", test}, scratch_);
  ASSERT_EQ(same.code, 0) << same.err;
  EXPECT_THAT(same.out, HasSubstr("+0.0000  [+0.0000, +0.0000]"));
  const auto two =
      RunCli({"compare", "--models", Shared().a, Shared().b, "--interactions", test}, scratch_);
  ASSERT_EQ(two.code, 0) << two.err;
  const auto eval_a = RunCli({"evaluate", "--model", Shared().a, "--interactions", test}, scratch_);
  const auto eval_b = RunCli({"evaluate", "--model", Shared().b, "--interactions", test}, scratch_);
  ASSERT_EQ(eval_a.code, 0) << eval_a.err;
  std::string recall_a, recall_b;
  for (const auto* e : {&eval_a, &eval_b}) {
    for (const std::string& line : Lines(e->out)) {
      const auto w = twotower::testing::Words(line);
      if (w.size() >= 2 && w[0] == "Recall") (e == &eval_a ? recall_a : recall_b) = w[1];
    }
  }
  bool found = false;
  for (const std::string& line : Lines(two.out)) {
    const auto w = twotower::testing::Words(line);
    if (w.size() >= 5 && w[0] == "recall" && w[1] == "10") {
      found = true;
      EXPECT_EQ(w[2], recall_a);
      EXPECT_EQ(w[3], recall_b);
      const double diff = std::stod(w[4]);
      const double lo = std::stod(w[5].substr(1)), hi = std::stod(w[6]);
      EXPECT_LE(lo, diff);
      EXPECT_GE(hi, diff);
    }
  }
  EXPECT_TRUE(found) << two.out;
}

// The binary: SIGHUP reloads, SIGTERM finishes, flushes the event log and exits 0.
// `twotower serve --model <the lab model> --events EVENTS` started as a child process on a free
// port, its stdout in `out` (stderr in out + ".err"); port -1 when it did not say one in 15 s.
struct ServeCommand {
  pid_t pid = -1;
  int port = -1;
};
ServeCommand StartServeCommand(const std::string& events, const std::string& out) {
  ServeCommand child;
  child.pid = fork();
  if (child.pid == 0) {
    std::freopen(out.c_str(), "w", stdout);
    std::freopen((out + ".err").c_str(), "w", stderr);
    execl(TWOTOWER_CLI_PATH, TWOTOWER_CLI_PATH, "serve", "--model", Shared().a.c_str(), "--port",
          "0", "--threads", "2", "--events", events.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // The first line names the port.
  for (int i = 0; i < 300 && child.pid > 0 && child.port < 0; ++i) {
    const std::string text = twotower::testing::ReadBytes(out);
    const size_t at = text.find("http://127.0.0.1:");
    if (at != std::string::npos && text.find(' ', at) != std::string::npos) {
      child.port = std::stoi(text.substr(at + 17));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return child;
}

TEST_F(ServerTest, TheCommandReloadsOnSighupAndDrainsOnSigterm) {
  const std::string events = scratch_.File("cmd_events.jsonl");
  const std::string out = scratch_.File("serve.out");
  const ServeCommand command = StartServeCommand(events, out);
  const pid_t pid = command.pid;
  const int port = command.port;
  ASSERT_GT(pid, 0);
  ASSERT_GT(port, 0) << twotower::testing::ReadBytes(out + ".err");
  httplib::Client c("127.0.0.1", port);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Call(c, "POST", "/v1/feedback",
                   Json{{"user_id", "9"}, {"item_id", "1"}, {"event", "click"}}.dump())
                  .status,
              202);
  }
  ASSERT_EQ(kill(pid, SIGHUP), 0);
  bool reloaded = false;
  for (int i = 0; i < 200 && !reloaded; ++i) {
    reloaded = twotower::testing::ReadBytes(out + ".err").find("reloaded") != std::string::npos;
    if (!reloaded) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(reloaded);
  EXPECT_EQ(Call(c, "GET", "/readyz").status, 200);
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  // Flushed on the way out: all three events are in the log, whole lines.
  EXPECT_EQ(Lines(twotower::testing::ReadBytes(events)).size(), 3u);
  EXPECT_THAT(twotower::testing::ReadBytes(out), HasSubstr("stopped"));
}

// The command killed (SIGKILL, no chance to flush) at random points of a feedback stream: after a
// restart the readout counts every event the server acknowledged (202), and at most those sent.
TEST_F(ServerTest, EveryAcknowledgedEventSurvivesAKill) {
  std::mt19937 random(20261206);
  for (int round = 0; round < 3; ++round) {
    const std::string events = scratch_.File("killed_" + std::to_string(round) + ".jsonl");
    const std::string out = scratch_.File("killed_" + std::to_string(round) + ".out");
    const ServeCommand command = StartServeCommand(events, out);
    const pid_t pid = command.pid;
    const int port = command.port;
    ASSERT_GT(pid, 0);
    ASSERT_GT(port, 0) << twotower::testing::ReadBytes(out + ".err");
    std::atomic<int> sent{0}, acknowledged{0};
    std::atomic<bool> stop{false};
    std::thread stream([&] {
      httplib::Client c("127.0.0.1", port);
      c.set_read_timeout(2, 0);
      for (int i = 0; !stop; ++i) {
        ++sent;
        const Answer a = Call(
            c, "POST", "/v1/feedback",
            Json{{"user_id", std::to_string(i)}, {"item_id", "1"}, {"event", "impression"}}.dump());
        if (a.status == 202) {
          ++acknowledged;
        } else if (a.status == -1) {
          return;  // the server is gone
        }
      }
    });
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(50, 400)(random)));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    stop = true;
    stream.join();
    ASSERT_GT(acknowledged.load(), 0) << "no event was acknowledged before the kill";
    ServeConfig config = OneModel();
    config.events = events;
    Running s(config);
    auto c = s.Client();
    const Answer readout = Call(c, "GET", "/v1/experiments/default");
    ASSERT_EQ(readout.status, 200) << readout.text;
    const int64_t counted = readout.body["variants"][0]["impressions"].get<int64_t>();
    EXPECT_GE(counted, acknowledged.load()) << "round " << round;
    EXPECT_LE(counted, sent.load()) << "round " << round;
  }
}

// Ids are text, exactly, under one rule wherever they enter: strings, and integers written as
// integers (a float such as 5.0 is refused, never made into another id "5.0"), at most
// kMaxIdBytes bytes, so that whatever PUT accepts, DELETE can name.
TEST_F(ServerTest, IdsAreTextUnderOneRule) {
  Running s(OneModel());
  auto c = s.Client();
  const std::string movie = twotower::testing::Fields(
      Lines(twotower::testing::ReadBytes(Shared().data + "/movies.csv")).at(1), ',')[0];
  Json row = {{"movie_id", std::stod(movie)},
              {"genre", "Drama"},
              {"year", "1990"},
              {"duration", "100"},
              {"avg_rating", "3.5"}};
  ASSERT_TRUE(row["movie_id"].is_number_float());
  const Answer as_float = Call(c, "PUT", "/v1/items", Json{{"items", {row}}}.dump());
  EXPECT_EQ(as_float.status, 400) << as_float.text;
  EXPECT_EQ(as_float.body["field"], "items[0].movie_id");
  row["movie_id"] = std::stoi(movie);  // the same id as an integer: the existing item
  const Answer as_int = Call(c, "PUT", "/v1/items", Json{{"items", {row}}}.dump());
  ASSERT_EQ(as_int.status, 200) << as_int.text;
  EXPECT_EQ(as_int.body["added"], 0);
  EXPECT_EQ(as_int.body["updated"], 1);
  const Answer user_float =
      Call(c, "POST", "/v1/recommend",
           Json{{"user", {{"user_id", 42.0}, {"age", 30}, {"gender", "F"}}}}.dump());
  EXPECT_EQ(user_float.status, 400) << user_float.text;
  EXPECT_EQ(user_float.body["field"], "user.user_id");
  // The longest id is accepted, and deleted by its path; one byte more is refused.
  row["movie_id"] = std::string(data::kMaxIdBytes, 'x');
  ASSERT_EQ(Call(c, "PUT", "/v1/items", Json{{"items", {row}}}.dump()).status, 200);
  EXPECT_EQ(Call(c, "DELETE", "/v1/items/" + std::string(data::kMaxIdBytes, 'x')).status, 200);
  row["movie_id"] = std::string(data::kMaxIdBytes + 1, 'x');
  const Answer too_long = Call(c, "PUT", "/v1/items", Json{{"items", {row}}}.dump());
  EXPECT_EQ(too_long.status, 400) << too_long.text;
  EXPECT_EQ(too_long.body["field"], "items[0].movie_id");
  row["movie_id"] = "two\nlines";  // an index file holds one id a line
  const Answer broken = Call(c, "PUT", "/v1/items", Json{{"items", {row}}}.dump());
  EXPECT_EQ(broken.status, 400) << broken.text;
  EXPECT_EQ(broken.body["field"], "items[0].movie_id");
  const Answer long_user = Call(c, "POST", "/v1/recommend",
                                Json{{"user_id", std::string(data::kMaxIdBytes + 1, '7')}}.dump());
  EXPECT_EQ(long_user.status, 400) << long_user.text;
  EXPECT_EQ(long_user.body["field"], "user_id");
  // A table with such an id is refused at the boundary, naming the file and line.
  const std::string users = scratch_.Write(
      "users.csv", "user_id,age\n1,30\n" + std::string(data::kMaxIdBytes + 1, 'u') + ",40\n");
  twotower::testing::ExpectUserError(RunCli({"recommend", "--model", Shared().a, "--users", users,
                                             "--all-users", "--out", scratch_.File("r.csv")},
                                            scratch_),
                                     users + ":3: column 'user_id': an id of 1025 bytes");
}

// A raw TCP connection to the server, for what an HTTP client library will not send: pipelined
// requests, bytes dripped one at a time, a socket that sends nothing.
class RawConnection {
 public:
  explicit RawConnection(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  ~RawConnection() { close(fd_); }
  bool connected() const { return connected_; }
  bool Send(const std::string& bytes) {
    return send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  // Everything received until the peer closes or `seconds` pass with nothing new; *closed says
  // whether the peer closed.
  std::string Receive(double seconds, bool* closed = nullptr) {
    std::string got;
    if (closed) *closed = false;
    while (true) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(seconds * 1000)) <= 0) return got;
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) {
        if (closed) *closed = true;
        return got;
      }
      got.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
  bool connected_ = false;
};

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::string FeedbackRequest(const std::string& user) {
  const std::string body =
      Json{{"user_id", user}, {"item_id", "5"}, {"event", "impression"}}.dump();
  return "POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         "Content-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// HTTP/1.1 pipelining (RFC 9112 section 9.3.2): requests written back to back on one connection,
// in one TCP segment, are each answered, in order, and each event is logged. cpp-httplib, the
// server's former HTTP layer, answered the first and dropped the others (issue 24, case 10).
TEST_F(ServerTest, PipelinedRequestsAreEachAnsweredInOrder) {
  Running s(OneModel());
  RawConnection raw(s.port());
  ASSERT_TRUE(raw.connected());
  ASSERT_TRUE(raw.Send(FeedbackRequest("p1") + FeedbackRequest("p2") + FeedbackRequest("p3") +
                       "GET /v1/experiments/default HTTP/1.1\r\nHost: x\r\n"
                       "Connection: close\r\n\r\n"));
  const std::string got = raw.Receive(10);
  EXPECT_EQ(Count(got, "HTTP/1.1 202"), 3u) << got;
  // The fourth answer, the readout, comes after the three events: it counts them.
  const size_t last = got.rfind("HTTP/1.1 200");
  ASSERT_NE(last, std::string::npos) << got;
  EXPECT_GT(last, got.rfind("HTTP/1.1 202"));
  const Json readout = Json::parse(got.substr(got.find("\r\n\r\n", last) + 4));
  EXPECT_EQ(readout["variants"][0]["impressions"], 3) << readout.dump();
}

// A connection holds a server thread only while its request is answered: clients dripping a body
// a byte at a time, and keep-alive sockets that send nothing, twice as many as the server's
// threads, leave health checks answered (with cpp-httplib they held every thread: issue 24,
// case 09). And each is cut off: a request must arrive whole within timeout_seconds of its first
// byte, and a connection that starts no request within idle_timeout_seconds is closed.
TEST_F(ServerTest, SlowAndIdleConnectionsHoldNoThreadAndAreCutOff) {
  ServeConfig config = OneModel();
  config.timeout_seconds = 1.0;
  config.idle_timeout_seconds = 0.5;
  Running s(config);  // 4 threads
  const std::string body = R"({"user_id": "1", "k": 1})";
  std::vector<std::unique_ptr<RawConnection>> slow, idle;
  for (int i = 0; i < 8; ++i) {
    slow.push_back(std::make_unique<RawConnection>(s.port()));
    idle.push_back(std::make_unique<RawConnection>(s.port()));
    ASSERT_TRUE(slow.back()->connected() && idle.back()->connected());
    ASSERT_TRUE(slow.back()->Send("POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                  std::to_string(body.size()) + "\r\n\r\n" + body.substr(0, 1)));
  }
  // While all 16 are open: a health check on a fresh connection is answered.
  auto c = s.Client();
  c.set_read_timeout(5, 0);
  EXPECT_EQ(Call(c, "GET", "/healthz").status, 200);
  // The drip goes on past timeout_seconds: the server closes each slow connection without an
  // answer (there is no whole request to answer), and each idle one.
  for (size_t i = 1; i < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    for (auto& conn : slow) conn->Send(body.substr(i, 1));
  }
  for (auto& conn : slow) {
    bool closed = false;
    const std::string got = conn->Receive(5, &closed);
    EXPECT_TRUE(closed) << "a request dripped past timeout_seconds was not cut off";
    EXPECT_EQ(got, "");
  }
  for (auto& conn : idle) {
    bool closed = false;
    EXPECT_EQ(conn->Receive(5, &closed), "");
    EXPECT_TRUE(closed) << "an idle connection outlived idle_timeout_seconds";
  }
  EXPECT_EQ(Call(c, "GET", "/healthz").status, 200);
}

// What the transport refuses it answers with the JSON error shape, then closes the connection:
// a malformed request line (400), a target over 8 KiB (414); HEAD is GET without a body; a path
// is percent-decoded before it names an id.
TEST_F(ServerTest, TheTransportRefusesWithTheErrorShape) {
  Running s(OneModel());
  {
    RawConnection raw(s.port());
    ASSERT_TRUE(raw.Send("NOT AN HTTP REQUEST\r\n\r\n"));
    bool closed = false;
    const std::string got = raw.Receive(5, &closed);
    EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got;
    EXPECT_THAT(got, HasSubstr("\"error\""));
    EXPECT_TRUE(closed);
  }
  {
    RawConnection raw(s.port());
    ASSERT_TRUE(
        raw.Send("DELETE /v1/items/" + std::string(9000, 'x') + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    const std::string got = raw.Receive(5);
    EXPECT_EQ(got.rfind("HTTP/1.1 414", 0), 0u) << got.substr(0, 200);
  }
  {
    RawConnection raw(s.port());
    ASSERT_TRUE(raw.Send("HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    const std::string got = raw.Receive(5);
    EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got;
    const std::string get_body = Json{{"status", "ok"}}.dump();
    EXPECT_THAT(got, HasSubstr("Content-Length: " + std::to_string(get_body.size())));
    EXPECT_EQ(got.substr(got.find("\r\n\r\n") + 4), "") << "HEAD answered with a body";
  }
  auto c = s.Client();
  Json row = {{"movie_id", "a b/c"},
              {"genre", "Drama"},
              {"year", "1990"},
              {"duration", "100"},
              {"avg_rating", "3.5"}};
  ASSERT_EQ(Call(c, "PUT", "/v1/items", Json{{"items", {row}}}.dump()).status, 200);
  EXPECT_EQ(Call(c, "DELETE", "/v1/items/a%20b%2Fc").status, 200);
  EXPECT_EQ(Call(c, "DELETE", "/v1/items/a%20b%2Fc").status, 404);
  EXPECT_EQ(Call(c, "DELETE", "/v1/items/bad%zz").status, 400);
}

TEST(ServeConfigTest, BadConfigsAreRefusedNamingTheSetting) {
  TempDir dir;
  auto error = [&](const std::string& yaml) {
    try {
      ServeConfig::FromYamlFile(dir.Write("serve.yaml", yaml));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_THAT(error("serve: {port: 80, prot: 1}\n"), HasSubstr("unknown key 'serve.prot'"));
  // A folder or a missing file is an Error naming the path (a folder once escaped as the
  // standard library's read error).
  for (const std::string& path : {dir.File(""), dir.File("missing.yaml")}) {
    try {
      ServeConfig::FromYamlFile(path);
      ADD_FAILURE() << path << " was read";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(path)) << e.what();
    }
  }
  EXPECT_THAT(error("serve: {variants: [{name: a, model: m}, {name: a, model: n}]}\n"),
              HasSubstr("the name 'a' is used twice"));
  EXPECT_THAT(error("serve: {variants: [{name: a, model: m, weight: 0}]}\n"),
              HasSubstr("weights sum to 0"));
  EXPECT_THAT(error("serve: {variants: [{name: a, model: m, rerank: r, candidates: 0}]}\n"),
              HasSubstr("serve.yaml:1: 'candidates': 0 is out of range (expected >= 1 and <= "
                        "1000000)"));
  EXPECT_THAT(error("serve: {variants: [{name: a, model: m, candidates: 50}]}\n"),
              HasSubstr("'candidates' is how many retrieved items 'rerank' re-orders"));
  EXPECT_THAT(error("serve: {variants: [{name: a, model: m, rerank: null}]}\n"),
              HasSubstr("'rerank': expected the path of a ranker model file"));
  EXPECT_THAT(error("serve:\n  port: 1\n  port: 2\n"),
              HasSubstr(":3: key 'serve.port' appears twice"));
  EXPECT_THAT(error("serve: {max_k: 0, variants: [{name: a, model: m}]}\n"),
              HasSubstr("serve.max_k"));
  EXPECT_THAT(error("serve: {deadline_seconds: 0, variants: [{name: a, model: m}]}\n"),
              HasSubstr("serve.deadline_seconds"));
  EXPECT_THAT(error("serve: {deadline_seconds: soon, variants: [{name: a, model: m}]}\n"),
              HasSubstr("serve.deadline_seconds"));
  // Types and ranges come from the declarations, each message naming the line and the key.
  EXPECT_THAT(error("serve:\n  variants: [{name: a, model: m}]\n  port: 70000\n"),
              HasSubstr("serve.yaml:3: 'serve.port': 70000 is out of range (expected >= 0 and "
                        "<= 65535)"));
  EXPECT_THAT(error("serve:\n  variants: [{name: a, model: m}]\n  live_history: maybe\n"),
              HasSubstr("serve.yaml:3: 'serve.live_history': expected true or false, got "
                        "\"maybe\""));
  EXPECT_THAT(error("serve: {variants: [{name: a, model: m, weight: -1}]}\n"),
              HasSubstr("'weight': -1 is out of range (expected >= 0"));
  // A value set in code (not parsed) is checked against the same declaration.
  ServeConfig c;
  c.variants.push_back({"a", "m", "", 1.0, "", 50});
  c.max_k = 0;
  EXPECT_THAT([&] { c.Validate(); },
              ::testing::ThrowsMessage<Error>(HasSubstr("'serve.max_k': 0 is out of range")));
  EXPECT_THAT([&] { c.Set("port", "http", "--port"); },
              ::testing::ThrowsMessage<Error>(
                  HasSubstr("--port: 'serve.port': expected an integer, got \"http\"")));
}

TEST(ServeConfigTest, EverySettingIsListedWithItsDefault) {
  const std::vector<std::string> help = ServeSettingsHelp();
  auto line = [&](const std::string& key) {
    for (const std::string& l : help) {
      if (l.rfind(key + " (", 0) == 0) return l;
    }
    return std::string();
  };
  // The defaults written in server.h, read back through the declarations.
  EXPECT_THAT(line("serve.port"), HasSubstr("default 8080, >= 0 and <= 65535"));
  EXPECT_THAT(line("serve.host"), HasSubstr("default \"127.0.0.1\""));
  EXPECT_THAT(line("serve.live_history"), HasSubstr("default true"));
  EXPECT_THAT(line("serve.variants[].candidates"), HasSubstr("default 200"));
}

}  // namespace
}  // namespace twotower::serve
