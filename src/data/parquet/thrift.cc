// Thrift compact protocol glue (thrift.h): ThriftRead / ThriftWrite over memory with libthrift's
// TCompactProtocol, for the footer and page headers of the Parquet file layout (the
// specification's parquet.thrift, compiled from src/data/parquet/parquet.thrift).
#include "data/parquet/thrift.h"

#include <thrift/protocol/TCompactProtocol.h>
#include <thrift/transport/TBufferTransports.h>

#include <algorithm>
#include <memory>

namespace twotower::data::parquet_internal {

using apache::thrift::protocol::TCompactProtocolT;
using apache::thrift::transport::TMemoryBuffer;

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

template size_t ThriftRead(const uint8_t*, size_t, parquet_format::FileMetaData*);
template size_t ThriftRead(const uint8_t*, size_t, parquet_format::PageHeader*);
template std::string ThriftWrite(const parquet_format::FileMetaData&);
template std::string ThriftWrite(const parquet_format::PageHeader&);

}  // namespace twotower::data::parquet_internal
