// Thrift compact protocol glue: the footer (FileMetaData) and page headers (PageHeader) of the
// Parquet file layout, read from and written to memory with libthrift's compact protocol, the
// structures being those of src/data/parquet/parquet.thrift (the specification's parquet.thrift).
// Not a public header.
#ifndef TWOTOWER_SRC_DATA_PARQUET_THRIFT_H_
#define TWOTOWER_SRC_DATA_PARQUET_THRIFT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "parquet_types.h"  // generated from src/data/parquet/parquet.thrift by thrift-compiler

namespace twotower::data::parquet_internal {

// Reads one T from [data, data + size) and returns the bytes it took. Throws
// apache::thrift::TException when the bytes are not a T or ask for more than there is.
template <typename T>
size_t ThriftRead(const uint8_t* data, size_t size, T* out);

// The compact protocol bytes of `value`.
template <typename T>
std::string ThriftWrite(const T& value);

// Instantiated in thrift.cc for the structures the reader and the writer use.
extern template size_t ThriftRead(const uint8_t*, size_t, parquet_format::FileMetaData*);
extern template size_t ThriftRead(const uint8_t*, size_t, parquet_format::PageHeader*);
extern template std::string ThriftWrite(const parquet_format::FileMetaData&);
extern template std::string ThriftWrite(const parquet_format::PageHeader&);

}  // namespace twotower::data::parquet_internal

#endif  // TWOTOWER_SRC_DATA_PARQUET_THRIFT_H_
