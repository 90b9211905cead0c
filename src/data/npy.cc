#include "twotower/data/npy.h"

#include <charconv>
#include <cstring>
#include <regex>

#include "twotower/core/error.h"
#include "twotower/core/files.h"

namespace twotower::data {

void WriteNpy(const std::string& path, const Matrix& m) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(m.rows()) + ", " + std::to_string(m.cols()) + "), }";
  // Pad with spaces so that magic + length + header + '\n' is a multiple of 64 bytes.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string prefix = "\x93NUMPY";
  prefix += '\x01';
  prefix += '\x00';
  const uint16_t len = static_cast<uint16_t>(header.size());
  prefix += static_cast<char>(len & 0xff);
  prefix += static_cast<char>(len >> 8);
  AtomicFile file(path);
  file.Write(prefix);
  file.Write(header);
  file.Write(m.data(), sizeof(float) * m.size());
  file.Commit();
}

Matrix ReadNpy(const std::string& path) {
  const std::string bytes = ReadFile(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) {
    throw Error(ErrorCode::kCorruptData, path + ": not a .npy file (bad magic)");
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw Error(ErrorCode::kCorruptData, path + ": truncated .npy header");
    uint32_t l;
    std::memcpy(&l, bytes.data() + 8, 4);
    header_len = l;
    offset = 12;
  } else {
    throw Error(ErrorCode::kCorruptData,
                path + ": unsupported .npy version " + std::to_string(major));
  }
  if (offset + header_len > bytes.size())
    throw Error(ErrorCode::kCorruptData, path + ": truncated .npy header");
  const std::string header = bytes.substr(offset, header_len);
  if (header.find("'descr': '<f4'") == std::string::npos) {
    throw Error(ErrorCode::kCorruptData, path + ": expected float32 ('<f4') data");
  }
  if (header.find("'fortran_order': False") == std::string::npos) {
    throw Error(ErrorCode::kCorruptData, path + ": expected C order (fortran_order False)");
  }
  std::smatch m;
  static const std::regex shape_re(R"('shape':\s*\((\d+),\s*(\d+),?\))");
  if (!std::regex_search(header, m, shape_re)) {
    throw Error(ErrorCode::kCorruptData, path + ": expected a 2-D array shape (rows, cols)");
  }
  int64_t rows = 0, cols = 0;
  const std::string rows_text = m[1], cols_text = m[2];
  const auto r1 = std::from_chars(rows_text.data(), rows_text.data() + rows_text.size(), rows);
  const auto r2 = std::from_chars(cols_text.data(), cols_text.data() + cols_text.size(), cols);
  // Bound the element count before multiplying, so no shape can overflow the byte count.
  constexpr int64_t kMaxElements = int64_t{1} << 40;
  if (r1.ec != std::errc() || r2.ec != std::errc() || rows > kMaxElements || cols > kMaxElements ||
      (cols > 0 && rows > kMaxElements / cols)) {
    throw Error(ErrorCode::kCorruptData,
                path + ": implausible array shape (" + rows_text + ", " + cols_text + ")");
  }
  const size_t data_offset = offset + header_len;
  const size_t need = static_cast<size_t>(rows) * static_cast<size_t>(cols) * sizeof(float);
  if (bytes.size() - data_offset != need) {
    throw Error(ErrorCode::kCorruptData, path + ": expected " + std::to_string(need) +
                                             " data bytes for shape (" + std::to_string(rows) +
                                             ", " + std::to_string(cols) + "), found " +
                                             std::to_string(bytes.size() - data_offset));
  }
  Matrix out(rows, cols);
  if (need > 0) std::memcpy(out.data(), bytes.data() + data_offset, need);
  return out;
}

}  // namespace twotower::data
