// CSV reading and writing (RFC 4180: comma separated, optional double quotes with "" escapes; a
// quoted field may hold commas, quotes and line breaks, kept byte for byte).
//
// CsvReader streams records so that large interaction files are parsed straight into typed
// arrays; Table holds a small file (users, items) whole, as string columns. Every error names the
// file and line. Not thread-safe per object.
#ifndef TWOTOWER_DATA_CSV_H_
#define TWOTOWER_DATA_CSV_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "twotower/core/text.h"

namespace twotower::data {

// Parses one CSV line into fields. Throws Error("<where>: ...") on an unterminated quote.
void SplitCsvLine(std::string_view line, const std::string& where, std::vector<std::string>* out);

// Quotes a field if it contains a comma, quote or line break, or starts or ends with a blank.
std::string CsvField(std::string_view value);

// Parses a number; throws Error("<where>: column '<column>': expected a number, got \"x\"").
double ParseNumber(std::string_view text, const std::string& where, const std::string& column);
int64_t ParseInteger(std::string_view text, const std::string& where, const std::string& column);

// Lines come through core/text.h's TextLineReader (byte-order mark, LF / CR LF / CR line ends,
// trailing blanks, blank lines: the same as every other text file), except inside a quoted
// field, where line ends, blank lines and blanks are data and kept as they are.
class CsvReader {
 public:
  // Opens `path` and reads the header. Throws Error if the file is missing or empty, or if a
  // column name appears twice in the header (which one a reader means would be a guess).
  explicit CsvReader(const std::string& path);

  const std::vector<std::string>& header() const { return header_; }
  const std::string& path() const { return path_; }
  // Index of a header column, or throws Error naming the file, the column and the columns found.
  int RequireColumn(const std::string& name) const;
  int FindColumn(const std::string& name) const;  // -1 when absent

  // Reads the next record into `fields` (exactly header().size() of them). Returns false at the
  // end. Skips blank lines. Throws Error("<file>:<line>: expected N columns, got M"), or for a
  // quoted field still open at the end of the file.
  bool Next(std::vector<std::string>* fields);
  // The line the record last returned starts on.
  int64_t line() const { return record_line_; }
  // "<file>:<line>" of the record last returned.
  std::string Where() const { return path_ + ":" + std::to_string(record_line_); }

 private:
  // The next record's text (physical lines joined with their own line ends while a quoted field
  // is open), trailing blanks dropped. False at the end of the file.
  bool ReadRecord(std::string* record);

  std::string path_;
  TextLineReader lines_;
  std::vector<std::string> header_;
  std::string buffer_, raw_, ending_;
  int64_t record_line_ = 0;
};

// A whole CSV file as string columns.
// A whole table as string columns: a CSV file, or a Parquet file's values as text (see
// ParquetColumn::Text in parquet.h: a null is "", as an empty CSV field).
struct Table {
  std::string source;                           // the file path, for messages
  std::vector<std::string> columns;             // header
  std::vector<std::vector<std::string>> cells;  // cells[column][row]
  std::vector<int64_t> lines;  // file line of each row (Parquet: row number, from 1)
  bool numbered_rows = false;  // lines are row numbers (Parquet), not lines

  int64_t num_rows() const { return static_cast<int64_t>(lines.size()); }
  int FindColumn(const std::string& name) const;
  // The column's values; throws Error("<source>: missing column 'x' (found: a, b)").
  const std::vector<std::string>& Column(const std::string& name) const;
  // "file:17" for a CSV line, "file: row 17" for a Parquet row.
  std::string Where(int64_t row) const {
    return source + (numbered_rows ? ": row " : ":") + std::to_string(lines[row]);
  }
};

// Reads a CSV file, or a Parquet file when the path ends in ".parquet" (every column, as text;
// a column of a type the Parquet reader does not support is an Error naming it).
Table ReadTable(const std::string& path);

}  // namespace twotower::data

#endif  // TWOTOWER_DATA_CSV_H_
