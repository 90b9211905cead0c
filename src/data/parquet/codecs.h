// Page compression codecs (the specification's Compression.md): decompression of UNCOMPRESSED,
// SNAPPY, GZIP and ZSTD pages with their sizes checked first, compression for the writer, and the
// names of codecs and encodings in messages. Not a public header.
#ifndef TWOTOWER_SRC_DATA_PARQUET_CODECS_H_
#define TWOTOWER_SRC_DATA_PARQUET_CODECS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "twotower/data/parquet.h"

namespace twotower::data::parquet_internal {

// A CompressionCodec's name, "unknown" for a number that names none.
const char* CodecName(int32_t codec);
// An Encoding's name, "unknown" for a number that names none.
const char* EncodingName(int32_t e);
// An Encoding's name, or "encoding <number>".
std::string EncodingText(int32_t e);

// Checks what a page's stream says of its size against the header's `expected` bytes, before
// a buffer of that size is made: an uncompressed page's length, snappy's and zstd's recorded
// lengths, deflate's largest expansion. Throws Error naming the mismatch.
void CheckDecompressedSize(int32_t codec, const uint8_t* in, size_t n, size_t expected,
                           const std::string& what);

// Decompresses exactly `expected` bytes into dst; anything else (a corrupt stream, another size)
// throws. The caller has run CheckDecompressedSize before sizing dst.
void DecompressInto(int32_t codec, const uint8_t* in, size_t n, char* dst, size_t expected,
                    const std::string& what);

// CheckDecompressedSize, then DecompressInto `out` resized to `expected` bytes.
void Decompress(int32_t codec, const uint8_t* in, size_t n, size_t expected, std::string* out,
                const std::string& what);

// Compresses `in` into `out` with the writer's codec (GZIP: the gzip format).
void Compress(ParquetCompression codec, int zstd_level, const std::string& in, std::string* out);

// The CompressionCodec value of `c`.
int32_t CodecOf(ParquetCompression c);

}  // namespace twotower::data::parquet_internal

#endif  // TWOTOWER_SRC_DATA_PARQUET_CODECS_H_
