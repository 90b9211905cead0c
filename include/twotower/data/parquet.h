// Parquet for flat tables: a reader and a writer of twotower's own, on Debian's libthrift (the
// footer and page headers, Thrift compact protocol, from an IDL compiled at build time:
// src/data/parquet/parquet.thrift), libsnappy, zlib and libzstd (page codecs). Apache Arrow, which
// would do this, is not packaged for Debian 12.
//
// Follows the Apache Parquet format specification (parquet-format: the file layout, the
// encodings document for PLAIN, RLE / bit-packing hybrid, the dictionary, DELTA and
// BYTE_STREAM_SPLIT encodings, data pages v1 and v2, and "LogicalTypes.md" for the annotations).
//
// Reader: flat schemas (a root with leaf columns), each column REQUIRED or OPTIONAL (definition
// levels 0..1, nulls), physical types BOOLEAN, INT32, INT64, FLOAT, DOUBLE and BYTE_ARRAY (UTF8
// strings, ENUM and JSON annotations, or none), the INTEGER annotation (8/16/32/64 bits, signed or
// unsigned); any number of row groups and pages; PLAIN, PLAIN_DICTIONARY, RLE_DICTIONARY, RLE
// booleans, DELTA_BINARY_PACKED, DELTA_LENGTH_BYTE_ARRAY, DELTA_BYTE_ARRAY and BYTE_STREAM_SPLIT
// (what DuckDB's PARQUET_VERSION V2 and Spark's v2 writers use); a chunk that falls back from
// dictionary to plain pages; data pages v1 and v2; codecs
// UNCOMPRESSED, SNAPPY, GZIP and ZSTD. Anything else (nested or repeated columns, INT96,
// FIXED_LEN_BYTE_ARRAY, DECIMAL, DATE, TIME, TIMESTAMP, other encodings and codecs, encryption,
// column chunks in other files) is an Error naming the file, the column and the feature; a column
// of an unsupported type fails only when it is read, so other columns of the file stay usable.
// Every length, offset and count in the file is checked before it is used: a malformed file is an
// Error, never a crash, and what a file's claims make the reader allocate stays within
// ParquetReadOptions' limits.
//
// Writer: the same types, REQUIRED or OPTIONAL, dictionary encoding for strings with a fall back
// to plain pages when the dictionary outgrows its limit, and for numbers where it pays, data pages
// v1, SNAPPY by default (ZSTD, GZIP or none), column statistics (null_count, min_value, max_value,
// with column_orders), created_by, row groups of a set number of rows; written to a temporary name
// and renamed.
//
// Not thread-safe per object; distinct objects may be used from distinct threads.
#ifndef TWOTOWER_DATA_PARQUET_H_
#define TWOTOWER_DATA_PARQUET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace twotower::data {

// The value types of a flat table column. kBoolean, kInt32 and kInt64 values are held as int64
// (unsigned 64-bit values as their two's-complement bits, see ParquetColumn::is_unsigned); kFloat
// and kDouble as double.
enum class ParquetType { kBoolean, kInt32, kInt64, kFloat, kDouble, kString };
const char* ParquetTypeName(ParquetType type);

enum class ParquetCompression { kNone, kSnappy, kGzip, kZstd };
// "none" | "snappy" | "gzip" | "zstd"; throws Error("<where>: unknown compression ...").
ParquetCompression ParseParquetCompression(const std::string& name, const std::string& where);

// std::allocator, except that resize() leaves new elements of a trivial type uninitialised: the
// reader writes decoded values over them at once, and zeroing them first was a tenth of the time
// of reading a file.
template <typename T>
struct UninitializedAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  UninitializedAllocator() = default;
  template <typename U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}
  template <typename U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

// A FLOAT (float32 = true) or DOUBLE value as table text: an integral value below 1e21 in full
// ("100", "9223372036854775808"), otherwise the shortest digits that read back as the same
// float / double, laid out as ECMAScript's Number::toString lays them out ("0.1", "2.5e-7"
// where std::to_chars writes "2.5e-07", "1e+21", "5e-324"); "-0", "nan", "inf", "-inf". What
// JavaScript, DuckDB's CSV writer and Python print for the same value differ only in layout; this
// one is what InferTypes requires of a cell for a DOUBLE column, so such a cell comes back as
// written.
std::string NumberText(double v, bool float32);

// The values of one column over a run of rows (a row group when read). Row r is null when
// `valid` is non-empty and valid[r] == 0; a null row holds 0 / 0.0 / string index -1.
struct ParquetColumn {
  ParquetType type = ParquetType::kInt64;
  // INTEGER(.., false) / UINT_*: for kInt32 ints hold the (non-negative) value, for kInt64 the
  // unsigned value's two's-complement bits.
  bool is_unsigned = false;
  std::vector<uint8_t> valid;  // per row 1 (value) or 0 (null); empty: no nulls
  using Ints = std::vector<int64_t, UninitializedAllocator<int64_t>>;
  using Doubles = std::vector<double, UninitializedAllocator<double>>;
  using Indices = std::vector<int32_t, UninitializedAllocator<int32_t>>;
  Ints ints;        // kBoolean (0 / 1), kInt32, kInt64: one per row
  Doubles doubles;  // kFloat, kDouble: one per row
  // kString: row r's value is strings[string_index[r]]. Values of dictionary pages share one entry
  // each (a reader maps each distinct id once); values of plain pages get an entry of their own.
  std::vector<std::string> strings;
  Indices string_index;

  int64_t size() const;
  bool IsNull(int64_t r) const { return !valid.empty() && valid[r] == 0; }
  // Row r as table text: integers in decimal, FLOAT and DOUBLE as NumberText gives them,
  // booleans "true" / "false", strings as they are, a null as "".
  std::string Text(int64_t r) const;
  void Clear();
};

struct ParquetColumnInfo {
  std::string name;
  ParquetType type = ParquetType::kInt64;
  bool optional = false;
  bool is_unsigned = false;
  // Non-empty when the column cannot be read: what it is, e.g. "physical type INT96".
  std::string unsupported;
};

struct ParquetReadOptions {
  // Largest decoded column chunk (rows x value width) and largest page accepted, in bytes: a file
  // claiming more is refused before anything that size is allocated. The fuzz target lowers them.
  int64_t max_chunk_bytes = int64_t{16} << 30;
  int64_t max_page_bytes = int64_t{1} << 30;
};

// Streams a Parquet file one column chunk at a time: memory holds the footer, one chunk's bytes
// and one decoded column.
class ParquetReader {
 public:
  // Opens `path` and reads its footer. Throws Error("<path>: ...") when the file is missing, too
  // short, lacks the PAR1 magic, has an encrypted or malformed footer, or a nested schema.
  explicit ParquetReader(const std::string& path, ParquetReadOptions options = {});
  ~ParquetReader();
  ParquetReader(const ParquetReader&) = delete;
  ParquetReader& operator=(const ParquetReader&) = delete;

  const std::string& path() const;
  int64_t num_rows() const;
  int num_row_groups() const;
  int64_t row_group_rows(int row_group) const;
  const std::vector<ParquetColumnInfo>& columns() const;
  const std::string& created_by() const;
  // The footer's key_value_metadata value for `key`, or "" when absent.
  std::string KeyValue(const std::string& key) const;
  int FindColumn(const std::string& name) const;  // -1 when absent
  // Index of a column; throws Error("<path>: missing column 'x' (found: a, b)").
  int RequireColumn(const std::string& name) const;

  // Decodes column `column` of row group `row_group` into `out` (its buffers are reused). Throws
  // Error("<path>: row group G, column 'x'[, page P]: <what> (expected ...)") for an unsupported
  // column, encoding or codec and for every inconsistency of the bytes.
  void ReadColumn(int row_group, int column, ParquetColumn* out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct ParquetColumnSpec {
  std::string name;
  ParquetType type = ParquetType::kString;
  bool optional = false;  // OPTIONAL (nulls allowed) or REQUIRED
};

struct ParquetWriteOptions {
  ParquetCompression compression = ParquetCompression::kSnappy;
  int64_t row_group_rows = 1'000'000;  // rows per row group (>= 1)
  int64_t page_rows = 65'536;          // rows per data page at most (>= 1)
  // A string chunk's dictionary past this many bytes of values stops growing: the chunk's
  // remaining values go to PLAIN pages (parquet-mr's and DuckDB's fall back, the same idea). A
  // numeric chunk gets a dictionary when its distinct values fit in this many bytes and the
  // dictionary makes the chunk at least a quarter smaller than PLAIN; else it is PLAIN.
  int64_t dictionary_bytes = int64_t{1} << 20;
  int zstd_level = 3;
  // The footer's key_value_metadata (e.g. twotower.model_sha256 of an embeddings file).
  std::vector<std::pair<std::string, std::string>> key_value_metadata;
};

// Writes a Parquet file row group by row group under a temporary name; Close() writes the footer
// and renames it into place. Destroying an unclosed writer leaves any previous file untouched.
class ParquetWriter {
 public:
  // Throws Error for an empty or repeated column name, or a bad option.
  ParquetWriter(const std::string& path, std::vector<ParquetColumnSpec> columns,
                ParquetWriteOptions options = {});
  ~ParquetWriter();
  ParquetWriter(const ParquetWriter&) = delete;
  ParquetWriter& operator=(const ParquetWriter&) = delete;

  // Appends rows: columns[c] holds n rows of spec c's type (all columns the same n); rows are cut
  // into row groups of options.row_group_rows. A null in a REQUIRED column, a wrong type or
  // length, or a string index out of range is an Error naming the column.
  void Write(const std::vector<ParquetColumn>& columns);
  // Writes buffered rows, the footer, and renames the file into place. Throws Error on I/O errors.
  void Close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace twotower::data

#endif  // TWOTOWER_DATA_PARQUET_H_
