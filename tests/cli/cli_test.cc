// Runs the real `twotower` binary, as a user would, and checks exit codes, stdout and stderr.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "testing/cli_runner.h"
#include "testing/temp_dir.h"
#include "twotower/data/npy.h"
#include "twotower/model/model_file.h"

namespace twotower {
namespace {

using ::testing::HasSubstr;
using testing::ReadBytes;
using ::testing::StartsWith;
using testing::TempDir;

using testing::BusiestUser;
using testing::CliResult;
using testing::Fields;
using testing::Lines;
using testing::OnlyEntry;
using testing::ResultRows;
using testing::RunCli;
using testing::Words;

std::string Repo(const std::string& path) { return std::string(TWOTOWER_SOURCE_DIR) + "/" + path; }

using testing::ExpectUserError;

// A data set made with `twotower generate` and a model trained on it with `twotower train`,
// made once per process and shared (read-only) by the tests below.
struct Shared {
  TempDir dir;
  std::string data;   // the generated data set
  std::string runs;   // --output-dir
  std::string run;    // the run folder
  std::string model;  // run/model_best.safetensors
  CliResult generate, train;
};

const std::vector<std::string> kSmallModel = {"--set",     "model.embedding_dim=8",
                                              "--set",     "model.user_hidden_dims=16",
                                              "--set",     "model.item_hidden_dims=16",
                                              "--set",     "training.batch_size=64",
                                              "--threads", "1",
                                              "--seed",    "3",
                                              "--quiet"};

Shared& SharedRun() {
  // Destroyed at exit, which removes its directory.
  static const std::unique_ptr<Shared> shared = [] {
    auto s = std::make_unique<Shared>();
    s->data = s->dir.File("data");
    s->runs = s->dir.File("runs");
    s->generate = RunCli({"generate", "--out", s->data, "--users", "200", "--movies", "100",
                          "--interactions", "2000", "--seed", "5"},
                         s->dir);
    std::vector<std::string> args = {"train",
                                     "--config",
                                     Repo("config/ranking_config.yaml"),
                                     "--set",
                                     "data.dir=" + s->data,
                                     "--set",
                                     "training.epochs=2",
                                     "--output-dir",
                                     s->runs};
    args.insert(args.end(), kSmallModel.begin(), kSmallModel.end());
    s->train = RunCli(args, s->dir);
    for (const std::string& line : Lines(s->train.out)) {
      if (line.rfind("run folder: ", 0) == 0) {
        s->run = line.substr(12);
        if (!s->run.empty() && s->run.back() == '/') s->run.pop_back();
      }
    }
    s->model = s->run + "/model_best.safetensors";
    return s;
  }();
  return *shared;
}

// The SHA-256 of a file as coreutils' sha256sum prints it: an implementation independent of ours.
std::string Sha256Sum(const std::string& path) {
  const std::string command = "sha256sum '" + path + "'";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "popen failed";
  char buffer[65] = {};
  const size_t n = std::fread(buffer, 1, 64, pipe);
  ::pclose(pipe);
  return std::string(buffer, n);
}

// Files under `dir` named like an atomic write's temporary file (files.h: "<target>.tmp.XXXXXX").
std::vector<std::string> TemporaryFilesIn(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.find(".tmp.") != std::string::npos) out.push_back(name);
  }
  return out;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Shared& s = SharedRun();
    ASSERT_EQ(s.generate.code, 0) << s.generate.err;
    ASSERT_EQ(s.train.code, 0) << s.train.out << s.train.err;
    EXPECT_EQ(s.generate.err, "");
    EXPECT_EQ(s.train.err, "");  // --quiet: no progress bars
    ASSERT_FALSE(s.run.empty()) << s.train.out;
  }
  CliResult Run(const std::vector<std::string>& args) { return RunCli(args, scratch_); }
  // A copy of the shared data set that a test may damage.
  std::string CopyOfData() {
    const std::string copy = scratch_.File("data");
    std::filesystem::copy(SharedRun().data, copy, std::filesystem::copy_options::recursive);
    return copy;
  }
  // `train` on `data_dir` with a small model, plus `extra` arguments.
  CliResult Train(const std::string& config, const std::string& data_dir,
                  const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"train",
                                     "--config",
                                     config,
                                     "--set",
                                     "data.dir=" + data_dir,
                                     "--epochs",
                                     "1",
                                     "--output-dir",
                                     scratch_.File("runs")};
    args.insert(args.end(), kSmallModel.begin(), kSmallModel.end());
    args.insert(args.end(), extra.begin(), extra.end());
    return Run(args);
  }
  // No run folder was created by a failed train.
  void ExpectNoRunFolder() {
    const std::string runs = scratch_.File("runs");
    EXPECT_TRUE(!std::filesystem::exists(runs) || std::filesystem::is_empty(runs));
  }
  // Train interactions of a user: movie ids.
  // The movies `user` rated in train and validation: the history --exclude-seen drops.
  std::set<std::string> TrainMovies(const std::string& user) {
    std::set<std::string> movies;
    for (const char* split : {"/train/interactions.csv", "/val/interactions.csv"}) {
      for (const std::string& line : Lines(ReadBytes(SharedRun().data + split))) {
        const std::vector<std::string> f = Fields(line, ',');
        if (f.size() == 5 && f[0] == user) movies.insert(f[1]);
      }
    }
    return movies;
  }

  TempDir scratch_;
};

// ---- happy path -------------------------------------------------------------------------------

TEST_F(CliTest, GenerateWritesTheDataSet) {
  const Shared& s = SharedRun();
  EXPECT_THAT(s.generate.out, HasSubstr("wrote " + s.data));
  EXPECT_THAT(s.generate.out, HasSubstr("train 1400, val 300, test 300"));
  EXPECT_EQ(Lines(ReadBytes(s.data + "/users.csv")).size(), 201u);
  EXPECT_EQ(Lines(ReadBytes(s.data + "/movies.csv")).size(), 101u);
  EXPECT_EQ(Lines(ReadBytes(s.data + "/train/interactions.csv")).size(), 1401u);
  EXPECT_EQ(Lines(ReadBytes(s.data + "/val/interactions.csv")).size(), 301u);
  EXPECT_EQ(Lines(ReadBytes(s.data + "/test/interactions.csv")).size(), 301u);
}

TEST_F(CliTest, TrainWritesARunFolderWithTheOverrides) {
  const Shared& s = SharedRun();
  EXPECT_EQ(std::filesystem::path(s.run).parent_path(), std::filesystem::path(s.runs));
  EXPECT_THAT(s.train.out, HasSubstr("epoch 1/2"));
  EXPECT_THAT(s.train.out, HasSubstr("epoch 2/2"));
  EXPECT_THAT(s.train.out, HasSubstr("== test"));
  for (const char* f : {"config.yaml", "metrics.csv", "model_best.safetensors",
                        "model_last.safetensors", "test_metrics.json", "training_curves.svg"}) {
    EXPECT_TRUE(std::filesystem::exists(s.run + "/" + f)) << f;
  }
  EXPECT_EQ(Lines(ReadBytes(s.run + "/metrics.csv")).size(), 3u);  // header + 2 epochs
  const std::string config = ReadBytes(s.run + "/config.yaml");
  EXPECT_THAT(config, HasSubstr("embedding_dim: 8"));
  EXPECT_THAT(config, HasSubstr("epochs: 2"));
  EXPECT_THAT(config, HasSubstr("seed: 3"));
  EXPECT_THAT(config, HasSubstr("threads: 1"));
  EXPECT_THAT(config, HasSubstr("dir: " + s.data));
}

TEST_F(CliTest, EvaluatePrintsMetrics) {
  const Shared& s = SharedRun();
  const std::string test = s.data + "/test/interactions.csv";
  const CliResult r = Run({"evaluate", "--model", s.model, "--interactions", test});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, HasSubstr(test + ": 300 interactions"));
  EXPECT_THAT(r.out, HasSubstr("AUC"));
  EXPECT_THAT(r.out, HasSubstr("oracle AUC"));
}

TEST_F(CliTest, EmbedWritesNpyAndIds) {
  const Shared& s = SharedRun();
  const std::string out = scratch_.File("emb/items.npy");
  const CliResult r = Run({"embed", "--model", s.model, "--out", out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  ASSERT_TRUE(std::filesystem::exists(out));
  ASSERT_TRUE(std::filesystem::exists(scratch_.File("emb/items.ids.txt")));
  const Matrix v = data::ReadNpy(out);
  EXPECT_EQ(v.rows(), 100);
  EXPECT_EQ(v.cols(), 8);
  // Tower outputs are L2-normalised.
  for (int i = 0; i < v.rows(); ++i) EXPECT_NEAR(v.row(i).norm(), 1.0f, 1e-4f) << i;
  const std::vector<std::string> lines = Lines(ReadBytes(scratch_.File("emb/items.ids.txt")));
  ASSERT_EQ(lines.size(), 101u);
  // The first line ties the ids to these embeddings: CRC-32C of the float32 values, computed
  // here bit by bit from the polynomial (hash_test checks Crc32c against the standard's
  // check value).
  uint32_t crc = ~0u;
  const auto* bytes = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < static_cast<size_t>(v.size()) * sizeof(float); ++i) {
    crc ^= bytes[i];
    for (int b = 0; b < 8; ++b) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  char hex[9];
  std::snprintf(hex, sizeof(hex), "%08x", ~crc);
  // ... and to the model: the SHA-256 of its file, as coreutils' sha256sum prints it.
  EXPECT_EQ(lines[0], std::string("# twotower-ids rows=100 dim=8 crc32c=") + hex +
                          " model=sha256:" + Sha256Sum(s.model));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(lines[i + 1], std::to_string(i + 1));
}

TEST_F(CliTest, IdsFromOtherEmbeddingsAreRefused) {
  const Shared& s = SharedRun();
  const std::string npy = scratch_.File("items.npy");
  ASSERT_EQ(Run({"embed", "--model", s.model, "--out", npy}).code, 0);
  // The state a crash between embed's two renames would leave: new embeddings beside the ids
  // written for other ones of the same shape.
  Matrix v = data::ReadNpy(npy);
  v.row(0).swap(v.row(1));
  data::WriteNpy(npy, v);
  const CliResult r = Run({"recommend", "--model", s.model, "--user-id", "1", "--embeddings", npy});
  ExpectUserError(r,
                  scratch_.File("items.ids.txt") + ":1: written for other embeddings than " + npy);
  // Ids without the first line (written by hand) are taken as they are, but then nothing says
  // which model made the vectors: recommending from them needs --allow-other-model.
  const std::vector<std::string> lines = Lines(ReadBytes(scratch_.File("items.ids.txt")));
  std::string plain;
  for (size_t i = 1; i < lines.size(); ++i) plain += lines[i] + "\n";
  scratch_.Write("items.ids.txt", plain);
  ExpectUserError(Run({"recommend", "--model", s.model, "--user-id", "1", "--embeddings", npy}),
                  npy + ": records no model fingerprint");
  const CliResult ok = Run({"recommend", "--model", s.model, "--user-id", "1", "--embeddings", npy,
                            "--allow-other-model"});
  EXPECT_EQ(ok.code, 0) << ok.err;
}

// Issue 12, fault 4: embeddings and an index made by model A, used with model B, were accepted
// and answered in A's item space. Each derived file records its model's SHA-256 (checked here
// against sha256sum) and another model is refused, naming both.
TEST_F(CliTest, FilesMadeByAnotherModelAreRefused) {
  const Shared& s = SharedRun();
  const std::string a = s.model;                                                // 2 epochs
  const CliResult trained = Train(Repo("config/ranking_config.yaml"), s.data);  // 1 epoch
  ASSERT_EQ(trained.code, 0) << trained.err;
  std::string b;
  for (const std::string& line : Lines(trained.out)) {
    if (line.rfind("run folder: ", 0) == 0) b = line.substr(12) + "model_best.safetensors";
  }
  const std::string sha_a = Sha256Sum(a), sha_b = Sha256Sum(b);
  ASSERT_NE(sha_a, sha_b);
  const std::string npy = scratch_.File("a.npy"), idx = scratch_.File("a.index");
  ASSERT_EQ(Run({"embed", "--model", a, "--out", npy}).code, 0);
  const CliResult built = Run({"index", "build", "--embeddings", npy, "--out", idx, "--quiet"});
  ASSERT_EQ(built.code, 0) << built.err;
  EXPECT_THAT(built.out, HasSubstr("model sha256:" + sha_a.substr(0, 12)));
  // A's own files work with A.
  EXPECT_EQ(Run({"recommend", "--model", a, "--user-id", "1", "--index", idx}).code, 0);
  EXPECT_EQ(Run({"recommend", "--model", a, "--user-id", "1", "--embeddings", npy}).code, 0);
  // B is refused with both fingerprints named, for the index, the embeddings and index add.
  const std::string both = "made by the model sha256:" + sha_a.substr(0, 12) + ", not by " + b +
                           " (sha256:" + sha_b.substr(0, 12) + ")";
  ExpectUserError(Run({"recommend", "--model", b, "--user-id", "1", "--index", idx}),
                  idx + ": " + both);
  ExpectUserError(Run({"recommend", "--model", b, "--user-id", "1", "--embeddings", npy}),
                  npy + ": " + both);
  const std::string before = ReadBytes(idx);
  ExpectUserError(
      Run({"index", "add", "--model", b, "--index", idx, "--items", s.data + "/movies.csv"}),
      idx + ": " + both);
  EXPECT_EQ(ReadBytes(idx), before);  // untouched
  // Overridden on purpose, the mixed index records no model: A is then refused as well.
  const CliResult mixed = Run({"index", "add", "--model", b, "--index", idx, "--items",
                               s.data + "/movies.csv", "--allow-other-model"});
  ASSERT_EQ(mixed.code, 0) << mixed.err;
  ExpectUserError(Run({"recommend", "--model", a, "--user-id", "1", "--index", idx}),
                  idx + ": records no model fingerprint");
  // Batch recommendations say which model made them, beside the CSV.
  const std::string recs = scratch_.File("recs.csv");
  ASSERT_EQ(Run({"recommend", "--model", a, "--all-users", "--out", recs, "--quiet"}).code, 0);
  const std::string meta = ReadBytes(recs + ".meta.json");
  EXPECT_THAT(meta, HasSubstr("\"model_sha256\": \"" + sha_a + "\""));
  EXPECT_THAT(meta, HasSubstr("\"k\": 10"));
}

// Issue 12: a file size limit (or a full disk) during any write is a clear error naming the
// file; the previous file is intact and no temporary file is left behind. `ulimit -f 2` (dash:
// 512-byte blocks) lets each command start but not finish its output.
TEST_F(CliTest, WritesPastAFileSizeLimitFailCleanly) {
  const Shared& s = SharedRun();
  const std::string dir = scratch_.File("out");
  std::filesystem::create_directories(dir);
  const std::string npy = dir + "/items.npy";
  ASSERT_EQ(Run({"embed", "--model", s.model, "--out", npy}).code, 0);
  const std::string npy_bytes = ReadBytes(npy);
  const std::string previous = "previous contents\n";
  const std::string index = dir + "/items.index", recs = dir + "/recs.csv";
  scratch_.Write("out/items.index", previous);
  scratch_.Write("out/recs.csv", previous);
  const std::string limit = "ulimit -f 2; ";
  struct Case {
    std::vector<std::string> args;
    std::string file;
  };
  const Case cases[] = {
      {{"embed", "--model", s.model, "--out", npy}, npy},
      {{"index", "build", "--embeddings", npy, "--out", index, "--quiet"}, index},
      {{"recommend", "--model", s.model, "--all-users", "--out", recs, "--quiet"}, recs},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args[0]);
    const CliResult r = RunCli(c.args, scratch_, limit);
    EXPECT_EQ(r.code, 1) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.file + ": write failed: File too large"));
  }
  EXPECT_EQ(ReadBytes(npy), npy_bytes);
  EXPECT_EQ(ReadBytes(index), previous);
  EXPECT_EQ(ReadBytes(recs), previous);
  // Training stops at its first write of a model file, naming it.
  std::vector<std::string> args = {
      "train", "--config",           Repo("config/ranking_config.yaml"),
      "--set", "data.dir=" + s.data, "--epochs",
      "1",     "--output-dir",       dir + "/runs"};
  args.insert(args.end(), kSmallModel.begin(), kSmallModel.end());
  const CliResult trained = RunCli(args, scratch_, limit);
  EXPECT_EQ(trained.code, 1) << trained.out << trained.err;
  EXPECT_THAT(trained.err, HasSubstr(": write failed: File too large"));
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos)
        << entry.path() << " left behind";
  }
}

// Issue 12: training killed (SIGKILL, at failpoints: core/failpoint.h) at several moments always
// leaves a loadable best model once an epoch has ended, and `train --resume` then finishes with
// the metrics.csv of the run that was never interrupted, to the byte.
TEST_F(CliTest, KilledTrainingResumesToTheSameResult) {
  const Shared& s = SharedRun();
  auto train = [&](const std::string& out, const std::string& prefix) {
    std::vector<std::string> args = {"train",
                                     "--config",
                                     Repo("config/ranking_config.yaml"),
                                     "--set",
                                     "data.dir=" + s.data,
                                     "--set",
                                     "training.early_stopping_patience=0",
                                     "--epochs",
                                     "4",
                                     "--output-dir",
                                     out};
    args.insert(args.end(), kSmallModel.begin(), kSmallModel.end());
    return RunCli(args, scratch_, prefix);
  };
  const CliResult whole = train(scratch_.File("whole"), "");
  ASSERT_EQ(whole.code, 0) << whole.err;
  const std::string expected = ReadBytes(OnlyEntry(scratch_.File("whole")) + "/metrics.csv");
  ASSERT_EQ(Lines(expected).size(), 5u);  // header + 4 epochs

  const char* kill_points[] = {
      "train.before_checkpoint#2",  // epoch 2's metrics and best model written, not its checkpoint
      "train.after_checkpoint#3",   // right after epoch 3's checkpoint
      "files.before_rename#9",      // some file of a later epoch not yet renamed into place
      "train.after_checkpoint#4",   // all epochs done: model_last, refit and test remain
      // Ctrl-C (SIGINT) during epoch 2: training stops before its next batch, status 130.
      "train.before_checkpoint#2=INT",
      // SIGTERM while a file of a later epoch is being written: its temporary file is removed.
      "files.before_rename#9=TERM",
  };
  for (const char* point : kill_points) {
    SCOPED_TRACE(point);
    const std::string out = scratch_.File(std::string("killed_") + point);
    const CliResult killed = train(out, std::string("TWOTOWER_FAILPOINT='") + point + "' ");
    ASSERT_NE(killed.code, 0) << "the failpoint was not reached";
    const std::string run = OnlyEntry(out);
    ASSERT_FALSE(run.empty());
    if (std::string(point).find('=') != std::string::npos) {
      // A signal the process can catch leaves no temporary file behind.
      EXPECT_EQ(TemporaryFilesIn(run), std::vector<std::string>{});
    }
    if (std::string(point).find("=INT") != std::string::npos) {
      EXPECT_EQ(killed.code, 130);
      EXPECT_THAT(killed.err, HasSubstr("training interrupted"));
    }
    // Whatever the moment, the best model on disk loads.
    EXPECT_NO_THROW(model::LoadModel(run + "/model_best.safetensors"));
    const CliResult resumed = Run({"train", "--resume", run, "--quiet"});
    ASSERT_EQ(resumed.code, 0) << resumed.err;
    EXPECT_THAT(resumed.out, HasSubstr("resumed " + run + " after epoch"));
    EXPECT_EQ(ReadBytes(run + "/metrics.csv"), expected);
    EXPECT_TRUE(std::filesystem::exists(run + "/test_metrics.json"));
  }

  // Killed before the first checkpoint: nothing to resume, and it says so.
  const std::string early = scratch_.File("early");
  ASSERT_NE(train(early, "TWOTOWER_FAILPOINT=train.before_checkpoint ").code, 0);
  ExpectUserError(Run({"train", "--resume", OnlyEntry(early)}),
                  "checkpoint.safetensors does not exist");
  // A resume takes the run's own settings.
  ExpectUserError(Run({"train", "--resume", OnlyEntry(early), "--epochs", "9"}),
                  "train --resume: the run continues with the settings in its config.yaml");
}

// Ctrl-C or SIGTERM while a command writes its output: the temporary file is removed, the target
// keeps its old bytes, and the status is the signal's.
TEST_F(CliTest, AnInterruptedWriteLeavesNoTemporaryFileAndTheOldOutput) {
  const Shared& s = SharedRun();
  const std::string dir = scratch_.File("out");
  const std::string npy = dir + "/items.npy", index = dir + "/items.index";
  ASSERT_EQ(Run({"embed", "--model", s.model, "--out", npy}).code, 0);
  const std::string before = "the previous file";
  std::ofstream(index, std::ios::binary) << before;
  for (const char* point : {"files.before_rename=INT", "files.before_rename=TERM"}) {
    SCOPED_TRACE(point);
    const std::string failpoint = std::string("TWOTOWER_FAILPOINT='") + point + "' ";
    const CliResult r = RunCli({"index", "build", "--embeddings", npy, "--out", index, "--quiet"},
                               scratch_, failpoint);
    EXPECT_NE(r.code, 0);
    EXPECT_EQ(TemporaryFilesIn(dir), std::vector<std::string>{});
    EXPECT_EQ(ReadBytes(index), before);
    const CliResult fresh =
        RunCli({"index", "build", "--embeddings", npy, "--out", dir + "/new.index", "--quiet"},
               scratch_, failpoint);
    EXPECT_NE(fresh.code, 0);
    EXPECT_FALSE(std::filesystem::exists(dir + "/new.index"));
    EXPECT_EQ(TemporaryFilesIn(dir), std::vector<std::string>{});
  }
}

// Files that belong together (embed's .npy and .ids.txt; recommend's output and its .meta.json)
// stay together when an interrupt comes between their renames: both old or both new, never a
// mix (core/files.h, InterruptHold). A second model makes old and new differ.
TEST_F(CliTest, AnInterruptLeavesFilesThatBelongTogetherMatched) {
  const Shared& s = SharedRun();
  // Another model: other initial weights (model.embedding_dim differs from the shared one's).
  const CliResult other =
      Train(Repo("config/ranking_config.yaml"), s.data, {"--set", "training.learning_rate=0.05"});
  ASSERT_EQ(other.code, 0) << other.err;
  const std::string m2 = OnlyEntry(scratch_.File("runs")) + "/model_best.safetensors";
  const std::string npy = scratch_.File("e.npy"), csv = scratch_.File("r.csv");
  for (const char* point : {"files.before_rename#1=INT", "files.before_rename#2=INT",
                            "files.before_rename#1=TERM", "files.before_rename#2=TERM"}) {
    SCOPED_TRACE(point);
    const std::string failpoint = std::string("TWOTOWER_FAILPOINT='") + point + "' ";
    ASSERT_EQ(Run({"embed", "--model", s.model, "--out", npy}).code, 0);
    EXPECT_NE(RunCli({"embed", "--model", m2, "--out", npy}, scratch_, failpoint).code, 0);
    // The reader refuses an .npy with another embedding's ids file.
    const CliResult built =
        Run({"index", "build", "--embeddings", npy, "--out", scratch_.File("e.index"), "--quiet"});
    EXPECT_EQ(built.code, 0) << built.err;

    ASSERT_EQ(Run({"recommend", "--model", s.model, "--all-users", "--out", csv}).code, 0);
    const std::string old_csv = ReadBytes(csv), old_meta = ReadBytes(csv + ".meta.json");
    EXPECT_NE(
        RunCli({"recommend", "--model", m2, "--all-users", "--out", csv}, scratch_, failpoint).code,
        0);
    const std::string new_csv = ReadBytes(csv);
    ASSERT_TRUE(std::filesystem::exists(csv + ".meta.json"));
    const std::string meta = ReadBytes(csv + ".meta.json");
    if (new_csv == old_csv) {
      EXPECT_EQ(meta, old_meta);
    } else {
      EXPECT_NE(meta, old_meta);
      EXPECT_THAT(meta, HasSubstr(std::filesystem::path(m2).parent_path().filename().string()));
    }
    EXPECT_EQ(TemporaryFilesIn(scratch_.File("")), std::vector<std::string>{});
  }
}

// The ranker trains through the same fit loop: killed after a checkpoint, `train --resume`
// finishes it with the metrics.csv and test metrics of the run that was never interrupted (its
// unrated-pair generator restored from the checkpoint, not replayed).
TEST_F(CliTest, AKilledRankerRunResumesToTheSameResult) {
  const Shared& s = SharedRun();
  auto train = [&](const std::string& out, const std::string& prefix) {
    std::vector<std::string> args = {"train",
                                     "--config",
                                     Repo("config/ranking_config.yaml"),
                                     "--set",
                                     "data.dir=" + s.data,
                                     "--set",
                                     "model.kind=ranker",
                                     "--set",
                                     "model.ranker_hidden_dims=[16]",
                                     "--set",
                                     "model.dropout=0.2",
                                     "--set",
                                     "training.sampler=popularity",
                                     "--set",
                                     "training.early_stopping_patience=0",
                                     "--epochs",
                                     "3",
                                     "--output-dir",
                                     out};
    args.insert(args.end(), kSmallModel.begin(), kSmallModel.end());
    return RunCli(args, scratch_, prefix);
  };
  const CliResult whole = train(scratch_.File("ranker_whole"), "");
  ASSERT_EQ(whole.code, 0) << whole.err;
  const std::string whole_run = OnlyEntry(scratch_.File("ranker_whole"));
  ASSERT_NE(train(scratch_.File("ranker_cut"), "TWOTOWER_FAILPOINT=train.after_checkpoint#2 ").code,
            0);
  const std::string cut = OnlyEntry(scratch_.File("ranker_cut"));
  EXPECT_EQ(Lines(ReadBytes(cut + "/metrics.csv")).size(), 3u);  // header + 2 epochs
  const CliResult resumed = Run({"train", "--resume", cut, "--quiet"});
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_THAT(resumed.out, HasSubstr("resumed " + cut + " after epoch 2"));
  EXPECT_EQ(ReadBytes(cut + "/metrics.csv"), ReadBytes(whole_run + "/metrics.csv"));
  const nlohmann::json a = nlohmann::json::parse(ReadBytes(whole_run + "/test_metrics.json"));
  const nlohmann::json b = nlohmann::json::parse(ReadBytes(cut + "/test_metrics.json"));
  EXPECT_EQ(a["auc"], b["auc"]);
  EXPECT_EQ(a["ranking"], b["ranking"]);
}

// A cosine model's scorer is not trained but is part of the best weights: a resume after the last
// epoch restores them from the checkpoint (review of issue 12: this threw "wrong snapshot").
TEST_F(CliTest, ResumeOfACosineModelRestoresItsBestWeights) {
  const Shared& s = SharedRun();
  auto train = [&](const std::string& out, const std::string& prefix) {
    std::vector<std::string> args = {"train",
                                     "--config",
                                     Repo("config/ranking_config.yaml"),
                                     "--set",
                                     "data.dir=" + s.data,
                                     "--set",
                                     "model.score=cosine",
                                     "--set",
                                     "training.learning_rate=0.5",
                                     "--epochs",
                                     "3",
                                     "--output-dir",
                                     out};
    args.insert(args.end(), kSmallModel.begin(), kSmallModel.end());
    return RunCli(args, scratch_, prefix);
  };
  ASSERT_EQ(train(scratch_.File("whole"), "").code, 0);
  ASSERT_NE(train(scratch_.File("cut"), "TWOTOWER_FAILPOINT=train.after_checkpoint#3 ").code, 0);
  const std::string whole = OnlyEntry(scratch_.File("whole")),
                    cut = OnlyEntry(scratch_.File("cut"));
  const CliResult resumed = Run({"train", "--resume", cut, "--quiet"});
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(ReadBytes(cut + "/metrics.csv"), ReadBytes(whole + "/metrics.csv"));
  EXPECT_EQ(ReadBytes(cut + "/test_metrics.json").substr(0, 40),
            ReadBytes(whole + "/test_metrics.json").substr(0, 40));
}

// A checkpoint is refused when the data or the settings changed since it was written.
TEST_F(CliTest, ResumeRefusesChangedDataOrSettings) {
  const std::string data = CopyOfData();
  const std::string out = scratch_.File("runs_changed");
  std::vector<std::string> args = {"train", "--config",         Repo("config/ranking_config.yaml"),
                                   "--set", "data.dir=" + data, "--epochs",
                                   "3",     "--output-dir",     out};
  args.insert(args.end(), kSmallModel.begin(), kSmallModel.end());
  ASSERT_NE(RunCli(args, scratch_, "TWOTOWER_FAILPOINT=train.after_checkpoint ").code, 0);
  const std::string run = OnlyEntry(out);
  const std::string train_csv = data + "/train/interactions.csv";
  const std::string original = ReadBytes(train_csv);
  scratch_.Write("data/train/interactions.csv", original + Lines(original).back() + "\n");
  ExpectUserError(Run({"train", "--resume", run}),
                  run + "/checkpoint.safetensors: the train data changed since the checkpoint (" +
                      train_csv + ")");
  scratch_.Write("data/train/interactions.csv", original);
  std::string config = ReadBytes(run + "/config.yaml");
  ASSERT_NE(config.find("seed: 3\n"), std::string::npos);
  config.replace(config.find("seed: 3\n"), 8, "seed: 4\n");
  std::ofstream(run + "/config.yaml", std::ios::binary) << config;
  ExpectUserError(Run({"train", "--resume", run}), "written with other settings");
}

// A kill during `index build` (the new file complete, not yet renamed) leaves the previous index.
TEST_F(CliTest, KilledIndexBuildLeavesThePreviousIndex) {
  const Shared& s = SharedRun();
  const std::string npy = scratch_.File("e.npy"), idx = scratch_.File("e.index");
  ASSERT_EQ(Run({"embed", "--model", s.model, "--out", npy}).code, 0);
  ASSERT_EQ(Run({"index", "build", "--embeddings", npy, "--out", idx, "--quiet"}).code, 0);
  const std::string before = ReadBytes(idx);
  const CliResult killed =
      RunCli({"index", "build", "--embeddings", npy, "--type", "hnsw", "--out", idx, "--quiet"},
             scratch_, "TWOTOWER_FAILPOINT=files.before_rename ");
  EXPECT_NE(killed.code, 0);
  EXPECT_EQ(ReadBytes(idx), before);
  EXPECT_EQ(Run({"recommend", "--model", s.model, "--user-id", "1", "--index", idx}).code, 0);
}

TEST_F(CliTest, RecommendExcludesSeenItems) {
  const Shared& s = SharedRun();
  const std::string user = BusiestUser(s.data);
  const std::set<std::string> seen = TrainMovies(user);
  ASSERT_GE(seen.size(), 5u);
  const CliResult r =
      Run({"recommend", "--model", s.model, "--user-id", user, "--k", "5", "--exclude-seen"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, StartsWith("top 5 for user " + user));
  EXPECT_THAT(r.out,
              HasSubstr("(" + std::to_string(seen.size()) + " seen in train and val excluded)"));
  const auto rows = ResultRows(r.out);
  ASSERT_EQ(rows.size(), 5u) << r.out;
  std::set<std::string> ids;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(seen.count(rows[i].first), 0u) << rows[i].first << " was rated in train";
    ids.insert(rows[i].first);
    EXPECT_GT(rows[i].second, 0.0);
    EXPECT_LT(rows[i].second, 1.0);
    if (i > 0) {
      EXPECT_LE(rows[i].second, rows[i - 1].second);  // best first
    }
  }
  EXPECT_EQ(ids.size(), 5u);

  // Without --exclude-seen the same user gets a ranking that may include seen movies; the
  // excluded list is that ranking with the seen movies removed.
  const CliResult all = Run({"recommend", "--model", s.model, "--user-id", user, "--k", "100"});
  ASSERT_EQ(all.code, 0) << all.err;
  EXPECT_EQ(all.err, "");
  std::vector<std::string> expected;
  for (const auto& [id, score] : ResultRows(all.out)) {
    if (!seen.count(id) && expected.size() < 5) expected.push_back(id);
  }
  std::vector<std::string> got;
  for (const auto& [id, score] : rows) got.push_back(id);
  EXPECT_EQ(got, expected);
}

TEST_F(CliTest, RecommendWithPrecomputedEmbeddingsMatches) {
  const Shared& s = SharedRun();
  const std::string npy = scratch_.File("items.npy");
  ASSERT_EQ(Run({"embed", "--model", s.model, "--out", npy}).code, 0);
  const std::string user = BusiestUser(s.data);
  for (const bool exclude : {false, true}) {
    std::vector<std::string> args = {"recommend", "--model", s.model, "--user-id",
                                     user,        "--k",     "7"};
    if (exclude) args.push_back("--exclude-seen");
    const CliResult direct = Run(args);
    args.push_back("--embeddings");
    args.push_back(npy);
    const CliResult cached = Run(args);
    ASSERT_EQ(direct.code, 0) << direct.err;
    ASSERT_EQ(cached.code, 0) << cached.err;
    EXPECT_EQ(direct.err, "");
    EXPECT_EQ(cached.err, "");
    EXPECT_EQ(ResultRows(cached.out).size(), 7u);
    EXPECT_EQ(cached.out, direct.out);
  }
}

// ---- errors -----------------------------------------------------------------------------------

TEST_F(CliTest, MissingConfigFile) {
  const std::string path = scratch_.File("nope.yaml");
  const CliResult r = Run({"train", "--config", path});
  ExpectUserError(r, path + ": cannot open");
}

TEST_F(CliTest, ConfigWithUnknownKey) {
  const std::string path = scratch_.Write("bad.yaml", "training:\n  epochs: 2\n  epohcs: 3\n");
  const CliResult r = Run({"train", "--config", path});
  ExpectUserError(r, path + ":3: unknown key 'training.epohcs'");
}

TEST_F(CliTest, NegativeLearningRateFlag) {
  const CliResult r = Run({"train", "--config", Repo("config/ranking_config.yaml"), "--set",
                           "training.learning_rate=-1"});
  ExpectUserError(r, "'training.learning_rate': -1 is out of range");
}

TEST_F(CliTest, UnknownSetKey) {
  const CliResult r =
      Run({"train", "--config", Repo("config/ranking_config.yaml"), "--set", "training.epoch=3"});
  ExpectUserError(r, "unknown key 'training.epoch'");
}

TEST_F(CliTest, InteractionsWithWrongColumnCount) {
  const std::string data = CopyOfData();
  const std::string train = data + "/train/interactions.csv";
  std::vector<std::string> lines = Lines(ReadBytes(train));
  lines[2] = lines[2].substr(0, lines[2].rfind(','));  // line 3 loses its p_true
  std::string text;
  for (const std::string& l : lines) text += l + "\n";
  scratch_.Write("data/train/interactions.csv", text);
  const CliResult r = Train(Repo("config/ranking_config.yaml"), data);
  ExpectUserError(r, train + ":3: expected 5 columns, got 4");
  ExpectNoRunFolder();
}

TEST_F(CliTest, NonNumericValueInUsers) {
  const std::string data = CopyOfData();
  const std::string users = data + "/users.csv";
  std::vector<std::string> lines = Lines(ReadBytes(users));
  std::vector<std::string> f = Fields(lines[2], ',');
  f[1] = "abc";
  lines[2] = f[0] + "," + f[1] + "," + f[2] + "," + f[3] + "," + f[4];
  std::string text;
  for (const std::string& l : lines) text += l + "\n";
  scratch_.Write("data/users.csv", text);
  const CliResult r = Train(Repo("config/ranking_config.yaml"), data);
  ExpectUserError(r, users + ":3: column 'age': expected a number, got \"abc\"");
  ExpectNoRunFolder();
}

TEST_F(CliTest, UnknownColumnInFeatureSchema) {
  const std::string config = scratch_.Write("features.yaml",
                                            "data: {users: users.csv, items: movies.csv}\n"
                                            "features:\n"
                                            "  user:\n"
                                            "    - {column: age, type: numeric}\n"
                                            "    - {column: income, type: numeric}\n");
  const CliResult r = Train(config, SharedRun().data);
  ExpectUserError(r, SharedRun().data +
                         "/users.csv: missing column 'income' (found: user_id, age, "
                         "gender, favorite_genre, activity_level)");
  ExpectNoRunFolder();
}

TEST_F(CliTest, UnknownFeatureTypeInConfig) {
  const std::string config =
      scratch_.Write("features.yaml", "features:\n  item:\n    - {column: year, type: date}\n");
  const CliResult r = Train(config, SharedRun().data);
  ExpectUserError(r, config + ":3: 'features.item': column 'year': unknown feature type \"date\"");
}

TEST_F(CliTest, EvaluateWithTruncatedModel) {
  const Shared& s = SharedRun();
  const std::string bytes = ReadBytes(s.model);
  const std::string model =
      scratch_.Write("truncated.safetensors", bytes.substr(0, bytes.size() / 2));
  const CliResult r =
      Run({"evaluate", "--model", model, "--interactions", s.data + "/test/interactions.csv"});
  ExpectUserError(r, model + ": ");
  EXPECT_THAT(r.err, HasSubstr("truncated"));
}

TEST_F(CliTest, EvaluateWithAFileThatIsNotSafetensors) {
  const Shared& s = SharedRun();
  const std::string model = scratch_.Write("model.safetensors", "user_id,age\n1,20\n");
  const CliResult r =
      Run({"evaluate", "--model", model, "--interactions", s.data + "/test/interactions.csv"});
  ExpectUserError(r, model + ": not a safetensors file");
  const std::string missing = scratch_.File("missing.safetensors");
  ExpectUserError(Run({"embed", "--model", missing}), missing + ": cannot open");
}

TEST_F(CliTest, RecommendWithUnknownUser) {
  const Shared& s = SharedRun();
  const CliResult r = Run({"recommend", "--model", s.model, "--user-id", "99999"});
  ExpectUserError(r, "--user-id: \"99999\" is not in " + s.data + "/users.csv");
}

TEST_F(CliTest, RecommendWithMismatchedEmbeddings) {
  const Shared& s = SharedRun();
  const std::string npy = scratch_.File("items.npy");
  ASSERT_EQ(Run({"embed", "--model", s.model, "--out", npy}).code, 0);
  scratch_.Write("items.ids.txt", "1\n2\n");
  const CliResult r = Run({"recommend", "--model", s.model, "--user-id", "1", "--embeddings", npy});
  ExpectUserError(r, scratch_.File("items.ids.txt") + ": has 2 ids");
}

TEST_F(CliTest, BadCommandLines) {
  EXPECT_NE(Run({}).code, 0);
  EXPECT_NE(Run({"fly"}).code, 0);
  EXPECT_NE(Run({"evaluate"}).code, 0);  // --model and --interactions are required
  EXPECT_NE(Run({"recommend", "--model", SharedRun().model, "--user-id", "1", "--k", "0"}).code, 0);
  ExpectUserError(Run({"embed", "--model", SharedRun().model, "--threads", "-1"}), "--threads");
}

TEST_F(CliTest, ListSettings) {
  const CliResult r = Run({"train", "--list-settings"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, HasSubstr("training.learning_rate ("));
  EXPECT_THAT(r.out, HasSubstr("model.embedding_dim ("));
}

// A ranker trained by `train --set model.kind=ranker` re-orders what the two-tower model
// retrieves: the same candidates in the ranker's order, the same score for a (user, item) pair
// whatever the candidate set, and the errors of mixing the two kinds up.
TEST_F(CliTest, RerankReordersTheRetrievedCandidatesWithTheRanker) {
  const Shared& s = SharedRun();
  const CliResult trained =
      Train(Repo("config/ranking_config.yaml"), s.data, {"--set", "model.kind=ranker"});
  ASSERT_EQ(trained.code, 0) << trained.out << trained.err;
  EXPECT_THAT(trained.out, HasSubstr("== ranker (bce on labelled pairs"));
  EXPECT_THAT(trained.out, HasSubstr("the ranker scoring every item"));
  const std::string ranker = OnlyEntry(scratch_.File("runs")) + "/model_best.safetensors";
  const std::string user = BusiestUser(s.data);

  // --candidates = --k: the two-tower model's top 5, re-ordered.
  const CliResult plain = Run({"recommend", "--model", s.model, "--user-id", user, "--k", "5"});
  const CliResult five = Run({"recommend", "--model", s.model, "--user-id", user, "--k", "5",
                              "--rerank", ranker, "--candidates", "5"});
  ASSERT_EQ(five.code, 0) << five.err;
  EXPECT_THAT(five.out, HasSubstr("re-ranked by " + ranker + " from the top 5 retrieved"));
  std::set<std::string> a, b;
  for (const auto& [id, score] : ResultRows(plain.out)) a.insert(id);
  const auto reranked = ResultRows(five.out);
  for (size_t i = 0; i < reranked.size(); ++i) {
    b.insert(reranked[i].first);
    if (i > 0) {
      EXPECT_LE(reranked[i].second, reranked[i - 1].second);
    }
  }
  EXPECT_EQ(a.size(), 5u);
  EXPECT_EQ(a, b);

  // Every user, from 20 and from all 100 items: a pair's score does not depend on the candidate
  // set, each list is in score order, and the whole catalogue's top 10 scores at least as high
  // as the top 10 of 20 candidates.
  // (Scores as printed, 6 decimals; a batch of another size may round the last float bit
  // differently, hence the 2e-6.)
  std::map<std::pair<std::string, std::string>, double> score_of;
  std::map<std::string, std::vector<double>> lists[2];
  for (int run = 0; run < 2; ++run) {
    const std::string out = scratch_.File("recs" + std::to_string(run) + ".csv");
    const CliResult r =
        Run({"recommend", "--model", s.model, "--all-users", "--k", "10", "--out", out, "--rerank",
             ranker, "--candidates", run == 0 ? "20" : "100", "--quiet"});
    ASSERT_EQ(r.code, 0) << r.err;
    const std::vector<std::string> lines = Lines(ReadBytes(out));
    ASSERT_EQ(lines.size(), 1u + 200u * 10u);
    for (size_t i = 1; i < lines.size(); ++i) {
      const std::vector<std::string> f = Fields(lines[i], ',');
      ASSERT_EQ(f.size(), 4u) << lines[i];
      const auto [it, inserted] = score_of.emplace(std::make_pair(f[0], f[2]), std::stod(f[3]));
      if (!inserted) {
        EXPECT_NEAR(it->second, std::stod(f[3]), 2e-6) << f[0] << " " << f[2];
      }
      lists[run][f[0]].push_back(std::stod(f[3]));
    }
    const nlohmann::json meta = nlohmann::json::parse(ReadBytes(out + ".meta.json"));
    EXPECT_EQ(meta["rerank"]["model_sha256"], Sha256Sum(ranker));
    EXPECT_EQ(meta["rerank"]["candidates"], run == 0 ? 20 : 100);
  }
  for (const auto& [u, from_all] : lists[1]) {
    const std::vector<double>& from_20 = lists[0][u];
    ASSERT_EQ(from_all.size(), 10u);
    for (size_t r = 0; r < 10; ++r) {
      if (r > 0) {
        EXPECT_LE(from_all[r], from_all[r - 1]) << "user " << u;
      }
      EXPECT_GE(from_all[r], from_20[r] - 2e-6) << "user " << u << " rank " << r + 1;
    }
  }

  // evaluate --rerank with every item as a candidate is the ranker scoring every item: the
  // ranking train printed for its test split (the same protocol, scores assembled apart).
  const CliResult evaluated =
      Run({"evaluate", "--model", s.model, "--interactions", s.data + "/test/interactions.csv",
           "--rerank", ranker, "--candidates", "100"});
  ASSERT_EQ(evaluated.code, 0) << evaluated.err;
  EXPECT_THAT(evaluated.out, HasSubstr("the ranker scoring all 100 items"));
  auto metric_lines = [](const std::string& out) {
    std::vector<std::string> found;
    for (const std::string& line : Lines(out)) {
      if (line.rfind("  Recall ", 0) == 0 || line.rfind("  NDCG ", 0) == 0) found.push_back(line);
    }
    return found;
  };
  // Equal up to one rank swap among 100 users (the pairs are scored in batches of other sizes,
  // which may round a last bit differently): 0.002 on a 4-decimal mean.
  const std::vector<std::string> ours = metric_lines(evaluated.out);
  const std::vector<std::string> theirs = metric_lines(trained.out);
  ASSERT_EQ(ours.size(), 2u);
  ASSERT_EQ(theirs.size(), 2u);
  for (size_t l = 0; l < 2; ++l) {
    const std::vector<std::string> a = Words(ours[l]), b = Words(theirs[l]);
    ASSERT_GE(a.size(), 3u);
    ASSERT_GE(b.size(), 3u);
    EXPECT_EQ(a[0], b[0]);
    for (size_t w = 1; w < 3; ++w) EXPECT_NEAR(std::stod(a[w]), std::stod(b[w]), 0.002) << a[0];
  }
  const CliResult two_stage =
      Run({"evaluate", "--model", s.model, "--interactions", s.data + "/test/interactions.csv",
           "--rerank", ranker, "--candidates", "20"});
  ASSERT_EQ(two_stage.code, 0) << two_stage.err;
  EXPECT_THAT(two_stage.out, HasSubstr("the top 20 of 100 items by <u, v> re-ranked"));

  ExpectUserError(Run({"recommend", "--model", ranker, "--user-id", user}),
                  "is a ranker (model.kind: ranker), not a two-tower model");
  ExpectUserError(Run({"recommend", "--model", s.model, "--user-id", user, "--rerank", s.model}),
                  "is a two-tower model, not a ranker");
  ExpectUserError(Run({"recommend", "--model", s.model, "--user-id", user, "--candidates", "50"}),
                  "--candidates is how many retrieved items --rerank re-orders");
  ExpectUserError(Run({"recommend", "--model", s.model, "--user-id", user, "--k", "10", "--rerank",
                       ranker, "--candidates", "5"}),
                  "--candidates 5 is fewer than --k 10");
  ExpectUserError(
      Run({"evaluate", "--model", ranker, "--interactions", s.data + "/test/interactions.csv"}),
      "is a ranker");
  ExpectUserError(Run({"evaluate", "--model", s.model, "--interactions",
                       s.data + "/test/interactions.csv", "--rerank", ranker, "--candidates", "5"}),
                  "--candidates 5 is fewer than the largest evaluation.k (20)");
}

// A model with task heads: train reports each task's test metric, and evaluate on the test file
// reports the same (the heads load from the model file; the targets come from the files).
TEST_F(CliTest, TaskHeadsAreReportedByTrainAndEvaluate) {
  const Shared& s = SharedRun();
  const std::string config = scratch_.Write(
      "tasks.yaml", ReadBytes(Repo("config/ranking_config.yaml")) +
                        "\ntasks:\n  - {name: rating, type: regression, column: rating, weight: "
                        "0.5}\n  - {name: genre, type: item_class, column: genre}\n");
  const CliResult trained = Train(config, s.data);
  ASSERT_EQ(trained.code, 0) << trained.out << trained.err;
  EXPECT_THAT(trained.out, HasSubstr("task genre: item_class of 'genre' ("));
  std::vector<std::string> reported;
  for (const std::string& line : Lines(trained.out)) {
    if (line.rfind("test task ", 0) == 0) reported.push_back(line.substr(5));
  }
  ASSERT_EQ(reported.size(), 2u) << trained.out;
  const std::string model = OnlyEntry(scratch_.File("runs")) + "/model_best.safetensors";
  const CliResult evaluated =
      Run({"evaluate", "--model", model, "--interactions", s.data + "/test/interactions.csv"});
  ASSERT_EQ(evaluated.code, 0) << evaluated.err;
  std::vector<std::string> again;
  for (const std::string& line : Lines(evaluated.out)) {
    if (line.rfind("task ", 0) == 0) again.push_back(line);
  }
  EXPECT_EQ(again, reported);
  const std::string csv = ReadBytes(OnlyEntry(scratch_.File("runs")) + "/metrics.csv");
  EXPECT_THAT(csv, HasSubstr(",val_rating_rmse,val_genre_accuracy,best\n"));
}

}  // namespace
}  // namespace twotower
