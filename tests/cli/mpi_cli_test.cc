// Data-parallel training under `mpirun -np 2` through the real binary (core/dist.h,
// train/replicas.h). The reference is the one-process run with the global batch: a different
// code path (no sharing out, no allgather, no gradient exchange) that must train the same
// objective. Skipped, saying why, only where mpirun is missing or the build has no MPI.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "testing/cli_runner.h"
#include "testing/temp_dir.h"
#include "twotower/core/dist.h"
#include "twotower/core/hash.h"

namespace twotower {
namespace {

using testing::CliResult;
using testing::Fields;
using ::testing::HasSubstr;
using testing::Lines;
using testing::ReadBytes;
using testing::RunCli;
using testing::TempDir;

// The mpirun prefix (as root CI needs --allow-run-as-root; 2 ranks on 2 cores --oversubscribe),
// under a timeout so that a hang fails the test instead of stalling the suite. In the sanitized
// build the ranks keep AddressSanitizer but not its leak check, which reports OpenMPI's own
// allocations that live until exit.
std::string Mpirun(int ranks) {
  return "timeout 120 mpirun --allow-run-as-root --oversubscribe -x ASAN_OPTIONS=detect_leaks=0 "
         "-np " +
         std::to_string(ranks) + " ";
}

#define SKIP_WITHOUT_MPI()                                                                      \
  do {                                                                                          \
    if (!dist::Built()) GTEST_SKIP() << "twotower was built without MPI (no libopenmpi-dev)";   \
    if (std::system("command -v mpirun >/dev/null 2>&1") != 0) {                                \
      GTEST_SKIP() << "mpirun is not installed (scripts/install_deps.sh installs openmpi-bin)"; \
    }                                                                                           \
  } while (0)

// A small log with structure (users in 4 taste groups), id towers with an MLP on top (dense
// and sparse gradients both travel), in-batch softmax with logQ correction.
std::string Config(const TempDir& dir, int users = 60) {
  std::string rows = "user_id,item_id,label\n";
  for (int u = 0; u < users; ++u) {
    for (int k = 0; k < 7; ++k) {
      rows +=
          std::to_string(u) + "," + std::to_string((u % 4) * 12 + (u * 5 + k * 3) % 12) + ",1\n";
    }
  }
  for (const char* split : {"train", "val", "test"}) {
    dir.Write(std::string("d/") + split + "/interactions.csv", rows);
  }
  return dir.Write("c.yaml",
                   "data: {dir: " + dir.File("d") +
                       "}\nfeatures:\n  user_id: user_id\n  item_id: item_id\n  label: label\n"
                       "  user: [{column: user_id, type: id, dim: 16}]\n"
                       "  item: [{column: item_id, type: id, dim: 16}]\n"
                       "model: {embedding_dim: 16, user_hidden_dims: [24], item_hidden_dims: [24], "
                       "dropout: 0}\n"
                       "training: {loss: softmax, epochs: 4, batch_size: 64, learning_rate: 0.01, "
                       "optimizer: lazy_adam, early_stopping_patience: 0, checkpoint: true}\n"
                       "evaluation: {k: [5]}\nthreads: 1\nseed: 3\n");
}

// Splits with different items per user (Config writes the same rows to all three): 6 training
// rows per user, 2 validation and 2 test rows.
void WriteSplits(const TempDir& dir, int users) {
  for (int split = 0; split < 3; ++split) {
    std::string rows = "user_id,item_id,label\n";
    for (int u = 0; u < users; ++u) {
      for (int k = 0; k < (split == 0 ? 6 : 2); ++k) {
        const int item = (u % 4) * 12 + (u * 5 + split * 6 + k * 3 + (split == 2 ? 1 : 0)) % 12;
        rows += std::to_string(u) + "," + std::to_string(item) + ",1\n";
      }
    }
    dir.Write(std::string("d/") +
                  (split == 0   ? "train"
                   : split == 1 ? "val"
                                : "test") +
                  "/interactions.csv",
              rows);
  }
}

std::vector<std::string> TrainArgs(const std::string& config, const std::string& out, int batch) {
  return {"train",
          "--config",
          config,
          "--output-dir",
          out,
          "--set",
          "training.batch_size=" + std::to_string(batch),
          "--quiet"};
}

// A column of metrics.csv, one value per epoch.
std::vector<double> MetricsColumn(const std::string& run_dir, const std::string& name) {
  std::vector<double> out;
  const std::vector<std::string> lines = Lines(ReadBytes(run_dir + "/metrics.csv"));
  const std::vector<std::string> header = Fields(lines.at(0), ',');
  size_t col = 0;
  while (col < header.size() && header[col] != name) ++col;
  EXPECT_LT(col, header.size()) << name << " not in " << lines.at(0);
  if (col == header.size()) return out;
  for (size_t i = 1; i < lines.size(); ++i) out.push_back(std::stod(Fields(lines[i], ',')[col]));
  return out;
}

std::vector<double> TrainLosses(const std::string& run_dir) {
  return MetricsColumn(run_dir, "train_loss");
}

// Each epoch's value of `column` in two runs agrees within `relative` (float reduction order).
void ExpectColumnsNear(const std::string& one_run, const std::string& two_run,
                       const std::string& column, size_t epochs, double relative) {
  const std::vector<double> a = MetricsColumn(one_run, column);
  const std::vector<double> b = MetricsColumn(two_run, column);
  ASSERT_EQ(a.size(), epochs) << column;
  ASSERT_EQ(b.size(), a.size()) << column;
  for (size_t e = 0; e < a.size(); ++e) {
    EXPECT_NEAR(b[e], a[e], relative * std::abs(a[e])) << column << ", epoch " << e + 1;
  }
}

// Each loss through its data-parallel path: the in-batch softmax in row shares; bce (with the
// learned scorer's gradient, added once), mixed (drawn negatives shared out) and the embedding
// L2 penalty on the whole batch on every rank. 55 users x 7 rows = 385 rows: the last global
// batch of 64 has one row, so rank 1 has an empty share there.
class MpiEquivalenceTest : public ::testing::TestWithParam<std::vector<std::string>> {};

TEST_P(MpiEquivalenceTest, TwoRanksTrainTheOneProcessObjectiveWithTheGlobalBatch) {
  SKIP_WITHOUT_MPI();
  TempDir dir;
  const std::string config = Config(dir, 55);
  std::vector<std::string> one_args = TrainArgs(config, dir.File("one"), 64);
  for (const std::string& s : GetParam()) one_args.insert(one_args.end(), {"--set", s});
  const CliResult one = RunCli(one_args, dir);
  ASSERT_EQ(one.code, 0) << one.err;
  // Two ranks of 32: the global batch of 64; the ranks compare their parameters every step.
  std::vector<std::string> args = TrainArgs(config, dir.File("two"), 32);
  for (const std::string& s : GetParam()) args.insert(args.end(), {"--set", s});
  args.insert(args.end(), {"--set", "training.replica_check=step"});
  const CliResult two = RunCli(args, dir, Mpirun(2));
  ASSERT_EQ(two.code, 0) << two.err;
  // Rank 0 alone prints: one report, saying how the batch is shared.
  EXPECT_THAT(two.out, HasSubstr("data-parallel over 2 MPI ranks"));
  EXPECT_EQ(two.out.find("== test"), two.out.rfind("== test")) << two.out;
  const std::vector<double> a = TrainLosses(testing::OnlyEntry(dir.File("one")));
  const std::vector<double> b = TrainLosses(testing::OnlyEntry(dir.File("two")));
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t e = 0; e < a.size(); ++e) {
    // Float reduction order only (a 64-row GEMM against two 32-row ones summed): 1e-4 relative
    // over 4 epochs of 7 steps; a wrong normalisation or a lost gradient moves it by percents.
    EXPECT_NEAR(b[e], a[e], 1e-4 * std::abs(a[e])) << "epoch " << e + 1;
  }
  // Only rank 0 wrote the run folder: one run folder.
  int folders = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.File("two"))) {
    folders += entry.is_directory();
  }
  EXPECT_EQ(folders, 1);
}

INSTANTIATE_TEST_SUITE_P(
    Losses, MpiEquivalenceTest,
    ::testing::Values(std::vector<std::string>{"training.loss=softmax"},
                      std::vector<std::string>{"training.loss=bce", "training.embedding_l2=0.05"},
                      std::vector<std::string>{"training.loss=mixed",
                                               "training.num_uniform_negatives=16",
                                               "training.embedding_l2=0.05"}));

// Task heads (a regression of an interaction column and a classification of an items-table
// column) beside the in-batch softmax: the users are allgathered for the heads, whose gradients
// count once (rank 0's) while their du / dv go back through each rank's share. The reference is
// one process with the global batch: the training loss (main + tasks) and the validation RMSE
// and accuracy of every epoch agree to float reduction order. (Adam is invariant to a tensor's
// gradient scale, so heads' gradients counted on every rank would not show here (checked: this
// test passes with that mistake); the rule that they count once is the scorer's.)
TEST(MpiCliTest, TaskHeadsTrainTheOneProcessObjective) {
  SKIP_WITHOUT_MPI();
  TempDir dir;
  std::string rows = "user_id,item_id,label,rating\n";
  for (int u = 0; u < 55; ++u) {
    for (int k = 0; k < 7; ++k) {
      const int item = (u % 4) * 12 + (u * 5 + k * 3) % 12;
      rows += std::to_string(u) + "," + std::to_string(item) + ",1," +
              std::to_string(1 + (u + item) % 5) + "\n";
    }
  }
  for (const char* split : {"train", "val", "test"}) {
    dir.Write(std::string("d/") + split + "/interactions.csv", rows);
  }
  std::string items = "item_id,genre\n";
  for (int i = 0; i < 48; ++i) items += std::to_string(i) + ",g" + std::to_string(i / 12) + "\n";
  const std::string items_file = dir.Write("d/items.csv", items);
  const std::string config = dir.Write(
      "c.yaml", "data: {dir: " + dir.File("d") + ", items: " + items_file +
                    "}\nfeatures:\n  user_id: user_id\n  item_id: item_id\n  label: label\n"
                    "  user: [{column: user_id, type: id, dim: 16}]\n"
                    "  item: [{column: item_id, type: id, dim: 16}]\n"
                    "model: {embedding_dim: 16, user_hidden_dims: [24], item_hidden_dims: [24], "
                    "dropout: 0}\n"
                    "tasks:\n  - {name: rating, type: regression, column: rating, weight: 0.5}\n"
                    "  - {name: genre, type: item_class, column: genre, weight: 0.3}\n"
                    "training: {loss: softmax, epochs: 3, batch_size: 64, learning_rate: 0.01, "
                    "optimizer: lazy_adam, early_stopping_patience: 0}\n"
                    "evaluation: {k: [5]}\nthreads: 1\nseed: 3\n");
  const CliResult one = RunCli(TrainArgs(config, dir.File("one"), 64), dir);
  ASSERT_EQ(one.code, 0) << one.err;
  std::vector<std::string> args = TrainArgs(config, dir.File("two"), 32);
  args.insert(args.end(), {"--set", "training.replica_check=step"});
  const CliResult two = RunCli(args, dir, Mpirun(2));
  ASSERT_EQ(two.code, 0) << two.err;
  EXPECT_THAT(two.out, HasSubstr("data-parallel over 2 MPI ranks"));
  const std::string a = testing::OnlyEntry(dir.File("one"));
  const std::string b = testing::OnlyEntry(dir.File("two"));
  ExpectColumnsNear(a, b, "train_loss", 3, 1e-4);
  ExpectColumnsNear(a, b, "val_rating_rmse", 3, 1e-4);
  ExpectColumnsNear(a, b, "val_genre_accuracy", 3, 1e-4);
  // The heads learned: the RMSE fell from the first epoch to the last.
  const std::vector<double> rmse = MetricsColumn(b, "val_rating_rmse");
  ASSERT_EQ(rmse.size(), 3u);
  EXPECT_LT(rmse[2], rmse[0]);
}

// The ranker (model.kind: ranker, BCE on labelled pairs plus drawn unrated pairs): 2 ranks with
// batch 32 and 8 unrated pairs each against one process with 64 and 16, the same draws from the
// same generator. Per-epoch training loss, train AUC (every pair's logit gathered), validation
// loss and validation Recall@5 (each rank ranking a share of the users) agree to float
// reduction order; a lost share or a gradient counted twice
// moves them by percents.
TEST(MpiCliTest, TheRankerTrainsTheOneProcessObjective) {
  SKIP_WITHOUT_MPI();
  TempDir dir;
  const std::string config = Config(dir, 55);
  for (const char* split : {"train", "val", "test"}) {
    std::string rows = "user_id,item_id,label\n";
    for (int u = 0; u < 55; ++u) {
      for (int k = 0; k < 7; ++k) {
        const int item = (u * 7 + k * 5 + (split[0] == 't' ? 0 : 3)) % 48;
        rows += std::to_string(u) + "," + std::to_string(item) + "," +
                (item / 12 == u % 4 ? "1" : "0") + "\n";
      }
    }
    dir.Write(std::string("d/") + split + "/interactions.csv", rows);
  }
  auto args = [&](const std::string& out, int batch, int negatives) {
    std::vector<std::string> a = TrainArgs(config, out, batch);
    for (const std::string& s :
         {std::string("model.kind=ranker"), std::string("model.ranker_hidden_dims=[16]"),
          std::string("training.loss=bce"), std::string("training.sampler=uniform"),
          std::string("training.monitor=val_recall@5"),
          "training.num_negatives=" + std::to_string(negatives)}) {
      a.insert(a.end(), {"--set", s});
    }
    return a;
  };
  const CliResult one = RunCli(args(dir.File("one"), 64, 16), dir);
  ASSERT_EQ(one.code, 0) << one.err;
  std::vector<std::string> two_args = args(dir.File("two"), 32, 8);
  two_args.insert(two_args.end(), {"--set", "training.replica_check=step"});
  const CliResult two = RunCli(two_args, dir, Mpirun(2));
  ASSERT_EQ(two.code, 0) << two.err;
  EXPECT_EQ(two.out.find("== test"), two.out.rfind("== test")) << two.out;
  const std::string a = testing::OnlyEntry(dir.File("one"));
  const std::string b = testing::OnlyEntry(dir.File("two"));
  ExpectColumnsNear(a, b, "train_loss", 4, 1e-4);
  ExpectColumnsNear(a, b, "train_auc", 4, 1e-4);
  ExpectColumnsNear(a, b, "val_loss", 4, 1e-4);
  // Validation Recall@5 ranked by the ranker over every item, each rank scoring a share of the
  // users (whole in one process).
  ExpectColumnsNear(a, b, "val_recall@5", 4, 1e-3);
  const std::vector<double> loss = TrainLosses(b);
  ASSERT_EQ(loss.size(), 4u);
  EXPECT_LT(loss[3], loss[0]);  // it learned
}

// A number that follows `key` in `text` (-1 and a failure when absent).
double NumberAfter(const std::string& text, const std::string& key) {
  const size_t at = text.find(key);
  EXPECT_NE(at, std::string::npos) << key << " not in:\n" << text;
  return at == std::string::npos ? -1.0 : std::stod(text.substr(at + key.size()));
}

// data.shards: the training rows in parts by user, each rank reading only its part. The
// reference is one process holding both parts (the same batches, drawn part by part): the
// per-epoch training loss and validation Recall@5 agree to float reduction order, MostPop (train
// counts summed over the ranks) is equal, and the test metrics, ranked by each rank for its own
// users (the only ones whose training items it holds, to exclude), equal a one-process
// `evaluate` of the same model file.
class MpiShardsTest : public ::testing::TestWithParam<std::vector<std::string>> {};

TEST_P(MpiShardsTest, RanksHoldingOnePartTrainTheObjectiveOfOneProcessHoldingEveryPart) {
  SKIP_WITHOUT_MPI();
  TempDir dir;
  const std::string config = Config(dir, 55);
  WriteSplits(dir, 55);
  std::vector<std::string> extra = GetParam();
  extra.push_back("data.shards=2");
  std::vector<std::string> one_args = TrainArgs(config, dir.File("one"), 64);
  for (const std::string& s : extra) one_args.insert(one_args.end(), {"--set", s});
  const CliResult one = RunCli(one_args, dir);
  ASSERT_EQ(one.code, 0) << one.err;
  std::vector<std::string> args = TrainArgs(config, dir.File("two"), 32);
  for (const std::string& s : extra) args.insert(args.end(), {"--set", s});
  args.insert(args.end(), {"--set", "training.replica_check=step"});
  const CliResult two = RunCli(args, dir, Mpirun(2));
  ASSERT_EQ(two.code, 0) << two.err;
  // 55 users x 6 training rows, in two parts of whole users.
  const std::string parts = "training rows in 2 parts by user (data.shards): ";
  const double first = NumberAfter(two.out, parts);
  const double second =
      NumberAfter(two.out, parts + std::to_string(static_cast<int>(first)) + " + ");
  EXPECT_EQ(first + second, 330);
  EXPECT_GT(first, 0);
  EXPECT_GT(second, 0);
  EXPECT_EQ(std::fmod(first, 6.0), 0.0);
  EXPECT_THAT(two.out, HasSubstr("each rank reads its part only"));
  EXPECT_EQ(NumberAfter(one.out, parts), first);
  const std::string a = testing::OnlyEntry(dir.File("one"));
  const std::string b = testing::OnlyEntry(dir.File("two"));
  ExpectColumnsNear(a, b, "train_loss", 4, 1e-4);
  ExpectColumnsNear(a, b, "val_recall@5", 4, 1e-3);
  const std::string report_one = ReadBytes(a + "/test_metrics.json");
  const std::string report_two = ReadBytes(b + "/test_metrics.json");
  const std::string mostpop = "\"most_popular\": {";
  ASSERT_NE(report_two.find(mostpop), std::string::npos) << report_two;
  const auto block = [&mostpop](const std::string& report) {
    const size_t at = report.find(mostpop);
    return report.substr(at, report.find('}', at) - at);
  };
  EXPECT_EQ(block(report_one), block(report_two));
  const std::string model =
      b + (report_two.find("\"refit_on_train_and_val\": true") != std::string::npos
               ? "/model_refit.safetensors"
               : "/model_best.safetensors");
  const CliResult evaluated = RunCli(
      {"evaluate", "--model", model, "--interactions", dir.File("d/test/interactions.csv")}, dir);
  ASSERT_EQ(evaluated.code, 0) << evaluated.err;
  EXPECT_NEAR(NumberAfter(report_two, "\"recall@5\": "), NumberAfter(evaluated.out, "Recall"),
              5.1e-5);
  EXPECT_NEAR(NumberAfter(report_two, "\"ndcg@5\": "), NumberAfter(evaluated.out, "NDCG"), 5.1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Losses, MpiShardsTest,
    ::testing::Values(std::vector<std::string>{"training.loss=softmax"},
                      std::vector<std::string>{"training.loss=bce", "training.refit=true"},
                      std::vector<std::string>{"training.loss=mixed",
                                               "training.num_uniform_negatives=16"}));

// A rank whose part is empty (every user's id hashes to part 0) still trains, with loss weights
// and a refit on train + validation (its empty share of the validation rows must not drop the
// training rows' weights): the one process holding both parts is the reference.
TEST(MpiCliTest, ARankWithAnEmptyPartTrainsWithWeightsAndARefit) {
  SKIP_WITHOUT_MPI();
  TempDir dir;
  const std::string config = Config(dir, 1);  // its data are replaced below
  std::vector<std::string> users;
  for (int i = 0; users.size() < 40; ++i) {
    const std::string id = "u" + std::to_string(i);
    if (Crc32c(0, id.data(), id.size()) % 2 == 0) users.push_back(id);
  }
  for (int split = 0; split < 3; ++split) {
    std::string rows = "user_id,item_id,label,plays\n";
    for (size_t u = 0; u < users.size(); ++u) {
      for (int k = 0; k < (split == 0 ? 6 : 2); ++k) {
        const int item = static_cast<int>((u % 4) * 12 + (u * 5 + split * 6 + k * 3) % 12);
        rows +=
            users[u] + "," + std::to_string(item) + ",1," + std::to_string(1 + (u + k) % 4) + "\n";
      }
    }
    dir.Write(std::string("d/") +
                  (split == 0   ? "train"
                   : split == 1 ? "val"
                                : "test") +
                  "/interactions.csv",
              rows);
  }
  std::vector<std::string> extra = {"data.shards=2", "features.weight=plays",
                                    "training.weight_transform=log1p", "training.refit=true"};
  std::vector<std::string> one_args = TrainArgs(config, dir.File("one"), 64);
  for (const std::string& s : extra) one_args.insert(one_args.end(), {"--set", s});
  const CliResult one = RunCli(one_args, dir);
  ASSERT_EQ(one.code, 0) << one.err;
  std::vector<std::string> args = TrainArgs(config, dir.File("two"), 32);
  for (const std::string& s : extra) args.insert(args.end(), {"--set", s});
  const CliResult two = RunCli(args, dir, Mpirun(2));
  ASSERT_EQ(two.code, 0) << two.err;
  EXPECT_THAT(two.out, HasSubstr("training rows in 2 parts by user (data.shards): 240 + 0"));
  ExpectColumnsNear(testing::OnlyEntry(dir.File("one")), testing::OnlyEntry(dir.File("two")),
                    "train_loss", 4, 1e-4);
}

TEST(MpiCliTest, DataShardsMustMatchTheRanksAndRefuseWhatNeedsEveryPart) {
  SKIP_WITHOUT_MPI();
  TempDir dir;
  const std::string config = Config(dir);
  std::vector<std::string> args = TrainArgs(config, dir.File("runs"), 32);
  args.insert(args.end(), {"--set", "data.shards=3"});
  const CliResult three = RunCli(args, dir, Mpirun(2));
  EXPECT_NE(three.code, 0);
  EXPECT_NE(three.code, 124) << "the job hung until the test's timeout";
  EXPECT_THAT(three.err, HasSubstr("'data.shards' 3 under mpirun -np 2: expected 1 (every rank "
                                   "reads every row) or 2 (each rank reads the rows of its part)"));
  std::vector<std::string> ranker = TrainArgs(config, dir.File("runs"), 32);
  ranker.insert(ranker.end(), {"--set", "data.shards=2", "--set", "model.kind=ranker", "--set",
                               "training.loss=bce"});
  testing::ExpectUserError(RunCli(ranker, dir),
                           "'data.shards' 2 does not work with model.kind: ranker");
  // One process: every part needs a share of each batch.
  std::vector<std::string> many = TrainArgs(config, dir.File("runs"), 8);
  many.insert(many.end(), {"--set", "data.shards=9"});
  testing::ExpectUserError(RunCli(many, dir),
                           "'data.shards' 9 is more than training.batch_size 8: every part needs "
                           "at least one row of each batch");
}

// The test report's ranking metrics: each rank ranked a share of the users and the values were
// gathered. The reference is `twotower evaluate` of the same model file in one process (the whole
// ranking on one rank), printed to 4 decimals: with 53 evaluated users a user lost or counted
// twice moves Recall@5 by about 0.02.
TEST(MpiCliTest, TestRankingMetricsSharedAcrossRanksEqualOneProcess) {
  SKIP_WITHOUT_MPI();
  TempDir dir;
  const std::string config = Config(dir, 53);
  WriteSplits(dir, 53);
  const CliResult two = RunCli(TrainArgs(config, dir.File("two"), 32), dir, Mpirun(2));
  ASSERT_EQ(two.code, 0) << two.err;
  const std::string run = testing::OnlyEntry(dir.File("two"));
  const std::string report = ReadBytes(run + "/test_metrics.json");
  const auto reported = [&report](const std::string& key) {
    const size_t at = report.find("\"" + key + "\": ");
    EXPECT_NE(at, std::string::npos) << key;
    return at == std::string::npos ? -1.0 : std::stod(report.substr(at + key.size() + 4));
  };
  const CliResult one = RunCli({"evaluate", "--model", run + "/model_best.safetensors",
                                "--interactions", dir.File("d/test/interactions.csv")},
                               dir);
  ASSERT_EQ(one.code, 0) << one.err;
  const auto printed = [&one](const std::string& row) {
    for (const std::string& line : Lines(one.out)) {
      std::vector<std::string> f;
      for (const std::string& x : Fields(line, ' ')) {
        if (!x.empty()) f.push_back(x);
      }
      if (f.size() >= 2 && f[0] == row) return std::stod(f[1]);
    }
    ADD_FAILURE() << row << " not in:\n" << one.out;
    return -1.0;
  };
  EXPECT_THAT(one.out, HasSubstr("ranking (53 users"));
  EXPECT_EQ(reported("users"), 53);
  EXPECT_GT(reported("recall@5"), 0.0);  // the metrics measure something
  EXPECT_NEAR(reported("recall@5"), printed("Recall"), 5.1e-5);
  EXPECT_NEAR(reported("ndcg@5"), printed("NDCG"), 5.1e-5);
  EXPECT_NEAR(reported("hitrate@5"), printed("HitRate"), 5.1e-5);
  EXPECT_NEAR(reported("mrr@5"), printed("MRR"), 5.1e-5);
  EXPECT_NEAR(reported("coverage@5"), printed("Coverage"), 5.1e-5);
}

TEST(MpiCliTest, TwoRanksAreIdenticalRunToRun) {
  SKIP_WITHOUT_MPI();
  TempDir dir;
  const std::string config = Config(dir);
  for (const char* out : {"r1", "r2"}) {
    const CliResult r = RunCli(TrainArgs(config, dir.File(out), 32), dir, Mpirun(2));
    ASSERT_EQ(r.code, 0) << r.err;
  }
  // The tensors' bytes (the safetensors header, which records the run's folder, aside).
  const auto tensors = [](const std::string& path) {
    const std::string bytes = ReadBytes(path);
    uint64_t header = 0;
    for (int i = 7; i >= 0 && bytes.size() >= 8; --i) {
      header = header * 256 + static_cast<unsigned char>(bytes[i]);
    }
    return bytes.size() >= 8 + header ? bytes.substr(8 + header) : std::string();
  };
  const std::string a = tensors(testing::OnlyEntry(dir.File("r1")) + "/model_best.safetensors");
  const std::string b = tensors(testing::OnlyEntry(dir.File("r2")) + "/model_best.safetensors");
  ASSERT_GT(a.size(), 1000u);
  EXPECT_TRUE(a == b) << "two runs of 2 ranks with one seed wrote different weights";
}

TEST(MpiCliTest, ADeadRankEndsTheJobAndResumeNeedsTheSameRanks) {
  SKIP_WITHOUT_MPI();
  TempDir dir;
  const std::string config = Config(dir);
  // Rank 1 is killed (SIGKILL) at its 10th step, in the second epoch; rank 0 then waits in a
  // collective that cannot complete, and mpirun must end the job rather than hang.
  const std::string kill_rank_1 =
      Mpirun(2) +
      "sh -c 'if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then export "
      "TWOTOWER_FAILPOINT=train.distributed_step#10; fi; exec \"$0\" \"$@\"' ";
  const CliResult dead = RunCli(TrainArgs(config, dir.File("runs"), 32), dir, kill_rank_1);
  EXPECT_NE(dead.code, 0);
  EXPECT_NE(dead.code, 124) << "the job hung until the test's timeout";
  const std::string run = testing::OnlyEntry(dir.File("runs"));
  ASSERT_FALSE(run.empty());
  // Epoch 1's checkpoint is there; resuming it as one process would train another objective
  // (a global batch of 32, not 64): refused, naming the way.
  const CliResult one = RunCli({"train", "--resume", run, "--quiet"}, dir);
  testing::ExpectUserError(one, "resume it with mpirun -np 2");
  const CliResult resumed = RunCli({"train", "--resume", run, "--quiet"}, dir, Mpirun(2));
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_THAT(resumed.out, HasSubstr("resumed"));
  // The resumed run is the uninterrupted one: the same losses, printed to 6 decimals.
  const CliResult whole = RunCli(TrainArgs(config, dir.File("whole"), 32), dir, Mpirun(2));
  ASSERT_EQ(whole.code, 0) << whole.err;
  const std::vector<double> expected = TrainLosses(testing::OnlyEntry(dir.File("whole")));
  ASSERT_EQ(expected.size(), 4u);
  EXPECT_EQ(TrainLosses(run), expected);
}

// The mpirun prefix of 2 ranks where rank 1 alone gets `extra` after the command's arguments.
std::string OnRank1(const std::string& extra) {
  return Mpirun(2) + "sh -c 'if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then exec \"$0\" \"$@\" " +
         extra + "; fi; exec \"$0\" \"$@\"' ";
}

TEST(MpiCliTest, RanksThatReadDifferentSettingsAndOtherCommandsAreRefused) {
  SKIP_WITHOUT_MPI();
  TempDir dir;
  const std::string config = Config(dir);
  // Rank 1 gets another seed: the ranks would train different problems.
  const CliResult r = RunCli(TrainArgs(config, dir.File("runs"), 32), dir, OnRank1("--seed 9"));
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("the configuration differs between rank 0 and rank(s) 1"));
  // data.shards on one rank only: the same message, before any rank loads its data (the loading's
  // collectives would otherwise not match).
  const CliResult shards =
      RunCli(TrainArgs(config, dir.File("runs3"), 32), dir, OnRank1("--set data.shards=2"));
  EXPECT_NE(shards.code, 0);
  EXPECT_NE(shards.code, 124) << "the job hung until the test's timeout";
  EXPECT_THAT(shards.err, HasSubstr("the configuration differs between rank 0 and rank(s) 1"));
  EXPECT_THAT(shards.err, ::testing::Not(HasSubstr("out of memory")));
  // A usage error on rank 1 only (an older binary on one host) ends the job too.
  const CliResult usage =
      RunCli(TrainArgs(config, dir.File("runs2"), 32), dir, OnRank1("--no-such-flag"));
  EXPECT_NE(usage.code, 0);
  EXPECT_NE(usage.code, 124) << "the job hung until the test's timeout";
  EXPECT_THAT(usage.err, HasSubstr("rank 1: error:"));
  const CliResult gen = RunCli({"generate", "--out", dir.File("g")}, dir, Mpirun(2));
  EXPECT_NE(gen.code, 0);
  EXPECT_THAT(gen.err, HasSubstr("only `twotower train` and `twotower recommend --all-users` run"));
}

TEST(MpiCliTest, RecommendAllUsersOnTwoRanksWritesTheOneProcessFile) {
  SKIP_WITHOUT_MPI();
  TempDir dir;
  // 9,000 users: three chunks of users (4,096 per chunk), so both ranks compute some and rank 1
  // sits out the last round.
  const std::string config = Config(dir, 9000);
  std::vector<std::string> train = TrainArgs(config, dir.File("runs"), 256);
  train.insert(train.end(), {"--set", "training.epochs=1", "--set", "training.checkpoint=false"});
  const CliResult trained = RunCli(train, dir);
  ASSERT_EQ(trained.code, 0) << trained.err;
  const std::string model = testing::OnlyEntry(dir.File("runs")) + "/model_best.safetensors";
  for (const char* name : {"recs.csv", "recs.parquet"}) {
    const std::vector<std::string> args = {
        "recommend", "--model", model,   "--all-users",
        "--k",       "5",       "--out", dir.File(std::string("one_") + name),
        "--quiet"};
    const CliResult one = RunCli(args, dir);
    ASSERT_EQ(one.code, 0) << one.err;
    std::vector<std::string> two_args = args;
    two_args[7] = dir.File(std::string("two_") + name);
    const CliResult two = RunCli(two_args, dir, Mpirun(2));
    ASSERT_EQ(two.code, 0) << two.err;
    const std::string a = ReadBytes(dir.File(std::string("one_") + name));
    const std::string b = ReadBytes(dir.File(std::string("two_") + name));
    EXPECT_GT(a.size(), 9000u * 5u);
    EXPECT_TRUE(a == b) << name << ": 2 ranks wrote other bytes than one process";
  }
  // One user's recommendations are one process's work.
  const CliResult single =
      RunCli({"recommend", "--model", model, "--user-id", "3"}, dir, Mpirun(2));
  EXPECT_NE(single.code, 0);
  EXPECT_THAT(single.err, HasSubstr("only --all-users runs data-parallel"));
}

}  // namespace
}  // namespace twotower
