// `data interactions`: small logs written here in each accepted form, imported and read back with
// the table reader (an independent path: ReadTable, not the importer's writer).
#include "twotower/data/importer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "testing/temp_dir.h"
#include "twotower/core/error.h"
#include "twotower/data/csv.h"
#include "twotower/data/dataset.h"
#include "twotower/train/config.h"

namespace twotower::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using twotower::testing::ErrorMessage;
using twotower::testing::ReadBytes;
using twotower::testing::TempDir;

// (user, item) -> the row's other columns, over the three splits.
std::map<std::string, std::map<std::string, std::string>> ReadSplits(
    const TempDir& dir, const std::string& ext, std::map<std::string, int>* per_split) {
  std::map<std::string, std::map<std::string, std::string>> rows;
  for (const char* split : {"train", "val", "test"}) {
    const Table t = ReadTable(dir.File(std::string("out/") + split + "/interactions" + ext));
    (*per_split)[split] = static_cast<int>(t.num_rows());
    for (int64_t r = 0; r < t.num_rows(); ++r) {
      std::map<std::string, std::string> row;
      for (size_t c = 0; c < t.columns.size(); ++c) row[t.columns[c]] = t.cells[c][r];
      row["split"] = split;
      rows[t.Column(t.columns[0])[r] + "|" + t.Column(t.columns[1])[r]] = row;
    }
  }
  return rows;
}

TEST(ImporterTest, HeaderlessTsvWithNamesIsSplitIntoAPartitionAndEveryUserTrains) {
  TempDir dir;
  // 6 users x 5 items, u.data's form (user \t item \t rating \t time), no header.
  std::string log;
  for (int u = 1; u <= 6; ++u) {
    for (int i = 1; i <= 5; ++i) {
      log += std::to_string(u) + "\t" + std::to_string(10 + (u + i) % 7) + "\t" +
             std::to_string(1 + (u * i) % 5) + "\t" + std::to_string(1000 * i + u) + "\n";
    }
  }
  dir.Write("u.data", log);
  ImportOptions o;
  o.interactions = dir.File("u.data");
  o.delimiter = "tab";
  o.names = {"user_id", "item_id", "rating", "timestamp"};
  o.rating = "rating";
  o.timestamp = "timestamp";
  o.positive = "rating>=4";
  o.split.seed = 5;
  o.split.val = 0.2;
  o.split.test = 0.2;
  const ImportSummary s = ImportInteractions(dir.File("out"), o);
  EXPECT_EQ(s.rows, 30);
  EXPECT_EQ(s.users, 6);
  EXPECT_EQ(s.train + s.val + s.test, 30);
  std::map<std::string, int> per_split;
  const auto rows = ReadSplits(dir, ".csv", &per_split);
  ASSERT_EQ(rows.size(), 30u);  // each pair once, in one split
  EXPECT_EQ(per_split["train"], s.train);
  std::set<std::string> trained_users;
  int positives = 0;
  for (const auto& [key, row] : rows) {
    // The label follows the rating: rating >= 4, by hand from the written rating.
    EXPECT_EQ(row.at("label"), std::stod(row.at("rating")) >= 4 ? "1" : "0") << key;
    positives += row.at("label") == "1";
    if (row.at("split") == "train") trained_users.insert(row.at("user_id"));
  }
  EXPECT_EQ(positives, s.positives);
  EXPECT_EQ(trained_users.size(), 6u);
  // The config: no tables (ids from the interactions), the columns named, and it loads.
  const train::Config c = train::Config::FromYamlFile(dir.File("out/twotower.yaml"));
  EXPECT_EQ(c.users, "");
  EXPECT_EQ(c.items, "");
  EXPECT_EQ(c.features.item.id_column, "item_id");
  EXPECT_EQ(c.training.loss, "softmax");
  const Dataset d = LoadDataset(c.ResolvedPaths(), c.features);
  EXPECT_EQ(d.users.num_rows(), 6);
  // (LoadDataset releases the tables' cells: the ids stay in the entity index.)
  std::set<std::string> items(d.item_index.ids.begin(), d.item_index.ids.end());
  std::set<std::string> expected;
  for (int u = 1; u <= 6; ++u) {
    for (int i = 1; i <= 5; ++i) expected.insert(std::to_string(10 + (u + i) % 7));
  }
  EXPECT_EQ(items, expected);
  EXPECT_EQ(d.train.size() + d.val.size() + d.test.size(), 30);
}

// 16 rows of 4 other listeners (one play each), so that every split has rows.
std::string Filler() {
  std::string rows;
  for (int u = 0; u < 4; ++u) {
    for (int k = 0; k < 4; ++k) {
      rows += "x" + std::to_string(u) + ",a" + std::to_string(k) + ",1," + std::to_string(10 + k) +
              "\n";
    }
  }
  return rows;
}

// A play-count log with string ids and repeated pairs.
void WritePlays(const TempDir& dir) {
  dir.Write("plays.csv",
            "listener,artist,plays,when\n"
            "ann,The Band,3,100\n"
            "bob,The Band,1,101\n"
            "ann,\"Crosby, Stills\",2,102\n"
            "ann,The Band,4,150\n"  // again: line 5 repeats line 2
            "cid,Nico,1,90\n"
            "bob,Nico,7,95\n" +
                Filler());
}

TEST(ImporterTest, RepeatedPairsAreRefusedNamingBothLinesOrSummed) {
  TempDir dir;
  WritePlays(dir);
  ImportOptions o;
  o.interactions = dir.File("plays.csv");
  o.user = "listener";
  o.item = "artist";
  o.weight = "plays";
  o.timestamp = "when";
  EXPECT_THAT(ErrorMessage([&] { ImportInteractions(dir.File("out"), o); }),
              HasSubstr(dir.File("plays.csv") + ":5: user \"ann\" and item \"The Band\" again "
                                                "(first on line 2): pass --duplicates sum"));
  o.duplicates = "sum";
  o.positive = "plays>=3";
  o.split.val = 0.0;
  o.split.test = 0.2;
  const ImportSummary s = ImportInteractions(dir.File("out"), o);
  EXPECT_EQ(s.rows, 22);
  EXPECT_EQ(s.merged, 1);
  EXPECT_EQ(s.interactions, 21);
  std::map<std::string, int> per_split;
  const auto rows = ReadSplits(dir, ".csv", &per_split);
  ASSERT_EQ(rows.size(), 21u);
  const auto& band = rows.at("ann|The Band");
  EXPECT_EQ(band.at("plays"), "7");   // 3 + 4
  EXPECT_EQ(band.at("when"), "150");  // the latest
  EXPECT_EQ(band.at("label"), "1");   // 7 >= 3 on the summed weight
  EXPECT_EQ(rows.at("bob|The Band").at("label"), "0");
  EXPECT_EQ(rows.at("ann|Crosby, Stills").at("label"), "0");
  EXPECT_EQ(rows.at("bob|Nico").at("label"), "1");
  EXPECT_EQ(s.positives, 2);
  const std::string yaml = ReadBytes(dir.File("out/twotower.yaml"));
  EXPECT_THAT(yaml, HasSubstr("user_id: listener"));
  EXPECT_THAT(yaml, HasSubstr("item_id: artist"));
}

TEST(ImporterTest, AnItemsTablesColumnsBecomeFeaturesWithInferredTypes) {
  TempDir dir;
  std::string log = "user_id,item_id\n";
  std::string items = "item_id,title,genres,year,price\n";
  for (int i = 0; i < 40; ++i) {
    items += "i" + std::to_string(i) + ",Title " + std::to_string(i) + "," +
             (i % 2 ? "Rock|Pop" : "Jazz") + "," + std::to_string(1990 + i % 3) + "," +
             std::to_string(i) + ".5\n";
  }
  for (int u = 0; u < 10; ++u) {
    for (int k = 0; k < 4; ++k)
      log += "u" + std::to_string(u) + ",i" + std::to_string(u * 3 + k) + "\n";
  }
  dir.Write("log.csv", log);
  dir.Write("items.csv", items);
  ImportOptions o;
  o.interactions = dir.File("log.csv");
  o.items = dir.File("items.csv");
  const ImportSummary s = ImportInteractions(dir.File("out"), o);
  ASSERT_EQ(s.item_features.size(), 4u);
  std::map<std::string, std::string> types;
  for (const InferredFeature& f : s.item_features) types[f.column] = f.type;
  EXPECT_EQ(types["title"], "");  // one per row: not a feature
  EXPECT_EQ(types["genres"], "multi_hot");
  EXPECT_EQ(types["year"], "categorical");  // 3 integer codes over 40 rows
  EXPECT_EQ(types["price"], "numeric");
  EXPECT_EQ(s.catalogue_items, 40);
  const train::Config c = train::Config::FromYamlFile(dir.File("out/twotower.yaml"));
  EXPECT_EQ(c.items, "items.csv");
  ASSERT_EQ(c.features.item.features.size(), 4u);  // the id, genres, year, price
  EXPECT_EQ(c.features.item.features[1].column, "genres");
  EXPECT_TRUE(c.model.projection);  // more than the id: a Linear to the embedding
  const Dataset d = LoadDataset(c.ResolvedPaths(), c.features);
  EXPECT_EQ(d.items.num_rows(), 40);  // the whole catalogue, not only the items in the log

  // Given types override; an item missing from the table is refused at its line.
  o.item_features = "year:numeric";
  const ImportSummary given = ImportInteractions(dir.File("out2"), o);
  ASSERT_EQ(given.item_features.size(), 1u);
  EXPECT_EQ(given.item_features[0].type, "numeric");
  dir.Write("log.csv", log + "u1,i999\n");
  EXPECT_THAT(
      ErrorMessage([&] { ImportInteractions(dir.File("out3"), o); }),
      HasSubstr(dir.File("log.csv") + ":42: item \"i999\" is not in " + dir.File("items.csv")));
}

TEST(ImporterTest, BadInputIsRefusedNamingTheLineAndColumn) {
  TempDir dir;
  ImportOptions o;
  o.interactions = dir.File("log.tsv");
  dir.Write("log.tsv", "user_id\titem_id\tw\n1\t2\t1\n1\t3\t1\t9\n");
  EXPECT_THAT(ErrorMessage([&] { ImportInteractions(dir.File("out"), o); }),
              HasSubstr(dir.File("log.tsv") + ":3: expected 3 fields separated by tabs, got 4"));
  dir.Write("log.tsv", "user_id\titem_id\tw\n1\t2\t-1\n");
  o.weight = "w";
  EXPECT_THAT(
      ErrorMessage([&] { ImportInteractions(dir.File("out"), o); }),
      HasSubstr(dir.File("log.tsv") + ":2: column 'w': expected a weight >= 0, got \"-1\""));
  dir.Write("log.tsv", "user_id\titem_id\tw\n\t2\t1\n");
  EXPECT_THAT(
      ErrorMessage([&] { ImportInteractions(dir.File("out"), o); }),
      HasSubstr(":2: column 'user_id': expected an id of 1 to 1024 bytes, got an empty cell"));
  dir.Write("log.tsv", "user_id\titem_id\tw\n1\t2\tmany\n");
  EXPECT_THAT(ErrorMessage([&] { ImportInteractions(dir.File("out"), o); }),
              HasSubstr(":2: column 'w': expected a number, got \"many\""));
  dir.Write("log.tsv", "user_id\titem_id\tw\n1\t2\t1\n");
  o.positive = "w=>1";
  EXPECT_THAT(ErrorMessage([&] { ImportInteractions(dir.File("out"), o); }),
              HasSubstr("--positive: expected"));
  o.positive = "w>5";
  EXPECT_THAT(ErrorMessage([&] { ImportInteractions(dir.File("out"), o); }),
              HasSubstr("--positive: no row is a positive under w > 5"));
  o.positive = "all";
  o.split.split = "user-temporal";
  EXPECT_THAT(ErrorMessage([&] { ImportInteractions(dir.File("out"), o); }),
              HasSubstr("--split user-temporal: needs --timestamp"));
  o.split.split = "random";
  o.item = "artist";
  EXPECT_THAT(ErrorMessage([&] { ImportInteractions(dir.File("out"), o); }),
              HasSubstr("--item: " + dir.File("log.tsv") +
                        " has no column \"artist\" (found: user_id, item_id, w)"));
  o.item = "item_id";
  o.duplicates = "keep";
  EXPECT_THAT(ErrorMessage([&] { ImportInteractions(dir.File("out"), o); }),
              HasSubstr("--duplicates: expected refuse or sum"));
}

// A tab-separated row with fewer fields than the header or --names is refused naming its line,
// as a longer one is: it was padded with empty fields (and a --names list longer than the rows
// was accepted). A row whose last fields are empty keeps its tabs and is whole.
TEST(ImporterTest, AShortTabSeparatedRowOrTooManyNamesIsRefused) {
  TempDir dir;
  ImportOptions o;
  o.interactions = dir.File("log.tsv");
  o.delimiter = "tab";
  o.names = {"u", "i", "r", "t"};
  o.user = "u";
  o.item = "i";
  dir.Write("log.tsv", "1\t2\t4\t100\n1\t3\t4\n2\t2\t5\t101\n");
  EXPECT_THAT(ErrorMessage([&] { ImportInteractions(dir.File("out"), o); }),
              HasSubstr(dir.File("log.tsv") + ":2: expected 4 fields separated by tabs, got 3"));
  dir.Write("log.tsv", "1\t2\t4\t100\n2\t3\t5\t101\n");
  o.names = {"u", "i", "r", "t", "x"};
  EXPECT_THAT(ErrorMessage([&] { ImportInteractions(dir.File("out"), o); }),
              HasSubstr(dir.File("log.tsv") + ":1: expected 5 fields separated by tabs, got 4"));
  // Empty last fields, with their tabs (and trailing spaces after them), are a whole row.
  o.names = {"u", "i", "r", "t"};
  std::string log;
  for (int u = 1; u <= 4; ++u) {
    for (int i = 1; i <= 4; ++i) log += std::to_string(u) + "\t" + std::to_string(i) + "\t\t \n";
  }
  dir.Write("log.tsv", log);
  EXPECT_NO_THROW(ImportInteractions(dir.File("out"), o));
  // A trailing tab after the last column (header or rows) names and holds nothing: accepted.
  o.names.clear();
  log = "u\ti\tr\tt\t\n";
  for (int u = 1; u <= 4; ++u) {
    for (int i = 1; i <= 4; ++i) log += std::to_string(u) + "\t" + std::to_string(i) + "\t4\t9\t\n";
  }
  dir.Write("log.tsv", log);
  EXPECT_NO_THROW(ImportInteractions(dir.File("out"), o));
}

TEST(ImporterTest, InferFeatureReadsTheCellsAsDocumented) {
  EXPECT_EQ(InferFeature("x", {"1.5", "2", "", "3.25"}).type, "numeric");
  EXPECT_EQ(InferFeature("x", {"a|b", "c", "b"}).type, "multi_hot");
  EXPECT_EQ(InferFeature("x", {"a", "b", "a", "b"}).type, "categorical");
  EXPECT_EQ(InferFeature("x", {"a", "b", "c", "d"}).type, "");
  EXPECT_EQ(InferFeature("x", {"7", "7", "7"}).type, "");
  EXPECT_EQ(InferFeature("x", {"", "NA"}).type, "");
}

// Without a table a tower can only be its id: loading says which table a feature needs.
TEST(ImporterTest, ATowerWithFeaturesButNoTableIsRefused) {
  TempDir dir;
  const std::string log = dir.Write("t.csv", "u,i,l\n1,2,1\n");
  const train::Config c = train::Config::FromYamlString(
      "features:\n  user_id: u\n  item_id: i\n  label: l\n"
      "  user:\n    - {column: u, type: id}\n    - {column: age, type: numeric}\n"
      "  item:\n    - {column: i, type: id}\n",
      "c.yaml");
  EXPECT_THAT(ErrorMessage([&] {
                LoadDataset({"", "", log, log, log}, c.features);
              }),
              HasSubstr("data.users: not set, so the user tower can only be its id ('u'); its "
                        "feature 'age' needs a users table: set data.users"));
}

// config/retrieval.yaml is the recipe the importer writes (for a log without tables or weights).
TEST(ImporterTest, TheRepositorysRetrievalConfigIsTheImportersRecipe) {
  TempDir dir;
  dir.Write("log.csv", "user_id,item_id\n1,2\n1,3\n2,3\n2,4\n3,4\n3,2\n");
  ImportOptions o;
  o.interactions = dir.File("log.csv");
  o.split.val = 0.2;
  o.split.test = 0.2;
  ImportInteractions(dir.File("out"), o);
  train::Config written = train::Config::FromYamlFile(dir.File("out/twotower.yaml"));
  train::Config shipped =
      train::Config::FromYamlFile(std::string(TWOTOWER_SOURCE_DIR) + "/config/retrieval.yaml");
  shipped.data_dir = written.data_dir;
  shipped.run_name = written.run_name;
  EXPECT_EQ(shipped.ToYaml(), written.ToYaml());
}

// A user-temporal split gets the recipe's user-history feature (the MovieLens preset's).
TEST(ImporterTest, AUserTemporalSplitReadsTheUsersHistory) {
  TempDir dir;
  std::string log = "u,i,t\n";
  for (int u = 0; u < 5; ++u) {
    for (int k = 0; k < 6; ++k) {
      log += std::to_string(u) + "," + std::to_string((u + k) % 8) + "," + std::to_string(k) + "\n";
    }
  }
  dir.Write("log.csv", log);
  ImportOptions o;
  o.interactions = dir.File("log.csv");
  o.user = "u";
  o.item = "i";
  o.timestamp = "t";
  o.split.split = "user-temporal";
  const ImportSummary s = ImportInteractions(dir.File("out"), o);
  EXPECT_EQ(s.test, 5);  // each user's latest row
  const train::Config c = train::Config::FromYamlFile(dir.File("out/twotower.yaml"));
  EXPECT_TRUE(c.features.user.history.enabled());
  EXPECT_EQ(c.features.timestamp_column, "t");
  EXPECT_TRUE(c.model.projection);
}

}  // namespace
}  // namespace twotower::data
