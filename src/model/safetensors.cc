#include "twotower/model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/json.h"

namespace twotower::model {
namespace {

int64_t Product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

void WriteSafetensors(const std::string& path, const SafetensorsFile& file) {
  nlohmann::json header = nlohmann::json::object();
  int64_t offset = 0;
  for (const auto& [name, tensor] : file.tensors) {
    const int64_t bytes = Product(tensor.shape) * static_cast<int64_t>(sizeof(float));
    header[name] = {
        {"dtype", "F32"}, {"shape", tensor.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  std::string text = header.dump();
  // Pad the header with spaces to a multiple of 8 bytes so the data is aligned (as the
  // reference implementation does).
  text.append((8 - text.size() % 8) % 8, ' ');
  uint64_t n = text.size();
  unsigned char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(n >> (8 * i));
  AtomicFile out(path);
  out.Write(length, 8);
  out.Write(text);
  for (const auto& [name, tensor] : file.tensors) {
    out.Write(tensor.data.data(), tensor.data.size() * sizeof(float));
  }
  out.Commit();
}

SafetensorsFile ReadSafetensors(const std::string& path) {
  return ParseSafetensors(ReadFile(path), path);
}

SafetensorsFile ParseSafetensors(std::string_view bytes, const std::string& path) {
  if (bytes.size() < 8) {
    throw Error(ErrorCode::kCorruptData,
                path + ": not a safetensors file (shorter than the 8-byte header length)");
  }
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  if (n == 0 || n > bytes.size() - 8) {
    throw Error(ErrorCode::kCorruptData,
                path + ": not a safetensors file or truncated (header length " + std::to_string(n) +
                    ", file has " + std::to_string(bytes.size()) + " bytes)");
  }
  const nlohmann::json header = ParseJsonStrict(bytes.substr(8, n), path + ": safetensors header");
  if (!header.is_object())
    throw Error(ErrorCode::kCorruptData,
                path + ": not a safetensors file (header is not an object)");
  const size_t data_start = 8 + n;
  const size_t data_size = bytes.size() - data_start;
  SafetensorsFile file;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object())
        throw Error(ErrorCode::kCorruptData, path + ": __metadata__ must be an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          throw Error(ErrorCode::kCorruptData,
                      path + ": __metadata__." + key + ": expected a string value");
        }
        file.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets")) {
      throw Error(ErrorCode::kCorruptData, where + ": expected dtype, shape and data_offsets");
    }
    if (entry["dtype"] != "F32") {
      throw Error(ErrorCode::kCorruptData,
                  where + ": dtype " + entry["dtype"].dump() + " is not supported (expected F32)");
    }
    Tensor t;
    try {
      t.shape = entry["shape"].get<std::vector<int64_t>>();
      const auto offsets = entry["data_offsets"].get<std::vector<int64_t>>();
      if (offsets.size() != 2)
        throw Error(ErrorCode::kCorruptData, where + ": data_offsets must have two entries");
      // Bound the element count as it is multiplied: a hostile shape must not overflow it.
      constexpr int64_t kMaxElements = int64_t{1} << 40;
      int64_t count = 1;
      for (int64_t d : t.shape) {
        if (d < 0 || d > kMaxElements || (d > 0 && count > kMaxElements / d)) {
          throw Error(ErrorCode::kCorruptData, where + ": invalid shape " + entry["shape"].dump());
        }
        count *= d;
      }
      const int64_t begin = offsets[0], end = offsets[1];
      if (begin < 0 || end < begin || static_cast<uint64_t>(end) > data_size) {
        throw Error(ErrorCode::kCorruptData, where + ": data offsets [" + std::to_string(begin) +
                                                 ", " + std::to_string(end) + ") lie outside the " +
                                                 std::to_string(data_size) +
                                                 " data bytes (truncated file?)");
      }
      if (end - begin != count * static_cast<int64_t>(sizeof(float))) {
        throw Error(ErrorCode::kCorruptData,
                    where + ": " + std::to_string(end - begin) + " bytes do not match its shape");
      }
      t.data.resize(count);
      if (count > 0) std::memcpy(t.data.data(), bytes.data() + data_start + begin, end - begin);
      ranges.emplace_back(begin, end);
    } catch (const nlohmann::json::exception&) {
      throw Error(ErrorCode::kCorruptData, where + ": malformed shape or data_offsets");
    }
    file.tensors.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second)
      throw Error(ErrorCode::kCorruptData, path + ": tensors overlap");
  }
  return file;
}

}  // namespace twotower::model
