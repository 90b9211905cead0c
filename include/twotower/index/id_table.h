// IdTable: the item ids of an index and their labels (0 .. size-1, in order of first insertion),
// with the ids section of an index file (index_file.h). FlatIndex and HnswIndex both keep one.
// Not thread-safe for writes; concurrent reads are fine.
#ifndef TWOTOWER_INDEX_ID_TABLE_H_
#define TWOTOWER_INDEX_ID_TABLE_H_

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace twotower::index {
namespace internal {
class ByteSink;
class PayloadReader;
}  // namespace internal

class IdTable {
 public:
  int64_t size() const { return static_cast<int64_t>(ids_.size()); }
  const std::vector<std::string>& ids() const { return ids_; }
  // The label of `id`, or -1.
  int64_t Find(const std::string& id) const;
  // The label of `id`; a new id gets the next label and sets *added.
  int64_t Insert(const std::string& id, bool* added);
  void Reserve(int64_t n);

  // The ids section: per label, a u32 length and the id's bytes.
  void Emit(internal::ByteSink& sink) const;
  // Reads an ids section of `count` ids into this (empty) table; fails the reader naming the
  // item for an empty id, one with a line break, or one that occurs twice.
  void Read(internal::PayloadReader& reader, int64_t count);

 private:
  std::vector<std::string> ids_;
  std::unordered_map<std::string, int64_t> label_of_;
};

}  // namespace twotower::index

#endif  // TWOTOWER_INDEX_ID_TABLE_H_
