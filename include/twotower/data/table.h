// Tables by file type. Every table twotower reads or writes is CSV or Parquet, chosen by the
// path's suffix (".parquet": Parquet, anything else: CSV): ReadTable (csv.h) reads either as text,
// WriteTable writes typed columns as either, ConvertTable turns one into the other. Plain
// functions over value types; thread-safe for distinct arguments.
#ifndef TWOTOWER_DATA_TABLE_H_
#define TWOTOWER_DATA_TABLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "twotower/data/csv.h"
#include "twotower/data/parquet.h"

namespace twotower::data {

// A Parquet file as a text Table: every column of every row group, each value as
// ParquetColumn::Text gives it (a null is ""), rows numbered from 1 for messages. Throws the
// reader's Error for an unreadable file or a column of an unsupported type.
Table ReadParquetTable(const std::string& path);

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
// same text or the same number: a column whose non-empty cells are all canonical 64-bit integers
// (no leading zeros or '+': "0042" is an id, not 42) is INT64, else all finite numbers DOUBLE
// (integer-looking text that a double does not hold exactly, such as 12345678901234567890,
// only beside values with a fraction or an exponent: alone it is an id), else STRING. A
// column with an empty cell is OPTIONAL and its empty cells become nulls (CSV cannot tell an empty
// string from a missing value; DuckDB's CSV reader makes the same choice).
TypedTable InferTypes(const Table& table);

// `twotower convert`: reads `in` and writes `out`, each CSV or Parquet by suffix. Parquet to
// Parquet or CSV streams one row group at a time and keeps the types; CSV to Parquet infers them
// (InferTypes). Returns the number of rows written. Throws Error naming the file for bad input.
int64_t ConvertTable(const std::string& in, const std::string& out,
                     const ParquetWriteOptions& options);

}  // namespace twotower::data

#endif  // TWOTOWER_DATA_TABLE_H_
