// Page compression codecs (codecs.h; the specification's Compression.md): libsnappy, zlib (the
// gzip format of RFC 1952) and libzstd, and the names of codecs and encodings in messages.
#include "data/parquet/codecs.h"

#include <snappy.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>

#include "parquet_types.h"  // generated from src/data/parquet/parquet.thrift by thrift-compiler
#include "twotower/core/error.h"

namespace twotower::data::parquet_internal {
namespace pf = parquet_format;

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

std::string EncodingText(int32_t e) {
  const std::string name = EncodingName(e);
  return name == "unknown" ? "encoding " + std::to_string(static_cast<int>(e)) : name;
}

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

}  // namespace twotower::data::parquet_internal
