// `twotower index build|add` and `twotower recommend --index / --all-users`, run as a user would.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "testing/cli_runner.h"
#include "testing/temp_dir.h"
#include "twotower/data/npy.h"
#include "twotower/index/index_file.h"

namespace twotower {
namespace {

using testing::CliResult;
using testing::ExpectUserError;
using testing::Fields;
using ::testing::HasSubstr;
using testing::Lines;
using testing::ReadBytes;
using testing::ResultRows;
using testing::RunCli;
using ::testing::StartsWith;
using testing::TempDir;
using testing::Words;

std::string Repo(const std::string& path) { return std::string(TWOTOWER_SOURCE_DIR) + "/" + path; }

// Generated data, a small trained model and its item embeddings, made once per process.
struct Shared {
  TempDir dir;
  std::string data, model, npy;
  std::string failure;  // what went wrong while making them
};

Shared& SharedSetup() {
  static const std::unique_ptr<Shared> shared = [] {
    auto s = std::make_unique<Shared>();
    s->data = s->dir.File("data");
    const CliResult gen = RunCli({"generate", "--out", s->data, "--users", "200", "--movies", "100",
                                  "--interactions", "2000", "--seed", "7"},
                                 s->dir);
    const CliResult train = RunCli({"train",
                                    "--config",
                                    Repo("config/ranking_config.yaml"),
                                    "--set",
                                    "data.dir=" + s->data,
                                    "--set",
                                    "model.embedding_dim=8",
                                    "--set",
                                    "model.user_hidden_dims=16",
                                    "--set",
                                    "model.item_hidden_dims=16",
                                    "--epochs",
                                    "2",
                                    "--threads",
                                    "1",
                                    "--seed",
                                    "3",
                                    "--quiet",
                                    "--output-dir",
                                    s->dir.File("runs")},
                                   s->dir);
    std::string run;
    for (const std::string& line : Lines(train.out)) {
      if (line.rfind("run folder: ", 0) == 0) run = line.substr(12);
    }
    s->model = run + "model_best.safetensors";
    s->npy = s->dir.File("items.npy");
    const CliResult embed = RunCli({"embed", "--model", s->model, "--out", s->npy}, s->dir);
    if (gen.code != 0 || train.code != 0 || embed.code != 0 || run.empty()) {
      s->failure = gen.err + train.out + train.err + embed.err;
    }
    return s;
  }();
  return *shared;
}

class IndexCliTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(SharedSetup().failure, ""); }
  CliResult Run(const std::vector<std::string>& args) { return RunCli(args, scratch_); }
  // Builds an index of the shared embeddings; returns its path.
  std::string Build(const std::string& type, const std::string& name) {
    const std::string out = scratch_.File(name);
    const CliResult r = Run({"index", "build", "--embeddings", SharedSetup().npy, "--type", type,
                             "--out", out, "--quiet"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    return out;
  }
  CliResult Recommend(const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"recommend", "--model", SharedSetup().model};
    args.insert(args.end(), extra.begin(), extra.end());
    return Run(args);
  }
  TempDir scratch_;
};

// The user with the most training interactions.
std::string BusiestUser() { return testing::BusiestUser(SharedSetup().data); }

// ---- happy paths --------------------------------------------------------------------------------

TEST_F(IndexCliTest, BuildWritesAnIndexFileOfEitherType) {
  const std::string out = scratch_.File("movies.index");
  const CliResult r = Run({"index", "build", "--embeddings", SharedSetup().npy, "--type",
                           "hnsw:M=8,ef_search=32", "--out", out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("wrote " + out +
                                " (hnsw:M=8,ef_construction=200,ef_search=32, "
                                "100 items x 8, built in "));
  EXPECT_THAT(r.err, HasSubstr("100/100"));  // the progress bar's final line
  const index::IndexInfo info = index::ReadIndexInfo(out);
  EXPECT_EQ(info.type, "hnsw");
  EXPECT_EQ(info.dim, 8);
  EXPECT_EQ(info.count, 100);
  EXPECT_EQ(index::ReadIndexInfo(Build("flat", "flat.index")).type, "flat");
}

TEST_F(IndexCliTest, RecommendWithAnIndexGivesTheExactRanking) {
  const std::string user = BusiestUser();
  const std::string flat = Build("flat", "flat.index");
  const std::string hnsw = Build("hnsw:M=8", "hnsw.index");  // 100 items: scanned exactly
  for (const bool exclude : {false, true}) {
    std::vector<std::string> args = {"--user-id", user, "--k", "7"};
    if (exclude) args.push_back("--exclude-seen");
    const CliResult direct = Recommend(args);
    ASSERT_EQ(direct.code, 0) << direct.err;
    EXPECT_EQ(ResultRows(direct.out).size(), 7u);
    for (const std::string& path : {flat, hnsw}) {
      std::vector<std::string> with_index = args;
      with_index.push_back("--index");
      with_index.push_back(path);
      const CliResult r = Recommend(with_index);
      ASSERT_EQ(r.code, 0) << r.err;
      EXPECT_EQ(r.err, "");
      EXPECT_EQ(r.out, direct.out) << path;
    }
  }
}

TEST_F(IndexCliTest, IndexAddMakesNewItemsRetrievableAndUpdatesExistingOnes) {
  const Shared& s = SharedSetup();
  // Two new movies, and movie 5 changed: the same rows as a catalogue rebuilt from scratch.
  const std::string header = "movie_id,genre,year,duration,avg_rating\n";
  const std::string added_rows =
      "9001,Sci-Fi,2022,130,4.9\n9002,Horror,1975,85,1.2\n5,Comedy,2001,95,4.7\n";
  const std::string new_items = scratch_.Write("new_movies.csv", header + added_rows);
  std::string all = header;
  for (const std::string& line : Lines(ReadBytes(s.data + "/movies.csv"))) {
    if (line.rfind("movie_id", 0) != 0 && line.rfind("5,", 0) != 0) all += line + "\n";
  }
  all += added_rows;
  const std::string combined = scratch_.Write("combined.csv", all);
  const std::string ref_npy = scratch_.File("ref.npy");
  ASSERT_EQ(Run({"embed", "--model", s.model, "--items", combined, "--out", ref_npy}).code, 0);
  const CliResult ref_build = Run(
      {"index", "build", "--embeddings", ref_npy, "--out", scratch_.File("ref.index"), "--quiet"});
  ASSERT_EQ(ref_build.code, 0) << ref_build.err;
  const CliResult want = Recommend({"--user-id", BusiestUser(), "--k", "102", "--index",
                                    scratch_.File("ref.index"), "--items", combined});
  ASSERT_EQ(want.code, 0) << want.err;

  for (const char* type : {"flat", "hnsw:M=8"}) {
    const std::string path = Build(type, "grow.index");
    const CliResult add =
        Run({"index", "add", "--model", s.model, "--index", path, "--items", new_items});
    ASSERT_EQ(add.code, 0) << add.err;
    EXPECT_THAT(add.out, StartsWith("added 2 new and updated 1 existing items from " + new_items +
                                    "; wrote " + path));
    EXPECT_EQ(index::ReadIndexInfo(path).count, 102);
    const CliResult got =
        Recommend({"--user-id", BusiestUser(), "--k", "102", "--index", path, "--items", combined});
    ASSERT_EQ(got.code, 0) << got.err;
    EXPECT_EQ(got.out, want.out) << type;
    const auto rows = ResultRows(got.out);
    std::set<std::string> ids;
    for (const auto& [id, score] : rows) ids.insert(id);
    EXPECT_EQ(rows.size(), 102u);
    EXPECT_EQ(ids.size(), 102u);  // movie 5 once
    EXPECT_EQ(ids.count("9001"), 1u);
    EXPECT_EQ(ids.count("9002"), 1u);
  }
}

TEST_F(IndexCliTest, RecommendAllUsersWritesEveryUsersTopK) {
  const std::string out = scratch_.File("out/recommendations.csv");
  const CliResult r = Recommend({"--all-users", "--k", "5", "--exclude-seen", "--out", out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("wrote " + out +
                                ": 200 users, top 5 (1000 rows) from flat over "
                                "100 items, seen in train and val excluded; "));
  EXPECT_THAT(r.err, HasSubstr("200/200"));
  const std::vector<std::string> lines = Lines(ReadBytes(out));
  ASSERT_EQ(lines.size(), 1001u);
  EXPECT_EQ(lines[0], "user_id,rank,movie_id,score");
  std::map<std::string, std::vector<std::pair<std::string, double>>> by_user;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::vector<std::string> f = Fields(lines[i], ',');
    ASSERT_EQ(f.size(), 4u) << lines[i];
    EXPECT_EQ(f[1], std::to_string(by_user[f[0]].size() + 1)) << lines[i];
    by_user[f[0]].emplace_back(f[2], std::stod(f[3]));
  }
  EXPECT_EQ(by_user.size(), 200u);
  // Each user's rows are what `recommend --user-id` prints for that user.
  for (const std::string& user : {BusiestUser(), std::string("1"), std::string("200")}) {
    const CliResult one = Recommend({"--user-id", user, "--k", "5", "--exclude-seen"});
    ASSERT_EQ(one.code, 0) << one.err;
    const auto rows = ResultRows(one.out);
    ASSERT_EQ(rows.size(), 5u);
    for (size_t i = 0; i < 5; ++i) {
      EXPECT_EQ(by_user[user][i].first, rows[i].first) << user << " rank " << i + 1;
      EXPECT_NEAR(by_user[user][i].second, rows[i].second, 5.1e-5) << user << " rank " << i + 1;
    }
  }
  // With an index (exact at this size) the file is the same, byte for byte.
  for (const char* type : {"flat", "hnsw:M=8"}) {
    const std::string path = Build(type, "all.index");
    const std::string again = scratch_.File("again.csv");
    const CliResult q = Recommend({"--all-users", "--k", "5", "--exclude-seen", "--out", again,
                                   "--index", path, "--quiet", "--threads", "1"});
    ASSERT_EQ(q.code, 0) << q.err;
    EXPECT_EQ(q.err, "");
    EXPECT_EQ(ReadBytes(again), ReadBytes(out)) << type;
  }
}

// ---- errors -------------------------------------------------------------------------------------

TEST_F(IndexCliTest, BuildRejectsABadType) {
  const std::string out = scratch_.File("x.index");
  ExpectUserError(
      Run({"index", "build", "--embeddings", SharedSetup().npy, "--type", "hsnw", "--out", out}),
      "unknown index type 'hsnw' (expected: flat, hnsw)");
  ExpectUserError(Run({"index", "build", "--embeddings", SharedSetup().npy, "--type", "hnsw:M=0",
                       "--out", out}),
                  "index type 'hnsw': parameter 'M': 0 is out of range (expected 2 .. 10000)");
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST_F(IndexCliTest, BuildRejectsBadIds) {
  const std::string npy = scratch_.File("e.npy");
  std::filesystem::copy_file(SharedSetup().npy, npy);
  const std::string ids = scratch_.File("e.ids.txt");
  const std::string out = scratch_.File("x.index");
  ExpectUserError(Run({"index", "build", "--embeddings", npy, "--out", out}),
                  ids + ": cannot open");
  std::string text = "1\n2\n1\n";
  for (int i = 4; i <= 100; ++i) text += std::to_string(i) + "\n";
  scratch_.Write("e.ids.txt", text);
  ExpectUserError(Run({"index", "build", "--embeddings", npy, "--out", out}),
                  ids + ":3: duplicate id \"1\" (also on line 1)");
  scratch_.Write("e.ids.txt", "1\n2\n");
  ExpectUserError(Run({"index", "build", "--embeddings", npy, "--out", out}),
                  ids + ": has 2 ids, but " + npy + " has 100 rows");
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST_F(IndexCliTest, RecommendRejectsBadIndexFiles) {
  const std::string good = Build("flat", "good.index");
  const std::string bytes = ReadBytes(good);
  const std::string truncated = scratch_.Write("truncated.index", bytes.substr(0, 200));
  ExpectUserError(Recommend({"--user-id", "1", "--index", truncated}),
                  truncated + ": truncated: the header announces");
  const std::string foreign = scratch_.Write("foreign.index", ReadBytes(SharedSetup().npy));
  ExpectUserError(Recommend({"--user-id", "1", "--index", foreign}),
                  foreign + ": not a twotower index file");
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x40;
  const std::string corrupted = scratch_.Write("corrupted.index", flipped);
  ExpectUserError(Recommend({"--user-id", "1", "--index", corrupted}),
                  corrupted + ": checksum mismatch");
}

TEST_F(IndexCliTest, IndexOfAnotherDimensionIsRejected) {
  const Shared& s = SharedSetup();
  Matrix v = Matrix::Random(3, 4);
  const std::string npy = scratch_.File("four.npy");
  data::WriteNpy(npy, v);
  scratch_.Write("four.ids.txt", "a\nb\nc\n");
  const std::string path = scratch_.File("four.index");
  ASSERT_EQ(Run({"index", "build", "--embeddings", npy, "--out", path, "--quiet"}).code, 0);
  const std::string message =
      path + ": index dimension 4 does not match the model's embedding_dim 8 (" + s.model + ")";
  ExpectUserError(Recommend({"--user-id", "1", "--index", path}), message);
  ExpectUserError(
      Run({"index", "add", "--model", s.model, "--index", path, "--items", s.data + "/movies.csv"}),
      message);
}

TEST_F(IndexCliTest, IndexAddRejectsItemsWithoutTheModelsColumns) {
  const std::string path = Build("flat", "movies.index");
  const std::string items = scratch_.Write("new.csv", "movie_id,genre\n9001,Drama\n");
  ExpectUserError(
      Run({"index", "add", "--model", SharedSetup().model, "--index", path, "--items", items}),
      items + ": missing column 'year'");
  EXPECT_EQ(index::ReadIndexInfo(path).count, 100);  // untouched
}

TEST_F(IndexCliTest, RecommendRejectsConflictingFlags) {
  const std::string path = Build("flat", "movies.index");
  ExpectUserError(Recommend({"--user-id", "1", "--index", path, "--embeddings", SharedSetup().npy}),
                  "give --index or --embeddings, not both");
  ExpectUserError(Recommend({"--all-users"}), "--out FILE is required");
  ExpectUserError(Recommend({"--all-users", "--user-id", "1", "--out", scratch_.File("r.csv")}),
                  "give either --user-id ID or --all-users");
  ExpectUserError(Recommend({}), "give either --user-id ID or --all-users");
  // Given but empty is its own mistake (it read as not given).
  ExpectUserError(Recommend({"--user-id", ""}), "--user-id: empty; expected a user's id");
  ExpectUserError(Recommend({"--user-id", "1", "--out", scratch_.File("r.csv")}),
                  "--out goes with --all-users");
  EXPECT_FALSE(std::filesystem::exists(scratch_.File("r.csv")));
}

}  // namespace
}  // namespace twotower
