#include "twotower/data/parquet.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <snappy.h>
#include <thrift/protocol/TCompactProtocol.h>
#include <thrift/transport/TBufferTransports.h>
#include <zlib.h>
#include <zstd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "parquet_types.h"
#include "testing/temp_dir.h"
#include "twotower/core/error.h"
#include "twotower/data/dataset.h"
#include "twotower/data/table.h"

// Files here are built by hand: page bodies are bytes written out from the Parquet encodings
// document, page headers and footers are serialised by libthrift (not by the code under test),
// and compressed bodies come from the codec libraries directly. The expected values are the ones
// the bytes were made from.

namespace twotower::data {
namespace {

namespace pf = parquet_format;
using ::testing::HasSubstr;
using twotower::testing::ErrorMessage;
using twotower::testing::ReadBytes;
using twotower::testing::TempDir;

template <typename T>
std::string Thrift(const T& value) {
  auto buffer = std::make_shared<apache::thrift::transport::TMemoryBuffer>();
  apache::thrift::protocol::TCompactProtocolT<apache::thrift::transport::TMemoryBuffer> protocol(
      buffer);
  value.write(&protocol);
  return buffer->getBufferAsString();
}

std::string U32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string I32(int32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string I64(int64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
std::string F64(double v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
std::string Str(const std::string& s) { return U32(static_cast<uint32_t>(s.size())) + s; }

std::string Snappy(const std::string& raw) {
  std::string out;
  snappy::Compress(raw.data(), raw.size(), &out);
  return out;
}
std::string Zstd(const std::string& raw) {
  std::string out(ZSTD_compressBound(raw.size()), '\0');
  out.resize(ZSTD_compress(out.data(), out.size(), raw.data(), raw.size(), 1));
  return out;
}
std::string Gzip(const std::string& raw) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, raw.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(out.size() - z.avail_out);
  deflateEnd(&z);
  return out;
}

// A page: its header (sizes from the raw and stored bodies unless given) and stored body.
struct Page {
  pf::PageHeader header;
  std::string body;
};

Page DataPageV1(int32_t num_values, pf::Encoding::type encoding, const std::string& raw,
                const std::string& stored) {
  Page p;
  p.header.type = pf::PageType::DATA_PAGE;
  p.header.uncompressed_page_size = static_cast<int32_t>(raw.size());
  p.header.compressed_page_size = static_cast<int32_t>(stored.size());
  pf::DataPageHeader h;
  h.num_values = num_values;
  h.encoding = encoding;
  h.definition_level_encoding = pf::Encoding::RLE;
  h.repetition_level_encoding = pf::Encoding::RLE;
  p.header.__set_data_page_header(h);
  p.body = stored;
  return p;
}

Page DictionaryPage(int32_t num_values, const std::string& raw, const std::string& stored,
                    pf::Encoding::type encoding = pf::Encoding::PLAIN) {
  Page p;
  p.header.type = pf::PageType::DICTIONARY_PAGE;
  p.header.uncompressed_page_size = static_cast<int32_t>(raw.size());
  p.header.compressed_page_size = static_cast<int32_t>(stored.size());
  pf::DictionaryPageHeader h;
  h.num_values = num_values;
  h.encoding = encoding;
  p.header.__set_dictionary_page_header(h);
  p.body = stored;
  return p;
}

Page DataPageV2(int32_t num_values, int32_t num_nulls, pf::Encoding::type encoding,
                const std::string& levels, const std::string& raw, const std::string& stored,
                bool compressed = true) {
  Page p;
  p.header.type = pf::PageType::DATA_PAGE_V2;
  p.header.uncompressed_page_size = static_cast<int32_t>(levels.size() + raw.size());
  p.header.compressed_page_size = static_cast<int32_t>(levels.size() + stored.size());
  pf::DataPageHeaderV2 h;
  h.num_values = num_values;
  h.num_nulls = num_nulls;
  h.num_rows = num_values;
  h.encoding = encoding;
  h.definition_levels_byte_length = static_cast<int32_t>(levels.size());
  h.repetition_levels_byte_length = 0;
  if (!compressed) h.__set_is_compressed(false);
  p.header.__set_data_page_header_v2(h);
  p.body = levels + stored;
  return p;
}

struct Column {
  Column(std::string n, pf::Type::type t, bool opt = false)
      : name(std::move(n)), type(t), optional(opt) {}
  std::string name;
  pf::Type::type type;
  bool optional = false;
  pf::CompressionCodec::type codec = pf::CompressionCodec::UNCOMPRESSED;
  std::vector<Page> pages;  // one chunk (one row group)
  int converted = -1;       // ConvertedType, or -1
};

// A whole file of one row group of `rows` rows.
std::string BuildFile(const std::vector<Column>& columns, int64_t rows) {
  std::string out = "PAR1";
  pf::FileMetaData meta;
  meta.version = 1;
  meta.num_rows = rows;
  pf::SchemaElement root;
  root.name = "schema";
  root.__set_num_children(static_cast<int32_t>(columns.size()));
  meta.schema.push_back(root);
  pf::RowGroup rg;
  rg.num_rows = rows;
  rg.total_byte_size = 0;
  for (const Column& c : columns) {
    pf::SchemaElement e;
    e.name = c.name;
    e.__set_type(c.type);
    e.__set_repetition_type(c.optional ? pf::FieldRepetitionType::OPTIONAL
                                       : pf::FieldRepetitionType::REQUIRED);
    if (c.converted >= 0) e.__set_converted_type(static_cast<pf::ConvertedType::type>(c.converted));
    meta.schema.push_back(e);
    pf::ColumnMetaData md;
    md.type = c.type;
    md.encodings = {pf::Encoding::PLAIN, pf::Encoding::RLE};
    md.path_in_schema = {c.name};
    md.codec = c.codec;
    md.num_values = rows;
    const int64_t start = static_cast<int64_t>(out.size());
    for (const Page& p : c.pages) {
      const int64_t at = static_cast<int64_t>(out.size());
      if (p.header.type == pf::PageType::DICTIONARY_PAGE) {
        md.__set_dictionary_page_offset(at);
      } else if (md.data_page_offset == 0) {
        md.data_page_offset = at;
      }
      out += Thrift(p.header) + p.body;
    }
    md.total_compressed_size = static_cast<int64_t>(out.size()) - start;
    md.total_uncompressed_size = md.total_compressed_size;
    pf::ColumnChunk cc;
    cc.file_offset = start;
    cc.__set_meta_data(md);
    rg.columns.push_back(cc);
  }
  meta.row_groups.push_back(rg);
  const std::string footer = Thrift(meta);
  return out + footer + U32(static_cast<uint32_t>(footer.size())) + "PAR1";
}

// Definition levels as a v1 page carries them: a 4-byte length, then the hybrid.
std::string V1Levels(const std::string& hybrid) {
  return U32(static_cast<uint32_t>(hybrid.size())) + hybrid;
}

TEST(ParquetReaderTest, ReadsPlainRequiredAndOptionalColumnsBuiltByHand) {
  TempDir dir;
  // id: INT32 1, 2, 3 (PLAIN). name: OPTIONAL UTF8 "a", null, "cc": levels 1, 0, 1 as one
  // bit-packed group (header (1 << 1) | 1 = 0x03, bits 101 -> 0x05), values PLAIN.
  Column id{"id", pf::Type::INT32};
  const std::string ids = I32(1) + I32(2) + I32(3);
  id.pages.push_back(DataPageV1(3, pf::Encoding::PLAIN, ids, ids));
  Column name{"name", pf::Type::BYTE_ARRAY, true};
  name.converted = pf::ConvertedType::UTF8;
  const std::string names = V1Levels("\x03\x05") + Str("a") + Str("cc");
  name.pages.push_back(DataPageV1(3, pf::Encoding::PLAIN, names, names));
  const std::string path = dir.Write("t.parquet", BuildFile({id, name}, 3));

  ParquetReader reader(path);
  ASSERT_EQ(reader.num_rows(), 3);
  ASSERT_EQ(reader.columns().size(), 2u);
  EXPECT_EQ(reader.columns()[1].type, ParquetType::kString);
  EXPECT_TRUE(reader.columns()[1].optional);
  ParquetColumn c;
  reader.ReadColumn(0, 0, &c);
  EXPECT_EQ(c.ints, (ParquetColumn::Ints{1, 2, 3}));
  reader.ReadColumn(0, 1, &c);
  EXPECT_EQ(c.Text(0), "a");
  EXPECT_TRUE(c.IsNull(1));
  EXPECT_EQ(c.Text(2), "cc");

  const Table table = ReadTable(path);
  EXPECT_EQ(table.Column("name"), (std::vector<std::string>{"a", "", "cc"}));
  EXPECT_EQ(table.Where(1), path + ": row 2");
}

TEST(ParquetReaderTest, DecodesTheSpecificationsBitPackingExample) {
  TempDir dir;
  // The encodings document's example: 0..7 bit-packed at width 3 are the bytes 0x88 0xC6 0xFA.
  // Used as dictionary indices (RLE_DICTIONARY, bit width byte 3) into an 8-entry INT64
  // dictionary of 100, 101, ..., 107.
  std::string dict;
  for (int i = 0; i < 8; ++i) dict += I64(100 + i);
  const std::string data = std::string("\x03") + "\x03" + "\x88\xC6\xFA";
  Column c{"v", pf::Type::INT64};
  c.pages.push_back(DictionaryPage(8, dict, dict));
  c.pages.push_back(DataPageV1(8, pf::Encoding::RLE_DICTIONARY, data, data));
  ParquetReader reader(dir.Write("t.parquet", BuildFile({c}, 8)));
  ParquetColumn col;
  reader.ReadColumn(0, 0, &col);
  EXPECT_EQ(col.ints, (ParquetColumn::Ints{100, 101, 102, 103, 104, 105, 106, 107}));
}

TEST(ParquetReaderTest, ReadsAChunkThatFallsBackFromDictionaryToPlain) {
  TempDir dir;
  // Dictionary "x", "y"; page 1: indices 1, 0, 1 as a repeated run of 1 then ... written as
  // bit-packed (one group: bits 1,0,1 -> 0x05); page 2 PLAIN "z", "x"; old-style
  // PLAIN_DICTIONARY encoding on page 1.
  const std::string dict = Str("x") + Str("y");
  const std::string page1 = std::string("\x01") + "\x03\x05";
  const std::string page2 = Str("z") + Str("x");
  Column c{"s", pf::Type::BYTE_ARRAY};
  c.codec = pf::CompressionCodec::SNAPPY;
  c.pages.push_back(DictionaryPage(2, dict, Snappy(dict), pf::Encoding::PLAIN_DICTIONARY));
  c.pages.push_back(DataPageV1(3, pf::Encoding::PLAIN_DICTIONARY, page1, Snappy(page1)));
  c.pages.push_back(DataPageV1(2, pf::Encoding::PLAIN, page2, Snappy(page2)));
  const Table t = ReadTable(dir.Write("t.parquet", BuildFile({c}, 5)));
  EXPECT_EQ(t.Column("s"), (std::vector<std::string>{"y", "x", "y", "z", "x"}));
}

TEST(ParquetReaderTest, ReadsDataPagesV2WithNullsAndEachCodec) {
  TempDir dir;
  // OPTIONAL DOUBLE 1.5, null, null, -2: levels 1,0,0,1 (bit-packed 0x09, v2: no length
  // prefix, never compressed), values PLAIN.
  const std::string levels = "\x03\x09";
  const std::string raw = F64(1.5) + F64(-2.0);
  struct Case {
    pf::CompressionCodec::type codec;
    std::string stored;
    bool compressed;
  };
  const std::vector<Case> cases = {{pf::CompressionCodec::UNCOMPRESSED, raw, true},
                                   {pf::CompressionCodec::SNAPPY, Snappy(raw), true},
                                   {pf::CompressionCodec::GZIP, Gzip(raw), true},
                                   {pf::CompressionCodec::ZSTD, Zstd(raw), true},
                                   {pf::CompressionCodec::ZSTD, raw, false}};
  for (const Case& k : cases) {
    Column c{"d", pf::Type::DOUBLE, true};
    c.codec = k.codec;
    c.pages.push_back(DataPageV2(4, 2, pf::Encoding::PLAIN, levels, raw, k.stored, k.compressed));
    const Table t = ReadTable(dir.Write("t.parquet", BuildFile({c}, 4)));
    EXPECT_EQ(t.Column("d"), (std::vector<std::string>{"1.5", "", "", "-2"}))
        << "codec " << k.codec << " compressed " << k.compressed;
  }
}

TEST(ParquetReaderTest, ReadsRleBooleansAndUnsignedIntegers) {
  TempDir dir;
  // BOOLEAN RLE (v2): 4-byte length, then a repeated run of 3 trues (header 3 << 1 = 0x06,
  // value 0x01) and one false (0x02, 0x00).
  const std::string rle = U32(4) + std::string("\x06\x01\x02\x00", 4);
  Column b{"b", pf::Type::BOOLEAN};
  b.pages.push_back(DataPageV2(4, 0, pf::Encoding::RLE, "", rle, rle));
  // UINT_32 4294967295 and 7 stored as INT32 bits.
  Column u{"u", pf::Type::INT32};
  u.converted = pf::ConvertedType::UINT_32;
  const std::string uints = I32(-1) + I32(7) + I32(0) + I32(1);
  u.pages.push_back(DataPageV1(4, pf::Encoding::PLAIN, uints, uints));
  const Table t = ReadTable(dir.Write("t.parquet", BuildFile({b, u}, 4)));
  EXPECT_EQ(t.Column("b"), (std::vector<std::string>{"true", "true", "true", "false"}));
  EXPECT_EQ(t.Column("u"), (std::vector<std::string>{"4294967295", "7", "0", "1"}));
}

TEST(ParquetReaderTest, DecodesTheDeltaAndByteStreamSplitEncodingsFromTheSpecification) {
  TempDir dir;
  // DELTA_BINARY_PACKED, the encodings document's two examples. Header: block size 128 (ULEB
  // 0x80 0x01), 4 miniblocks, the value count, the first value zigzag-encoded.
  // 1 2 3 4 5: min delta 1 (zigzag 0x02), every miniblock bit width 0, no packed bytes.
  const std::string ex1 = std::string("\x80\x01\x04\x05\x02", 5) + "\x02" + std::string(4, '\0');
  // 7 5 3 1 2 3 4 5: deltas -2 -2 -2 1 1 1 1, min delta -2 (zigzag 0x03), relative 0 0 0 3 3 3 3
  // at bit width 2 in the first miniblock (32 values, 8 bytes): 0xC0 0x3F then zeros.
  const std::string ex2 = std::string("\x80\x01\x04\x08\x0e", 5) + "\x03" +
                          std::string("\x02\x00\x00\x00", 4) + std::string("\xc0\x3f", 2) +
                          std::string(6, '\0');
  // The row group has 8 rows: column a gets 6 7 8 as a PLAIN page after its 5.
  Column a{"a", pf::Type::INT32};
  a.pages.push_back(DataPageV1(5, pf::Encoding::DELTA_BINARY_PACKED, ex1, ex1));
  const std::string tail = I32(6) + I32(7) + I32(8);
  a.pages.push_back(DataPageV1(3, pf::Encoding::PLAIN, tail, tail));
  Column b{"b", pf::Type::INT64};
  b.pages.push_back(DataPageV1(8, pf::Encoding::DELTA_BINARY_PACKED, ex2, ex2));
  // BYTE_STREAM_SPLIT FLOAT 1.0 (00 00 80 3F) and -2.0 (00 00 00 C0) as 4 streams of 2 bytes,
  // then PLAIN for the other 6 rows.
  Column f{"f", pf::Type::FLOAT};
  const std::string split("\x00\x00\x00\x00\x80\x00\x3f\xc0", 8);
  f.pages.push_back(DataPageV1(2, pf::Encoding::BYTE_STREAM_SPLIT, split, split));
  std::string rest;
  for (int i = 0; i < 6; ++i) {
    const float v = 0.5f * i;
    rest += std::string(reinterpret_cast<const char*>(&v), 4);
  }
  f.pages.push_back(DataPageV1(6, pf::Encoding::PLAIN, rest, rest));
  // DELTA_LENGTH_BYTE_ARRAY "ab", "", "xyz": lengths 2 0 3 (first 2, zigzag 0x04), deltas -2 3,
  // min delta -2 (0x03), relative 0 5 at bit width 3 (12 bytes: 5 << 3 = 0x28, zeros), then the
  // bytes "abxyz". DELTA_BYTE_ARRAY "abc", "abd", "x": prefix lengths 0 2 0, suffix lengths 3 1 1
  // as DELTA_BINARY_PACKED, then "abc" "d" "x".
  const std::string dlba = std::string("\x80\x01\x04\x03\x04", 5) + "\x03" +
                           std::string("\x03\x00\x00\x00", 4) + "\x28" + std::string(11, '\0') +
                           "abxyz";
  // prefixes 0 2 0: first 0, deltas 2 -2, min -2 (0x03), relative 4 0, width 3: 4 = 0x04.
  const std::string prefixes = std::string("\x80\x01\x04\x03\x00", 5) + "\x03" +
                               std::string("\x03\x00\x00\x00", 4) + "\x04" + std::string(11, '\0');
  // suffix lengths 3 1 1: first 3 (zigzag 0x06), deltas -2 0, min -2, relative 0 2, width 2:
  // 2 << 2 = 0x08 (8 bytes).
  const std::string suffixes = std::string("\x80\x01\x04\x03\x06", 5) + "\x03" +
                               std::string("\x02\x00\x00\x00", 4) + "\x08" + std::string(7, '\0') +
                               "abcdx";
  Column s{"s", pf::Type::BYTE_ARRAY};
  s.pages.push_back(DataPageV1(3, pf::Encoding::DELTA_LENGTH_BYTE_ARRAY, dlba, dlba));
  const std::string dba = prefixes + suffixes;
  s.pages.push_back(DataPageV1(3, pf::Encoding::DELTA_BYTE_ARRAY, dba, dba));
  const std::string last = Str("p") + Str("q");
  s.pages.push_back(DataPageV1(2, pf::Encoding::PLAIN, last, last));
  const Table t = ReadTable(dir.Write("t.parquet", BuildFile({a, b, f, s}, 8)));
  EXPECT_EQ(t.Column("a"), (std::vector<std::string>{"1", "2", "3", "4", "5", "6", "7", "8"}));
  EXPECT_EQ(t.Column("b"), (std::vector<std::string>{"7", "5", "3", "1", "2", "3", "4", "5"}));
  EXPECT_EQ(t.Column("f"),
            (std::vector<std::string>{"1", "-2", "0", "0.5", "1", "1.5", "2", "2.5"}));
  EXPECT_EQ(t.Column("s"),
            (std::vector<std::string>{"ab", "", "xyz", "abc", "abd", "x", "p", "q"}));
}

TEST(ParquetReaderTest, BoundsTheTextSharedPrefixesExpandTo) {
  TempDir dir;
  // DELTA_BYTE_ARRAY: 9 values, the first 200 x's, each next one sharing all 200 bytes.
  // Prefix lengths 0, 200 x 8: first 0, deltas 200 then 0 (min delta 0), width 8.
  std::string prefixes = std::string("\x80\x01\x04\x09\x00", 5) + std::string("\x00", 1) +
                         std::string("\x08\x00\x00\x00", 4) + "\xc8" + std::string(31, '\0');
  // Suffix lengths 200, 0 x 8: first 200 (zigzag 400: 0x90 0x03), deltas -200 then 0 (min -200,
  // zigzag 399: 0x8f 0x03), relative 0 then 200 x 7, width 8.
  std::string suffixes = std::string("\x80\x01\x04\x09\x90\x03", 6) + "\x8f\x03" +
                         std::string("\x08\x00\x00\x00", 4) + std::string(1, '\0') +
                         std::string(7, '\xc8') + std::string(24, '\0') + std::string(200, 'x');
  const std::string page = prefixes + suffixes;
  Column c{"s", pf::Type::BYTE_ARRAY};
  c.pages.push_back(DataPageV1(9, pf::Encoding::DELTA_BYTE_ARRAY, page, page));
  const std::string path = dir.Write("t.parquet", BuildFile({c}, 9));
  const Table t = ReadTable(path);
  EXPECT_EQ(t.Column("s"), std::vector<std::string>(9, std::string(200, 'x')));
  ParquetReadOptions small;
  small.max_chunk_bytes = 1000;  // 1,800 bytes of text from a 300-byte page
  ParquetReader reader(path, small);
  ParquetColumn col;
  EXPECT_THAT(
      ErrorMessage([&] { reader.ReadColumn(0, 0, &col); }),
      HasSubstr("the chunk's strings would take more than the reader's limit of 1000 bytes"));
  EXPECT_EQ(col.size(), 0);
}

TEST(ParquetReaderTest, RefusesMalformedFilesNamingWhatIsWrong) {
  TempDir dir;
  const std::string good = I32(1) + I32(2);
  Column c{"id", pf::Type::INT32};
  c.pages.push_back(DataPageV1(2, pf::Encoding::PLAIN, good, good));
  const std::string file = BuildFile({c}, 2);

  auto error = [&](const std::string& bytes) {
    const std::string path = dir.Write("bad.parquet", bytes);
    return ErrorMessage([&] {
      ParquetReader reader(path);
      ParquetColumn col;
      for (int g = 0; g < reader.num_row_groups(); ++g) reader.ReadColumn(g, 0, &col);
    });
  };
  EXPECT_THAT(error("PAR1"), HasSubstr("too short for a Parquet file"));
  EXPECT_THAT(error("XXXX" + file.substr(4)), HasSubstr("expected the magic bytes PAR1"));
  EXPECT_THAT(error(file.substr(0, file.size() - 1) + "X"), HasSubstr("PAR1"));
  std::string long_footer = file;
  std::memcpy(&long_footer[long_footer.size() - 8], U32(1u << 30).data(), 4);
  EXPECT_THAT(error(long_footer), HasSubstr("does not fit in a file"));
  // A footer cut short: its last 5 bytes are gone, the length and magic are kept.
  const std::string cut = file.substr(0, file.size() - 13) + file.substr(file.size() - 8);
  EXPECT_THAT(error(cut), HasSubstr("bad.parquet: "));
  // Too few values in the page for the row group.
  Column few{"id", pf::Type::INT32};
  few.pages.push_back(DataPageV1(2, pf::Encoding::PLAIN, I32(1), I32(1)));
  EXPECT_THAT(error(BuildFile({few}, 2)), HasSubstr("PLAIN values need 8 bytes, the page has 4"));
  // A page whose body runs past the chunk.
  Column past{"id", pf::Type::INT32};
  Page p = DataPageV1(2, pf::Encoding::PLAIN, good, good);
  p.header.compressed_page_size = 1000;
  past.pages.push_back(p);
  EXPECT_THAT(error(BuildFile({past}, 2)), HasSubstr("runs past the chunk's end"));
}

TEST(ParquetReaderTest, RefusesADictionaryIndexOutOfRange) {
  TempDir dir;
  const std::string dict = I64(10) + I64(20);
  // Bit width 2, one bit-packed group: indices 3, 0, ... (0x03 = index 3 first).
  const std::string data = std::string("\x02\x03\x03\x00", 4);
  Column c{"v", pf::Type::INT64};
  c.pages.push_back(DictionaryPage(2, dict, dict));
  c.pages.push_back(DataPageV1(2, pf::Encoding::RLE_DICTIONARY, data, data));
  ParquetReader reader(dir.Write("t.parquet", BuildFile({c}, 2)));
  ParquetColumn col;
  EXPECT_THAT(ErrorMessage([&] { reader.ReadColumn(0, 0, &col); }),
              HasSubstr("column \"v\", page 1: dictionary index 3 out of range (the dictionary "
                        "has 2 entries)"));
}

TEST(ParquetReaderTest, RefusesAPageThatDecompressesToAnotherSize) {
  TempDir dir;
  const std::string raw = I32(1) + I32(2);
  for (auto codec :
       {pf::CompressionCodec::SNAPPY, pf::CompressionCodec::GZIP, pf::CompressionCodec::ZSTD}) {
    const std::string stored = codec == pf::CompressionCodec::SNAPPY ? Snappy(raw)
                               : codec == pf::CompressionCodec::GZIP ? Gzip(raw)
                                                                     : Zstd(raw);
    Column c{"id", pf::Type::INT32};
    c.codec = codec;
    Page p = DataPageV1(2, pf::Encoding::PLAIN, raw, stored);
    p.header.uncompressed_page_size = 12;  // the header claims 12 bytes, the data has 8
    c.pages.push_back(p);
    ParquetReader reader(dir.Write("t.parquet", BuildFile({c}, 2)));
    ParquetColumn col;
    EXPECT_THAT(ErrorMessage([&] { reader.ReadColumn(0, 0, &col); }),
                HasSubstr("bytes, the page header says 12"))
        << "codec " << codec;
  }
  // A corrupt stream.
  Column c{"id", pf::Type::INT32};
  c.codec = pf::CompressionCodec::ZSTD;
  c.pages.push_back(DataPageV1(2, pf::Encoding::PLAIN, raw, "garbage!"));
  ParquetReader reader(dir.Write("t.parquet", BuildFile({c}, 2)));
  ParquetColumn col;
  EXPECT_THAT(ErrorMessage([&] { reader.ReadColumn(0, 0, &col); }), HasSubstr("corrupt ZSTD"));
}

TEST(ParquetReaderTest, UnsupportedFeaturesAreNamedAndOtherColumnsStayReadable) {
  TempDir dir;
  const std::string ints = I32(1) + I32(2);
  Column ok{"ok", pf::Type::INT32};
  ok.pages.push_back(DataPageV1(2, pf::Encoding::PLAIN, ints, ints));
  Column old{"ts", pf::Type::INT96};
  old.pages.push_back(
      DataPageV1(2, pf::Encoding::PLAIN, std::string(24, '\0'), std::string(24, '\0')));
  Column delta{"d", pf::Type::INT32};
  delta.pages.push_back(DataPageV1(2, pf::Encoding::RLE, ints, ints));  // RLE only for BOOLEAN
  Column date{"day", pf::Type::INT32};
  date.converted = pf::ConvertedType::DATE;
  date.pages.push_back(DataPageV1(2, pf::Encoding::PLAIN, ints, ints));
  Column brotli{"br", pf::Type::INT32};
  brotli.codec = pf::CompressionCodec::BROTLI;
  brotli.pages.push_back(DataPageV1(2, pf::Encoding::PLAIN, ints, ints));
  const std::string path = dir.Write("t.parquet", BuildFile({ok, old, delta, date, brotli}, 2));
  ParquetReader reader(path);
  ParquetColumn col;
  reader.ReadColumn(0, 0, &col);
  EXPECT_EQ(col.ints, (ParquetColumn::Ints{1, 2}));
  EXPECT_THAT(ErrorMessage([&] { reader.ReadColumn(0, 1, &col); }),
              HasSubstr("column \"ts\": physical type INT96 (legacy timestamps) is not supported"));
  EXPECT_THAT(ErrorMessage([&] { reader.ReadColumn(0, 2, &col); }),
              HasSubstr("column \"d\", page 0: encoding RLE is not supported for INT32"));
  EXPECT_THAT(ErrorMessage([&] { reader.ReadColumn(0, 3, &col); }),
              HasSubstr("column \"day\": converted type DATE is not supported"));
  EXPECT_THAT(ErrorMessage([&] { reader.ReadColumn(0, 4, &col); }),
              HasSubstr("compression codec BROTLI is not supported"));
  EXPECT_THAT(ErrorMessage([&] { ReadTable(path); }), HasSubstr("column \"ts\""));
}

TEST(ParquetReaderTest, RefusesNestedSchemas) {
  TempDir dir;
  pf::FileMetaData meta;
  meta.version = 1;
  meta.num_rows = 0;
  pf::SchemaElement root, group, leaf;
  root.name = "schema";
  root.__set_num_children(1);
  group.name = "address";
  group.__set_num_children(1);
  leaf.name = "city";
  leaf.__set_type(pf::Type::BYTE_ARRAY);
  meta.schema = {root, group, leaf};
  const std::string footer = Thrift(meta);
  const std::string path =
      dir.Write("n.parquet", "PAR1" + footer + U32(static_cast<uint32_t>(footer.size())) + "PAR1");
  EXPECT_THAT(ErrorMessage([&] { ParquetReader r(path); }),
              HasSubstr("column \"address\" is a group of 1 fields: nested schemas are not "
                        "supported"));
}

// ---- writer ------------------------------------------------------------------------------------

// The byte offset of `needle` in the file, or npos.
size_t Find(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle);
}

TEST(ParquetWriterTest, EncodesDictionaryIndicesAndLevelsAsTheSpecificationSays) {
  TempDir dir;
  // Rows a b c a b c a b (REQUIRED): dictionary a, b, c; indices 0 1 2 0 1 2 0 1 at bit width
  // 2 are one bit-packed group (header 0x03), LSB first: 0 | 1<<2 | 2<<4 | 0<<6 = 0x24 and
  // 1 | 2<<2 | 0<<4 | 1<<6 = 0x49; the page starts with the bit width byte 0x02.
  TypedTable t;
  t.AddColumn("s", ParquetType::kString);
  t.columns[0].strings = {"a", "b", "c"};
  t.columns[0].string_index = {0, 1, 2, 0, 1, 2, 0, 1};
  // OPTIONAL INT32 with 8 present rows: levels are one repeated run (header 8 << 1 = 0x10,
  // value 0x01), length-prefixed: 02 00 00 00 10 01.
  ParquetColumn& v = t.AddColumn("v", ParquetType::kInt32, true);
  v.ints = {1, 2, 3, 4, 5, 6, 7, 8};
  v.valid.assign(8, 1);
  ParquetWriteOptions options;
  options.compression = ParquetCompression::kNone;
  const std::string path = dir.File("w.parquet");
  WriteTable(path, t, options);
  const std::string bytes = ReadBytes(path);
  EXPECT_NE(Find(bytes, Str("a") + Str("b") + Str("c")), std::string::npos);
  EXPECT_NE(Find(bytes, std::string("\x02\x03\x24\x49", 4)), std::string::npos);
  EXPECT_NE(Find(bytes, std::string("\x02\x00\x00\x00\x10\x01", 6) + I32(1) + I32(2)),
            std::string::npos);
  const Table back = ReadTable(path);
  EXPECT_EQ(back.Column("s"), (std::vector<std::string>{"a", "b", "c", "a", "b", "c", "a", "b"}));
}

TEST(ParquetWriterTest, RoundTripsEveryTypeWithNullsRowGroupsAndCodecs) {
  TempDir dir;
  const int n = 2500;
  TypedTable t;
  t.AddColumn("b", ParquetType::kBoolean, true);
  t.AddColumn("i32", ParquetType::kInt32);
  t.AddColumn("i64", ParquetType::kInt64, true);
  t.AddColumn("f", ParquetType::kFloat);
  t.AddColumn("d", ParquetType::kDouble, true);
  t.AddColumn("s", ParquetType::kString, true);
  auto [b, i32, i64, f, d, s] =
      std::tie(t.columns[0], t.columns[1], t.columns[2], t.columns[3], t.columns[4], t.columns[5]);
  for (int r = 0; r < n; ++r) {
    const bool null = r % 7 == 3;
    b.ints.push_back(r % 3 == 0);
    b.valid.push_back(!null);
    i32.ints.push_back(r * 37 - 1000);
    i64.ints.push_back(null ? 0 : int64_t{r} * 1'000'000'007LL);
    i64.valid.push_back(!null);
    f.doubles.push_back(static_cast<float>(r) / 3.0f);
    d.doubles.push_back(null ? 0.0 : r * 0.1 - 7);
    d.valid.push_back(!null);
    s.valid.push_back(!null);
    if (null) {
      s.string_index.push_back(-1);
    } else {
      s.string_index.push_back(static_cast<int32_t>(s.strings.size()));
      s.strings.push_back(r % 5 == 0 ? "x,\"y\"\n" + std::to_string(r)
                                     : "v" + std::to_string(r % 11));
    }
  }
  for (ParquetCompression codec : {ParquetCompression::kNone, ParquetCompression::kSnappy,
                                   ParquetCompression::kGzip, ParquetCompression::kZstd}) {
    ParquetWriteOptions options;
    options.compression = codec;
    options.row_group_rows = 1000;
    options.page_rows = 300;
    options.dictionary_bytes = 1000;  // the "x..." strings overflow it: from page 2 on, PLAIN
    const std::string path = dir.File("rt.parquet");
    WriteTable(path, t, options);
    ParquetReader reader(path);
    ASSERT_EQ(reader.num_row_groups(), 3);
    EXPECT_EQ(reader.created_by().rfind("twotower version ", 0), 0u);
    int64_t first = 0;
    for (int g = 0; g < reader.num_row_groups(); ++g) {
      for (int c = 0; c < 6; ++c) {
        ParquetColumn col;
        reader.ReadColumn(g, c, &col);
        ASSERT_EQ(col.size(), reader.row_group_rows(g));
        for (int64_t r = 0; r < col.size(); ++r) {
          ASSERT_EQ(col.Text(r), t.columns[c].Text(first + r))
              << "column " << c << " row " << first + r;
        }
      }
      first += reader.row_group_rows(g);
    }
  }
}

TEST(ParquetWriterTest, RefusesBadColumnsAndKeepsThePreviousFile) {
  TempDir dir;
  const std::string path = dir.Write("keep.parquet", "previous");
  EXPECT_THAT(ErrorMessage([&] {
                ParquetWriter w(
                    path, {{"a", ParquetType::kInt64, false}, {"a", ParquetType::kInt64, false}});
              }),
              HasSubstr("column \"a\" given twice"));
  {
    ParquetWriter w(path, {{"a", ParquetType::kInt64, false}});
    ParquetColumn c;
    c.type = ParquetType::kInt64;
    c.ints = {1, 2};
    c.valid = {1, 0};
    EXPECT_THAT(ErrorMessage([&] { w.Write({c}); }),
                HasSubstr("null in row 1 of a REQUIRED column"));
    c.valid.clear();
    w.Write({c});
    // Destroyed without Close: the old file stays.
  }
  EXPECT_EQ(ReadBytes(path), "previous");
}

TEST(ParquetTableTest, InteractionsReadFromParquetMatchTheCsvAndNameRowsInErrors) {
  TempDir dir;
  const std::string users = dir.Write("users.csv", "user_id,age\nu1,20\nu2,30\n");
  const std::string items = dir.Write("items.csv", "item_id,genre\n10,a\n20,b\n");
  const std::string csv = dir.Write("i.csv", "user_id,item_id,liked\nu2,10,1\nu1,20,0\nu2,20,1\n");
  FeatureSchema schema;
  schema.user.id_column = "user_id";
  schema.item.id_column = "item_id";
  schema.label_column = "liked";
  const EntityIndex u = EntityIndex::FromTable(ReadTable(users), "user_id");
  const EntityIndex it = EntityIndex::FromTable(ReadTable(items), "item_id");
  ParquetWriteOptions options;
  const std::string pq = dir.File("i.parquet");
  ConvertTable(csv, pq, options);  // item_id becomes INT64, liked INT64
  const Interactions a = ReadInteractions(csv, schema, u, it);
  const Interactions b = ReadInteractions(pq, schema, u, it);
  EXPECT_EQ(a.user_row, b.user_row);
  EXPECT_EQ(a.item_row, b.item_row);
  EXPECT_EQ(a.label, b.label);
  EXPECT_EQ(b.user_row, (std::vector<int32_t>{1, 0, 1}));
  EXPECT_EQ(b.item_row, (std::vector<int32_t>{0, 1, 1}));

  ConvertTable(dir.Write("bad.csv", "user_id,item_id,liked\nu2,10,1\nu1,30,0\n"),
               dir.File("bad.parquet"), options);
  EXPECT_THAT(ErrorMessage([&] { ReadInteractions(dir.File("bad.parquet"), schema, u, it); }),
              HasSubstr("bad.parquet: row 2: column 'item_id': unknown id \"30\" (not in the "
                        "items table)"));
  ConvertTable(dir.Write("bad2.csv", "user_id,item_id,liked\nu2,10,2\n"), dir.File("bad2.parquet"),
               options);
  EXPECT_THAT(ErrorMessage([&] { ReadInteractions(dir.File("bad2.parquet"), schema, u, it); }),
              HasSubstr("row 1: column 'liked': expected 0 or 1, got \"2\""));
}

TEST(ParquetTableTest, InferTypesPicksIntegerDoubleOrStringAndNullsForEmptyCells) {
  Table t;
  t.columns = {"i", "d", "s", "o"};
  t.cells = {{"1", "-2", "3"}, {"1", "2.5", "1e-7"}, {"1", "x", "2"}, {"4", "", "5"}};
  t.lines = {2, 3, 4};
  const TypedTable typed = InferTypes(t);
  EXPECT_EQ(typed.specs[0].type, ParquetType::kInt64);
  EXPECT_EQ(typed.specs[1].type, ParquetType::kDouble);
  EXPECT_EQ(typed.specs[2].type, ParquetType::kString);
  EXPECT_EQ(typed.specs[3].type, ParquetType::kInt64);
  EXPECT_FALSE(typed.specs[0].optional);
  EXPECT_TRUE(typed.specs[3].optional);
  EXPECT_TRUE(typed.columns[3].IsNull(1));
  EXPECT_EQ(typed.columns[1].doubles[2], 1e-7);

  // Text a number type would not give back stays a string: leading zeros, '+', integers past
  // int64 (as integers) or past 2^53 (as doubles), and decimal text a double writes back
  // otherwise ("1.10" as 1.1, "1e3" as 1000, "1.0" as 1, "1e300" as 1e+300).
  Table ids;
  ids.columns = {"zero", "plus", "huge", "big", "ok", "exact", "ids", "code", "sci"};
  ids.cells = {{"0042", "7"},
               {"+5", "6"},
               {"12345678901234567890", "1"},  // a double would hold 12345678901234567168
               {"9007199254740993.5", "1e+300"},
               {"9223372036854775807", "-9223372036854775808"},
               {"9223372036854775808", "9007199254740994"},  // 2^63 and 2^53 + 2: exact
               {"1.1", "1.10"},
               {"1.0", "1"},
               {"1e3", "0.5"}};
  ids.lines = {2, 3};
  const TypedTable t2 = InferTypes(ids);
  EXPECT_EQ(t2.specs[0].type, ParquetType::kString);
  EXPECT_EQ(t2.specs[1].type, ParquetType::kString);
  EXPECT_EQ(t2.specs[2].type, ParquetType::kString);
  EXPECT_EQ(t2.specs[3].type, ParquetType::kString);  // 9007199254740993.5 is ...994.0
  EXPECT_EQ(t2.specs[4].type, ParquetType::kInt64);
  EXPECT_EQ(t2.columns[4].ints[1], INT64_MIN);
  EXPECT_EQ(t2.specs[5].type, ParquetType::kDouble);
  for (int c : {6, 7, 8}) EXPECT_EQ(t2.specs[c].type, ParquetType::kString) << ids.columns[c];
}

// NumberText against ECMAScript's Number::toString, values and expected text written by hand
// (what `String(x)` prints in node), except integral values, which are printed in full.
TEST(ParquetTableTest, NumberTextLaysOutTheShortestDigitsAsJavaScriptDoes) {
  EXPECT_EQ(NumberText(0.1, false), "0.1");
  EXPECT_EQ(NumberText(1e-7, false), "1e-7");
  EXPECT_EQ(NumberText(1.5e-7, false), "1.5e-7");
  EXPECT_EQ(NumberText(0.000001, false), "0.000001");
  EXPECT_EQ(NumberText(123.456, false), "123.456");
  EXPECT_EQ(NumberText(-2.5, false), "-2.5");
  EXPECT_EQ(NumberText(1e21, false), "1e+21");
  EXPECT_EQ(NumberText(1.7976931348623157e308, false), "1.7976931348623157e+308");
  EXPECT_EQ(NumberText(5e-324, false), "5e-324");
  EXPECT_EQ(NumberText(0.30000000000000004, false), "0.30000000000000004");
  EXPECT_EQ(NumberText(100.0, false), "100");
  EXPECT_EQ(NumberText(9223372036854775808.0, false), "9223372036854775808");  // in full
  EXPECT_EQ(NumberText(-0.0, false), "-0");
  EXPECT_EQ(NumberText(0.1f, true), "0.1");  // the float's shortest digits, not the double's
  EXPECT_EQ(NumberText(std::nan(""), false), "nan");
  EXPECT_EQ(NumberText(-HUGE_VAL, false), "-inf");
}

TEST(ParquetTableTest, SuffixInAnyCaseAndAParquetFileUnderAnotherName) {
  EXPECT_EQ(TableFormatOf("a/b.PARQUET"), TableFormat::kParquet);
  EXPECT_EQ(TableFormatOf("b.Parquet"), TableFormat::kParquet);
  EXPECT_EQ(TableFormatOf(".parquet"), TableFormat::kCsv);
  EXPECT_EQ(TableFormatOf("b.parquet.csv"), TableFormat::kCsv);
  TempDir dir;
  TypedTable t;
  t.AddColumn("a", ParquetType::kInt64).ints = {1, 2};
  WriteTable(dir.File("t.parquet"), t);
  std::filesystem::copy_file(dir.File("t.parquet"), dir.File("t.pq"));
  EXPECT_THAT(ErrorMessage([&] { ReadTable(dir.File("t.pq")); }),
              HasSubstr("t.pq: this is a Parquet file (it starts with PAR1), read as CSV because "
                        "its name does not end in .parquet"));
}

TEST(ParquetWriterTest, RefusesStringsThatAreNotUtf8) {
  TempDir dir;
  TypedTable t;
  ParquetColumn& s = t.AddColumn("s", ParquetType::kString);
  s.strings = {"ok \xc3\xa9", "bad \xff\xfe", "\xed\xa0\x80"};  // U+D800 is a surrogate
  s.string_index = {0, 1};
  EXPECT_THAT(ErrorMessage([&] { WriteTable(dir.File("u.parquet"), t); }),
              HasSubstr("column \"s\": row 2: "));
  s.string_index = {0, 2};
  EXPECT_THAT(ErrorMessage([&] { WriteTable(dir.File("u.parquet"), t); }),
              HasSubstr("is not valid UTF-8"));
  EXPECT_FALSE(std::filesystem::exists(dir.File("u.parquet")));
  s.string_index = {0, 0};
  WriteTable(dir.File("u.parquet"), t);
  EXPECT_EQ(ReadTable(dir.File("u.parquet")).Column("s")[0], "ok \xc3\xa9");
}

}  // namespace
}  // namespace twotower::data
