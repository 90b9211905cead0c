// The Parquet paths of the commands, run as a user would: the lab's data as Parquet trains to
// the same numbers as its CSV twin, convert round-trips, and the Parquet outputs (embeddings,
// batch recommendations) carry what the CSV / .npy outputs carry.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <filesystem>
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
using testing::OnlyEntry;
using testing::ReadBytes;
using testing::RunCli;
using testing::TempDir;

class ParquetCliTest : public ::testing::Test {
 protected:
  CliResult Run(const std::vector<std::string>& args) { return RunCli(args, dir_); }

  // Generates the lab's data in `format` and trains 2 epochs of a small model on it; returns the
  // run folder.
  std::string GenerateAndTrain(const std::string& format) {
    const std::string data = dir_.File("data_" + format);
    const CliResult g = Run({"generate", "--out", data, "--users", "150", "--movies", "80",
                             "--interactions", "1500", "--seed", "9", "--format", format});
    EXPECT_EQ(g.code, 0) << g.err;
    const std::string x = format == "parquet" ? ".parquet" : ".csv";
    EXPECT_TRUE(std::filesystem::exists(data + "/train/interactions" + x));
    const std::string runs = dir_.File("runs_" + format);
    const CliResult t = Run({"train",
                             "--config",
                             std::string(TWOTOWER_SOURCE_DIR) + "/config/ranking_config.yaml",
                             "--set",
                             "data.dir=" + data,
                             "--set",
                             "data.users=users" + x,
                             "--set",
                             "data.items=movies" + x,
                             "--set",
                             "data.train=train/interactions" + x,
                             "--set",
                             "data.val=val/interactions" + x,
                             "--set",
                             "data.test=test/interactions" + x,
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
                             "4",
                             "--quiet",
                             "--output-dir",
                             runs});
    EXPECT_EQ(t.code, 0) << t.out << t.err;
    return OnlyEntry(runs);
  }

  TempDir dir_;
};

TEST_F(ParquetCliTest, TheLabsDataAsParquetTrainsToTheSameMetricsAsItsCsvTwin) {
  const std::string csv_run = GenerateAndTrain("csv");
  const std::string parquet_run = GenerateAndTrain("parquet");
  ASSERT_FALSE(csv_run.empty());
  ASSERT_FALSE(parquet_run.empty());
  EXPECT_EQ(ReadBytes(parquet_run + "/metrics.csv"), ReadBytes(csv_run + "/metrics.csv"));
  // test_metrics.json is the same but for its wall-clock train_seconds line.
  auto without_time = [](const std::string& text) {
    std::string out;
    for (const std::string& line : Lines(text)) {
      if (line.find("train_seconds") == std::string::npos) out += line + "\n";
    }
    return out;
  };
  EXPECT_EQ(without_time(ReadBytes(parquet_run + "/test_metrics.json")),
            without_time(ReadBytes(csv_run + "/test_metrics.json")));

  // Batch recommendations as Parquet hold the CSV's rows (scores as FLOAT, the CSV's rounded).
  const std::string model = parquet_run + "/model_best.safetensors";
  ASSERT_EQ(Run({"recommend", "--model", model, "--all-users", "--k", "3", "--out",
                 dir_.File("recs.csv"), "--quiet"})
                .code,
            0);
  ASSERT_EQ(Run({"recommend", "--model", model, "--all-users", "--k", "3", "--out",
                 dir_.File("recs.parquet"), "--quiet"})
                .code,
            0);
  ASSERT_EQ(Run({"convert", dir_.File("recs.parquet"), dir_.File("recs_back.csv")}).code, 0);
  const std::vector<std::string> a = Lines(ReadBytes(dir_.File("recs.csv")));
  const std::vector<std::string> b = Lines(ReadBytes(dir_.File("recs_back.csv")));
  ASSERT_EQ(a.size(), 1u + 150u * 3u);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(a[0], b[0]);
  for (size_t i = 1; i < a.size(); ++i) {
    const auto fa = Fields(a[i], ','), fb = Fields(b[i], ',');
    ASSERT_EQ(fa.size(), 4u);
    ASSERT_EQ(fb.size(), 4u);
    EXPECT_EQ(fa[0] + fa[1] + fa[2], fb[0] + fb[1] + fb[2]) << i;
    EXPECT_NEAR(std::stod(fa[3]), std::stod(fb[3]), 6e-7) << i;
  }

  // Embeddings as Parquet build the same index as .npy + ids.
  ASSERT_EQ(Run({"embed", "--model", model, "--out", dir_.File("e.npy")}).code, 0);
  const CliResult e = Run({"embed", "--model", model, "--out", dir_.File("e.parquet")});
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_THAT(e.out, HasSubstr("80 rows: item_id, e0 .. e7"));
  ASSERT_EQ(Run({"index", "build", "--embeddings", dir_.File("e.npy"), "--out",
                 dir_.File("a.index"), "--quiet"})
                .code,
            0);
  ASSERT_EQ(Run({"index", "build", "--embeddings", dir_.File("e.parquet"), "--out",
                 dir_.File("b.index"), "--quiet"})
                .code,
            0);
  EXPECT_EQ(ReadBytes(dir_.File("a.index")), ReadBytes(dir_.File("b.index")));
}

TEST_F(ParquetCliTest, ConvertRoundTripsAndRefusesBadInput) {
  const std::string csv = dir_.Write(
      "t.csv", "id,name,score,n\n1,\"a,b\",0.5,\n2,h\xc3\xa9llo,1000,7\n3,\"q\"\"uote\",-2,8\n");
  for (const std::string codec : {"snappy", "zstd", "gzip", "none"}) {
    const CliResult w = Run(
        {"convert", csv, dir_.File("t.parquet"), "--compression", codec, "--row-group-rows", "2"});
    ASSERT_EQ(w.code, 0) << w.err;
    EXPECT_EQ(w.out, "wrote " + dir_.File("t.parquet") + ": 3 rows\n");
    ASSERT_EQ(Run({"convert", dir_.File("t.parquet"), dir_.File("back.csv")}).code, 0);
    EXPECT_EQ(ReadBytes(dir_.File("back.csv")), ReadBytes(csv)) << codec;
  }
  const CliResult bad_codec = Run({"convert", csv, dir_.File("x.parquet"), "--compression", "lz4"});
  EXPECT_EQ(bad_codec.code, 1);
  EXPECT_THAT(bad_codec.err,
              HasSubstr("--compression: unknown compression \"lz4\" (expected: snappy, zstd, gzip, "
                        "none)"));
  const std::string fake = dir_.Write("fake.parquet", "id\n1\n2\n3\n4\n5\n6\n");
  const CliResult not_parquet = Run({"convert", fake, dir_.File("y.csv")});
  EXPECT_EQ(not_parquet.code, 1);
  EXPECT_THAT(not_parquet.err, HasSubstr(fake + ": not a Parquet file"));
  EXPECT_FALSE(std::filesystem::exists(dir_.File("y.csv")));
  // Blanks at either end of a value survive Parquet -> CSV -> Parquet (they are quoted).
  const std::string blanks = dir_.Write("b.csv", "k,v\n1,\"trail \"\n2,\"\t\"\n");
  ASSERT_EQ(Run({"convert", blanks, dir_.File("b.parquet")}).code, 0);
  ASSERT_EQ(Run({"convert", dir_.File("b.parquet"), dir_.File("b2.csv")}).code, 0);
  EXPECT_EQ(ReadBytes(dir_.File("b2.csv")), ReadBytes(blanks));
  const CliResult csv_flags =
      Run({"convert", dir_.File("b.parquet"), dir_.File("c.csv"), "--compression", "zstd"});
  EXPECT_EQ(csv_flags.code, 1);
  EXPECT_THAT(csv_flags.err,
              HasSubstr("--compression and --row-group-rows apply to Parquet output"));
  // Output onto a FIFO is refused, not replaced by a file.
  const std::string fifo = dir_.File("fifo.csv");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  const CliResult to_fifo = Run({"convert", dir_.File("b.parquet"), fifo});
  EXPECT_EQ(to_fifo.code, 1);
  EXPECT_THAT(to_fifo.err, HasSubstr("exists and is not a regular file"));
  EXPECT_FALSE(std::filesystem::is_regular_file(fifo));
  // Output through a symbolic link replaces the file it names and keeps the link.
  const std::string real = dir_.Write("real.csv", "old\n");
  std::filesystem::create_symlink(real, dir_.File("link.csv"));
  ASSERT_EQ(Run({"convert", dir_.File("b.parquet"), dir_.File("link.csv")}).code, 0);
  EXPECT_TRUE(std::filesystem::is_symlink(dir_.File("link.csv")));
  EXPECT_EQ(ReadBytes(real), ReadBytes(blanks));

  const CliResult bad_format = Run({"generate", "--out", dir_.File("g"), "--format", "orc"});
  EXPECT_EQ(bad_format.code, 1);
  EXPECT_THAT(bad_format.err,
              HasSubstr("--format: unknown format \"orc\" (expected: csv, parquet)"));
}

}  // namespace
}  // namespace twotower
