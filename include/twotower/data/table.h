// Tables whatever their format. Every table twotower reads or writes is CSV or Parquet, and
// TableFormatOf is the one place that picks which (by the path's suffix). TableReader streams
// any table in batches of rows (ReadInteractions and ReadTable read through it), TableWriter
// writes typed columns to either format, ReadTable (csv.h) reads a whole table as text,
// ConvertTable turns one format into the other. Objects are not thread-safe; distinct objects may
// be used from distinct threads.
#ifndef TWOTOWER_DATA_TABLE_H_
#define TWOTOWER_DATA_TABLE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "twotower/data/csv.h"
#include "twotower/data/parquet.h"

namespace twotower::data {

// The format of a table file: Parquet when the path ends in ".parquet", else CSV (RFC 4180).
enum class TableFormat { kCsv, kParquet };
TableFormat TableFormatOf(const std::string& path);

// A table file read in batches of rows, whatever its format: a CSV file in batches of
// kCsvBatchRows records (every value a kString column), a Parquet file one row group at a time
// (each column with its own type, see ParquetColumn). Memory holds one batch of the requested
// columns.
class TableReader {
 public:
  static constexpr int64_t kCsvBatchRows = 65'536;
  // Opens `path` (TableFormatOf picks the reader) and reads its header or footer. Throws the
  // format reader's Error("<path>: ...") for a missing, empty or malformed file.
  static std::unique_ptr<TableReader> Open(const std::string& path);
  virtual ~TableReader() = default;

  virtual const std::string& path() const = 0;
  virtual TableFormat format() const = 0;
  virtual const std::vector<std::string>& column_names() const = 0;
  // Rows of the file when its metadata says so before reading (Parquet), else -1 (CSV).
  virtual int64_t num_rows_hint() const = 0;
  int FindColumn(const std::string& name) const;  // -1 when absent
  // Index of a column; throws Error("<path>: missing column 'x' (found: a, b)").
  virtual int RequireColumn(const std::string& name) const = 0;

  // Reads the next batch: (*out)[i] receives column columns[i] of the batch (out is resized;
  // its buffers are reused). Returns the batch's rows, 0 at the end of the file. Throws the
  // format reader's Error naming the file and the line or row group.
  virtual int64_t Next(const std::vector<int>& columns, std::vector<ParquetColumn>* out) = 0;
  // Row r (from 0) of the last batch: its file line (CSV; a record's first line) or its row
  // number from 1 (Parquet).
  virtual int64_t Line(int64_t r) const = 0;
  // Row r of the last batch for messages: "<file>:<line>" (CSV) or "<file>: row <n>" (Parquet),
  // as Table::Where writes them.
  std::string Where(int64_t r) const;

 protected:
  TableReader() = default;
};

// Writes typed columns to a table file, streaming, under a temporary name: Close() renames it
// into place; destroying an unclosed writer leaves any previous file untouched. Parquet with
// `options`; CSV as a header, then each value as ParquetColumn::Text gives it, quoted as RFC 4180
// requires, a null as an empty field (options do not apply).
class TableWriter {
 public:
  // Throws Error for an empty or repeated column name or a bad option (Parquet), or when the
  // file cannot be created.
  static std::unique_ptr<TableWriter> Open(const std::string& path,
                                           std::vector<ParquetColumnSpec> columns,
                                           const ParquetWriteOptions& options = {});
  virtual ~TableWriter() = default;
  virtual TableFormat format() const = 0;
  // Appends rows: columns[c] holds n rows of spec c's type (all columns the same n). Throws
  // Error naming the column for a wrong type or length (Parquet), or on an I/O error.
  virtual void Write(const std::vector<ParquetColumn>& columns) = 0;
  virtual void Close() = 0;

 protected:
  TableWriter() = default;
};

// Columns with types: what the writers take. specs[c] describes columns[c]; all columns have
// the same number of rows.
struct TypedTable {
  std::vector<ParquetColumnSpec> specs;
  std::vector<ParquetColumn> columns;

  int64_t num_rows() const { return columns.empty() ? 0 : columns[0].size(); }
  // Appends an empty column and returns it to be filled (the reference is valid until the next
  // AddColumn).
  ParquetColumn& AddColumn(const std::string& name, ParquetType type, bool optional = false);
};

// Writes `table` to `path` atomically: Parquet (with `options`) when the path ends in
// ".parquet", else CSV (a header, then each value as ParquetColumn::Text, quoted as RFC 4180
// requires; nulls as empty fields). Throws Error for a malformed table or an I/O error.
void WriteTable(const std::string& path, const TypedTable& table,
                const ParquetWriteOptions& options = {});

// Column types of a text table, inferred from its cells so that every value comes back as the
// same text: a column whose non-empty cells are all canonical 64-bit integers (no leading zeros
// or '+': "0042" is an id, not 42) is INT64, else one whose cells are all the text NumberText
// prints for their values is DOUBLE ("0.5", "1e-7", "2.5"; not "1.10", "1.0", "1e3" or
// 12345678901234567890, which would come back as other text), else STRING. A column with an
// empty cell is OPTIONAL and its empty cells become nulls (CSV cannot tell an empty string from
// a missing value; DuckDB's CSV reader makes the same choice).
TypedTable InferTypes(const Table& table);

// `twotower convert`: reads `in` and writes `out`, each CSV or Parquet by suffix. Parquet to
// Parquet or CSV streams one row group at a time and keeps the types; CSV to Parquet infers them
// (InferTypes). Returns the number of rows written. Throws Error naming the file for bad input.
int64_t ConvertTable(const std::string& in, const std::string& out,
                     const ParquetWriteOptions& options);

}  // namespace twotower::data

#endif  // TWOTOWER_DATA_TABLE_H_
