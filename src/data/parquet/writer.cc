// ParquetWriter (include/twotower/data/parquet.h): flat tables as the Parquet format specification
// lays them out, row group by row group: PLAIN and dictionary (RLE_DICTIONARY) data pages v1 with
// RLE definition levels, dictionary pages, page and chunk statistics with column_orders, the
// footer's FileMetaData; written under a temporary name and renamed into place (AtomicFile).
#include <algorithm>
#include <bit>
#include <cmath>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "data/parquet/codecs.h"
#include "data/parquet/encodings.h"
#include "data/parquet/internal.h"
#include "data/parquet/thrift.h"
#include "parquet_types.h"  // generated from src/data/parquet/parquet.thrift by thrift-compiler
#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/data/parquet.h"

namespace twotower::data {
namespace pf = parquet_format;
using parquet_internal::AppendLE;
using parquet_internal::BitWidth;
using parquet_internal::CodecOf;
using parquet_internal::Compress;
using parquet_internal::EncodeHybrid;
using parquet_internal::IsUtf8;
using parquet_internal::kMagic;
using parquet_internal::PhysicalOf;
using parquet_internal::ThriftWrite;
using parquet_internal::ValueWidth;

// =============================================================================================
// Writer

struct ParquetWriter::Impl {
  std::string path;
  std::vector<ParquetColumnSpec> specs;
  ParquetWriteOptions options;
  std::unique_ptr<AtomicFile> file;
  int64_t offset = 0;
  std::vector<ParquetColumn> pending;
  int64_t pending_rows = 0;
  pf::FileMetaData meta;
  bool closed = false;

  void Emit(std::string_view bytes) {
    file->Write(bytes);
    offset += static_cast<int64_t>(bytes.size());
  }

  // PLAIN bytes of one present value of row r.
  static void PlainValue(const ParquetColumn& c, int64_t r, std::string* out) {
    switch (c.type) {
      case ParquetType::kBoolean:
        out->push_back(c.ints[r] != 0 ? 1 : 0);
        break;  // stats only
      case ParquetType::kInt32:
        AppendLE<int32_t>(out, static_cast<int32_t>(c.ints[r]));
        break;
      case ParquetType::kInt64:
        AppendLE<int64_t>(out, c.ints[r]);
        break;
      case ParquetType::kFloat:
        AppendLE<float>(out, static_cast<float>(c.doubles[r]));
        break;
      case ParquetType::kDouble:
        AppendLE<double>(out, c.doubles[r]);
        break;
      case ParquetType::kString: {
        const std::string& s = c.strings[c.string_index[r]];
        AppendLE<uint32_t>(out, static_cast<uint32_t>(s.size()));
        out->append(s);
        break;
      }
    }
  }

  // Statistics over present rows [begin, end): min and max in the column order the
  // specification defines (signed for ints, unsigned bytes for strings, false < true, NaN
  // ignored, a zero min written as -0.0 and a zero max as +0.0).
  static pf::Statistics Stats(const ParquetColumn& c, int64_t begin, int64_t end) {
    pf::Statistics st;
    int64_t nulls = 0;
    int64_t lo = -1, hi = -1;
    for (int64_t r = begin; r < end; ++r) {
      if (c.IsNull(r)) {
        ++nulls;
        continue;
      }
      if (c.type == ParquetType::kFloat || c.type == ParquetType::kDouble) {
        if (std::isnan(c.doubles[r])) continue;
        if (lo < 0 || c.doubles[r] < c.doubles[lo]) lo = r;
        if (hi < 0 || c.doubles[r] > c.doubles[hi]) hi = r;
      } else if (c.type == ParquetType::kString) {
        const std::string& v = c.strings[c.string_index[r]];
        if (lo < 0 || v < c.strings[c.string_index[lo]]) lo = r;
        if (hi < 0 || v > c.strings[c.string_index[hi]]) hi = r;
      } else {
        if (lo < 0 || c.ints[r] < c.ints[lo]) lo = r;
        if (hi < 0 || c.ints[r] > c.ints[hi]) hi = r;
      }
    }
    st.__set_null_count(nulls);
    if (lo >= 0) {
      std::string mn, mx;
      if (c.type == ParquetType::kString) {
        mn = c.strings[c.string_index[lo]];
        mx = c.strings[c.string_index[hi]];
      } else if (c.type == ParquetType::kFloat || c.type == ParquetType::kDouble) {
        double a = c.doubles[lo], b = c.doubles[hi];
        if (a == 0.0) a = -0.0;
        if (b == 0.0) b = 0.0;
        if (c.type == ParquetType::kFloat) {
          AppendLE<float>(&mn, static_cast<float>(a));
          AppendLE<float>(&mx, static_cast<float>(b));
        } else {
          AppendLE<double>(&mn, a);
          AppendLE<double>(&mx, b);
        }
      } else {
        PlainValue(c, lo, &mn);
        PlainValue(c, hi, &mx);
      }
      st.__set_min_value(mn);
      st.__set_max_value(mx);
    }
    return st;
  }

  void CheckColumns(const std::vector<ParquetColumn>& columns) const {
    if (columns.size() != specs.size()) {
      throw Error(path + ": " + std::to_string(columns.size()) + " columns given, the schema has " +
                  std::to_string(specs.size()));
    }
    const int64_t n = columns.empty() ? 0 : columns[0].size();
    for (size_t c = 0; c < columns.size(); ++c) {
      const ParquetColumn& col = columns[c];
      const std::string where = path + ": column " + Quote(specs[c].name);
      if (col.type != specs[c].type) {
        throw Error(where + ": values of type " + ParquetTypeName(col.type) + ", the schema says " +
                    ParquetTypeName(specs[c].type));
      }
      if (col.size() != n)
        throw Error(where + ": " + std::to_string(col.size()) + " rows, column 0 has " +
                    std::to_string(n));
      if (!col.valid.empty() && static_cast<int64_t>(col.valid.size()) != n)
        throw Error(where + ": validity of the wrong length");
      for (int64_t r = 0; r < n; ++r) {
        if (col.IsNull(r)) {
          if (!specs[c].optional)
            throw Error(where + ": null in row " + std::to_string(r) + " of a REQUIRED column");
          continue;
        }
        if (col.type == ParquetType::kString &&
            (col.string_index[r] < 0 ||
             col.string_index[r] >= static_cast<int64_t>(col.strings.size()))) {
          throw Error(where + ": string index out of range in row " + std::to_string(r));
        }
        if (col.type == ParquetType::kInt32 &&
            (col.ints[r] < INT32_MIN || col.ints[r] > INT32_MAX)) {
          throw Error(where + ": row " + std::to_string(r + 1) + ": " +
                      std::to_string(col.ints[r]) + " does not fit an INT32 column");
        }
        if (col.type == ParquetType::kString && !IsUtf8(col.strings[col.string_index[r]])) {
          throw Error(where + ": row " + std::to_string(r + 1) + ": " +
                      Quote(col.strings[col.string_index[r]]) +
                      " is not valid UTF-8 (a Parquet STRING holds UTF-8 text)");
        }
      }
    }
  }

  // Appends rows [begin, end) of `from` to `to` (same type).
  static void AppendRows(const ParquetColumn& from, int64_t begin, int64_t end, ParquetColumn* to) {
    const int64_t before = to->size();
    if (!from.valid.empty() || !to->valid.empty()) {
      to->valid.resize(before, 1);
      for (int64_t r = begin; r < end; ++r) to->valid.push_back(from.IsNull(r) ? 0 : 1);
    }
    switch (from.type) {
      case ParquetType::kFloat:
      case ParquetType::kDouble:
        to->doubles.insert(to->doubles.end(), from.doubles.begin() + begin,
                           from.doubles.begin() + end);
        break;
      case ParquetType::kString:
        for (int64_t r = begin; r < end; ++r) {
          if (from.IsNull(r)) {
            to->string_index.push_back(-1);
          } else {
            to->string_index.push_back(static_cast<int32_t>(to->strings.size()));
            to->strings.push_back(from.strings[from.string_index[r]]);
          }
        }
        break;
      default:
        to->ints.insert(to->ints.end(), from.ints.begin() + begin, from.ints.begin() + end);
        break;
    }
  }

  struct Page {
    pf::PageHeader header;
    std::string body;  // compressed
  };

  Page MakePage(int32_t type, const std::string& raw) {
    Page page;
    Compress(options.compression, options.zstd_level, raw, &page.body);
    if (raw.size() > static_cast<size_t>(INT32_MAX) ||
        page.body.size() > static_cast<size_t>(INT32_MAX)) {
      throw Error(path + ": a page over 2 GiB (lower the page or row group size)");
    }
    page.header.type = type;
    page.header.uncompressed_page_size = static_cast<int32_t>(raw.size());
    page.header.compressed_page_size = static_cast<int32_t>(page.body.size());
    return page;
  }

  // One column chunk of rows [0, n) of `col`.
  pf::ColumnChunk WriteChunk(const ParquetColumnSpec& spec, const ParquetColumn& col) {
    const int64_t n = col.size();
    std::vector<Page> pages;
    std::vector<int32_t> encodings = {pf::Encoding::RLE};
    // Strings: a dictionary of distinct values in first-seen order until it passes
    // dictionary_bytes; the rows from the first page that needs a value beyond it go PLAIN.
    std::vector<int32_t> dict_index;  // per row: entry, or -1 (null / plain)
    std::vector<const std::string*> dict_values;
    int64_t dict_rows = 0;  // rows [0, dict_rows) are dictionary-encoded
    int64_t dict_size = 0;  // entries in the dictionary
    bool has_dict = false;
    if (spec.type == ParquetType::kString) {
      std::unordered_map<std::string_view, int32_t> entry_of;
      int64_t bytes = 0;
      dict_index.assign(n, -1);
      dict_rows = n;
      for (int64_t page_start = 0; page_start < n && dict_rows == n;
           page_start += options.page_rows) {
        const int64_t page_end = std::min(n, page_start + options.page_rows);
        const size_t entries_before = dict_values.size();
        const int64_t bytes_before = bytes;
        for (int64_t r = page_start; r < page_end; ++r) {
          if (col.IsNull(r)) continue;
          const std::string& v = col.strings[col.string_index[r]];
          auto [it, added] =
              entry_of.emplace(std::string_view(v), static_cast<int32_t>(dict_values.size()));
          if (added) {
            dict_values.push_back(&v);
            bytes += 4 + static_cast<int64_t>(v.size());
          }
          dict_index[r] = it->second;
        }
        if (bytes > options.dictionary_bytes && page_start > 0) {
          // This page's new entries would overflow: it and every later page go PLAIN.
          for (size_t e = entries_before; e < dict_values.size(); ++e)
            entry_of.erase(*dict_values[e]);
          dict_values.resize(entries_before);
          bytes = bytes_before;
          dict_rows = page_start;
        } else if (bytes > options.dictionary_bytes) {
          dict_rows = 0;  // even the first page is too varied: no dictionary at all
        }
      }
      has_dict = dict_rows > 0 && !dict_values.empty();
      if (!has_dict) dict_rows = 0;
      if (has_dict) {
        std::string raw;
        for (const std::string* v : dict_values) {
          AppendLE<uint32_t>(&raw, static_cast<uint32_t>(v->size()));
          raw += *v;
        }
        Page page = MakePage(pf::PageType::DICTIONARY_PAGE, raw);
        pf::DictionaryPageHeader dh;
        dh.num_values = static_cast<int32_t>(dict_values.size());
        dh.encoding = pf::Encoding::PLAIN;
        page.header.__set_dictionary_page_header(dh);
        pages.push_back(std::move(page));
        encodings.push_back(pf::Encoding::PLAIN);  // the dictionary page's
        encodings.push_back(pf::Encoding::RLE_DICTIONARY);
      }
      if (dict_rows < n &&
          std::find(encodings.begin(), encodings.end(), pf::Encoding::PLAIN) == encodings.end()) {
        encodings.push_back(pf::Encoding::PLAIN);
      }
    } else if (spec.type != ParquetType::kBoolean) {
      // Numbers: a dictionary for the whole chunk when its values fit dictionary_bytes and it
      // makes the chunk at least a quarter smaller than PLAIN (ratings, flags, item ids of a
      // modest catalogue), as DuckDB and parquet-mr decide per chunk. Entries are keyed by the
      // values' bits, so -0.0 and +0.0 and each NaN stay what they were.
      const int width = ValueWidth(spec.type);
      std::unordered_map<uint64_t, int32_t> entry_of;
      std::string raw;
      dict_index.assign(n, -1);
      int64_t present = 0;
      bool fits = true;
      // Integers of a small range (ratings, flags, ids of a modest catalogue) find their entry
      // in a table indexed by value - min, not a hash map.
      int64_t lo = 0, hi = -1;
      if (spec.type == ParquetType::kInt32 || spec.type == ParquetType::kInt64) {
        for (int64_t r = 0; r < n; ++r) {
          if (col.IsNull(r)) continue;
          if (hi < lo) {
            lo = hi = col.ints[r];
          } else {
            lo = std::min(lo, col.ints[r]);
            hi = std::max(hi, col.ints[r]);
          }
        }
      }
      const bool dense =
          hi >= lo && static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) <
                          static_cast<uint64_t>(std::min<int64_t>(int64_t{1} << 22, 4 * n));
      int64_t dense_entries = 0;
      if (dense) {
        std::vector<int32_t> slot(static_cast<size_t>(hi - lo) + 1, -1);
        int32_t entries = 0;
        for (int64_t r = 0; r < n && fits; ++r) {
          if (col.IsNull(r)) continue;
          ++present;
          int32_t& e = slot[static_cast<size_t>(col.ints[r] - lo)];
          if (e < 0) {
            if (int64_t{entries + 1} * width > options.dictionary_bytes) {
              fits = false;
              break;
            }
            e = entries++;
            PlainValue(col, r, &raw);
          }
          dict_index[r] = e;
          if (r + 1 == std::min<int64_t>(n, options.page_rows) &&
              4 * int64_t{entries} > 3 * present) {
            fits = false;
          }
        }
        dense_entries = entries;
      }
      for (int64_t r = 0; r < n && fits && !dense; ++r) {
        if (col.IsNull(r)) continue;
        ++present;
        uint64_t key = 0;
        if (spec.type == ParquetType::kFloat) {
          key = std::bit_cast<uint32_t>(static_cast<float>(col.doubles[r]));
        } else if (spec.type == ParquetType::kDouble) {
          key = std::bit_cast<uint64_t>(col.doubles[r]);
        } else {
          key = static_cast<uint64_t>(col.ints[r]);
        }
        auto [it, added] = entry_of.emplace(key, static_cast<int32_t>(entry_of.size()));
        if (added) {
          if (static_cast<int64_t>(entry_of.size()) * width > options.dictionary_bytes) {
            fits = false;
            break;
          }
          PlainValue(col, r, &raw);
        }
        dict_index[r] = it->second;
        // Nearly every value new on the first page (ids of a large catalogue, measurements):
        // no dictionary will pay, and hashing the rest of the chunk would cost more than PLAIN.
        if (r + 1 == std::min<int64_t>(n, options.page_rows) &&
            4 * static_cast<int64_t>(entry_of.size()) > 3 * present) {
          fits = false;
        }
      }
      const int64_t d = dense ? dense_entries : static_cast<int64_t>(entry_of.size());
      const int64_t dict_cost =
          d * width + (present * std::max(1, BitWidth(d > 0 ? d - 1 : 0)) + 7) / 8;
      if (fits && d > 0 && 4 * dict_cost <= 3 * present * width) {
        has_dict = true;
        dict_rows = n;
        dict_size = d;
        Page page = MakePage(pf::PageType::DICTIONARY_PAGE, raw);
        pf::DictionaryPageHeader dh;
        dh.num_values = static_cast<int32_t>(d);
        dh.encoding = pf::Encoding::PLAIN;
        page.header.__set_dictionary_page_header(dh);
        pages.push_back(std::move(page));
        encodings.push_back(pf::Encoding::PLAIN);
        encodings.push_back(pf::Encoding::RLE_DICTIONARY);
      } else {
        encodings.push_back(pf::Encoding::PLAIN);
      }
    } else {
      encodings.push_back(pf::Encoding::PLAIN);
    }
    if (spec.type == ParquetType::kString) dict_size = static_cast<int64_t>(dict_values.size());
    std::vector<uint32_t> buffer;
    for (int64_t page_start = 0; page_start < n; page_start += options.page_rows) {
      const int64_t page_end = std::min(n, page_start + options.page_rows);
      std::string raw;
      if (spec.optional) {
        buffer.clear();
        for (int64_t r = page_start; r < page_end; ++r) buffer.push_back(col.IsNull(r) ? 0 : 1);
        std::string levels;
        EncodeHybrid(buffer.data(), static_cast<int64_t>(buffer.size()), 1, &levels);
        AppendLE<uint32_t>(&raw, static_cast<uint32_t>(levels.size()));
        raw += levels;
      }
      const bool dict_page = has_dict && page_start < dict_rows;
      if (dict_page) {
        buffer.clear();
        for (int64_t r = page_start; r < page_end; ++r) {
          if (!col.IsNull(r)) buffer.push_back(static_cast<uint32_t>(dict_index[r]));
        }
        const int width = std::max(1, BitWidth(static_cast<uint64_t>(dict_size - 1)));
        raw.push_back(static_cast<char>(width));
        EncodeHybrid(buffer.data(), static_cast<int64_t>(buffer.size()), width, &raw);
      } else if (spec.type == ParquetType::kBoolean) {
        uint8_t byte = 0;
        int bits = 0;
        for (int64_t r = page_start; r < page_end; ++r) {
          if (col.IsNull(r)) continue;
          if (col.ints[r] != 0) byte |= static_cast<uint8_t>(1 << bits);
          if (++bits == 8) {
            raw.push_back(static_cast<char>(byte));
            byte = 0;
            bits = 0;
          }
        }
        if (bits > 0) raw.push_back(static_cast<char>(byte));
      } else {
        for (int64_t r = page_start; r < page_end; ++r) {
          if (!col.IsNull(r)) PlainValue(col, r, &raw);
        }
      }
      Page page = MakePage(pf::PageType::DATA_PAGE, raw);
      pf::DataPageHeader dh;
      dh.num_values = static_cast<int32_t>(page_end - page_start);
      dh.encoding = dict_page ? pf::Encoding::RLE_DICTIONARY : pf::Encoding::PLAIN;
      dh.definition_level_encoding = pf::Encoding::RLE;
      dh.repetition_level_encoding = pf::Encoding::RLE;
      dh.__set_statistics(Stats(col, page_start, page_end));
      page.header.__set_data_page_header(dh);
      pages.push_back(std::move(page));
    }
    pf::ColumnMetaData md;
    md.type = PhysicalOf(spec.type);
    md.encodings = encodings;
    md.path_in_schema = {spec.name};
    md.codec = CodecOf(options.compression);
    md.num_values = n;
    int64_t compressed = 0, uncompressed = 0;
    const int64_t chunk_start = offset;
    for (size_t i = 0; i < pages.size(); ++i) {
      const Page& page = pages[i];
      if (page.header.type == pf::PageType::DICTIONARY_PAGE) {
        md.__set_dictionary_page_offset(offset);
      } else if (md.data_page_offset == 0) {
        md.data_page_offset = offset;
      }
      const std::string header = ThriftWrite(page.header);
      Emit(header);
      Emit(page.body);
      compressed += static_cast<int64_t>(header.size() + page.body.size());
      uncompressed += static_cast<int64_t>(header.size()) + page.header.uncompressed_page_size;
    }
    md.total_compressed_size = compressed;
    md.total_uncompressed_size = uncompressed;
    md.__set_statistics(Stats(col, 0, n));
    pf::ColumnChunk cc;
    cc.file_offset = chunk_start;
    cc.__set_meta_data(md);
    return cc;
  }

  void FlushRowGroup() {
    pf::RowGroup rg;
    rg.num_rows = pending_rows;
    rg.__set_file_offset(offset);
    const int64_t start = offset;
    int64_t total = 0;
    for (size_t c = 0; c < specs.size(); ++c) {
      pf::ColumnChunk cc = WriteChunk(specs[c], pending[c]);
      total += cc.meta_data.total_uncompressed_size;
      rg.columns.push_back(cc);
    }
    rg.total_byte_size = total;
    rg.__set_total_compressed_size(offset - start);
    rg.__set_ordinal(static_cast<int16_t>(std::min<size_t>(meta.row_groups.size(), INT16_MAX)));
    meta.row_groups.push_back(rg);
    meta.num_rows += pending_rows;
    for (ParquetColumn& p : pending) p.Clear();
    pending_rows = 0;
  }
};

ParquetWriter::ParquetWriter(const std::string& path, std::vector<ParquetColumnSpec> columns,
                             ParquetWriteOptions options)
    : impl_(std::make_unique<Impl>()) {
  Impl& w = *impl_;
  w.path = path;
  w.specs = std::move(columns);
  w.options = options;
  if (w.specs.empty()) throw Error(path + ": a Parquet table needs at least one column");
  for (size_t i = 0; i < w.specs.size(); ++i) {
    if (w.specs[i].name.empty())
      throw Error(path + ": column " + std::to_string(i + 1) + " has an empty name");
    for (size_t j = 0; j < i; ++j) {
      if (w.specs[j].name == w.specs[i].name)
        throw Error(path + ": column " + Quote(w.specs[i].name) + " given twice");
    }
  }
  if (options.row_group_rows < 1) throw Error(path + ": row group size must be at least 1 row");
  if (options.page_rows < 1) throw Error(path + ": page size must be at least 1 row");
  w.meta.version = 1;
  w.meta.__set_created_by("twotower version " TWOTOWER_VERSION);
  pf::SchemaElement root;
  root.name = "schema";
  root.__set_num_children(static_cast<int32_t>(w.specs.size()));
  w.meta.schema.push_back(root);
  std::vector<pf::ColumnOrder> orders;
  for (const ParquetColumnSpec& spec : w.specs) {
    pf::SchemaElement e;
    e.name = spec.name;
    e.__set_type(PhysicalOf(spec.type));
    e.__set_repetition_type(spec.optional ? pf::FieldRepetitionType::OPTIONAL
                                          : pf::FieldRepetitionType::REQUIRED);
    if (spec.type == ParquetType::kString) {
      e.__set_converted_type(pf::ConvertedType::UTF8);
      pf::LogicalType t;
      t.__set_STRING(pf::StringType());
      e.__set_logicalType(t);
    }
    w.meta.schema.push_back(e);
    pf::ColumnOrder order;
    order.__set_TYPE_ORDER(pf::TypeDefinedOrder());
    orders.push_back(order);
    ParquetColumn empty;
    empty.type = spec.type;
    w.pending.push_back(empty);
  }
  w.meta.__set_column_orders(orders);
  if (!options.key_value_metadata.empty()) {
    std::vector<pf::KeyValue> kvs;
    for (const auto& [key, value] : options.key_value_metadata) {
      pf::KeyValue kv;
      kv.key = key;
      kv.__set_value(value);
      kvs.push_back(kv);
    }
    w.meta.__set_key_value_metadata(kvs);
  }
  w.file = std::make_unique<AtomicFile>(path);
  w.Emit(std::string_view(kMagic, 4));
}

ParquetWriter::~ParquetWriter() = default;

void ParquetWriter::Write(const std::vector<ParquetColumn>& columns) {
  Impl& w = *impl_;
  if (w.closed) throw Error(w.path + ": Write after Close");
  w.CheckColumns(columns);
  const int64_t n = columns[0].size();
  int64_t r = 0;
  while (r < n) {
    const int64_t take = std::min(n - r, w.options.row_group_rows - w.pending_rows);
    for (size_t c = 0; c < columns.size(); ++c)
      Impl::AppendRows(columns[c], r, r + take, &w.pending[c]);
    w.pending_rows += take;
    r += take;
    if (w.pending_rows == w.options.row_group_rows) w.FlushRowGroup();
  }
}

void ParquetWriter::Close() {
  Impl& w = *impl_;
  if (w.closed) return;
  if (w.pending_rows > 0) w.FlushRowGroup();  // an empty table has no row group
  const std::string footer = ThriftWrite(w.meta);
  w.Emit(footer);
  std::string tail;
  AppendLE<uint32_t>(&tail, static_cast<uint32_t>(footer.size()));
  tail.append(kMagic, 4);
  w.Emit(tail);
  w.file->Commit();
  w.closed = true;
}

}  // namespace twotower::data
