// ParquetType and ParquetColumn (include/twotower/data/parquet.h): type names, compression
// names, the .parquet suffix, a column's rows as table text; and the type helpers of internal.h,
// which map ParquetType to the specification's physical types (parquet.thrift's Type) and name
// its converted types (LogicalTypes.md).
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "data/parquet/internal.h"
#include "parquet_types.h"  // generated from src/data/parquet/parquet.thrift by thrift-compiler
#include "twotower/core/error.h"
#include "twotower/data/parquet.h"

namespace twotower::data {
namespace parquet_internal {
namespace pf = parquet_format;

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

}  // namespace parquet_internal

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

std::string NumberText(double v, bool float32) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (float32) v = static_cast<float>(v);
  if (v == 0) return std::signbit(v) ? "-0" : "0";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e21) {
    std::snprintf(buf, sizeof(buf), "%.0f", v);  // exact: every integral double has an expansion
    return buf;
  }
  // The shortest round-trip digits in scientific form, "d.ddde-07", then ECMAScript's layout
  // (Number::toString, ECMA-262 section 6.1.6.1.20): with digits d1..dk and value
  // 0.d1..dk x 10^n, fixed notation when -6 < n <= 21, else d1.d2..dk e+/-(n-1).
  const auto res = float32
                       ? std::to_chars(buf, buf + sizeof(buf), static_cast<float>(v),
                                       std::chars_format::scientific)
                       : std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  const std::string sci(buf, res.ptr);
  const size_t e_at = sci.find('e');
  const bool negative = sci[0] == '-';
  std::string digits;
  for (size_t i = negative ? 1 : 0; i < e_at; ++i) {
    if (sci[i] != '.') digits.push_back(sci[i]);
  }
  const int n = std::atoi(sci.c_str() + e_at + 1) + 1;
  const int k = static_cast<int>(digits.size());
  std::string out = negative ? "-" : "";
  if (k <= n && n <= 21) {
    out += digits + std::string(n - k, '0');
  } else if (0 < n && n <= 21) {
    out += digits.substr(0, n) + "." + digits.substr(n);
  } else if (-6 < n && n <= 0) {
    out += "0." + std::string(-n, '0') + digits;
  } else {
    out += digits.substr(0, 1);
    if (k > 1) out += "." + digits.substr(1);
    out += (n - 1 >= 0 ? "e+" : "e-") + std::to_string(std::abs(n - 1));
  }
  return out;
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
    case ParquetType::kDouble:
      return NumberText(doubles[r], type == ParquetType::kFloat);
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

}  // namespace twotower::data
