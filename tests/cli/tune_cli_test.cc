// `twotower tune` through the real binary on a small log written here: the successive-halving
// schedule, tune.csv, a resume that trains nothing again, best.yaml and the final run.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "testing/cli_runner.h"
#include "testing/temp_dir.h"
#include "twotower/train/config.h"

namespace twotower {
namespace {

using testing::CliResult;
using testing::Fields;
using ::testing::HasSubstr;
using testing::Lines;
using testing::ReadBytes;
using testing::TempDir;

std::string TuneConfig(const TempDir& dir) {
  std::string rows = "user_id,item_id,label\n";
  for (int u = 0; u < 40; ++u) {
    for (int k = 0; k < 6; ++k) {
      rows += std::to_string(u) + "," + std::to_string((u % 4) * 10 + (u + k) % 10) + ",1\n";
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
                       "model: {embedding_dim: 16, user_hidden_dims: [], item_hidden_dims: [], "
                       "projection: false, dropout: 0}\n"
                       "training: {loss: softmax, epochs: 6, batch_size: 64, refit: true, "
                       "early_stopping_patience: 0}\n"
                       "evaluation: {k: [5]}\n"
                       "output: {dir: " +
                       dir.File("runs") + ", name: t}\n");
}

TEST(TuneCliTest, SuccessiveHalvingWritesResumesAndTrainsTheBest) {
  TempDir dir;
  const std::string config = TuneConfig(dir);
  const std::vector<std::string> args = {"tune",
                                         "--config",
                                         config,
                                         "--trials",
                                         "9",
                                         "--eta",
                                         "3",
                                         "--seed",
                                         "5",
                                         "--space",
                                         "model.embedding_dim=8|16",
                                         "--space",
                                         "training.loss=",
                                         "--space",
                                         "training.batch_size=32|64",
                                         "--out",
                                         dir.File("tune"),
                                         "--quiet"};
  CliResult r = RunCli(args, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  // 9 trials x 1 epoch (6 / 9 rounded up to 1), 3 x 2, 1 x 6, and trial 1 beyond rung 0.
  EXPECT_THAT(r.out, HasSubstr("rung 0: 9 trials x 1 epochs"));
  EXPECT_THAT(r.out, HasSubstr("rung 1: 3 trials x 2 epochs"));
  EXPECT_THAT(r.out, HasSubstr("rung 2: 1 trials x 6 epochs"));
  const std::vector<std::string> rows = Lines(ReadBytes(dir.File("tune/tune.csv")));
  ASSERT_GE(rows.size(), 1u + 13u) << ReadBytes(dir.File("tune/tune.csv"));
  ASSERT_LE(rows.size(), 1u + 15u) << ReadBytes(dir.File("tune/tune.csv"));
  EXPECT_EQ(rows[0],
            "trial,rung,epochs,model.embedding_dim,training.batch_size,training.embedding_l2,"
            "training.learning_rate,training.temperature,val_recall@5,best_epoch,seconds");
  // Trial 1 is the base config's own values.
  EXPECT_EQ(rows[1].substr(0, 16), "1,0,1,16,64,0,0.");
  // The 3 of rung 1 are the best 3 of rung 0, read here from the file.
  std::vector<std::pair<double, std::string>> rung0;
  std::vector<std::string> rung1;
  std::string last;
  double best_value = 0;
  for (size_t i = 1; i < rows.size(); ++i) {
    const std::vector<std::string> f = Fields(rows[i], ',');
    if (f[1] == "0") rung0.emplace_back(-std::stod(f[8]), f[0]);
    if (f[1] == "1") rung1.push_back(f[0]);
    if (f[1] == "2" && (last.empty() || std::stod(f[8]) > best_value)) {
      last = f[0];  // the first of the best on the last rung
      best_value = std::stod(f[8]);
    }
  }
  std::stable_sort(rung0.begin(), rung0.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  // ... and trial 1 (the config's own values) beside them when it is not among them.
  bool own_in_top = false;
  for (int i = 0; i < 3; ++i) own_in_top |= rung0[i].second == "1";
  ASSERT_EQ(rung1.size(), own_in_top ? 3u : 4u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(rung1[i], rung0[i].second) << i;
  if (!own_in_top) {
    EXPECT_EQ(rung1[3], "1");
  }
  ASSERT_FALSE(last.empty());
  EXPECT_THAT(r.out, HasSubstr("best: trial #" + last + " at rung 2"));
  // best.yaml is a config of its own that trains; the final run was trained from it.
  const train::Config best = train::Config::FromYamlFile(dir.File("tune/best.yaml"));
  EXPECT_TRUE(best.training.refit);
  EXPECT_EQ(best.training.epochs, 6);
  EXPECT_EQ(best.features.user.features[0].dim, best.model.embedding_dim);
  EXPECT_THAT(r.out, HasSubstr("model: " + dir.File("runs")));

  // A rerun with the same folder trains no trial again.
  r = RunCli(args, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  int reused = 0;
  for (const std::string& line : Lines(r.out))
    reused += line.find("from tune.csv") != std::string::npos;
  EXPECT_EQ(reused, static_cast<int>(rows.size()) - 1);
  // Another seed draws other trials: refused, not mixed in.
  std::vector<std::string> other = args;
  other[8] = "6";
  testing::ExpectUserError(RunCli(other, dir), "is not one this search draws");
  testing::ExpectUserError(
      RunCli({"tune", "--config", config, "--space", "training.temperature=0.5:0.1"}, dir),
      "--space training.temperature=0.5:0.1: expected numbers lo < hi");
  testing::ExpectUserError(
      RunCli({"tune", "--config", config, "--space", "training.epochz=1|2"}, dir),
      "unknown key 'training.epochz'");
  // A precision the machine cannot run is refused before the first trial, naming the trial.
  const CliResult bf16 =
      RunCli({"tune", "--config", config, "--space", "training.precision=fp32|bf16", "--trials",
              "4", "--out", dir.File("bf16_tune")},
             dir, "DNNL_MAX_CPU_ISA=AVX512_CORE ");
  testing::ExpectUserError(bf16, "'training.precision' bf16 cannot run here");
  EXPECT_NE(bf16.err.find("tune: trial "), std::string::npos) << bf16.err;
  EXPECT_FALSE(std::filesystem::exists(dir.File("bf16_tune")));  // no folder left behind
}

}  // namespace
}  // namespace twotower
