// ParquetReader (include/twotower/data/parquet.h lists what it reads and what it refuses): the
// footer's FileMetaData, the flat schema and its logical and converted types (LogicalTypes.md),
// and each column chunk page by page (dictionary pages, data pages v1 and v2), following the
// Parquet format specification; the encodings are in encodings.h, the codecs in codecs.h.
#include <fcntl.h>
#include <sys/stat.h>
#include <thrift/Thrift.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "data/parquet/codecs.h"
#include "data/parquet/encodings.h"
#include "data/parquet/internal.h"
#include "data/parquet/thrift.h"
#include "parquet_types.h"  // generated from src/data/parquet/parquet.thrift by thrift-compiler
#include "twotower/core/error.h"
#include "twotower/data/parquet.h"

namespace twotower::data {
namespace pf = parquet_format;
using parquet_internal::CheckDecompressedSize;
using parquet_internal::ConvertedTypeName;
using parquet_internal::DecodeDeltaBinaryPacked;
using parquet_internal::DecodeHybrid;
using parquet_internal::Decompress;
using parquet_internal::DecompressInto;
using parquet_internal::EncodingText;
using parquet_internal::kMagic;
using parquet_internal::LoadLE;
using parquet_internal::ThriftRead;
using parquet_internal::ValueWidth;
namespace {

std::string JoinNames(const std::vector<ParquetColumnInfo>& columns) {
  std::string out;
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i > 0) out += ", ";
    out += columns[i].name;
  }
  return out;
}

}  // namespace

// =============================================================================================
// Reader

struct ParquetReader::Impl {
  std::string path;
  ParquetReadOptions options;
  int fd = -1;
  int64_t file_size = 0;
  int64_t footer_start = 0;
  pf::FileMetaData meta;
  std::vector<ParquetColumnInfo> columns;
  std::vector<int> max_def;  // per column: 0 (REQUIRED) or 1 (OPTIONAL)
  std::string chunk;         // the column chunk's bytes
  std::string page;          // one decompressed page
  std::vector<uint32_t> levels, indices;
  ParquetColumn::Ints decoded_ints;  // values of a DELTA / BYTE_STREAM_SPLIT page
  ParquetColumn::Doubles decoded_doubles;

  ~Impl() {
    if (fd >= 0) ::close(fd);
  }

  void ReadAt(int64_t offset, int64_t n, char* dst) const {
    int64_t done = 0;
    while (done < n) {
      const ssize_t got = ::pread(fd, dst + done, static_cast<size_t>(n - done), offset + done);
      if (got < 0) {
        if (errno == EINTR) continue;
        throw Error(path + ": read error: " + std::strerror(errno));
      }
      if (got == 0) throw Error(path + ": file ends early (was it changed while read?)");
      done += got;
    }
  }

  void Open() {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) ThrowCannotOpen(path, errno);
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw Error(path + ": cannot stat: " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
    file_size = st.st_size;
    if (file_size < 12) {
      throw Error(path + ": " + std::to_string(file_size) +
                  " bytes is too short for a Parquet file (expected PAR1, data, footer, footer "
                  "length, PAR1)");
    }
    char head[4], tail[8];
    ReadAt(0, 4, head);
    ReadAt(file_size - 8, 8, tail);
    if (std::memcmp(tail + 4, "PARE", 4) == 0) {
      throw Error(path + ": the footer is encrypted (Parquet modular encryption is not supported)");
    }
    if (std::memcmp(head, kMagic, 4) != 0 || std::memcmp(tail + 4, kMagic, 4) != 0) {
      throw Error(path +
                  ": not a Parquet file (expected the magic bytes PAR1 at its start and end)");
    }
    const uint32_t footer_len = LoadLE<uint32_t>(reinterpret_cast<const uint8_t*>(tail));
    if (footer_len == 0 || static_cast<int64_t>(footer_len) > file_size - 12) {
      throw Error(path + ": footer length " + std::to_string(footer_len) +
                  " does not fit in a file of " + std::to_string(file_size) +
                  " bytes (corrupt or truncated file)");
    }
    footer_start = file_size - 8 - footer_len;
    std::string footer(footer_len, '\0');
    ReadAt(footer_start, footer_len, footer.data());
    try {
      ThriftRead(reinterpret_cast<const uint8_t*>(footer.data()), footer.size(), &meta);
    } catch (const apache::thrift::TException& e) {
      throw Error(path + ": corrupt footer (file metadata): " + e.what());
    }
    ReadSchema();
    CheckRowGroups();
  }

  void ReadSchema() {
    if (meta.schema.empty()) throw Error(path + ": the footer has no schema");
    const pf::SchemaElement& root = meta.schema[0];
    const int64_t leaves = static_cast<int64_t>(meta.schema.size()) - 1;
    for (int64_t i = 1; i <= leaves; ++i) {
      const pf::SchemaElement& e = meta.schema[i];
      if (e.__isset.num_children && e.num_children > 0) {
        throw Error(path + ": column " + Quote(e.name) + " is a group of " +
                    std::to_string(e.num_children) +
                    " fields: nested schemas are not supported (expected a flat table)");
      }
      if (!e.__isset.type)
        throw Error(path + ": column " + Quote(e.name) + " has no physical type");
    }
    if (!root.__isset.num_children || root.num_children != leaves) {
      throw Error(path + ": the schema root has " +
                  std::to_string(root.__isset.num_children ? root.num_children : 0) +
                  " children, the schema lists " + std::to_string(leaves) +
                  " leaves (nested or corrupt schema)");
    }
    for (int64_t i = 1; i <= leaves; ++i) {
      const pf::SchemaElement& e = meta.schema[i];
      ParquetColumnInfo c;
      c.name = e.name;
      for (const ParquetColumnInfo& other : columns) {
        if (other.name == c.name)
          throw Error(path + ": column " + Quote(c.name) + " appears twice in the schema");
      }
      const auto rep =
          e.__isset.repetition_type ? e.repetition_type : pf::FieldRepetitionType::REQUIRED;
      if (rep == pf::FieldRepetitionType::REPEATED) {
        c.unsupported = "a REPEATED column (lists are not supported)";
      } else if (rep != pf::FieldRepetitionType::REQUIRED &&
                 rep != pf::FieldRepetitionType::OPTIONAL) {
        c.unsupported = "repetition type " + std::to_string(static_cast<int>(rep));
      }
      c.optional = rep == pf::FieldRepetitionType::OPTIONAL;
      switch (e.type) {
        case pf::Type::BOOLEAN:
          c.type = ParquetType::kBoolean;
          break;
        case pf::Type::INT32:
          c.type = ParquetType::kInt32;
          break;
        case pf::Type::INT64:
          c.type = ParquetType::kInt64;
          break;
        case pf::Type::FLOAT:
          c.type = ParquetType::kFloat;
          break;
        case pf::Type::DOUBLE:
          c.type = ParquetType::kDouble;
          break;
        case pf::Type::BYTE_ARRAY:
          c.type = ParquetType::kString;
          break;
        case pf::Type::INT96:
          c.unsupported = "physical type INT96 (legacy timestamps)";
          break;
        case pf::Type::FIXED_LEN_BYTE_ARRAY:
          c.unsupported = "physical type FIXED_LEN_BYTE_ARRAY";
          break;
        default:
          c.unsupported = "physical type " + std::to_string(static_cast<int>(e.type));
          break;
      }
      if (c.unsupported.empty()) Annotations(e, &c);
      columns.push_back(c);
      max_def.push_back(c.optional ? 1 : 0);
    }
  }

  // Logical type (or the older converted type) of a leaf: which are values twotower reads as
  // they are, and which would be misread as plain numbers (dates, decimals, timestamps).
  static void Annotations(const pf::SchemaElement& e, ParquetColumnInfo* c) {
    const bool is_int = c->type == ParquetType::kInt32 || c->type == ParquetType::kInt64;
    if (e.__isset.logicalType) {
      const pf::LogicalType& t = e.logicalType;
      if (t.__isset.STRING || t.__isset.ENUM || t.__isset.JSON) {
        if (c->type != ParquetType::kString)
          c->unsupported = "a text annotation on a non-BYTE_ARRAY column";
      } else if (t.__isset.INTEGER) {
        const int bits = t.INTEGER.bitWidth;
        if (!is_int || (bits != 8 && bits != 16 && bits != 32 && bits != 64) ||
            (bits == 64) != (c->type == ParquetType::kInt64)) {
          c->unsupported = "an INTEGER(" + std::to_string(bits) + ") annotation on a " +
                           ParquetTypeName(c->type) + " column";
        }
        c->is_unsigned = !t.INTEGER.isSigned;
      } else if (t.__isset.UNKNOWN) {
        // Always-null columns: the values are nulls, readable as such.
      } else {
        std::string name = t.__isset.DECIMAL     ? "DECIMAL"
                           : t.__isset.DATE      ? "DATE"
                           : t.__isset.TIME      ? "TIME"
                           : t.__isset.TIMESTAMP ? "TIMESTAMP"
                           : t.__isset.UUID      ? "UUID"
                           : t.__isset.FLOAT16   ? "FLOAT16"
                           : t.__isset.BSON      ? "BSON"
                           : t.__isset.MAP       ? "MAP"
                           : t.__isset.LIST      ? "LIST"
                                                 : "";
        c->unsupported =
            name.empty() ? "a logical type this reader does not know" : "logical type " + name;
      }
      return;
    }
    if (!e.__isset.converted_type) return;
    switch (e.converted_type) {
      case pf::ConvertedType::UTF8:
      case pf::ConvertedType::ENUM:
      case pf::ConvertedType::JSON:
        if (c->type != ParquetType::kString)
          c->unsupported = "a text annotation on a non-BYTE_ARRAY column";
        return;
      case pf::ConvertedType::INT_8:
      case pf::ConvertedType::INT_16:
      case pf::ConvertedType::INT_32:
      case pf::ConvertedType::INT_64:
        if (!is_int) c->unsupported = "an INT_ annotation on a non-integer column";
        return;
      case pf::ConvertedType::UINT_8:
      case pf::ConvertedType::UINT_16:
      case pf::ConvertedType::UINT_32:
      case pf::ConvertedType::UINT_64:
        if (!is_int) c->unsupported = "a UINT_ annotation on a non-integer column";
        c->is_unsigned = true;
        return;
      default:
        c->unsupported = "converted type " + ConvertedTypeName(e.converted_type);
        return;
    }
  }

  void CheckRowGroups() {
    int64_t total = 0;
    for (size_t g = 0; g < meta.row_groups.size(); ++g) {
      const pf::RowGroup& rg = meta.row_groups[g];
      const std::string where = path + ": row group " + std::to_string(g);
      if (rg.num_rows < 0) throw Error(where + ": negative row count");
      if (rg.columns.size() != columns.size()) {
        throw Error(where + ": " + std::to_string(rg.columns.size()) +
                    " column chunks, the schema has " + std::to_string(columns.size()) +
                    " columns");
      }
      if (total > std::numeric_limits<int64_t>::max() - rg.num_rows)
        throw Error(where + ": row count overflows");
      total += rg.num_rows;
    }
    if (meta.num_rows != total) {
      throw Error(path + ": the footer says " + std::to_string(meta.num_rows) +
                  " rows, its row groups hold " + std::to_string(total));
    }
    if (total > INT32_MAX) {
      // Rows become table rows and int32 entity rows downstream.
      throw Error(path + ": " + std::to_string(total) + " rows (at most 2147483647 supported)");
    }
  }

  // ---- one column chunk ----

  struct ChunkState {
    std::string where;
    ParquetType type;
    int max_def;
    int32_t codec;
    int64_t rows;
    bool has_dictionary = false;
    // The dictionary, decoded: ints or doubles or the out->strings entries [0, dict_size).
    ParquetColumn::Ints dict_ints;
    ParquetColumn::Doubles dict_doubles;
    int64_t dict_size = 0;
    int64_t string_bytes = 0;  // bytes of decoded DELTA_BYTE_ARRAY values so far
  };

  void ReadColumn(int g, int c, ParquetColumn* out) {
    if (g < 0 || g >= static_cast<int>(meta.row_groups.size())) {
      throw Error(path + ": row group " + std::to_string(g) + " does not exist (the file has " +
                  std::to_string(meta.row_groups.size()) + ")");
    }
    if (c < 0 || c >= static_cast<int>(columns.size()))
      throw Error(path + ": column " + std::to_string(c) + " does not exist");
    const ParquetColumnInfo& info = columns[c];
    const pf::RowGroup& rg = meta.row_groups[g];
    ChunkState s;
    s.where = path + ": row group " + std::to_string(g) + ", column " + Quote(info.name);
    if (!info.unsupported.empty())
      throw Error(s.where + ": " + info.unsupported + " is not supported");
    const pf::ColumnChunk& cc = rg.columns[c];
    if (cc.__isset.file_path && !cc.file_path.empty()) {
      throw Error(s.where + ": the chunk is stored in another file (" + Quote(cc.file_path) +
                  "), which is not supported");
    }
    if (!cc.__isset.meta_data)
      throw Error(s.where + ": no column metadata in the footer (encrypted column?)");
    const pf::ColumnMetaData& md = cc.meta_data;
    if (md.type != meta.schema[c + 1].type)
      throw Error(s.where + ": the chunk's physical type differs from the schema's");
    if (md.path_in_schema.size() != 1 || md.path_in_schema[0] != info.name) {
      throw Error(s.where + ": the chunk's path in the schema does not name this column");
    }
    if (md.num_values != rg.num_rows) {
      throw Error(s.where + ": " + std::to_string(md.num_values) + " values for " +
                  std::to_string(rg.num_rows) +
                  " rows (a flat column has one value or null per row)");
    }
    s.type = info.type;
    s.max_def = max_def[c];
    s.codec = md.codec;
    s.rows = rg.num_rows;
    const int64_t width = ValueWidth(info.type) + (s.max_def > 0 ? 1 : 0);
    if (s.rows > options.max_chunk_bytes / width) {
      throw Error(s.where + ": " + std::to_string(s.rows) +
                  " rows would decode to more than the reader's limit of " +
                  std::to_string(options.max_chunk_bytes) + " bytes");
    }
    out->Clear();
    out->type = info.type;
    out->is_unsigned = info.is_unsigned;
    if (s.rows == 0) return;  // an empty row group: nothing to read, whatever its offsets say
    int64_t start = md.data_page_offset;
    if (md.__isset.dictionary_page_offset && md.dictionary_page_offset > 0 &&
        md.dictionary_page_offset < start) {
      start = md.dictionary_page_offset;
    }
    const int64_t length = md.total_compressed_size;
    if (start < 4 || length <= 0 || start > footer_start || length > footer_start - start) {
      throw Error(s.where + ": the chunk's bytes [" + std::to_string(start) + ", +" +
                  std::to_string(length) + ") lie outside the data part of the file (" +
                  std::to_string(footer_start) + " bytes): corrupt or truncated file");
    }
    chunk.resize(static_cast<size_t>(length));
    ReadAt(start, length, chunk.data());

    out->Clear();
    out->type = info.type;
    out->is_unsigned = info.is_unsigned;
    if (s.max_def > 0) out->valid.reserve(s.rows);
    switch (info.type) {
      case ParquetType::kFloat:
      case ParquetType::kDouble:
        out->doubles.reserve(s.rows);
        break;
      case ParquetType::kString:
        out->string_index.reserve(s.rows);
        break;
      default:
        out->ints.reserve(s.rows);
        break;
    }
    const uint8_t* p = reinterpret_cast<const uint8_t*>(chunk.data());
    const uint8_t* end = p + chunk.size();
    int64_t values = 0;
    int page_number = 0;
    while (values < s.rows) {
      const std::string page_where = s.where + ", page " + std::to_string(page_number);
      if (p >= end) {
        throw Error(page_where + ": the chunk ends after " + std::to_string(values) + " of " +
                    std::to_string(s.rows) + " values");
      }
      pf::PageHeader header;
      size_t header_size = 0;
      try {
        header_size = ThriftRead(p, static_cast<size_t>(end - p), &header);
      } catch (const apache::thrift::TException& e) {
        throw Error(page_where + ": corrupt page header: " + e.what());
      }
      p += header_size;
      if (header.compressed_page_size < 0 || header.uncompressed_page_size < 0 ||
          header.compressed_page_size > end - p) {
        throw Error(page_where + ": page of " + std::to_string(header.compressed_page_size) +
                    " bytes runs past the chunk's end (" + std::to_string(end - p) +
                    " bytes left)");
      }
      if (header.uncompressed_page_size > options.max_page_bytes) {
        throw Error(page_where + ": page of " + std::to_string(header.uncompressed_page_size) +
                    " bytes is larger than the reader's limit of " +
                    std::to_string(options.max_page_bytes));
      }
      const uint8_t* body = p;
      p += header.compressed_page_size;
      switch (header.type) {
        case pf::PageType::DICTIONARY_PAGE:
          if (!header.__isset.dictionary_page_header)
            throw Error(page_where + ": dictionary page without its header");
          if (s.has_dictionary) throw Error(page_where + ": a second dictionary page in one chunk");
          if (values > 0) throw Error(page_where + ": dictionary page after data pages");
          ReadDictionary(header, body, &s, out, page_where);
          break;
        case pf::PageType::DATA_PAGE:
          if (!header.__isset.data_page_header)
            throw Error(page_where + ": data page without its header");
          values += ReadDataPage(header, body, values, &s, out, page_where);
          break;
        case pf::PageType::DATA_PAGE_V2:
          if (!header.__isset.data_page_header_v2)
            throw Error(page_where + ": data page v2 without its header");
          values += ReadDataPage(header, body, values, &s, out, page_where);
          break;
        case pf::PageType::INDEX_PAGE:
          break;  // Not used by readers (the specification has none); skipped.
        default:
          throw Error(page_where + ": unknown page type " +
                      std::to_string(static_cast<int>(header.type)));
      }
      ++page_number;
    }
    if (s.max_def == 0) out->valid.clear();
    if (info.is_unsigned && info.type == ParquetType::kInt32) {
      // UINT_8/16/32 are stored as INT32 bits: their value is the zero-extended bits.
      for (int64_t& v : out->ints) v = static_cast<uint32_t>(v);
    }
  }

  void ReadDictionary(const pf::PageHeader& header, const uint8_t* body, ChunkState* s,
                      ParquetColumn* out, const std::string& where) {
    const pf::DictionaryPageHeader& dh = header.dictionary_page_header;
    if (dh.encoding != pf::Encoding::PLAIN && dh.encoding != pf::Encoding::PLAIN_DICTIONARY) {
      throw Error(where + ": dictionary page encoding " + EncodingText(dh.encoding) +
                  " is not supported (expected PLAIN)");
    }
    if (dh.num_values < 0) throw Error(where + ": negative dictionary size");
    Decompress(s->codec, body, header.compressed_page_size, header.uncompressed_page_size, &page,
               where);
    const uint8_t* q = reinterpret_cast<const uint8_t*>(page.data());
    const size_t n = page.size();
    const int64_t count = dh.num_values;
    if (s->type == ParquetType::kString) {
      size_t pos = 0;
      out->strings.reserve(std::min<size_t>(count, n / 4));
      for (int64_t i = 0; i < count; ++i) {
        if (n - pos < 4)
          throw Error(where + ": dictionary entry " + std::to_string(i) + " is cut off");
        const uint32_t len = LoadLE<uint32_t>(q + pos);
        pos += 4;
        if (len > n - pos)
          throw Error(where + ": dictionary entry " + std::to_string(i) + " of " +
                      std::to_string(len) + " bytes runs past the page");
        out->strings.emplace_back(reinterpret_cast<const char*>(q + pos), len);
        pos += len;
      }
    } else {
      const int width = s->type == ParquetType::kBoolean ? 0 : ValueWidth(s->type);
      if (s->type == ParquetType::kBoolean)
        throw Error(where + ": a dictionary for a BOOLEAN column is not valid Parquet");
      if (static_cast<uint64_t>(count) * width > n) {
        throw Error(where + ": " + std::to_string(count) + " dictionary values need " +
                    std::to_string(count * width) + " bytes, the page has " + std::to_string(n));
      }
      DecodePlainFixed(q, count, s->type, &s->dict_ints, &s->dict_doubles);
    }
    s->dict_size = count;
    s->has_dictionary = true;
  }

  // Appends `count` PLAIN values (little-endian, as this machine) to ints or doubles.
  template <typename IntVector, typename DoubleVector>
  static void DecodePlainFixed(const uint8_t* q, int64_t count, ParquetType type, IntVector* ints,
                               DoubleVector* doubles) {
    const size_t n = static_cast<size_t>(count);
    switch (type) {
      case ParquetType::kInt32: {
        const size_t at = ints->size();
        ints->resize(at + n);
        int64_t* o = ints->data() + at;
        for (size_t i = 0; i < n; ++i) o[i] = LoadLE<int32_t>(q + 4 * i);
        break;
      }
      case ParquetType::kInt64: {
        const size_t at = ints->size();
        ints->resize(at + n);
        if (n > 0) std::memcpy(ints->data() + at, q, 8 * n);
        break;
      }
      case ParquetType::kFloat: {
        const size_t at = doubles->size();
        doubles->resize(at + n);
        double* o = doubles->data() + at;
        for (size_t i = 0; i < n; ++i) o[i] = std::bit_cast<float>(LoadLE<uint32_t>(q + 4 * i));
        break;
      }
      case ParquetType::kDouble: {
        const size_t at = doubles->size();
        doubles->resize(at + n);
        if (n > 0) std::memcpy(doubles->data() + at, q, 8 * n);
        break;
      }
      default:
        break;
    }
  }

  // Decodes one data page (v1 or v2); returns its number of values (rows, nulls included).
  int64_t ReadDataPage(const pf::PageHeader& header, const uint8_t* body, int64_t done,
                       ChunkState* s, ParquetColumn* out, const std::string& where) {
    const bool v2 = header.type == pf::PageType::DATA_PAGE_V2;
    const int64_t num_values =
        v2 ? header.data_page_header_v2.num_values : header.data_page_header.num_values;
    const int32_t encoding =
        v2 ? header.data_page_header_v2.encoding : header.data_page_header.encoding;
    if (num_values < 0 || num_values > s->rows - done) {
      throw Error(where + ": " + std::to_string(num_values) + " values in the page, only " +
                  std::to_string(s->rows - done) + " rows of the row group are left");
    }
    const uint8_t* data = nullptr;
    size_t data_size = 0;
    const uint8_t* def = nullptr;
    size_t def_size = 0;
    if (v2) {
      const pf::DataPageHeaderV2& h = header.data_page_header_v2;
      if (h.repetition_levels_byte_length != 0)
        throw Error(where + ": repetition levels in a flat column");
      if (h.definition_levels_byte_length < 0 ||
          h.definition_levels_byte_length > header.compressed_page_size ||
          h.definition_levels_byte_length > header.uncompressed_page_size) {
        throw Error(where + ": definition levels of " +
                    std::to_string(h.definition_levels_byte_length) +
                    " bytes do not fit in the page");
      }
      if (h.num_rows != num_values)
        throw Error(where + ": " + std::to_string(h.num_rows) + " rows for " +
                    std::to_string(num_values) + " values in a flat column");
      def = body;
      def_size = static_cast<size_t>(h.definition_levels_byte_length);
      const size_t compressed = header.compressed_page_size - def_size;
      const size_t uncompressed = header.uncompressed_page_size - def_size;
      const bool compressed_flag = !h.__isset.is_compressed || h.is_compressed;
      Decompress(compressed_flag ? s->codec : pf::CompressionCodec::UNCOMPRESSED, body + def_size,
                 compressed, uncompressed, &page, where);
      data = reinterpret_cast<const uint8_t*>(page.data());
      data_size = page.size();
      if (s->max_def == 0 && def_size != 0)
        throw Error(where + ": definition levels in a REQUIRED column");
    } else if (s->max_def == 0 && encoding == pf::Encoding::PLAIN &&
               (s->type == ParquetType::kInt64 || s->type == ParquetType::kDouble) &&
               static_cast<int64_t>(header.uncompressed_page_size) == num_values * 8) {
      // The common case of a REQUIRED 8-byte column: decompressed straight into the values,
      // which are the page's bytes (little-endian), sparing a copy of every byte.
      CheckDecompressedSize(s->codec, body, header.compressed_page_size,
                            header.uncompressed_page_size, where);
      const bool is_int = s->type == ParquetType::kInt64;
      const size_t at = is_int ? out->ints.size() : out->doubles.size();
      char* dst = nullptr;
      if (is_int) {
        out->ints.resize(at + num_values);
        dst = reinterpret_cast<char*>(out->ints.data() + at);
      } else {
        out->doubles.resize(at + num_values);
        dst = reinterpret_cast<char*>(out->doubles.data() + at);
      }
      DecompressInto(s->codec, body, header.compressed_page_size, dst,
                     header.uncompressed_page_size, where);
      return num_values;
    } else {
      Decompress(s->codec, body, header.compressed_page_size, header.uncompressed_page_size, &page,
                 where);
      data = reinterpret_cast<const uint8_t*>(page.data());
      data_size = page.size();
      if (s->max_def > 0) {
        const int32_t le = header.data_page_header.definition_level_encoding;
        if (le != pf::Encoding::RLE) {
          throw Error(where + ": definition levels in " + EncodingText(le) +
                      " are not supported (expected RLE)");
        }
        if (data_size < 4) throw Error(where + ": definition levels' length is cut off");
        const uint32_t len = LoadLE<uint32_t>(data);
        if (len > data_size - 4)
          throw Error(where + ": definition levels of " + std::to_string(len) +
                      " bytes run past the page");
        def = data + 4;
        def_size = len;
        data += 4 + len;
        data_size -= 4 + len;
      }
    }
    // Definition levels: which rows have a value.
    int64_t present = num_values;
    const size_t valid_start = out->valid.size();
    if (s->max_def > 0) {
      levels.resize(static_cast<size_t>(num_values));
      DecodeHybrid(def, def_size, 1, num_values, levels.data(), where + ": definition levels");
      present = 0;
      for (int64_t i = 0; i < num_values; ++i) {
        if (levels[i] > 1)
          throw Error(where + ": definition level " + std::to_string(levels[i]) +
                      " (expected 0 or 1)");
        present += levels[i];
        out->valid.push_back(static_cast<uint8_t>(levels[i]));
      }
      if (v2 && header.data_page_header_v2.num_nulls != num_values - present) {
        throw Error(where + ": the header says " +
                    std::to_string(header.data_page_header_v2.num_nulls) +
                    " nulls, the levels give " + std::to_string(num_values - present));
      }
    }
    // Values of the present rows, then spread over the rows (nulls get 0 / -1).
    const bool dict =
        encoding == pf::Encoding::RLE_DICTIONARY || encoding == pf::Encoding::PLAIN_DICTIONARY;
    if (dict) {
      if (!s->has_dictionary)
        throw Error(where + ": dictionary-encoded page but the chunk has no dictionary page");
      if (data_size < 1) throw Error(where + ": dictionary indices' bit width is missing");
      const int bit_width = data[0];
      indices.resize(static_cast<size_t>(present));
      DecodeHybrid(data + 1, data_size - 1, bit_width, present, indices.data(),
                   where + ": dictionary indices");
      for (int64_t i = 0; i < present; ++i) {
        if (indices[i] >= static_cast<uint64_t>(s->dict_size)) {
          throw Error(where + ": dictionary index " + std::to_string(indices[i]) +
                      " out of range (the dictionary has " + std::to_string(s->dict_size) +
                      " entries)");
        }
      }
      if (s->max_def == 0) {
        // No nulls: a straight gather from the dictionary.
        const size_t at = static_cast<size_t>(out->size());
        switch (s->type) {
          case ParquetType::kString:
            out->string_index.insert(out->string_index.end(), indices.begin(),
                                     indices.begin() + present);
            break;
          case ParquetType::kFloat:
          case ParquetType::kDouble:
            out->doubles.resize(at + present);
            for (int64_t i = 0; i < present; ++i)
              out->doubles[at + i] = s->dict_doubles[indices[i]];
            break;
          default:
            out->ints.resize(at + present);
            for (int64_t i = 0; i < present; ++i) out->ints[at + i] = s->dict_ints[indices[i]];
            break;
        }
        return num_values;
      }
      Spread(
          s, out, valid_start, num_values, [&](int64_t i, auto&& emit) { emit(indices[i]); }, true);
      return num_values;
    }
    if (encoding == pf::Encoding::RLE && s->type == ParquetType::kBoolean) {
      // RLE booleans: a 4-byte length, then the hybrid with bit width 1.
      if (data_size < 4) throw Error(where + ": RLE boolean data's length is cut off");
      const uint32_t len = LoadLE<uint32_t>(data);
      if (len > data_size - 4)
        throw Error(where + ": RLE boolean data of " + std::to_string(len) +
                    " bytes runs past the page");
      indices.resize(static_cast<size_t>(present));
      DecodeHybrid(data + 4, len, 1, present, indices.data(), where + ": RLE booleans");
      Spread(
          s, out, valid_start, num_values, [&](int64_t i, auto&& emit) { emit(indices[i]); },
          false);
      return num_values;
    }
    if (encoding == pf::Encoding::DELTA_BINARY_PACKED ||
        encoding == pf::Encoding::BYTE_STREAM_SPLIT ||
        encoding == pf::Encoding::DELTA_LENGTH_BYTE_ARRAY ||
        encoding == pf::Encoding::DELTA_BYTE_ARRAY) {
      DecodeOther(encoding, data, data_size, present, s, out, where);
      SpreadDecoded(s, out, valid_start, num_values, present);
      return num_values;
    }
    if (encoding != pf::Encoding::PLAIN) {
      throw Error(where + ": encoding " + EncodingText(encoding) + " is not supported for " +
                  ParquetTypeName(s->type) +
                  " (supported: PLAIN, RLE_DICTIONARY, PLAIN_DICTIONARY, RLE for BOOLEAN, "
                  "DELTA_BINARY_PACKED for integers, BYTE_STREAM_SPLIT for numbers, "
                  "DELTA_LENGTH_BYTE_ARRAY and DELTA_BYTE_ARRAY for strings)");
    }
    switch (s->type) {
      case ParquetType::kBoolean: {
        if (static_cast<uint64_t>(present) > static_cast<uint64_t>(data_size) * 8) {
          throw Error(where + ": " + std::to_string(present) + " PLAIN booleans need " +
                      std::to_string((present + 7) / 8) + " bytes, the page has " +
                      std::to_string(data_size));
        }
        Spread(
            s, out, valid_start, num_values,
            [&](int64_t i, auto&& emit) { emit((data[i >> 3] >> (i & 7)) & 1); }, false);
        break;
      }
      case ParquetType::kString: {
        // Each value gets an entry after the dictionary's: a chunk may mix both kinds of page.
        size_t pos = 0;
        for (int64_t i = 0; i < present; ++i) {
          if (data_size - pos < 4)
            throw Error(where + ": PLAIN value " + std::to_string(i) + "'s length is cut off");
          const uint32_t len = LoadLE<uint32_t>(data + pos);
          pos += 4;
          if (len > data_size - pos)
            throw Error(where + ": PLAIN value " + std::to_string(i) + " of " +
                        std::to_string(len) + " bytes runs past the page");
          out->strings.emplace_back(reinterpret_cast<const char*>(data + pos), len);
          pos += len;
        }
        if (out->strings.size() > static_cast<size_t>(INT32_MAX))
          throw Error(where + ": too many strings in one chunk");
        const int64_t first = static_cast<int64_t>(out->strings.size()) - present;
        Spread(
            s, out, valid_start, num_values, [&](int64_t i, auto&& emit) { emit(first + i); },
            false);
        break;
      }
      default: {
        const int width = ValueWidth(s->type);
        if (static_cast<uint64_t>(present) * width > data_size) {
          throw Error(where + ": " + std::to_string(present) + " PLAIN values need " +
                      std::to_string(present * width) + " bytes, the page has " +
                      std::to_string(data_size));
        }
        if (s->max_def == 0) {
          DecodePlainFixed(data, present, s->type, &out->ints, &out->doubles);
        } else {
          ParquetColumn::Ints& ints = out->ints;
          ParquetColumn::Doubles& doubles = out->doubles;
          int64_t k = 0;
          for (int64_t r = 0; r < num_values; ++r) {
            const bool has = out->valid[valid_start + r] != 0;
            const uint8_t* q = data + k * width;
            switch (s->type) {
              case ParquetType::kInt32:
                ints.push_back(has ? LoadLE<int32_t>(q) : 0);
                break;
              case ParquetType::kInt64:
                ints.push_back(has ? LoadLE<int64_t>(q) : 0);
                break;
              case ParquetType::kFloat:
                doubles.push_back(has ? std::bit_cast<float>(LoadLE<uint32_t>(q)) : 0.0);
                break;
              default:
                doubles.push_back(has ? std::bit_cast<double>(LoadLE<uint64_t>(q)) : 0.0);
                break;
            }
            k += has;
          }
        }
        break;
      }
    }
    return num_values;
  }

  // The DELTA_* and BYTE_STREAM_SPLIT encodings: `present` values into decoded_ints /
  // decoded_doubles, or appended to out->strings.
  void DecodeOther(int32_t encoding, const uint8_t* data, size_t n, int64_t present, ChunkState* s,
                   ParquetColumn* out, const std::string& where) {
    const bool is_int = s->type == ParquetType::kInt32 || s->type == ParquetType::kInt64;
    const bool is_float = s->type == ParquetType::kFloat || s->type == ParquetType::kDouble;
    const std::string bad = where + ": encoding " + EncodingText(encoding) + " is not valid for " +
                            ParquetTypeName(s->type);
    decoded_ints.clear();
    decoded_doubles.clear();
    if (encoding == pf::Encoding::DELTA_BINARY_PACKED) {
      if (!is_int) throw Error(bad);
      DecodeDeltaBinaryPacked(data, n, present, &decoded_ints, where);
      if (s->type == ParquetType::kInt32) {
        for (int64_t& v : decoded_ints) v = static_cast<int32_t>(static_cast<uint32_t>(v));
      }
      return;
    }
    if (encoding == pf::Encoding::BYTE_STREAM_SPLIT) {
      // Byte j of value i is at data[j * present + i] (K streams of `present` bytes).
      if (!is_int && !is_float) throw Error(bad);
      const int k = ValueWidth(s->type);
      if (static_cast<uint64_t>(present) * k != n) {
        throw Error(where + ": BYTE_STREAM_SPLIT data of " + std::to_string(n) + " bytes for " +
                    std::to_string(present) + " values of " + std::to_string(k) + " bytes");
      }
      uint8_t buf[8];
      for (int64_t i = 0; i < present; ++i) {
        for (int j = 0; j < k; ++j) buf[j] = data[static_cast<size_t>(j) * present + i];
        DecodePlainFixed(buf, 1, s->type, &decoded_ints, &decoded_doubles);
      }
      return;
    }
    if (s->type != ParquetType::kString) throw Error(bad);
    ParquetColumn::Ints& lengths = decoded_ints;
    if (encoding == pf::Encoding::DELTA_LENGTH_BYTE_ARRAY) {
      // The lengths (DELTA_BINARY_PACKED), then the values' bytes one after another.
      size_t pos = DecodeDeltaBinaryPacked(data, n, present, &lengths, where + ": lengths");
      for (int64_t i = 0; i < present; ++i) {
        const int64_t len = lengths[i];
        if (len < 0 || static_cast<uint64_t>(len) > n - pos) {
          throw Error(where + ": value " + std::to_string(i) + " of " + std::to_string(len) +
                      " bytes runs past the page");
        }
        out->strings.emplace_back(reinterpret_cast<const char*>(data + pos),
                                  static_cast<size_t>(len));
        pos += static_cast<size_t>(len);
      }
    } else {
      // DELTA_BYTE_ARRAY: prefix lengths, then the suffixes as DELTA_LENGTH_BYTE_ARRAY; value i
      // is the first prefix[i] bytes of value i-1 followed by suffix i.
      ParquetColumn::Ints prefixes;
      size_t pos = DecodeDeltaBinaryPacked(data, n, present, &prefixes, where + ": prefix lengths");
      pos += DecodeDeltaBinaryPacked(data + pos, n - pos, present, &lengths,
                                     where + ": suffix lengths");
      std::string previous;
      for (int64_t i = 0; i < present; ++i) {
        const int64_t prefix = prefixes[i], len = lengths[i];
        if (prefix < 0 || static_cast<uint64_t>(prefix) > previous.size()) {
          throw Error(where + ": value " + std::to_string(i) + " shares " + std::to_string(prefix) +
                      " bytes with a previous value of " + std::to_string(previous.size()));
        }
        if (len < 0 || static_cast<uint64_t>(len) > n - pos) {
          throw Error(where + ": value " + std::to_string(i) + "'s suffix of " +
                      std::to_string(len) + " bytes runs past the page");
        }
        previous.resize(static_cast<size_t>(prefix));
        previous.append(reinterpret_cast<const char*>(data + pos), static_cast<size_t>(len));
        pos += static_cast<size_t>(len);
        // Shared prefixes let a few bytes stand for long values: the chunk's text is bounded.
        s->string_bytes += static_cast<int64_t>(previous.size());
        if (s->string_bytes > options.max_chunk_bytes) {
          throw Error(where + ": the chunk's strings would take more than the reader's limit of " +
                      std::to_string(options.max_chunk_bytes) + " bytes");
        }
        out->strings.push_back(previous);
      }
    }
    if (out->strings.size() > static_cast<size_t>(INT32_MAX))
      throw Error(where + ": too many strings in one chunk");
  }

  void SpreadDecoded(ChunkState* s, ParquetColumn* out, size_t valid_start, int64_t num_values,
                     int64_t present) {
    const int64_t first = static_cast<int64_t>(out->strings.size()) - present;
    int64_t k = 0;
    for (int64_t r = 0; r < num_values; ++r) {
      const bool has = s->max_def == 0 || out->valid[valid_start + r] != 0;
      switch (s->type) {
        case ParquetType::kString:
          out->string_index.push_back(has ? static_cast<int32_t>(first + k) : -1);
          break;
        case ParquetType::kFloat:
        case ParquetType::kDouble:
          out->doubles.push_back(has ? decoded_doubles[k] : 0.0);
          break;
        default:
          out->ints.push_back(has ? decoded_ints[k] : 0);
          break;
      }
      k += has;
    }
  }

  // Writes num_values rows: present rows take the next of the page's values through `get`
  // (dictionary indices when `from_dict`), null rows a zero.
  template <typename Get>
  void Spread(ChunkState* s, ParquetColumn* out, size_t valid_start, int64_t num_values, Get get,
              bool from_dict) {
    int64_t k = 0;
    for (int64_t r = 0; r < num_values; ++r) {
      const bool has = s->max_def == 0 || out->valid[valid_start + r] != 0;
      if (!has) {
        if (s->type == ParquetType::kString) {
          out->string_index.push_back(-1);
        } else if (s->type == ParquetType::kFloat || s->type == ParquetType::kDouble) {
          out->doubles.push_back(0.0);
        } else {
          out->ints.push_back(0);
        }
        continue;
      }
      get(k++, [&](int64_t v) {
        if (s->type == ParquetType::kString) {
          out->string_index.push_back(static_cast<int32_t>(v));
        } else if (s->type == ParquetType::kFloat || s->type == ParquetType::kDouble) {
          out->doubles.push_back(s->dict_doubles[v]);
        } else if (from_dict) {
          out->ints.push_back(s->dict_ints[v]);
        } else {
          out->ints.push_back(v);
        }
      });
    }
  }
};

ParquetReader::ParquetReader(const std::string& path, ParquetReadOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->options = options;
  try {
    impl_->Open();
  } catch (const std::bad_alloc&) {
    throw Error(path + ": out of memory reading the footer (corrupt file?)");
  }
}

ParquetReader::~ParquetReader() = default;
const std::string& ParquetReader::path() const { return impl_->path; }
int64_t ParquetReader::num_rows() const { return impl_->meta.num_rows; }
int ParquetReader::num_row_groups() const {
  return static_cast<int>(impl_->meta.row_groups.size());
}
int64_t ParquetReader::row_group_rows(int g) const { return impl_->meta.row_groups.at(g).num_rows; }
const std::vector<ParquetColumnInfo>& ParquetReader::columns() const { return impl_->columns; }
const std::string& ParquetReader::created_by() const { return impl_->meta.created_by; }

std::string ParquetReader::KeyValue(const std::string& key) const {
  for (const pf::KeyValue& kv : impl_->meta.key_value_metadata) {
    if (kv.key == key) return kv.value;
  }
  return "";
}

int ParquetReader::FindColumn(const std::string& name) const {
  for (size_t i = 0; i < impl_->columns.size(); ++i) {
    if (impl_->columns[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

int ParquetReader::RequireColumn(const std::string& name) const {
  const int c = FindColumn(name);
  if (c < 0) {
    throw Error(impl_->path + ": missing column '" + name +
                "' (found: " + JoinNames(impl_->columns) + ")");
  }
  return c;
}

void ParquetReader::ReadColumn(int row_group, int column, ParquetColumn* out) {
  try {
    impl_->ReadColumn(row_group, column, out);
  } catch (const Error&) {
    out->Clear();  // no partly decoded (and partly uninitialised) values are left behind
    throw;
  } catch (const std::bad_alloc&) {
    out->Clear();
    throw Error(impl_->path + ": out of memory reading row group " + std::to_string(row_group) +
                ", column " + Quote(impl_->columns[column].name));
  }
}

}  // namespace twotower::data
