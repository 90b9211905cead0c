// libFuzzer target: index files (header, model fingerprint, ids, vectors, hnsw node table and
// hnswlib graph). The last input byte chooses what to repair first, so that mutations get past
// the size and checksum checks into the payload: bit 0 sets payload_size to the file's, bit 1
// recomputes the CRC-32C (both as index_file.h defines them).
#include <cstring>
#include <string>

#include "fuzz_input.h"
#include "twotower/core/error.h"
#include "twotower/core/hash.h"
#include "twotower/index/index_file.h"
#include "twotower/index/item_index.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = twotower::fuzz::InputPath(".index");
  if (size == 0) return 0;
  std::string bytes(reinterpret_cast<const char*>(data), size - 1);
  const uint8_t mode = data[size - 1];
  if (bytes.size() >= 64) {
    if (mode & 1) {
      const uint64_t payload = bytes.size() - 64;
      std::memcpy(bytes.data() + 48, &payload, sizeof(payload));
    }
    if (mode & 2) {
      uint32_t crc = twotower::Crc32c(0, bytes.data(), 48);
      crc = twotower::Crc32c(crc, bytes.data() + 64, bytes.size() - 64);
      std::memcpy(bytes.data() + 56, &crc, sizeof(crc));
    }
  }
  twotower::fuzz::WriteInput(path, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  try {
    const auto index = twotower::index::LoadIndex(path);
    if (index->size() > 0) {
      // A loaded index must answer a query.
      std::vector<float> q(static_cast<size_t>(index->dim()), 0.5f);
      std::vector<int64_t> ids(3);
      std::vector<float> scores(3);
      index->Search(q.data(), 1, 3, nullptr, ids.data(), scores.data());
    }
  } catch (const twotower::Error&) {
  }
  return 0;
}
