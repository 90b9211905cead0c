// app::Recommender is the one home of "recommend": the same request sent through the library,
// `twotower recommend` (one user, --json; and --all-users) and POST /v1/recommend gives the same
// ids and the same score bits. The models are trained by the real binary; the expected answer of
// each front end is another front end's, so any second copy of the logic that drifts shows.
#include "twotower/app/recommender.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "testing/cli_runner.h"
#include "testing/serve_client.h"
#include "testing/temp_dir.h"
#include "testing/trained_models.h"
#include "twotower/app/experiment.h"
#include "twotower/core/error.h"

namespace twotower::app {
namespace {

using ::testing::HasSubstr;
using twotower::testing::Answer;
using twotower::testing::BusiestUser;
using twotower::testing::Call;
using twotower::testing::Fields;
using twotower::testing::HistoryModel;
using twotower::testing::Lines;
using twotower::testing::Ranker;
using twotower::testing::ReadBytes;
using twotower::testing::RunCli;
using twotower::testing::Running;
using twotower::testing::Shared;
using twotower::testing::TempDir;
using Json = nlohmann::json;
using Ranked = std::vector<std::pair<std::string, double>>;

Ranked FromApp(const Recommendations& r) {
  Ranked out;
  for (const ScoredItem& item : r.items) out.emplace_back(item.id, item.score);
  return out;
}

// The items of a reply {"items": [{"item_id", "score"}, ...]} (the server's, or recommend
// --json's), scores read back exactly (both write the shortest text that reads back).
Ranked FromJson(const Json& reply) {
  Ranked out;
  for (const Json& item : reply.at("items")) {
    out.emplace_back(item.at("item_id").get<std::string>(), item.at("score").get<double>());
  }
  return out;
}

// Bitwise: the same ids in the same order and scores equal as doubles.
void ExpectSame(const Ranked& expected, const Ranked& actual, const std::string& what) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(expected[i].first, actual[i].first) << what << ", rank " << i + 1;
    EXPECT_EQ(expected[i].second, actual[i].second) << what << ", rank " << i + 1;
  }
}

// A user's rows of an --all-users CSV (user,rank,item,score with %.6f): (item, score text).
std::vector<std::pair<std::string, std::string>> CsvRows(const std::string& path,
                                                         const std::string& user) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const std::string& line : Lines(ReadBytes(path))) {
    const std::vector<std::string> f = Fields(line, ',');
    if (f.size() == 4 && f[0] == user) out.emplace_back(f[2], f[3]);
  }
  return out;
}

std::string Six(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6f", v);
  return buf;
}

// The first `n` movie ids of the generated items table.
std::vector<std::string> MovieIds(size_t n) {
  std::vector<std::string> ids;
  const std::vector<std::string> lines = Lines(ReadBytes(Shared().data + "/movies.csv"));
  for (size_t l = 1; l < lines.size() && ids.size() < n; ++l) {
    ids.push_back(Fields(lines[l], ',').at(0));
  }
  return ids;
}

class RecommenderTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(Shared().ok) << "could not train the test models"; }
  serve::ServeConfig Serving(const std::string& model, const std::string& ranker = "",
                             int candidates = kDefaultCandidates) {
    serve::ServeConfig c;
    c.events = scratch_.File("events_" + std::to_string(servers_++) + ".jsonl");
    c.variants = {{"default", model, "", 1.0, ranker, candidates}};
    return c;
  }
  TempDir scratch_;
  int servers_ = 0;
};

// A user by id, with exclude_seen, exclude and allow: the library, the command (one user, and
// every user) and the server agree to the bit.
TEST_F(RecommenderTest, AUserByIdIsAnsweredAlikeByEveryFrontEnd) {
  RecommenderOptions options;
  options.model = Shared().a;
  const std::unique_ptr<Recommender> rec = Recommender::Open(options);
  Running server(Serving(Shared().a));
  auto client = server.Client();
  const std::string user = BusiestUser(Shared().data);
  const std::vector<std::string> movies = MovieIds(40);

  struct Case {
    std::string name;
    bool exclude_seen;
    std::vector<std::string> exclude, allow;
  };
  const std::vector<Case> cases = {
      {"plain", false, {}, {}},
      {"exclude_seen", true, {}, {}},
      {"exclude", false, {movies[0], movies[1], movies[2]}, {}},
      {"allow", false, {}, std::vector<std::string>(movies.begin() + 5, movies.begin() + 30)},
      {"all filters", true, {movies[6]}, std::vector<std::string>(movies.begin(), movies.end())},
  };
  for (const Case& c : cases) {
    RecommendRequest r;
    r.user.id = user;
    r.k = 7;
    r.exclude_seen = c.exclude_seen;
    r.exclude = c.exclude;
    if (!c.allow.empty()) r.allow = c.allow;
    const Ranked lib = FromApp(rec->Recommend(r));
    ASSERT_EQ(lib.size(), 7u) << c.name;

    Json body = {{"user_id", user}, {"k", 7}, {"exclude_seen", c.exclude_seen}};
    if (!c.exclude.empty()) body["exclude"] = c.exclude;
    if (!c.allow.empty()) body["allow"] = c.allow;
    const Answer http = Call(client, "POST", "/v1/recommend", body.dump());
    ASSERT_EQ(http.status, 200) << http.text;
    ExpectSame(lib, FromJson(http.body), c.name + ": POST /v1/recommend");

    std::vector<std::string> args = {"recommend", "--model", Shared().a, "--user-id",
                                     user,        "--k",     "7",        "--json"};
    if (c.exclude_seen) args.push_back("--exclude-seen");
    for (const std::string& id : c.exclude) args.insert(args.end(), {"--exclude-items", id});
    for (const std::string& id : c.allow) args.insert(args.end(), {"--allow-items", id});
    const auto cli = RunCli(args, scratch_);
    ASSERT_EQ(cli.code, 0) << cli.err;
    ExpectSame(lib, FromJson(Json::parse(cli.out)), c.name + ": twotower recommend --json");
    // The table the command prints by default shows the same ranking.
    args.erase(std::find(args.begin(), args.end(), "--json"));
    const auto table = RunCli(args, scratch_);
    ASSERT_EQ(table.code, 0) << table.err;
    const auto rows = twotower::testing::ResultRows(table.out);
    ASSERT_EQ(rows.size(), lib.size()) << table.out;
    for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i].first, lib[i].first) << i;
  }
  // --all-users: every user's top k, computed in batches, is each user's answer alone.
  for (bool exclude_seen : {false, true}) {
    const std::string out = scratch_.File(exclude_seen ? "all_seen.csv" : "all.csv");
    std::vector<std::string> args = {"recommend", "--model", Shared().a, "--all-users", "--k",
                                     "7",         "--out",   out,        "--quiet"};
    if (exclude_seen) args.push_back("--exclude-seen");
    const auto cli = RunCli(args, scratch_);
    ASSERT_EQ(cli.code, 0) << cli.err;
    int checked = 0;
    for (const std::string& id : rec->bundle().user_index.ids) {
      RecommendRequest r;
      r.user.id = id;
      r.k = 7;
      r.exclude_seen = exclude_seen;
      const Ranked lib = FromApp(rec->Recommend(r));
      const auto rows = CsvRows(out, id);
      ASSERT_EQ(rows.size(), lib.size()) << "user " << id;
      for (size_t i = 0; i < rows.size(); ++i) {
        EXPECT_EQ(rows[i].first, lib[i].first) << "user " << id << ", rank " << i + 1;
        EXPECT_EQ(rows[i].second, Six(lib[i].second)) << "user " << id << ", rank " << i + 1;
      }
      ++checked;
    }
    EXPECT_EQ(checked, 200);
  }
}

// A re-ranked variant: the library, the command (one user and every user) and the server order
// and score alike, also after a live item joins.
TEST_F(RecommenderTest, AReRankedVariantIsAnsweredAlikeByEveryFrontEnd) {
  const std::string& ranker = Ranker();
  ASSERT_FALSE(ranker.empty()) << "could not train the ranker";
  RecommenderOptions options;
  options.model = Shared().a;
  options.rerank = ranker;
  options.candidates = 30;
  const std::unique_ptr<Recommender> rec = Recommender::Open(options);
  Running server(Serving(Shared().a, ranker, 30));
  auto client = server.Client();
  const std::string user = BusiestUser(Shared().data);
  RecommendRequest r;
  r.user.id = user;
  r.k = 5;
  r.exclude_seen = true;
  const Recommendations lib = rec->Recommend(r);
  EXPECT_TRUE(lib.reranked);
  const Answer http = Call(client, "POST", "/v1/recommend",
                           Json{{"user_id", user}, {"k", 5}, {"exclude_seen", true}}.dump());
  ASSERT_EQ(http.status, 200) << http.text;
  ExpectSame(FromApp(lib), FromJson(http.body), "POST /v1/recommend");
  EXPECT_EQ(http.body["ranker_version"], rec->ranker_version());
  const auto cli = RunCli({"recommend", "--model", Shared().a, "--user-id", user, "--k", "5",
                           "--exclude-seen", "--rerank", ranker, "--candidates", "30", "--json"},
                          scratch_);
  ASSERT_EQ(cli.code, 0) << cli.err;
  ExpectSame(FromApp(lib), FromJson(Json::parse(cli.out)), "twotower recommend --rerank --json");
  const std::string out = scratch_.File("reranked.csv");
  const auto all =
      RunCli({"recommend", "--model", Shared().a, "--all-users", "--k", "5", "--exclude-seen",
              "--rerank", ranker, "--candidates", "30", "--out", out, "--quiet"},
             scratch_);
  ASSERT_EQ(all.code, 0) << all.err;
  const auto rows = CsvRows(out, user);
  ASSERT_EQ(rows.size(), lib.items.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].first, lib.items[i].id) << i;
    EXPECT_EQ(rows[i].second, Six(lib.items[i].score)) << i;
  }
  // A live copy of the top item under a new id, put through both: retrieved and re-ranked alike.
  Row copy;
  const data::Table& items = rec->bundle().items;
  const int32_t top = lib.items[0].item_row;
  ASSERT_GE(top, 0);
  for (size_t c = 0; c < items.columns.size(); ++c) {
    const bool id = items.columns[c] == rec->bundle().model.schema.item.id_column;
    copy.emplace_back(items.columns[c], id ? std::string("fresh") : items.cells[c][top]);
  }
  EXPECT_EQ(rec->PutItems({copy}).added, 1);
  Json put = Json::object();
  for (const auto& [column, value] : copy) put[column] = value;
  ASSERT_EQ(Call(client, "PUT", "/v1/items", Json{{"items", {put}}}.dump()).status, 200);
  const Recommendations after = rec->Recommend(r);
  bool found = false;
  for (const ScoredItem& item : after.items) {
    if (item.id != "fresh") continue;
    found = true;
    ASSERT_NE(item.live, nullptr);
    EXPECT_EQ(item.item_row, -1);
  }
  EXPECT_TRUE(found);
  const Answer http_after = Call(client, "POST", "/v1/recommend",
                                 Json{{"user_id", user}, {"k", 5}, {"exclude_seen", true}}.dump());
  ASSERT_EQ(http_after.status, 200) << http_after.text;
  ExpectSame(FromApp(after), FromJson(http_after.body), "after PUT, POST /v1/recommend");
  // Deleted through both: gone from both.
  EXPECT_TRUE(rec->DeleteItem("fresh"));
  EXPECT_FALSE(rec->DeleteItem("fresh"));
  ASSERT_EQ(Call(client, "DELETE", "/v1/items/fresh").status, 200);
  ExpectSame(FromApp(rec->Recommend(r)),
             FromJson(Call(client, "POST", "/v1/recommend",
                           Json{{"user_id", user}, {"k", 5}, {"exclude_seen", true}}.dump())
                          .body),
             "after DELETE");
}

// A new user given by features with a history, and a live item (plain variant): the library and
// the server agree to the bit, for /v1/recommend and /v1/score.
TEST_F(RecommenderTest, AUserByFeaturesWithAHistoryAndALiveItemAreAnsweredAlike) {
  const std::string& model = HistoryModel();
  ASSERT_FALSE(model.empty()) << "could not train the history model";
  RecommenderOptions options;
  options.model = model;
  const std::unique_ptr<Recommender> rec = Recommender::Open(options);
  Running server(Serving(model));
  auto client = server.Client();
  const std::vector<std::string> movies = MovieIds(10);
  const Json features = {
      {"age", "30"}, {"gender", "F"}, {"favorite_genre", "Drama"}, {"activity_level", "high"}};
  Row row;
  for (const auto& [k, v] : features.items()) row.emplace_back(k, v.get<std::string>());
  // A live item: a copy of the first movie's row under a new id.
  Row live;
  const data::Table& items = rec->bundle().items;
  for (size_t c = 0; c < items.columns.size(); ++c) {
    const bool id = items.columns[c] == rec->bundle().model.schema.item.id_column;
    live.emplace_back(items.columns[c], id ? std::string("live-1") : items.cells[c][0]);
  }
  rec->PutItems({live});
  Json put = Json::object();
  for (const auto& [column, value] : live) put[column] = value;
  ASSERT_EQ(Call(client, "PUT", "/v1/items", Json{{"items", {put}}}.dump()).status, 200);

  RecommendRequest r;
  r.user.features = row;
  r.user.history = std::vector<std::string>(movies.begin(), movies.begin() + 3);
  r.k = 10;
  r.exclude_seen = true;
  r.exclude = {movies[5]};
  const Ranked lib = FromApp(rec->Recommend(r));
  ASSERT_EQ(lib.size(), 10u);
  for (const auto& [id, score] : lib) {  // the history and the excluded item are not returned
    EXPECT_NE(id, movies[0]);
    EXPECT_NE(id, movies[5]);
  }
  const Answer http = Call(client, "POST", "/v1/recommend",
                           Json{{"user", features},
                                {"history", {movies[0], movies[1], movies[2]}},
                                {"k", 10},
                                {"exclude_seen", true},
                                {"exclude", {movies[5]}}}
                               .dump());
  ASSERT_EQ(http.status, 200) << http.text;
  ExpectSame(lib, FromJson(http.body), "by features with a history");
  // /v1/score of the live item and two others.
  const std::vector<std::string> ids = {"live-1", movies[3], movies[4]};
  const std::vector<ScoredItem> scored = rec->Score(r.user, ids);
  const Answer s = Call(
      client, "POST", "/v1/score",
      Json{{"user", features}, {"history", {movies[0], movies[1], movies[2]}}, {"item_ids", ids}}
          .dump());
  ASSERT_EQ(s.status, 200) << s.text;
  ASSERT_EQ(s.body["scores"].size(), 3u);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(s.body["scores"][i]["item_id"], scored[i].id);
    EXPECT_EQ(s.body["scores"][i]["score"].get<double>(), scored[i].score) << ids[i];
  }
}

// Errors carry a code and the field, which the server maps to one status each.
TEST_F(RecommenderTest, ErrorsNameTheirCodeAndField) {
  RecommenderOptions options;
  options.model = Shared().a;
  const std::unique_ptr<Recommender> rec = Recommender::Open(options);
  auto code_and_field = [&](const RecommendRequest& r) -> std::pair<ErrorCode, std::string> {
    try {
      rec->Recommend(r);
    } catch (const Error& e) {
      return {e.code(), e.field()};
    }
    return {ErrorCode::kInternal, "(no error)"};
  };
  RecommendRequest unknown_user;
  unknown_user.user.id = "no-such-user";
  EXPECT_EQ(code_and_field(unknown_user),
            std::make_pair(ErrorCode::kNotFound, std::string("user_id")));
  RecommendRequest bad_exclude;
  bad_exclude.user.id = BusiestUser(Shared().data);
  bad_exclude.exclude = {MovieIds(1)[0], "no-such-movie"};
  EXPECT_EQ(code_and_field(bad_exclude),
            std::make_pair(ErrorCode::kNotFound, std::string("exclude[1]")));
  RecommendRequest history_unread;
  history_unread.user.features =
      Row{{"age", "30"}, {"gender", "F"}, {"favorite_genre", "Drama"}, {"activity_level", "high"}};
  history_unread.user.history = std::vector<std::string>{};
  EXPECT_EQ(code_and_field(history_unread),
            std::make_pair(ErrorCode::kInvalidArgument, std::string("history")));
  history_unread.user.ignore_unread_history = true;  // another A/B arm reads it
  try {
    rec->Recommend(history_unread);
  } catch (const Error& e) {
    ADD_FAILURE() << "a history another arm reads was refused: " << e.what();
  }
  RecommendRequest bad_column;
  bad_column.user.features = Row{{"shoe_size", "44"}};
  EXPECT_EQ(code_and_field(bad_column),
            std::make_pair(ErrorCode::kInvalidArgument, std::string("user.shoe_size")));
  RecommendRequest late;
  late.user.id = BusiestUser(Shared().data);
  Deadline past;
  past.at = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  past.what = "a test";
  try {
    rec->Recommend(late, past);
    ADD_FAILURE() << "a past deadline was not refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_THAT(e.what(), HasSubstr("deadline (a test) passed before encoding the user"));
  }
}

// The command's item-id flags name what was wrong: an unknown id, an empty one.
TEST_F(RecommenderTest, TheCommandsItemFlagsNameWhatWasWrong) {
  const std::string user = BusiestUser(Shared().data);
  twotower::testing::ExpectUserError(
      RunCli({"recommend", "--model", Shared().a, "--user-id", user, "--exclude-items", "nope"},
             scratch_),
      "--exclude-items: exclude[0]: unknown item \"nope\"");
  twotower::testing::ExpectUserError(
      RunCli({"recommend", "--model", Shared().a, "--user-id", user, "--allow-items", ""},
             scratch_),
      "--allow-items: an empty item id");
}

// A known user lands in the same A/B arm however a request names it (by id, or by features that
// carry its id), and feedback, credited by the same key, counts in that arm: the live readout
// and `experiment report` agree.
TEST_F(RecommenderTest, AnArmDependsOnTheUserNotOnTheRequestsForm) {
  serve::ServeConfig config = Serving(Shared().a);
  config.variants = {{"control", Shared().a, "", 1.0, "", kDefaultCandidates},
                     {"treatment", Shared().b, "", 1.0, "", kDefaultCandidates}};
  Running server(config);
  auto client = server.Client();
  const std::vector<std::string> lines = Lines(ReadBytes(Shared().data + "/users.csv"));
  const std::vector<std::string> header = Fields(lines.at(0), ',');
  std::map<std::string, int> arms;
  for (size_t l = 1; l < lines.size() && l <= 40; ++l) {
    const std::vector<std::string> f = Fields(lines[l], ',');
    Json features = Json::object();
    for (size_t c = 0; c < header.size(); ++c) features[header[c]] = f[c];
    const std::string id = features["user_id"];
    const Answer by_id =
        Call(client, "POST", "/v1/recommend", Json{{"user_id", id}, {"k", 3}}.dump());
    const Answer by_features =
        Call(client, "POST", "/v1/recommend", Json{{"user", features}, {"k", 3}}.dump());
    const Answer scored =
        Call(client, "POST", "/v1/score", Json{{"user", features}, {"item_ids", {"1"}}}.dump());
    const Answer feedback =
        Call(client, "POST", "/v1/feedback",
             Json{{"user_id", id}, {"item_id", "1"}, {"event", "impression"}}.dump());
    ASSERT_EQ(by_id.status, 200) << by_id.text;
    ASSERT_EQ(by_features.status, 200) << by_features.text;
    ASSERT_EQ(scored.status, 200) << scored.text;
    ASSERT_EQ(feedback.status, 202) << feedback.text;
    EXPECT_EQ(by_features.body["variant"], by_id.body["variant"]) << "user " << id;
    EXPECT_EQ(scored.body["variant"], by_id.body["variant"]) << "user " << id;
    EXPECT_EQ(feedback.body["variant"], by_id.body["variant"]) << "user " << id;
    // The arm by the published rule: SHA-256 of salt "\n" id, independently of the server.
    const int arm = AssignVariant(Bucket(config.salt, id), {1.0, 1.0});
    EXPECT_EQ(by_id.body["variant"], arm == 0 ? "control" : "treatment") << "user " << id;
    ++arms[by_id.body["variant"].get<std::string>()];
  }
  EXPECT_EQ(arms.size(), 2u);
  const Answer live = Call(client, "GET", "/v1/experiments/default");
  ASSERT_EQ(live.status, 200) << live.text;
  server.Stop();
  for (const Json& v : live.body["variants"]) {
    EXPECT_EQ(v["users"], arms[v["name"].get<std::string>()]) << v.dump();
    EXPECT_EQ(v["impressions"], arms[v["name"].get<std::string>()]) << v.dump();
  }
  const std::string yaml =
      scratch_.Write("serve.yaml", "serve:\n  events: " + config.events +
                                       "\n  variants:\n    - {name: control, model: " + Shared().a +
                                       "}\n    - {name: treatment, model: " + Shared().b + "}\n");
  const auto report =
      RunCli({"experiment", "report", "--events", config.events, "--config", yaml}, scratch_);
  ASSERT_EQ(report.code, 0) << report.err;
  for (const auto& [name, users] : arms) {
    bool seen = false;
    for (const std::string& line : Lines(report.out)) {
      const std::vector<std::string> w = twotower::testing::Words(line);
      if (w.size() >= 7 && w[0] == name && w[1] == "1.0") {  // the table's row of the arm
        seen = true;
        EXPECT_EQ(w[2], std::to_string(users)) << line;
        EXPECT_EQ(w[3], std::to_string(users)) << line;
      }
    }
    EXPECT_TRUE(seen) << report.out;
  }
}

// Events of an arm the config does not list (an arm renamed): the offline report and the live
// readout both show them apart, with the same counts and a warning, and the server says so at
// start.
TEST_F(RecommenderTest, ReadoutsShowEventsOfUnlistedArmsAlike) {
  serve::ServeConfig config = Serving(Shared().a);
  std::string log;
  for (int u = 0; u < 4; ++u) {
    log += "{\"ts_ms\":1,\"user_id\":\"" + std::to_string(u) +
           "\",\"item_id\":\"5\",\"event\":\"impression\",\"variant\":\"old-name\"}\n";
  }
  log +=
      "{\"ts_ms\":2,\"user_id\":\"1\",\"item_id\":\"5\",\"event\":\"click\",\"variant\":"
      "\"old-name\"}\n";
  config.events = scratch_.Write("renamed.jsonl", log);
  Running server(config);
  ASSERT_EQ(server.server().notes().size(), 2u);
  EXPECT_THAT(server.server().notes()[0], HasSubstr("renamed.jsonl: 5 events read"));
  EXPECT_THAT(server.server().notes()[1], HasSubstr("5 events name variant \"old-name\""));
  auto client = server.Client();
  const Answer live = Call(client, "GET", "/v1/experiments/default");
  ASSERT_EQ(live.status, 200) << live.text;
  EXPECT_THAT(live.body.value("warning", ""), HasSubstr("5 events name variant \"old-name\""));
  ASSERT_EQ(live.body["unlisted"].size(), 1u);
  EXPECT_EQ(live.body["unlisted"][0]["users"], 4);
  EXPECT_EQ(live.body["unlisted"][0]["impressions"], 4);
  EXPECT_EQ(live.body["unlisted"][0]["clicks"], 1);
  EXPECT_EQ(live.body["variants"][0]["users"], 0);
  server.Stop();
  const std::string yaml = scratch_.Write(
      "one.yaml", "serve:\n  variants:\n    - {name: default, model: " + Shared().a + "}\n");
  const auto report =
      RunCli({"experiment", "report", "--events", config.events, "--config", yaml}, scratch_);
  ASSERT_EQ(report.code, 0) << report.err;
  EXPECT_THAT(report.err, HasSubstr("5 events name variant \"old-name\", which " + yaml));
  bool shown = false;
  for (const std::string& line : Lines(report.out)) {
    const std::vector<std::string> w = twotower::testing::Words(line);
    if (w.size() >= 6 && w[0] == "old-name") {
      shown = true;
      EXPECT_EQ(w[2], "4") << line;  // users
      EXPECT_EQ(w[3], "4") << line;  // impressions
      EXPECT_EQ(w[4], "1") << line;  // clicks
    }
  }
  EXPECT_TRUE(shown) << report.out;
}

}  // namespace
}  // namespace twotower::app
