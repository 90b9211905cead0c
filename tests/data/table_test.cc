// TableReader / TableWriter: one interface over CSV and Parquet. Expected values are written by
// hand (the file's text, its line numbers), not taken from the code under test.
#include "twotower/data/table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "testing/temp_dir.h"
#include "twotower/core/error.h"
#include "twotower/data/dataset.h"

namespace twotower::data {
namespace {

using ::testing::HasSubstr;
using twotower::testing::ErrorMessage;
using twotower::testing::TempDir;

// Every row of the requested columns as text, and each row's Where(), batch by batch.
struct ReadBack {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> where;
  std::vector<int64_t> batch_rows;
};

ReadBack ReadAll(const std::string& path, const std::vector<std::string>& names) {
  const std::unique_ptr<TableReader> reader = TableReader::Open(path);
  std::vector<int> wanted;
  for (const std::string& n : names) wanted.push_back(reader->RequireColumn(n));
  ReadBack out;
  std::vector<ParquetColumn> batch;
  for (int64_t n = 0; (n = reader->Next(wanted, &batch)) > 0;) {
    out.batch_rows.push_back(n);
    for (int64_t r = 0; r < n; ++r) {
      std::vector<std::string> row;
      for (const ParquetColumn& c : batch) row.push_back(c.Text(r));
      out.rows.push_back(row);
      out.where.push_back(reader->Where(r));
    }
  }
  return out;
}

TEST(TableFormatTest, TheSuffixPicksTheFormat) {
  EXPECT_EQ(TableFormatOf("a/b.parquet"), TableFormat::kParquet);
  EXPECT_EQ(TableFormatOf("a/b.PARQUET"), TableFormat::kParquet);
  EXPECT_EQ(TableFormatOf("a/b.csv"), TableFormat::kCsv);
  EXPECT_EQ(TableFormatOf("a/b.tsv"), TableFormat::kCsv);
  EXPECT_EQ(TableFormatOf("parquet"), TableFormat::kCsv);
}

// A .tsv or .tab table would be read as CSV, each row one field under a header of one column
// named after the whole header line (`convert plays.tsv plays.parquet` wrote such a file): both
// directions are refused, naming the file.
TEST(TableFormatTest, TabSeparatedNamesAreRefusedForReadingAndWriting) {
  TempDir dir;
  const std::string tsv = dir.Write("plays.TSV", "user\titem\nu1\ti1\n");
  EXPECT_THAT([&] { TableReader::Open(tsv); },
              ::testing::ThrowsMessage<Error>(
                  HasSubstr("plays.TSV: tab-separated by its name, but tables are read as CSV")));
  EXPECT_THAT([&] { TableReader::Open(dir.Write("t.tab", "a\n1\n")); },
              ::testing::ThrowsMessage<Error>(HasSubstr("t.tab: tab-separated by its name")));
  EXPECT_THAT([&] { TableWriter::Open(dir.File("out.tsv"), {}); },
              ::testing::ThrowsMessage<Error>(
                  HasSubstr("out.tsv: tab-separated by its name, but tables are written as CSV")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("out.tsv")));
}

TEST(TableReaderTest, CsvAndParquetGiveTheSameRowsAndNameThemTheirOwnWay) {
  TempDir dir;
  // Line 3 holds a quoted field with a line break: the next record starts on line 5.
  const std::string csv =
      dir.Write("t.csv", "id,name,n\na,x,1\nb,\"two\nlines\",2\nc,z,3\nd,w,4\n");
  const ReadBack c = ReadAll(csv, {"n", "id"});
  ASSERT_EQ(c.rows.size(), 4u);
  EXPECT_EQ(c.rows[1], (std::vector<std::string>{"2", "b"}));
  EXPECT_EQ(c.rows[3], (std::vector<std::string>{"4", "d"}));
  EXPECT_EQ(c.where, (std::vector<std::string>{csv + ":2", csv + ":3", csv + ":5", csv + ":6"}));

  // The same rows as Parquet in row groups of 3 and 1 rows (n is INT64 there).
  ParquetWriteOptions options;
  options.row_group_rows = 3;
  const std::string pq = dir.File("t.parquet");
  ConvertTable(csv, pq, options);
  const ReadBack p = ReadAll(pq, {"n", "id"});
  EXPECT_EQ(p.rows, c.rows);
  EXPECT_EQ(p.batch_rows, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(p.where, (std::vector<std::string>{pq + ": row 1", pq + ": row 2", pq + ": row 3",
                                               pq + ": row 4"}));
  EXPECT_EQ(ReadAll(pq, {"name"}).rows[1][0], "two\nlines");

  for (const std::string& path : {csv, pq}) {
    EXPECT_THAT(ErrorMessage([&] { TableReader::Open(path)->RequireColumn("age"); }),
                HasSubstr(path + ": missing column 'age' (found: id, name, n)"));
  }
}

TEST(TableReaderTest, CsvComesInBatchesAndLinesRunOnAcrossThem) {
  TempDir dir;
  const int64_t n = 2 * TableReader::kCsvBatchRows + 5;
  std::string text = "k\n";
  for (int64_t i = 0; i < n; ++i) text += std::to_string(i) + "\n";
  const ReadBack b = ReadAll(dir.Write("k.csv", text), {"k"});
  EXPECT_EQ(b.batch_rows,
            (std::vector<int64_t>{TableReader::kCsvBatchRows, TableReader::kCsvBatchRows, 5}));
  ASSERT_EQ(static_cast<int64_t>(b.rows.size()), n);
  // Row i (from 0) is on line i + 2 and holds i.
  for (int64_t i : {int64_t{0}, TableReader::kCsvBatchRows, n - 1}) {
    EXPECT_EQ(b.rows[i][0], std::to_string(i));
    EXPECT_EQ(b.where[i], dir.File("k.csv") + ":" + std::to_string(i + 2));
  }
}

TEST(TableWriterTest, BothFormatsReadBackAsTheSameTextTable) {
  TempDir dir;
  TypedTable t;
  ParquetColumn& id = t.AddColumn("id", ParquetType::kString);
  id.strings = {"a,b", "c"};
  id.string_index = {0, 1};
  ParquetColumn& x = t.AddColumn("x", ParquetType::kDouble, true);
  x.doubles = {0.5, 0.0};
  x.valid = {1, 0};
  for (const char* name : {"w.csv", "w.parquet"}) {
    const std::string path = dir.File(name);
    const std::unique_ptr<TableWriter> w = TableWriter::Open(path, t.specs);
    w->Write(t.columns);
    w->Write(t.columns);  // two writes: rows are appended
    w->Close();
    const Table back = ReadTable(path);
    EXPECT_EQ(back.columns, (std::vector<std::string>{"id", "x"}));
    EXPECT_EQ(back.cells[0], (std::vector<std::string>{"a,b", "c", "a,b", "c"})) << name;
    EXPECT_EQ(back.cells[1], (std::vector<std::string>{"0.5", "", "0.5", ""})) << name;
  }
}

TEST(TableReaderTest, InteractionsOverManyCsvBatchesNameTheRightLine) {
  TempDir dir;
  const Table users = ReadTable(dir.Write("u.csv", "user_id\nu1\nu2\n"));
  const Table items = ReadTable(dir.Write("m.csv", "movie_id\nm1\n"));
  const EntityIndex u = EntityIndex::FromTable(users, "user_id");
  const EntityIndex m = EntityIndex::FromTable(items, "movie_id");
  const int64_t n = TableReader::kCsvBatchRows + 10;
  std::string text = "user_id,movie_id,liked\n";
  for (int64_t i = 0; i < n; ++i) text += (i % 2 ? "u2,m1,1\n" : "u1,m1,0\n");
  const Interactions a = ReadInteractions(dir.Write("i.csv", text), FeatureSchema::Lab(), u, m, {});
  ASSERT_EQ(a.size(), n);
  EXPECT_EQ(a.user_row[n - 1], 1);  // n - 1 is odd: u2
  EXPECT_EQ(a.label[n - 2], 0.0f);
  // A bad label in the second batch: its line is the row's index + 2.
  text += "u1,m1,7\n";
  EXPECT_THAT(
      ErrorMessage(
          [&] { ReadInteractions(dir.Write("i.csv", text), FeatureSchema::Lab(), u, m, {}); }),
      HasSubstr("i.csv:" + std::to_string(n + 2) + ": column 'liked': expected 0 or 1, got \"7\""));
}

TEST(TableReaderTest, TimestampsAreDoublesWhateverTheFormat) {
  TempDir dir;
  const EntityIndex u =
      EntityIndex::FromTable(ReadTable(dir.Write("u.csv", "user_id\nu1\n")), "user_id");
  const EntityIndex m =
      EntityIndex::FromTable(ReadTable(dir.Write("m.csv", "movie_id\nm1\n")), "movie_id");
  FeatureSchema schema = FeatureSchema::Lab();
  schema.timestamp_column = "ts";
  // 1e300 is past float32's range but a finite double: a timestamp keeps it in both formats.
  const std::string csv = dir.Write("t.csv", "user_id,movie_id,liked,ts\nu1,m1,1,1e300\n");
  ConvertTable(csv, dir.File("t.parquet"), {});
  for (const std::string& path : {csv, dir.File("t.parquet")}) {
    const Interactions a = ReadInteractions(path, schema, u, m, {});
    ASSERT_EQ(a.timestamp.size(), 1u);
    EXPECT_EQ(a.timestamp[0], 1e300) << path;
  }
  // An empty cell is a null in Parquet (InferTypes) and "" in CSV: both refused, naming the row.
  const std::string gap = dir.Write("g.csv", "user_id,movie_id,liked,ts\nu1,m1,1,5\nu1,m1,1,\n");
  ConvertTable(gap, dir.File("g.parquet"), {});
  EXPECT_THAT(ErrorMessage([&] { ReadInteractions(gap, schema, u, m, {}); }),
              HasSubstr("g.csv:3: column 'ts': expected a number"));
  EXPECT_THAT(ErrorMessage([&] { ReadInteractions(dir.File("g.parquet"), schema, u, m, {}); }),
              HasSubstr("g.parquet: row 2: column 'ts': expected a finite number, got \"\""));
}

}  // namespace
}  // namespace twotower::data
