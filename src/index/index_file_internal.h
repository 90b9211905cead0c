// Writing and reading index files (format: include/twotower/index/index_file.h). Not a public
// header.
#ifndef TWOTOWER_SRC_INDEX_INDEX_FILE_INTERNAL_H_
#define TWOTOWER_SRC_INDEX_INDEX_FILE_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "twotower/index/index_file.h"

namespace twotower::index::internal {

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void Write(const void* data, size_t size) = 0;
  void U32(uint32_t v) { Write(&v, sizeof(v)); }
  void U64(uint64_t v) { Write(&v, sizeof(v)); }
};

// Writes header + payload to `path` atomically. `emit` writes the payload into the sink; it is
// called twice (to checksum, then to write) and must emit the same bytes both times.
// The payload starts with the model fingerprint section, written here; `emit` writes the rest.
// `version`: the oldest format that holds the index (2, or 3 for a compressed flat index), so
// that older builds still read what they can.
void WriteIndexFile(const std::string& path, const std::string& type, int dim, int64_t count,
                    const std::string& model_fingerprint, uint32_t version,
                    const std::function<void(ByteSink&)>& emit);

// A whole index file, checked: header, size, checksum (and the dimension when expected_dim > 0).
struct IndexFileContents {
  IndexInfo info;
  std::string bytes;  // the whole file; the payload starts at kIndexHeaderSize
};
IndexFileContents ReadIndexFile(const std::string& path, int expected_dim);

// Bounds-checked reads from a payload; every error names the file and the section.
class PayloadReader {
 public:
  PayloadReader(const std::string& path, const std::string& bytes, size_t offset)
      : path_(path), bytes_(bytes), pos_(offset) {}
  // A pointer to the next `size` bytes, or an Error naming `what`.
  const char* Take(size_t size, const char* what);
  uint32_t U32(const char* what);
  uint64_t U64(const char* what);
  // The model fingerprint section (format 2): "" or 64 lowercase hex digits; fails otherwise.
  std::string ModelFingerprint();
  size_t remaining() const { return bytes_.size() - pos_; }
  // Error unless every byte was read.
  void ExpectEnd();
  [[noreturn]] void Fail(const std::string& message) const;
  // Fails naming the item (label and id) and the dimension unless v[0 .. dim) are all finite.
  void CheckFinite(const float* v, int dim, int64_t label, const std::string& id) const;

 private:
  const std::string& path_;
  const std::string& bytes_;
  size_t pos_;
};

}  // namespace twotower::index::internal

#endif  // TWOTOWER_SRC_INDEX_INDEX_FILE_INTERNAL_H_
