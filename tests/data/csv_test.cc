#include "twotower/data/csv.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "testing/temp_dir.h"
#include "twotower/core/error.h"

namespace twotower::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using twotower::testing::ErrorMessage;
using twotower::testing::TempDir;

std::vector<std::string> Split(const std::string& line) {
  std::vector<std::string> fields;
  SplitCsvLine(line, "test:1", &fields);
  return fields;
}

TEST(SplitCsvLineTest, PlainFields) {
  EXPECT_THAT(Split("a,b,c"), ElementsAre("a", "b", "c"));
  EXPECT_THAT(Split("1,,3"), ElementsAre("1", "", "3"));
  EXPECT_THAT(Split("x,"), ElementsAre("x", ""));
  EXPECT_THAT(Split(",x"), ElementsAre("", "x"));
  EXPECT_THAT(Split(""), ElementsAre(""));
  EXPECT_THAT(Split("a,b\r"), ElementsAre("a", "b"));
}

TEST(SplitCsvLineTest, QuotedFieldsWithCommasAndEscapedQuotes) {
  EXPECT_THAT(Split(R"(1,"Smith, John","He said ""hi""",end)"),
              ElementsAre("1", "Smith, John", R"(He said "hi")", "end"));
  EXPECT_THAT(Split(R"("","""",",")"), ElementsAre("", "\"", ","));
  EXPECT_THAT(Split(R"("a",)"), ElementsAre("a", ""));
}

TEST(SplitCsvLineTest, UnterminatedQuoteNamesTheLocation) {
  std::vector<std::string> fields;
  const std::string message =
      ErrorMessage([&] { SplitCsvLine(R"(1,"open field)", "movies.csv:7", &fields); });
  EXPECT_EQ(message, "movies.csv:7: unterminated quoted field");
}

TEST(SplitCsvLineTest, GarbageAfterClosingQuoteIsAnError) {
  std::vector<std::string> fields;
  const std::string message =
      ErrorMessage([&] { SplitCsvLine(R"("abc"def,1)", "f.csv:2", &fields); });
  EXPECT_THAT(message, HasSubstr("f.csv:2: "));
  EXPECT_THAT(message, HasSubstr("after a quoted field"));
}

TEST(CsvFieldTest, QuotesOnlyWhenNeededAndRoundTrips) {
  EXPECT_EQ(CsvField("plain"), "plain");
  EXPECT_EQ(CsvField("a,b"), "\"a,b\"");
  EXPECT_EQ(CsvField("say \"x\""), "\"say \"\"x\"\"\"");
  const std::vector<std::string> values = {"plain", "a,b", "q\"uote", "", ",\"\","};
  std::string line;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) line += ',';
    line += CsvField(values[i]);
  }
  EXPECT_EQ(Split(line), values);
}

TEST(ParseNumberTest, AcceptsNumbers) {
  EXPECT_EQ(ParseNumber("3.5", "f:1", "x"), 3.5);
  EXPECT_EQ(ParseNumber(" 42 ", "f:1", "x"), 42.0);
  EXPECT_EQ(ParseNumber("-0.25", "f:1", "x"), -0.25);
  EXPECT_EQ(ParseNumber("+1e3", "f:1", "x"), 1000.0);
  EXPECT_EQ(ParseNumber("7\r", "f:1", "x"), 7.0);
  EXPECT_EQ(ParseInteger("123", "f:1", "x"), 123);
  EXPECT_EQ(ParseInteger("-5", "f:1", "x"), -5);
}

TEST(ParseNumberTest, RejectsNonNumbersWithFileLineAndColumn) {
  EXPECT_EQ(ErrorMessage([] { ParseNumber("abc", "users.csv:3", "age"); }),
            "users.csv:3: column 'age': expected a number, got \"abc\"");
  for (const char* bad :
       {"", " ", "1.5x", "x1", "nan", "inf", "-inf", "1e999", "1,5", "--1", "+-1", "++1"}) {
    const std::string message = ErrorMessage([&] { ParseNumber(bad, "users.csv:9", "age"); });
    EXPECT_THAT(message, HasSubstr("users.csv:9: column 'age': expected a number, got \""))
        << "input: " << bad;
  }
  EXPECT_EQ(ErrorMessage([] { ParseInteger("1.5", "movies.csv:4", "year"); }),
            "movies.csv:4: column 'year': expected an integer, got \"1.5\"");
}

TEST(CsvReaderTest, ReadsHeaderAndRecordsWithLineNumbers) {
  TempDir dir;
  // BOM on the header, spaces around names, CRLF, a blank line, a quoted field with a comma.
  const std::string path = dir.Write(
      "items.csv", "\xEF\xBB\xBFid , name,score\r\n1,\"Alien, the\",4.5\r\n\r\n2,Heat,3\n");
  CsvReader reader(path);
  EXPECT_THAT(reader.header(), ElementsAre("id", "name", "score"));
  EXPECT_EQ(reader.FindColumn("name"), 1);
  EXPECT_EQ(reader.FindColumn("nope"), -1);
  EXPECT_EQ(reader.RequireColumn("score"), 2);
  std::vector<std::string> fields;
  ASSERT_TRUE(reader.Next(&fields));
  EXPECT_THAT(fields, ElementsAre("1", "Alien, the", "4.5"));
  EXPECT_EQ(reader.line(), 2);
  EXPECT_EQ(reader.Where(), path + ":2");
  ASSERT_TRUE(reader.Next(&fields));
  EXPECT_THAT(fields, ElementsAre("2", "Heat", "3"));
  EXPECT_EQ(reader.line(), 4);  // the blank line 3 is skipped but counted
  EXPECT_FALSE(reader.Next(&fields));
}

TEST(CsvReaderTest, RejectsRowWithWrongColumnCount) {
  TempDir dir;
  const std::string path = dir.Write("interactions.csv",
                                     "user_id,movie_id,rating,liked,p_true\n"
                                     "1,2,5,1,0.9\n"
                                     "1,3,4,1\n");
  CsvReader reader(path);
  std::vector<std::string> fields;
  ASSERT_TRUE(reader.Next(&fields));
  const std::string message = ErrorMessage([&] { reader.Next(&fields); });
  EXPECT_EQ(message, path + ":3: expected 5 columns, got 4");
}

TEST(CsvReaderTest, RejectsRowWithTooManyColumns) {
  TempDir dir;
  const std::string path = dir.Write("t.csv", "a,b\n1,2,3\n");
  CsvReader reader(path);
  std::vector<std::string> fields;
  EXPECT_EQ(ErrorMessage([&] { reader.Next(&fields); }), path + ":2: expected 2 columns, got 3");
}

TEST(CsvReaderTest, QuotedFieldsKeepLineBreaksBlankLinesAndBlanksByteForByte) {
  TempDir dir;
  // RFC 4180 2.6: a quoted field may hold line breaks. LF, CR LF, a lone CR, a blank line and
  // trailing blanks inside quotes are data; outside, the usual normalisation applies.
  const std::string path = dir.Write(
      "t.csv", "a,b\r\n1,2  \r\n3,\"multi\nline\"\n\n4,\"x  \r\n\r\n\ry\"\n5,\"\"\"\n\"\"\"\n");
  CsvReader reader(path);
  std::vector<std::string> fields;
  ASSERT_TRUE(reader.Next(&fields));
  EXPECT_EQ(fields, (std::vector<std::string>{"1", "2"}));
  ASSERT_TRUE(reader.Next(&fields));
  EXPECT_EQ(fields, (std::vector<std::string>{"3", "multi\nline"}));
  EXPECT_EQ(reader.Where(), path + ":3");
  ASSERT_TRUE(reader.Next(&fields));
  EXPECT_EQ(fields, (std::vector<std::string>{"4", "x  \r\n\r\n\ry"}));
  EXPECT_EQ(reader.line(), 6);
  ASSERT_TRUE(reader.Next(&fields));
  EXPECT_EQ(fields, (std::vector<std::string>{"5", "\"\n\""}));
  EXPECT_FALSE(reader.Next(&fields));
}

TEST(CsvReaderTest, QuotedFieldOpenAtTheEndOfTheFileNamesWhereItStarts) {
  TempDir dir;
  const std::string path = dir.Write("t.csv", "a,b\n1,2\n3,\"multi\nline\n");
  CsvReader reader(path);
  std::vector<std::string> fields;
  ASSERT_TRUE(reader.Next(&fields));
  EXPECT_EQ(ErrorMessage([&] { reader.Next(&fields); }),
            path + ":3: quoted field not closed before the end of the file");
}

TEST(CsvReaderTest, MissingFileNamesThePath) {
  TempDir dir;
  const std::string path = dir.File("missing.csv");
  const std::string message = ErrorMessage([&] { CsvReader reader(path); });
  EXPECT_THAT(message, HasSubstr(path + ": cannot open"));
}

TEST(CsvReaderTest, EmptyFileNamesThePath) {
  TempDir dir;
  for (const char* content : {"", "\n\n  \n"}) {
    const std::string path = dir.Write("empty.csv", content);
    EXPECT_EQ(ErrorMessage([&] { CsvReader reader(path); }),
              path + ": file is empty, expected a header line");
    EXPECT_EQ(ErrorMessage([&] { ReadTable(path); }),
              path + ": file is empty, expected a header line");
  }
}

TEST(CsvReaderTest, MissingColumnListsTheColumnsFound) {
  TempDir dir;
  const std::string path = dir.Write("users.csv", "user_id,age,gender\n1,30,F\n");
  CsvReader reader(path);
  EXPECT_EQ(ErrorMessage([&] { reader.RequireColumn("income"); }),
            path + ": missing column 'income' (found: user_id, age, gender)");
}

TEST(ReadTableTest, ReadsColumnsAndLines) {
  TempDir dir;
  const std::string path = dir.Write("users.csv",
                                     "user_id,age,gender\n"
                                     "u1,30,F\n"
                                     "\n"
                                     "u2,41,\"M\"\n");
  const Table table = ReadTable(path);
  EXPECT_EQ(table.source, path);
  EXPECT_THAT(table.columns, ElementsAre("user_id", "age", "gender"));
  EXPECT_EQ(table.num_rows(), 2);
  EXPECT_THAT(table.Column("user_id"), ElementsAre("u1", "u2"));
  EXPECT_THAT(table.Column("age"), ElementsAre("30", "41"));
  EXPECT_THAT(table.Column("gender"), ElementsAre("F", "M"));
  EXPECT_THAT(table.lines, ElementsAre(2, 4));
  EXPECT_EQ(table.Where(1), path + ":4");
  EXPECT_EQ(table.FindColumn("gender"), 2);
  EXPECT_EQ(table.FindColumn("zip"), -1);
}

TEST(ReadTableTest, HeaderOnlyGivesZeroRows) {
  TempDir dir;
  const Table table = ReadTable(dir.Write("t.csv", "a,b\n"));
  EXPECT_EQ(table.num_rows(), 0);
  EXPECT_THAT(table.Column("b"), ::testing::IsEmpty());
}

TEST(ReadTableTest, MissingColumnListsTheColumnsFound) {
  TempDir dir;
  const std::string path = dir.Write("movies.csv", "movie_id,genre,year\n1,Drama,1999\n");
  const Table table = ReadTable(path);
  EXPECT_EQ(ErrorMessage([&] { table.Column("duration"); }),
            path + ": missing column 'duration' (found: movie_id, genre, year)");
}

TEST(ReadTableTest, NonNumericValueMessageNamesFileLineAndColumn) {
  TempDir dir;
  const std::string path = dir.Write("users.csv",
                                     "user_id,age\n"
                                     "1,30\n"
                                     "2,abc\n");
  const Table table = ReadTable(path);
  const std::vector<std::string>& age = table.Column("age");
  EXPECT_EQ(ParseNumber(age[0], table.Where(0), "age"), 30.0);
  EXPECT_EQ(ErrorMessage([&] { ParseNumber(age[1], table.Where(1), "age"); }),
            path + ":3: column 'age': expected a number, got \"abc\"");
}

TEST(ReadTableTest, WrongColumnCountNamesFileAndLine) {
  TempDir dir;
  const std::string path = dir.Write("users.csv", "a,b,c,d,e\n1,2,3,4,5\n\n1,2,3,4\n");
  EXPECT_EQ(ErrorMessage([&] { ReadTable(path); }), path + ":4: expected 5 columns, got 4");
}

}  // namespace
}  // namespace twotower::data

namespace twotower::data {
namespace {

TEST(CsvReaderReviewTest, ByteOrderMarkBeforeAQuotedHeaderIsDropped) {
  twotower::testing::TempDir dir;
  const std::string path = dir.Write("bom.csv", "\xEF\xBB\xBF\"user_id\",age\n1,30\n");
  CsvReader reader(path);
  EXPECT_EQ(reader.header(), (std::vector<std::string>{"user_id", "age"}));
}

}  // namespace
}  // namespace twotower::data

namespace twotower::data {
namespace {

// Issue 12, fault 1's kind: a column named twice in a header was read as its first occurrence.
TEST(CsvReaderReviewTest, AColumnNamedTwiceIsRefused) {
  TempDir dir;
  const std::string path = dir.Write("t.csv", "user_id,movie_id,liked,movie_id\n1,2,1,3\n");
  EXPECT_EQ(ErrorMessage([&] { ReadTable(path); }),
            path +
                ":1: column \"movie_id\" appears twice in the header (columns 2 and 4): "
                "rename one");
  // Names are compared after trimming, as they are looked up.
  const std::string spaced = dir.Write("s.csv", "\n\na, b ,b\n1,2,3\n");
  EXPECT_THAT(ErrorMessage([&] { ReadTable(spaced); }),
              HasSubstr(spaced + ":3: column \"b\" appears twice"));
}

// Issue 12, fault 3's kind: one table however its lines end (core/text.h).
TEST(CsvReaderReviewTest, LineEndsAndTrailingBlanksDoNotChangeTheTable) {
  TempDir dir;
  const Table lf = ReadTable(dir.Write("lf.csv", "id,name\n1,\"a, b\"\n2,c\n"));
  for (const char* text :
       {"id,name\r1,\"a, b\"\r2,c\r", "\xEF\xBB\xBFid,name\r\n1,\"a, b\" \r\n2,c\t\r\n\r\n"}) {
    const Table t = ReadTable(dir.Write("v.csv", text));
    EXPECT_EQ(t.columns, lf.columns);
    EXPECT_EQ(t.cells, lf.cells);
    EXPECT_EQ(t.lines, lf.lines);
  }
  EXPECT_EQ(lf.Column("name"), (std::vector<std::string>{"a, b", "c"}));
}

}  // namespace
}  // namespace twotower::data
