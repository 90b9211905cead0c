// Index files: what ItemIndex::Save writes and LoadIndex reads.
//
// A 64-byte header, then the payload; every integer and float is little-endian.
//
//   offset size  field
//        0    8  magic "TTINDEX\0"
//        8    4  format_version (kIndexFormatVersion)
//       12    4  header_size (64)
//       16    8  type, NUL-padded: "flat" or "hnsw"
//       24    8  metric, NUL-padded: "ip" (inner product)
//       32    4  dim
//       36    4  reserved (0)
//       40    8  count (items)
//       48    8  payload_size (bytes after the header)
//       56    4  checksum: CRC-32C of header bytes 0..47 followed by the whole payload
//                (payload_size itself is checked against the file size)
//       60    4  reserved (0)
//
// Payload, in order:
//   model fingerprint (format 2; absent in format 1): u32 length (0 or 64), then that many bytes:
//     the SHA-256 of the model file whose item tower made the vectors, 64 lowercase hex digits
//     (core/hash.h), or nothing when unknown
//   type parameters: flat: in format 3 u32 storage (1 bf16, 2 int8: what a scan reads,
//     flat_index.h; the compressed codes are not stored, they are re-encoded from the vectors on
//     load) and u32 reserved (0), none in formats 1 and 2 (storage fp32); hnsw u32 M,
//     u32 ef_construction, u32 ef_search, u32 reserved
//   ids: count times (u32 byte length, bytes), label order
//   vectors: count x dim float32, row-major, label order (numpy: np.frombuffer(..., '<f4'))
//   hnsw only: (format 2) u64 node count N and count times u64: the graph node of each item,
//     label order (items with bit-identical vectors share a node; a node no item has is marked
//     deleted in the graph); then u64 graph size and hnswlib's own saveIndex() bytes, N elements
//     whose labels are the node numbers. Format 1 has no node table: N = count, node = label.
//
// Loading checks, in this order, and names the file in every error: magic (a foreign file),
// version, header fields, file size (truncated or trailing bytes), checksum (corruption), then
// each payload section against the header.
#ifndef TWOTOWER_INDEX_INDEX_FILE_H_
#define TWOTOWER_INDEX_INDEX_FILE_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace twotower::index {

// 2 added the model fingerprint; files of version 1 still load (fingerprint unknown). 3 added the
// flat storage parameter; files of versions 1 and 2 load as storage fp32. Writers use the oldest
// version that holds the index: 3 only for a compressed flat index, 2 otherwise, so that builds
// from before version 3 read every index they can use.
constexpr uint32_t kIndexFormatVersion = 3;
constexpr size_t kIndexHeaderSize = 64;

// What the header of an index file says.
struct IndexInfo {
  uint32_t format_version = 0;
  std::string type;    // "flat" | "hnsw"
  std::string metric;  // "ip"
  int dim = 0;
  int64_t count = 0;
  uint64_t payload_size = 0;
  uint32_t checksum = 0;
};

// Reads and checks the header only (magic, version, fields, file size), not the payload: cheap,
// for messages and for checking the dimension before loading. Throws Error("<path>: ...").
IndexInfo ReadIndexInfo(const std::string& path);

}  // namespace twotower::index

#endif  // TWOTOWER_INDEX_INDEX_FILE_H_
