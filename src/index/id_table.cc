#include "twotower/index/id_table.h"

#include <algorithm>

#include "index/index_file_internal.h"
#include "twotower/core/error.h"

namespace twotower::index {

using internal::ByteSink;
using internal::PayloadReader;

int64_t IdTable::Find(const std::string& id) const {
  const auto it = label_of_.find(id);
  return it == label_of_.end() ? -1 : it->second;
}

int64_t IdTable::Insert(const std::string& id, bool* added) {
  const auto [it, inserted] = label_of_.emplace(id, size());
  if (inserted) ids_.push_back(id);
  *added = inserted;
  return it->second;
}

void IdTable::Reserve(int64_t n) {
  // Geometric growth: an exact reserve before each single-item add (index add, the server's live
  // items) copied every id and rehashed the table each time, 13 ms per item at a million items.
  const size_t want = static_cast<size_t>(n);
  if (want > ids_.capacity()) ids_.reserve(std::max(want, 2 * ids_.capacity()));
  if (want > label_of_.bucket_count() * label_of_.max_load_factor()) {
    label_of_.reserve(std::max(want, 2 * label_of_.size()));
  }
}

void IdTable::Emit(ByteSink& sink) const {
  std::string buffer;
  for (const std::string& id : ids_) {
    const uint32_t len = static_cast<uint32_t>(id.size());
    buffer.append(reinterpret_cast<const char*>(&len), sizeof(len));
    buffer += id;
    if (buffer.size() >= (1u << 20)) {
      sink.Write(buffer.data(), buffer.size());
      buffer.clear();
    }
  }
  sink.Write(buffer.data(), buffer.size());
}

void IdTable::Read(PayloadReader& reader, int64_t count) {
  Reserve(count);
  for (int64_t i = 0; i < count; ++i) {
    const uint32_t len = reader.U32("ids");
    std::string id(reader.Take(len, "ids"), len);
    const std::string item = "ids: item " + std::to_string(i);
    if (id.empty()) reader.Fail(item + ": empty id");
    if (id.find_first_of("\n\r") != std::string::npos) {
      reader.Fail(item + ": id " + Quote(id) + " contains a line break");
    }
    bool added = false;
    const int64_t first = Insert(id, &added);
    if (!added) {
      reader.Fail(item + ": id " + Quote(id) + " occurs twice (also item " + std::to_string(first) +
                  ")");
    }
  }
}

}  // namespace twotower::index
