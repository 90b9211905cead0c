// The Parquet encodings at the level of bits and bytes (the specification's encodings document):
// little-endian fixed-width values (PLAIN), the RLE / bit-packing hybrid (definition levels,
// dictionary indices, RLE booleans), DELTA_BINARY_PACKED with its ULEB128 / zigzag varints, and
// the UTF-8 check of STRING values (RFC 3629). The decoders the reader runs for every value are
// inline here so that they inline into its loops; the encoders are in encodings.cc. Not a public
// header.
#ifndef TWOTOWER_SRC_DATA_PARQUET_ENCODINGS_H_
#define TWOTOWER_SRC_DATA_PARQUET_ENCODINGS_H_

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "twotower/core/error.h"

namespace twotower::data::parquet_internal {

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

inline int BitWidth(uint64_t max_value) {
  return max_value == 0 ? 0 : 64 - std::countl_zero(max_value);
}

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
inline constexpr auto kUnpack = MakeUnpackers(std::make_integer_sequence<int, 32>{});

// Decodes `count` values of `bit_width` bits from [p, p + n) into out[0..count). Throws the
// message `what` + detail when the bytes end early or a header is malformed.
inline void DecodeHybrid(const uint8_t* p, size_t n, int bit_width, int64_t count, uint32_t* out,
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
inline uint64_t ReadUleb(const uint8_t*& p, const uint8_t* end, const std::string& what) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p >= end) throw Error(what + ": varint cut off");
    const uint8_t b = *p++;
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return v;
  }
  throw Error(what + ": varint longer than 10 bytes");
}

inline int64_t Unzigzag(uint64_t v) { return static_cast<int64_t>((v >> 1) ^ (~(v & 1) + 1)); }

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
void EncodeHybrid(const uint32_t* v, int64_t n, int bit_width, std::string* out);

// RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF.
bool IsUtf8(std::string_view s);

}  // namespace twotower::data::parquet_internal

#endif  // TWOTOWER_SRC_DATA_PARQUET_ENCODINGS_H_
