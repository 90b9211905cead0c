#include "twotower/app/app.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <limits>
#include <string>
#include <vector>

#include "testing/temp_dir.h"
#include "twotower/app/train.h"
#include "twotower/core/error.h"
#include "twotower/data/generator.h"
#include "twotower/data/npy.h"

namespace twotower::app {
namespace {

using twotower::testing::TempDir;

// Issue 12, fault 3: an ids file with a byte-order mark put it into the first id, which then
// matched no movie. The ids file is read as every text file is (core/text.h).
TEST(ReadItemEmbeddingsTest, IdsMeanTheSameHoweverTheFileWasWritten) {
  TempDir dir;
  Matrix v(3, 2);
  v << 1, 2, 3, 4, 5, 6;
  const std::string npy = dir.File("e.npy");
  data::WriteNpy(npy, v);
  const std::vector<std::string> expected = {"10", "20", "30"};
  for (const char* text : {"10\n20\n30\n",
                           "\xEF\xBB\xBF"
                           "10\r\n20\r\n30\r\n",
                           "10\r20\r30", "10 \n20\t\n30\n\n\n"}) {
    dir.Write("e.ids.txt", text);
    EXPECT_EQ(ReadItemEmbeddings(npy).ids, expected) << ::testing::PrintToString(text);
  }
  // With `twotower embed`'s first line, after a byte-order mark and with CR LF, too.
  WriteItemEmbeddings(npy, v, expected, "");
  std::string written = ::twotower::testing::ReadBytes(IdsPath(npy));
  std::string crlf = "\xEF\xBB\xBF";
  for (char c : written) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  dir.Write("e.ids.txt", crlf);
  EXPECT_EQ(ReadItemEmbeddings(npy).ids, expected);
}

// Issue 12, fault 2's kind: values from a file are checked where they enter, naming the file.
TEST(ReadItemEmbeddingsTest, NonFiniteValuesAreRefusedNamingFileRowAndId) {
  TempDir dir;
  Matrix v(2, 2);
  v << 1, 2, 3, std::numeric_limits<float>::quiet_NaN();
  const std::string npy = dir.File("e.npy");
  data::WriteNpy(npy, v);
  dir.Write("e.ids.txt", "a\nb\n");
  EXPECT_THAT([&] { ReadItemEmbeddings(npy); },
              ::testing::ThrowsMessage<Error>(::testing::StrEq(
                  npy + ": row 2 (id \"b\"): value at dimension 1 is NaN, expected finite "
                        "embeddings")));
}

}  // namespace
}  // namespace twotower::app

namespace twotower::app {
namespace {

// Training sets the process's thread count for its own work and puts it back afterwards: a
// Python session that trains and then searches searches with the threads it had (the module's
// first benchmark searched with the training's 2 threads without asking).
// A tower output that overflowed (a feature value far outside the training range) is refused
// naming the item, before it is written or indexed.
TEST(RequireFiniteRowsTest, NamesTheFirstItemWhoseVectorIsNotFinite) {
  Matrix v = Matrix::Ones(3, 2);
  EXPECT_NO_THROW(RequireFiniteRows(v, {"a", "b", "c"}, "items.csv"));
  v(1, 1) = std::numeric_limits<float>::quiet_NaN();
  v(2, 0) = std::numeric_limits<float>::infinity();
  try {
    RequireFiniteRows(v, {"a", "b", "c"}, "items.csv");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), ::testing::HasSubstr("items.csv: item \"b\": the item tower's output "
                                               "is not finite"));
  }
}

TEST(TrainTest, LeavesTheProcesssThreadCountAsItFoundIt) {
  TempDir dir;
  data::GeneratorOptions g;
  g.users = 60;
  g.movies = 40;
  g.interactions = 600;
  data::GenerateLabData(g, dir.File("data"));
  omp_set_num_threads(1);
  TrainRequest r;
  r.config_path = std::string(TWOTOWER_SOURCE_DIR) + "/config/ranking_config.yaml";
  r.progress = false;
  const std::vector<std::string> settings = {"data.dir=" + dir.File("data"),
                                             "output.dir=" + dir.File("runs"), "training.epochs=1",
                                             "threads=2", "model.embedding_dim=8"};
  for (const std::string& s : settings) r.settings.emplace_back(s, "test");
  const TrainOutcome out = Train(r, nullptr);
  EXPECT_FALSE(out.run_dir.empty());
  EXPECT_EQ(omp_get_max_threads(), 1);
}

}  // namespace
}  // namespace twotower::app
