// Training does not depend on the thread count (core/parallel.h): work is shared in blocks that
// do not depend on it, sums are added in block order, and which thread runs a block changes
// nothing. So `--threads 1`, `2` and `3` (more threads than this machine may have cores) write the
// same metrics, the same test report and the same item embeddings, byte for byte. This is also
// what makes `--threads 0` safe under CPU contention: a thread the OS deschedules leaves its
// blocks to the others without changing a result.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "testing/cli_runner.h"
#include "testing/temp_dir.h"
#include "twotower/nn/gemm.h"

namespace twotower {
namespace {

using testing::CliResult;
using testing::Lines;
using testing::ReadBytes;
using testing::RunCli;
using testing::TempDir;

// 300 users in 6 taste groups, 7 train rows each (2,100: batches of 256 rows are four 64-row
// blocks of the sampled loss and two 128-row blocks of the products), one val and one test row.
std::string Config(const TempDir& dir, const std::string& training) {
  std::string split[3];
  for (std::string& rows : split) rows = "user_id,item_id,label\n";
  for (int u = 0; u < 300; ++u) {
    for (int k = 0; k < 9; ++k) {
      split[std::max(0, k - 6)] +=
          std::to_string(u) + "," + std::to_string((u % 6) * 20 + (u * 7 + k * 3) % 20) + ",1\n";
    }
  }
  dir.Write("d/train/interactions.csv", split[0]);
  dir.Write("d/val/interactions.csv", split[1]);
  dir.Write("d/test/interactions.csv", split[2]);
  return dir.Write("c.yaml",
                   "data: {dir: " + dir.File("d") +
                       "}\nfeatures:\n  user_id: user_id\n  item_id: item_id\n  label: label\n"
                       "  user: [{column: user_id, type: id, dim: 16}]\n"
                       "  item: [{column: item_id, type: id, dim: 16}]\n"
                       "model: {embedding_dim: 16, user_hidden_dims: [32], item_hidden_dims: [32], "
                       "dropout: 0.1}\n"
                       "training: {" +
                       training +
                       ", epochs: 3, batch_size: 256, learning_rate: 0.01, "
                       "early_stopping_patience: 0, checkpoint: false}\n"
                       "evaluation: {k: [5]}\nseed: 3\n");
}

struct Outputs {
  std::string metrics, test, embeddings;
};

Outputs TrainWith(const TempDir& dir, const std::string& config, int threads) {
  const std::string out = dir.File("runs" + std::to_string(threads));
  const CliResult r = RunCli({"train", "--config", config, "--output-dir", out, "--threads",
                              std::to_string(threads), "--quiet"},
                             dir);
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  std::string run;
  for (const auto& entry : std::filesystem::directory_iterator(out)) run = entry.path().string();
  const std::string npy = dir.File("items" + std::to_string(threads) + ".npy");
  const CliResult e = RunCli({"embed", "--model", run + "/model_best.safetensors", "--out", npy,
                              "--threads", std::to_string(threads)},
                             dir);
  EXPECT_EQ(e.code, 0) << e.out << e.err;
  // The test report without its timing line.
  std::string test;
  for (const std::string& line : Lines(ReadBytes(run + "/test_metrics.json"))) {
    if (line.find("\"train_seconds\"") == std::string::npos) test += line + "\n";
  }
  return {ReadBytes(run + "/metrics.csv"), test, ReadBytes(npy)};
}

class ThreadCountTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ThreadCountTest, OneTwoAndThreeThreadsWriteTheSameBytes) {
  if (GetParam().find("bf16") != std::string::npos && !nn::Bf16Unavailable().empty()) {
    GTEST_SKIP() << "no bf16 products here: " << nn::Bf16Unavailable();
  }
  TempDir dir;
  const std::string config = Config(dir, GetParam());
  const Outputs one = TrainWith(dir, config, 1);
  ASSERT_FALSE(one.metrics.empty());
  ASSERT_FALSE(one.embeddings.empty());
  for (int threads : {2, 3}) {
    const Outputs other = TrainWith(dir, config, threads);
    EXPECT_EQ(other.metrics, one.metrics) << threads << " threads";
    EXPECT_EQ(other.test, one.test) << threads << " threads";
    EXPECT_TRUE(other.embeddings == one.embeddings) << threads << " threads: embeddings differ";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Losses, ThreadCountTest,
    ::testing::Values("loss: softmax", "loss: bce",
                      "loss: mixed, num_uniform_negatives: 64, num_hard_negatives: 8, "
                      "num_easy_negatives: 4",
                      // bf16 products (nn/gemm.h) run per row block on one thread each.
                      "loss: softmax, precision: bf16",
                      "loss: mixed, num_uniform_negatives: 64, precision: bf16"));

// TWOTOWER_MAX_CPU_ISA (which index kernels may run) is checked before any command starts: a
// value it does not know stops the command, naming the variable and the values it takes.
TEST(KernelIsaCliTest, AnUnknownMaxCpuIsaIsRefusedBeforeTheCommandRuns) {
  TempDir dir;
  const CliResult refused =
      RunCli({"generate", "--out", dir.File("data")}, dir, "TWOTOWER_MAX_CPU_ISA=avx9 ");
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.err.find("TWOTOWER_MAX_CPU_ISA: unknown value \"avx9\" (expected build, "
                             "avx512, avx512_vnni or avx512_bf16)"),
            std::string::npos)
      << refused.err;
  EXPECT_FALSE(std::filesystem::exists(dir.File("data")));
  // --version shows the message in its kernels line, and fails as every command does.
  const CliResult version = RunCli({"--version"}, dir, "TWOTOWER_MAX_CPU_ISA=avx9 ");
  EXPECT_NE(version.code, 0);
  EXPECT_NE(version.out.find("index scan kernels: error: TWOTOWER_MAX_CPU_ISA"), std::string::npos)
      << version.out;
  EXPECT_NE(version.err.find("error: TWOTOWER_MAX_CPU_ISA: unknown value"), std::string::npos)
      << version.err;
  EXPECT_EQ(RunCli({"--version"}, dir).code, 0);
  const CliResult capped =
      RunCli({"generate", "--out", dir.File("capped")}, dir, "TWOTOWER_MAX_CPU_ISA=build ");
  EXPECT_EQ(capped.code, 0) << capped.err;
}

// TWOTOWER_LOAD_AWARE takes 1 or 0 (core/parallel.h); anything else stops a command before it
// writes anything, naming the variable and its values.
TEST(KernelIsaCliTest, AnUnknownLoadAwareValueIsRefusedBeforeTheCommandRuns) {
  TempDir dir;
  const CliResult refused =
      RunCli({"generate", "--out", dir.File("data")}, dir, "TWOTOWER_LOAD_AWARE=yes ");
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.err.find("TWOTOWER_LOAD_AWARE: unknown value \"yes\" (expected 1"),
            std::string::npos)
      << refused.err;
  EXPECT_FALSE(std::filesystem::exists(dir.File("data")));
  for (const std::string v : {"0", "1"}) {
    const CliResult ok =
        RunCli({"generate", "--out", dir.File("data" + v)}, dir, "TWOTOWER_LOAD_AWARE=" + v + " ");
    EXPECT_EQ(ok.code, 0) << v << ok.err;
  }
}

// training.precision: bf16 trains with bf16 products (the per-epoch numbers differ from fp32's,
// by the operands' rounding only), says so, and is refused, naming what is missing, where oneDNN
// may not use AVX512_BF16 or AMX (DNNL_MAX_CPU_ISA stands in for such a CPU).
TEST(Bf16CliTest, TrainsCloseToFp32AndIsRefusedWithoutBf16Instructions) {
  TempDir dir;
  const std::string config = Config(dir, "loss: softmax");
  const CliResult refused = RunCli({"train", "--config", config, "--output-dir", dir.File("no"),
                                    "--set", "training.precision=bf16"},
                                   dir, "DNNL_MAX_CPU_ISA=AVX512_CORE ");
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.err.find("c.yaml with the command line's settings: 'training.precision' bf16 "
                             "cannot run here: with DNNL_MAX_CPU_ISA=AVX512_CORE, oneDNN may use "
                             "neither AVX512_BF16 nor AMX-BF16"),
            std::string::npos)
      << refused.err;
  EXPECT_FALSE(std::filesystem::exists(dir.File("no")));
  if (!nn::Bf16Unavailable().empty()) {
    GTEST_SKIP() << "no bf16 products here: " << nn::Bf16Unavailable();
  }
  const CliResult bf16 = RunCli({"train", "--config", config, "--output-dir", dir.File("bf16"),
                                 "--set", "training.precision=bf16"},
                                dir);
  ASSERT_EQ(bf16.code, 0) << bf16.err;
  EXPECT_NE(bf16.out.find("training products in bf16 (oneDNN: "), std::string::npos) << bf16.out;
  const Outputs fp32 = TrainWith(dir, config, 1);
  std::string run;
  for (const auto& entry : std::filesystem::directory_iterator(dir.File("bf16"))) {
    run = entry.path().string();
  }
  const std::string metrics = ReadBytes(run + "/metrics.csv");
  EXPECT_NE(metrics, fp32.metrics) << "bf16 trained exactly as fp32";
  // The last epoch's training loss (the second column): within 2% of fp32's.
  const auto loss = [](const std::string& csv) {
    const std::string last = Lines(csv).back();
    const size_t a = last.find(',');
    return std::stod(last.substr(a + 1, last.find(',', a + 1) - a - 1));
  };
  EXPECT_NEAR(loss(metrics), loss(fp32.metrics), 0.02 * loss(fp32.metrics));
}

}  // namespace
}  // namespace twotower
