// Internals shared by the files of src/data/parquet/, twotower's Parquet reader and writer (the
// public interface is include/twotower/data/parquet.h), split by concern:
//   thrift.h, thrift.cc        Thrift compact protocol glue for the footer and page headers
//                              (parquet.thrift here, the specification's field ids)
//   encodings.h, encodings.cc  little-endian values, the RLE / bit-packing hybrid,
//                              DELTA_BINARY_PACKED, UTF-8 checks (the encodings document)
//   codecs.h, codecs.cc        page compression codecs, codec and encoding names
//   column.cc                  ParquetType / ParquetColumn and the type helpers declared here
//   reader.cc                  ParquetReader
//   writer.cc                  ParquetWriter
// This header holds the file's magic bytes (the specification's file layout) and the mapping of
// ParquetType to the specification's physical types. Not a public header.
#ifndef TWOTOWER_SRC_DATA_PARQUET_INTERNAL_H_
#define TWOTOWER_SRC_DATA_PARQUET_INTERNAL_H_

#include <cstdint>
#include <string>

#include "twotower/data/parquet.h"

namespace twotower::data::parquet_internal {

// The magic bytes at a Parquet file's start and end.
inline constexpr char kMagic[4] = {'P', 'A', 'R', '1'};

// Bytes per value: the PLAIN width of INT32, INT64, FLOAT and DOUBLE; 1 for BOOLEAN and 4 (its
// index) for a string.
int ValueWidth(ParquetType type);
// The physical type (parquet.thrift's Type) a column of type `t` is stored as.
int32_t PhysicalOf(ParquetType t);
// A ConvertedType's name for messages ("DATE"), or its number.
std::string ConvertedTypeName(int32_t t);

}  // namespace twotower::data::parquet_internal

#endif  // TWOTOWER_SRC_DATA_PARQUET_INTERNAL_H_
