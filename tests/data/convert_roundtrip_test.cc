// `twotower convert` changes no cell: generated tables of awkward cells go CSV -> Parquet -> CSV
// (and on to Parquet and CSV again) and every cell comes back as the same text, byte for byte.
// The CSV files are written and read here by a plain RFC 4180 writer and parser of the test's
// own, not by the code under test.
// Number text that a DOUBLE would write back otherwise ("1.10", "1e3", "1.0", "1e300") is among
// the shapes: type inference keeps such a column as text.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "testing/cli_runner.h"
#include "testing/temp_dir.h"
#include "twotower/data/parquet.h"
#include "twotower/data/table.h"

namespace twotower::data {
namespace {

using twotower::testing::ReadBytes;
using twotower::testing::TempDir;
using Cells = std::vector<std::vector<std::string>>;  // rows of cells

// Every field quoted (RFC 4180), so the file says exactly which text each cell holds.
std::string WriteCsv(const std::vector<std::string>& header, const Cells& rows) {
  auto field = [](const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
      if (c == '"') out += '"';
      out += c;
    }
    return out + "\"";
  };
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c > 0) out += ',';
      out += field(cells[c]);
    }
    out += "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
  return out;
}

// RFC 4180 with LF or CR LF record ends; returns the records after the header.
Cells ParseCsv(const std::string& text) {
  Cells records;
  std::vector<std::string> record;
  std::string cell;
  bool quoted = false, in_quotes = false, any = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_quotes) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        cell += '"';
        ++i;
      } else if (c == '"') {
        in_quotes = false;
      } else {
        cell += c;
      }
      continue;
    }
    if (c == '"') {
      in_quotes = quoted = any = true;
    } else if (c == ',') {
      record.push_back(cell);
      cell.clear();
      quoted = false;
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      if (any || !cell.empty()) {
        record.push_back(cell);
        records.push_back(record);
      }
      record.clear();
      cell.clear();
      quoted = any = false;
    } else {
      cell += c;
      any = true;
    }
  }
  (void)quoted;
  if (!records.empty()) records.erase(records.begin());  // the header
  return records;
}

// Cells of every awkward shape: numbers that a number type would write back otherwise, ids
// with leading zeros, signs, exponents, blanks at the edges, separators, quotes, line breaks,
// non-ASCII text, empty cells.
std::string AwkwardCell(std::mt19937& random) {
  static const std::vector<std::string> kShapes = {"",
                                                   "1",
                                                   "-2",
                                                   "0",
                                                   "007",
                                                   "+5",
                                                   "1.1",
                                                   "1.10",
                                                   "2.50",
                                                   "1.0",
                                                   "1e3",
                                                   "1e-7",
                                                   "1e300",
                                                   "2.5",
                                                   "1e+300",
                                                   "0.1",
                                                   "1000",
                                                   "nan",
                                                   "inf",
                                                   "-inf",
                                                   "9223372036854775807",
                                                   "9223372036854775808",
                                                   "12345678901234567890",
                                                   " a",
                                                   "b ",
                                                   "\ta",
                                                   "x,y",
                                                   "say \"hi\"",
                                                   "two\nlines",
                                                   "cr\rhere",
                                                   "caf\xc3\xa9",
                                                   "\xe6\x97\xa5\xe6\x9c\xac",
                                                   "true",
                                                   "false",
                                                   "NULL",
                                                   "N/A",
                                                   "#",
                                                   "a\"b"};
  return kShapes[std::uniform_int_distribution<size_t>(0, kShapes.size() - 1)(random)];
}

TEST(ConvertRoundTripTest, EveryCellComesBackAsTheSameText) {
  TempDir dir;
  std::mt19937 random(24);
  for (int trial = 0; trial < 60; ++trial) {
    const int columns = std::uniform_int_distribution<int>(1, 3)(random);
    const int rows = std::uniform_int_distribution<int>(1, 12)(random);
    std::vector<std::string> header;
    for (int c = 0; c < columns; ++c) header.push_back(std::string("c").append(std::to_string(c)));
    Cells cells(rows, std::vector<std::string>(columns));
    // Some columns are all of one shape (so a number type is chosen), others mixed.
    for (int c = 0; c < columns; ++c) {
      const bool uniform = std::uniform_int_distribution<int>(0, 1)(random) == 0;
      const std::string one = AwkwardCell(random);
      for (int r = 0; r < rows; ++r) {
        cells[r][c] = uniform && r % 3 != 2 ? one : AwkwardCell(random);
      }
    }
    // std::string::append, not operator+ on a char*: GCC 12 warns falsely on the latter
    // (-Wrestrict, GCC bug 105329).
    const std::string name = std::string("t").append(std::to_string(trial));
    const std::string csv = dir.Write(name + ".csv", WriteCsv(header, cells));
    const std::string pq = dir.File(name + ".parquet");
    const std::string back = dir.File(name + "_back.csv");
    const std::string pq2 = dir.File(name + "_2.parquet");
    const std::string back2 = dir.File(name + "_back2.csv");
    SCOPED_TRACE(
        std::string("trial ").append(std::to_string(trial)).append(": ").append(ReadBytes(csv)));
    EXPECT_EQ(ConvertTable(csv, pq, {}), rows);
    EXPECT_EQ(ConvertTable(pq, back, {}), rows);
    EXPECT_EQ(ParseCsv(ReadBytes(back)), cells);
    // And again, through the CSV the product wrote.
    EXPECT_EQ(ConvertTable(back, pq2, {}), rows);
    EXPECT_EQ(ConvertTable(pq2, back2, {}), rows);
    EXPECT_EQ(ParseCsv(ReadBytes(back2)), cells);
  }
}

}  // namespace
}  // namespace twotower::data
