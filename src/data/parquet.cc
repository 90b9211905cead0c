#include "twotower/data/parquet.h"

#include <fcntl.h>
#include <snappy.h>
#include <sys/stat.h>
#include <thrift/protocol/TCompactProtocol.h>
#include <thrift/transport/TBufferTransports.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "parquet_types.h"  // generated from src/data/parquet.thrift by thrift-compiler
#include "twotower/core/error.h"
#include "twotower/core/files.h"

namespace twotower::data {
namespace pf = parquet_format;
namespace {

using apache::thrift::protocol::TCompactProtocolT;
using apache::thrift::transport::TMemoryBuffer;

constexpr char kMagic[4] = {'P', 'A', 'R', '1'};

// ---------------------------------------------------------------------------------------------
// Thrift compact protocol over memory. The limits bound every string and list by the bytes
// there are, so a footer claiming a billion schema elements fails before anything is allocated.

template <typename T>
size_t ThriftRead(const uint8_t* data, size_t size, T* out) {
  // A header never needs more than 4 GiB; a larger chunk is read from its first 4 GiB.
  const uint32_t n = static_cast<uint32_t>(std::min<size_t>(size, UINT32_MAX));
  auto buffer =
      std::make_shared<TMemoryBuffer>(const_cast<uint8_t*>(data), n, TMemoryBuffer::OBSERVE);
  // Strings are bounded by the bytes there are. Lists too, and also by 2^20 elements: an
  // element of a list of structs may take one byte on the wire and hundreds in memory.
  const int32_t string_limit = static_cast<int32_t>(std::min<uint32_t>(n, INT32_MAX));
  const int32_t container_limit = static_cast<int32_t>(std::min<uint32_t>(n, 1u << 20));
  TCompactProtocolT<TMemoryBuffer> protocol(buffer, string_limit, container_limit);
  out->read(&protocol);
  return n - buffer->available_read();
}

template <typename T>
std::string ThriftWrite(const T& value) {
  auto buffer = std::make_shared<TMemoryBuffer>();
  TCompactProtocolT<TMemoryBuffer> protocol(buffer);
  value.write(&protocol);
  return buffer->getBufferAsString();
}

// ---------------------------------------------------------------------------------------------
// Little-endian helpers (Parquet stores every fixed-width value little-endian).

// Loads and stores copy bytes as they are: this code assumes a little-endian machine.
static_assert(std::endian::native == std::endian::little,
              "the Parquet codec assumes little-endian");

template <typename T>
T LoadLE(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename T>
void AppendLE(std::string* out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out->append(b, sizeof(T));
}

void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

int BitWidth(uint64_t max_value) { return max_value == 0 ? 0 : 64 - std::countl_zero(max_value); }

// ---------------------------------------------------------------------------------------------
// RLE / bit-packing hybrid (encodings document, "Run Length Encoding / Bit-Packing Hybrid"):
// runs of <varint header> where header & 1 selects a bit-packed run of (header >> 1) groups of 8
// values, LSB first, or a repeated run of (header >> 1) copies of a value in ceil(width / 8)
// bytes.

// Unpacks one group of 8 values of W bits (W bytes, LSB first) from p into out. Reads up to
// W + 8 bytes from p: the caller makes sure they are there.
template <int W>
void Unpack8(const uint8_t* p, uint32_t* out) {
  constexpr uint64_t kMask = (uint64_t{1} << W) - 1;
  for (int k = 0; k < 8; ++k) {
    constexpr int kW = W;
    const int bit = k * kW;
    uint64_t word;
    std::memcpy(&word, p + (bit >> 3), 8);
    out[k] = static_cast<uint32_t>((word >> (bit & 7)) & kMask);
  }
}

using UnpackFn = void (*)(const uint8_t*, uint32_t*);

template <int... W>
constexpr std::array<UnpackFn, sizeof...(W) + 1> MakeUnpackers(std::integer_sequence<int, W...>) {
  return {nullptr, &Unpack8<W + 1>...};
}
// kUnpack[w] unpacks width w, 1..32 (0 is handled apart: every value is 0).
constexpr auto kUnpack = MakeUnpackers(std::make_integer_sequence<int, 32>{});

// Decodes `count` values of `bit_width` bits from [p, p + n) into out[0..count). Throws the
// message `what` + detail when the bytes end early or a header is malformed.
void DecodeHybrid(const uint8_t* p, size_t n, int bit_width, int64_t count, uint32_t* out,
                  const std::string& what) {
  if (bit_width < 0 || bit_width > 32)
    throw Error(what + ": bit width " + std::to_string(bit_width) + " (expected 0..32)");
  const uint8_t* end = p + n;
  int64_t got = 0;
  const int value_bytes = (bit_width + 7) / 8;
  while (got < count) {
    uint64_t header = 0;
    int shift = 0;
    while (true) {
      if (p >= end)
        throw Error(what + ": run-length data ends after " + std::to_string(got) + " of " +
                    std::to_string(count) + " values");
      const uint8_t b = *p++;
      if (shift >= 63) throw Error(what + ": malformed run header");
      header |= static_cast<uint64_t>(b & 0x7f) << shift;
      shift += 7;
      if ((b & 0x80) == 0) break;
    }
    if (header & 1) {
      const uint64_t groups = header >> 1;
      if (groups == 0) throw Error(what + ": empty bit-packed run");
      // Writers may pad a run past the values it holds (DuckDB does); only a count that would
      // overflow the arithmetic below is refused.
      if (groups > (uint64_t{1} << 40)) {
        throw Error(what + ": bit-packed run of " + std::to_string(groups) + " groups of 8");
      }
      const uint64_t values = std::min<uint64_t>(groups * 8, static_cast<uint64_t>(count - got));
      const uint64_t bits_needed = values * static_cast<uint64_t>(bit_width);
      const size_t available = static_cast<size_t>(end - p);
      if ((bits_needed + 7) / 8 > available) {
        throw Error(what + ": bit-packed run ends after " + std::to_string(got) + " of " +
                    std::to_string(count) + " values");
      }
      if (bit_width == 0) {
        std::fill(out + got, out + got + values, 0u);
      } else {
        const uint64_t mask = (uint64_t{1} << bit_width) - 1;
        uint64_t bit = 0;
        uint64_t i = 0;
        // Whole groups of 8 through an unpacker compiled for this width, while its loads stay
        // inside the bytes there are; then one value at a time.
        const UnpackFn unpack = kUnpack[bit_width];
        while (i + 8 <= values && (bit >> 3) + bit_width + 8 <= available) {
          unpack(p + (bit >> 3), out + got + i);
          i += 8;
          bit += 8 * static_cast<uint64_t>(bit_width);
        }
        // While 8 bytes can be loaded at the value's byte, one fixed-size load holds it
        // (bit_width + 7 <= 39 bits); the run's last values take the bytes that are left.
        for (; i < values && (bit >> 3) + 8 <= available; ++i, bit += bit_width) {
          uint64_t word;
          std::memcpy(&word, p + (bit >> 3), 8);
          out[got + i] = static_cast<uint32_t>((word >> (bit & 7)) & mask);
        }
        for (; i < values; ++i, bit += bit_width) {
          const size_t byte = bit >> 3;
          uint64_t word = 0;
          std::memcpy(&word, p + byte, std::min<size_t>(8, available - byte));
          out[got + i] = static_cast<uint32_t>((word >> (bit & 7)) & mask);
        }
      }
      got += static_cast<int64_t>(values);
      const uint64_t run_bytes = groups * static_cast<uint64_t>(bit_width);
      p += std::min<uint64_t>(run_bytes, available);
    } else {
      const uint64_t repeats = header >> 1;
      if (static_cast<size_t>(end - p) < static_cast<size_t>(value_bytes)) {
        throw Error(what + ": repeated run's value is cut off");
      }
      uint32_t value = 0;
      for (int i = 0; i < value_bytes; ++i) value |= static_cast<uint32_t>(p[i]) << (8 * i);
      p += value_bytes;
      if (bit_width < 32 && (value >> bit_width) != 0) {
        throw Error(what + ": repeated value " + std::to_string(value) + " does not fit in " +
                    std::to_string(bit_width) + " bits");
      }
      const uint64_t take = std::min<uint64_t>(repeats, static_cast<uint64_t>(count - got));
      std::fill(out + got, out + got + take, value);
      got += static_cast<int64_t>(take);
    }
  }
}

// ULEB128 / zigzag varints of the DELTA encodings; throws `what` when cut off or too long.
uint64_t ReadUleb(const uint8_t*& p, const uint8_t* end, const std::string& what) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p >= end) throw Error(what + ": varint cut off");
    const uint8_t b = *p++;
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return v;
  }
  throw Error(what + ": varint longer than 10 bytes");
}

int64_t Unzigzag(uint64_t v) { return static_cast<int64_t>((v >> 1) ^ (~(v & 1) + 1)); }

// DELTA_BINARY_PACKED (encodings document): a header <block size> <miniblocks per block>
// <value count> <first value, zigzag>, then blocks of <min delta, zigzag> <one bit width per
// miniblock> <miniblocks of bit-packed deltas, LSB first>. value[i] = value[i-1] + min_delta +
// packed[i], in wrapping 64-bit arithmetic (INT32 columns truncate, which is the same modulo
// 2^32). Appends `count` values (at most; fewer is an error) and returns the bytes used. The
// value count in the header may exceed count only as the page's values (nulls have none).
template <typename IntVector>
size_t DecodeDeltaBinaryPacked(const uint8_t* begin, size_t n, int64_t count, IntVector* out,
                               const std::string& what) {
  const uint8_t* p = begin;
  const uint8_t* end = begin + n;
  const uint64_t block = ReadUleb(p, end, what);
  const uint64_t miniblocks = ReadUleb(p, end, what);
  const uint64_t total = ReadUleb(p, end, what);
  uint64_t value = static_cast<uint64_t>(Unzigzag(ReadUleb(p, end, what)));
  if (block == 0 || block % 128 != 0 || miniblocks == 0 || block % miniblocks != 0 ||
      (block / miniblocks) % 32 != 0 || block > (1u << 20)) {
    throw Error(what + ": DELTA_BINARY_PACKED block of " + std::to_string(block) + " values in " +
                std::to_string(miniblocks) +
                " miniblocks (expected a multiple of 128 in miniblocks of a multiple of 32)");
  }
  if (total != static_cast<uint64_t>(count)) {
    throw Error(what + ": DELTA_BINARY_PACKED header says " + std::to_string(total) +
                " values, the page has " + std::to_string(count));
  }
  if (count == 0) return static_cast<size_t>(p - begin);
  out->push_back(static_cast<int64_t>(value));
  int64_t got = 1;
  const uint64_t per_mini = block / miniblocks;
  std::vector<uint8_t> widths(miniblocks);
  while (got < count) {
    const uint64_t min_delta = static_cast<uint64_t>(Unzigzag(ReadUleb(p, end, what)));
    if (static_cast<uint64_t>(end - p) < miniblocks)
      throw Error(what + ": miniblock bit widths cut off");
    std::memcpy(widths.data(), p, miniblocks);
    p += miniblocks;
    for (uint64_t m = 0; m < miniblocks && got < count; ++m) {
      const int w = widths[m];
      if (w > 64)
        throw Error(what + ": miniblock bit width " + std::to_string(w) + " (expected 0..64)");
      const uint64_t take = std::min<uint64_t>(per_mini, static_cast<uint64_t>(count - got));
      const size_t bytes = static_cast<size_t>(per_mini * w / 8);  // per_mini is a multiple of 32
      const size_t needed = static_cast<size_t>((take * w + 7) / 8);
      const size_t available = static_cast<size_t>(end - p);
      if (needed > available) throw Error(what + ": miniblock cut off");
      for (uint64_t i = 0; i < take; ++i) {
        uint64_t delta = 0;
        const uint64_t bit = i * w;
        for (int b = 0; b < w;) {
          // Up to 8 bits per step from the byte holding bit (bit + b).
          const uint64_t at = bit + b;
          const int shift = static_cast<int>(at & 7);
          const int chunk = std::min(8 - shift, w - b);
          const uint64_t bits = (p[at >> 3] >> shift) & ((1u << chunk) - 1);
          delta |= bits << b;
          b += chunk;
        }
        value += min_delta + delta;
        out->push_back(static_cast<int64_t>(value));
      }
      got += static_cast<int64_t>(take);
      p += std::min(bytes, available);
    }
  }
  return static_cast<size_t>(p - begin);
}

// Encodes values (each < 2^bit_width) as the hybrid: constant blocks of 8 as repeated runs,
// other blocks bit-packed, a tail of under 8 values as repeated runs (so no run is padded).
void EncodeHybrid(const uint32_t* v, int64_t n, int bit_width, std::string* out) {
  const int value_bytes = (bit_width + 7) / 8;
  int64_t i = 0;
  auto repeated = [&](uint32_t value, uint64_t count) {
    AppendVarint(out, count << 1);
    for (int b = 0; b < value_bytes; ++b)
      out->push_back(static_cast<char>((value >> (8 * b)) & 0xff));
  };
  std::vector<uint32_t> packed;  // values of the pending bit-packed run
  auto flush_packed = [&]() {
    if (packed.empty()) return;
    const uint64_t groups = packed.size() / 8;
    AppendVarint(out, (groups << 1) | 1);
    // LSB first: values enter a 64-bit accumulator above the bits already there, whole bytes
    // leave it from the bottom (bit_width <= 32, so it never holds more than 39 bits).
    uint64_t acc = 0;
    int bits = 0;
    for (uint32_t x : packed) {
      acc |= static_cast<uint64_t>(x) << bits;
      bits += bit_width;
      while (bits >= 8) {
        out->push_back(static_cast<char>(acc & 0xff));
        acc >>= 8;
        bits -= 8;
      }
    }
    if (bits > 0) out->push_back(static_cast<char>(acc & 0xff));
    packed.clear();
  };
  while (i + 8 <= n) {
    // A run of identical values starting here, of at least 8, becomes one repeated run.
    int64_t j = i + 1;
    while (j < n && v[j] == v[i]) ++j;
    if (j - i >= 8) {
      flush_packed();
      repeated(v[i], static_cast<uint64_t>(j - i));
      i = j;
      continue;
    }
    packed.insert(packed.end(), v + i, v + i + 8);
    i += 8;
  }
  flush_packed();
  while (i < n) {
    int64_t j = i + 1;
    while (j < n && v[j] == v[i]) ++j;
    repeated(v[i], static_cast<uint64_t>(j - i));
    i = j;
  }
}

// ---------------------------------------------------------------------------------------------
// Codecs.

const char* CodecName(int32_t codec) {
  switch (codec) {
    case pf::CompressionCodec::UNCOMPRESSED:
      return "UNCOMPRESSED";
    case pf::CompressionCodec::SNAPPY:
      return "SNAPPY";
    case pf::CompressionCodec::GZIP:
      return "GZIP";
    case pf::CompressionCodec::LZO:
      return "LZO";
    case pf::CompressionCodec::BROTLI:
      return "BROTLI";
    case pf::CompressionCodec::LZ4:
      return "LZ4";
    case pf::CompressionCodec::ZSTD:
      return "ZSTD";
    case pf::CompressionCodec::LZ4_RAW:
      return "LZ4_RAW";
  }
  return "unknown";
}

const char* EncodingName(int32_t e) {
  switch (e) {
    case pf::Encoding::PLAIN:
      return "PLAIN";
    case pf::Encoding::PLAIN_DICTIONARY:
      return "PLAIN_DICTIONARY";
    case pf::Encoding::RLE:
      return "RLE";
    case pf::Encoding::BIT_PACKED:
      return "BIT_PACKED";
    case pf::Encoding::DELTA_BINARY_PACKED:
      return "DELTA_BINARY_PACKED";
    case pf::Encoding::DELTA_LENGTH_BYTE_ARRAY:
      return "DELTA_LENGTH_BYTE_ARRAY";
    case pf::Encoding::DELTA_BYTE_ARRAY:
      return "DELTA_BYTE_ARRAY";
    case pf::Encoding::RLE_DICTIONARY:
      return "RLE_DICTIONARY";
    case pf::Encoding::BYTE_STREAM_SPLIT:
      return "BYTE_STREAM_SPLIT";
  }
  return "unknown";
}

std::string ConvertedTypeName(int32_t t) {
  switch (t) {
    case pf::ConvertedType::MAP:
      return "MAP";
    case pf::ConvertedType::MAP_KEY_VALUE:
      return "MAP_KEY_VALUE";
    case pf::ConvertedType::LIST:
      return "LIST";
    case pf::ConvertedType::DECIMAL:
      return "DECIMAL";
    case pf::ConvertedType::DATE:
      return "DATE";
    case pf::ConvertedType::TIME_MILLIS:
      return "TIME_MILLIS";
    case pf::ConvertedType::TIME_MICROS:
      return "TIME_MICROS";
    case pf::ConvertedType::TIMESTAMP_MILLIS:
      return "TIMESTAMP_MILLIS";
    case pf::ConvertedType::TIMESTAMP_MICROS:
      return "TIMESTAMP_MICROS";
    case pf::ConvertedType::BSON:
      return "BSON";
    case pf::ConvertedType::INTERVAL:
      return "INTERVAL";
    default:
      return std::to_string(t);
  }
}

std::string EncodingText(int32_t e) {
  const std::string name = EncodingName(e);
  return name == "unknown" ? "encoding " + std::to_string(static_cast<int>(e)) : name;
}

// Checks what a page's stream says of its size against the header's `expected` bytes, before
// a buffer of that size is made: an uncompressed page's length, snappy's and zstd's recorded
// lengths, deflate's largest expansion. Throws Error naming the mismatch.
void CheckDecompressedSize(int32_t codec, const uint8_t* in, size_t n, size_t expected,
                           const std::string& what) {
  if (codec == pf::CompressionCodec::UNCOMPRESSED && n != expected) {
    throw Error(what + ": uncompressed page of " + std::to_string(n) + " bytes, header says " +
                std::to_string(expected));
  }
  if (codec == pf::CompressionCodec::SNAPPY) {
    size_t length = 0;
    if (!snappy::GetUncompressedLength(reinterpret_cast<const char*>(in), n, &length)) {
      throw Error(what + ": corrupt SNAPPY data");
    }
    if (length != expected) {
      throw Error(what + ": SNAPPY data decompresses to " + std::to_string(length) +
                  " bytes, the page header says " + std::to_string(expected));
    }
  }
  if (codec == pf::CompressionCodec::ZSTD) {
    const unsigned long long length = ZSTD_getFrameContentSize(in, n);
    if (length != ZSTD_CONTENTSIZE_UNKNOWN && length != ZSTD_CONTENTSIZE_ERROR &&
        length != expected) {
      throw Error(what + ": ZSTD data decompresses to " + std::to_string(length) +
                  " bytes, the page header says " + std::to_string(expected));
    }
  }
  // Deflate expands at most about 1032 to 1 (zlib's technical notes).
  if (codec == pf::CompressionCodec::GZIP && expected / 1032 > n + 64) {
    throw Error(what + ": " + std::to_string(n) + " bytes of GZIP data cannot hold the " +
                std::to_string(expected) + " bytes the page header says");
  }
}

// Decompresses exactly `expected` bytes into dst; anything else (a corrupt stream, another size)
// throws. The caller has run CheckDecompressedSize before sizing dst.
void DecompressInto(int32_t codec, const uint8_t* in, size_t n, char* dst, size_t expected,
                    const std::string& what) {
  switch (codec) {
    case pf::CompressionCodec::UNCOMPRESSED:
      if (n > 0) std::memcpy(dst, in, n);
      return;
    case pf::CompressionCodec::SNAPPY: {
      if (!snappy::RawUncompress(reinterpret_cast<const char*>(in), n, dst)) {
        throw Error(what + ": corrupt SNAPPY data");
      }
      return;
    }
    case pf::CompressionCodec::GZIP: {
      z_stream z{};
      // 15 + 32: zlib or gzip headers, detected (Parquet's GZIP is the gzip format, RFC 1952).
      if (inflateInit2(&z, 15 + 32) != Z_OK) throw Error(what + ": zlib: cannot start inflate");
      z.next_in = const_cast<Bytef*>(in);
      z.avail_in = static_cast<uInt>(n);
      z.next_out = reinterpret_cast<Bytef*>(dst);
      z.avail_out = static_cast<uInt>(expected);
      int rc = Z_OK;
      while (rc == Z_OK) {
        rc = inflate(&z, Z_FINISH);
        // Concatenated gzip members are one stream (RFC 1952 2.2).
        if (rc == Z_STREAM_END && z.avail_in > 0 && z.avail_out > 0) rc = inflateReset(&z);
      }
      const size_t produced = expected - z.avail_out;
      inflateEnd(&z);
      if (rc != Z_STREAM_END && !(rc == Z_BUF_ERROR && z.avail_out == 0 && z.avail_in == 0)) {
        if (z.avail_out == 0) {
          throw Error(what + ": GZIP data decompresses to more than the " +
                      std::to_string(expected) + " bytes the page header says");
        }
        throw Error(what + ": corrupt GZIP data (zlib error " + std::to_string(rc) + ")");
      }
      if (produced != expected) {
        throw Error(what + ": GZIP data decompresses to " + std::to_string(produced) +
                    " bytes, the page header says " + std::to_string(expected));
      }
      return;
    }
    case pf::CompressionCodec::ZSTD: {
      const size_t rc = ZSTD_decompress(dst, expected, in, n);
      if (ZSTD_isError(rc)) {
        throw Error(what + ": corrupt ZSTD data (" + ZSTD_getErrorName(rc) + ")");
      }
      if (rc != expected) {
        throw Error(what + ": ZSTD data decompresses to " + std::to_string(rc) +
                    " bytes, the page header says " + std::to_string(expected));
      }
      return;
    }
    default:
      throw Error(what + ": compression codec " + CodecName(codec) +
                  " is not supported (supported: UNCOMPRESSED, SNAPPY, GZIP, ZSTD)");
  }
}

void Decompress(int32_t codec, const uint8_t* in, size_t n, size_t expected, std::string* out,
                const std::string& what) {
  CheckDecompressedSize(codec, in, n, expected, what);
  out->resize(expected);
  DecompressInto(codec, in, n, out->data(), expected, what);
}

void Compress(ParquetCompression codec, int zstd_level, const std::string& in, std::string* out) {
  switch (codec) {
    case ParquetCompression::kNone:
      *out = in;
      return;
    case ParquetCompression::kSnappy: {
      out->resize(snappy::MaxCompressedLength(in.size()));
      size_t n = 0;
      snappy::RawCompress(in.data(), in.size(), out->data(), &n);
      out->resize(n);
      return;
    }
    case ParquetCompression::kGzip: {
      z_stream z{};
      // 15 + 16: a gzip header and trailer, the format Parquet's GZIP names.
      if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
          Z_OK) {
        throw Error("parquet writer: zlib: cannot start deflate");
      }
      out->resize(deflateBound(&z, in.size()) + 32);
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
      z.avail_in = static_cast<uInt>(in.size());
      z.next_out = reinterpret_cast<Bytef*>(out->data());
      z.avail_out = static_cast<uInt>(out->size());
      const int rc = deflate(&z, Z_FINISH);
      const size_t n = out->size() - z.avail_out;
      deflateEnd(&z);
      if (rc != Z_STREAM_END) throw Error("parquet writer: zlib deflate failed");
      out->resize(n);
      return;
    }
    case ParquetCompression::kZstd: {
      out->resize(ZSTD_compressBound(in.size()));
      const size_t n = ZSTD_compress(out->data(), out->size(), in.data(), in.size(), zstd_level);
      if (ZSTD_isError(n))
        throw Error(std::string("parquet writer: zstd: ") + ZSTD_getErrorName(n));
      out->resize(n);
      return;
    }
  }
}

int32_t CodecOf(ParquetCompression c) {
  switch (c) {
    case ParquetCompression::kNone:
      return pf::CompressionCodec::UNCOMPRESSED;
    case ParquetCompression::kSnappy:
      return pf::CompressionCodec::SNAPPY;
    case ParquetCompression::kGzip:
      return pf::CompressionCodec::GZIP;
    case ParquetCompression::kZstd:
      return pf::CompressionCodec::ZSTD;
  }
  return pf::CompressionCodec::UNCOMPRESSED;
}

int ValueWidth(ParquetType type) {
  switch (type) {
    case ParquetType::kBoolean:
      return 1;
    case ParquetType::kInt32:
    case ParquetType::kFloat:
      return 4;
    case ParquetType::kInt64:
    case ParquetType::kDouble:
      return 8;
    case ParquetType::kString:
      return 4;
  }
  return 8;
}

int32_t PhysicalOf(ParquetType t) {
  switch (t) {
    case ParquetType::kBoolean:
      return pf::Type::BOOLEAN;
    case ParquetType::kInt32:
      return pf::Type::INT32;
    case ParquetType::kInt64:
      return pf::Type::INT64;
    case ParquetType::kFloat:
      return pf::Type::FLOAT;
    case ParquetType::kDouble:
      return pf::Type::DOUBLE;
    case ParquetType::kString:
      return pf::Type::BYTE_ARRAY;
  }
  return pf::Type::BYTE_ARRAY;
}

// RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF.
bool IsUtf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

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

const char* ParquetTypeName(ParquetType type) {
  switch (type) {
    case ParquetType::kBoolean:
      return "BOOLEAN";
    case ParquetType::kInt32:
      return "INT32";
    case ParquetType::kInt64:
      return "INT64";
    case ParquetType::kFloat:
      return "FLOAT";
    case ParquetType::kDouble:
      return "DOUBLE";
    case ParquetType::kString:
      return "STRING";
  }
  return "?";
}

ParquetCompression ParseParquetCompression(const std::string& name, const std::string& where) {
  if (name == "none" || name == "uncompressed") return ParquetCompression::kNone;
  if (name == "snappy") return ParquetCompression::kSnappy;
  if (name == "gzip") return ParquetCompression::kGzip;
  if (name == "zstd") return ParquetCompression::kZstd;
  throw Error(where + ": unknown compression " + Quote(name) +
              " (expected: snappy, zstd, gzip, none)");
}

bool IsParquetPath(const std::string& path) {
  constexpr std::string_view kSuffix = ".parquet";  // in any case: .PARQUET, .Parquet
  if (path.size() <= kSuffix.size()) return false;
  for (size_t i = 0; i < kSuffix.size(); ++i) {
    const char c = path[path.size() - kSuffix.size() + i];
    if ((c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c) != kSuffix[i]) return false;
  }
  return true;
}

int64_t ParquetColumn::size() const {
  switch (type) {
    case ParquetType::kFloat:
    case ParquetType::kDouble:
      return static_cast<int64_t>(doubles.size());
    case ParquetType::kString:
      return static_cast<int64_t>(string_index.size());
    default:
      return static_cast<int64_t>(ints.size());
  }
}

std::string ParquetColumn::Text(int64_t r) const {
  if (IsNull(r)) return "";
  char buf[64];
  switch (type) {
    case ParquetType::kBoolean:
      return ints[r] != 0 ? "true" : "false";
    case ParquetType::kInt32:
    case ParquetType::kInt64: {
      const auto res = is_unsigned
                           ? std::to_chars(buf, buf + sizeof(buf), static_cast<uint64_t>(ints[r]))
                           : std::to_chars(buf, buf + sizeof(buf), ints[r]);
      return std::string(buf, res.ptr);
    }
    case ParquetType::kFloat:
    case ParquetType::kDouble: {
      const double v = doubles[r];
      if (std::isnan(v)) return "nan";
      if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
      const auto res = type == ParquetType::kFloat
                           ? std::to_chars(buf, buf + sizeof(buf), static_cast<float>(v))
                           : std::to_chars(buf, buf + sizeof(buf), v);
      return std::string(buf, res.ptr);
    }
    case ParquetType::kString:
      return strings[string_index[r]];
  }
  return "";
}

void ParquetColumn::Clear() {
  valid.clear();
  ints.clear();
  doubles.clear();
  strings.clear();
  string_index.clear();
}

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
    if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
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
