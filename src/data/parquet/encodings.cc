// The encoders of the Parquet encodings the writer uses (the specification's encodings document:
// the RLE / bit-packing hybrid and its ULEB128 run headers) and the UTF-8 check of STRING values
// (RFC 3629). The decoders are inline in encodings.h.
#include "data/parquet/encodings.h"

namespace twotower::data::parquet_internal {
namespace {

void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

}  // namespace

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

}  // namespace twotower::data::parquet_internal
