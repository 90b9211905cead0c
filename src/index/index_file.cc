#include "twotower/index/index_file.h"

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "index/index_file_internal.h"
#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/hash.h"

static_assert(std::endian::native == std::endian::little,
              "index files are little-endian and read with memcpy");

namespace twotower::index {
namespace {

constexpr char kMagic[8] = {'T', 'T', 'I', 'N', 'D', 'E', 'X', '\0'};
constexpr size_t kChecksummedHeaderBytes = 48;  // magic .. count
constexpr size_t kChecksumOffset = 56;

std::string Field8(const char* p) {
  size_t n = 0;
  while (n < 8 && p[n] != '\0') ++n;
  return std::string(p, n);
}

template <typename T>
T Get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename T>
void Put(char* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// Opens `path` for reading and returns its size; Error naming the path otherwise.
std::unique_ptr<std::FILE, FileCloser> OpenForRead(const std::string& path, uint64_t* size) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw Error(path + ": is a directory, expected an index file");
  }
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) ThrowCannotOpen(path, errno);
  const auto bytes = std::filesystem::file_size(path, ec);
  if (ec) throw Error(ErrorCode::kIo, path + ": cannot read: " + ec.message());
  *size = bytes;
  return f;
}

// Checks the header bytes (the first min(64, file_size) bytes) and the file size.
IndexInfo ParseHeader(const std::string& path, const char* h, size_t have, uint64_t file_size) {
  if (have < sizeof(kMagic) || std::memcmp(h, kMagic, sizeof(kMagic)) != 0) {
    throw Error(ErrorCode::kCorruptData,
                path + ": not a twotower index file (it does not start with \"TTINDEX\")");
  }
  if (have < kIndexHeaderSize) {
    throw Error(ErrorCode::kCorruptData, path + ": truncated: " + std::to_string(file_size) +
                                             " bytes, but the header alone is " +
                                             std::to_string(kIndexHeaderSize));
  }
  IndexInfo info;
  info.format_version = Get<uint32_t>(h + 8);
  if (info.format_version < 1 || info.format_version > kIndexFormatVersion) {
    throw Error(ErrorCode::kCorruptData, path + ": index format version " +
                                             std::to_string(info.format_version) +
                                             " is not supported (this build reads versions 1 .. " +
                                             std::to_string(kIndexFormatVersion) + ")");
  }
  const uint32_t header_size = Get<uint32_t>(h + 12);
  if (header_size != kIndexHeaderSize) {
    throw Error(ErrorCode::kCorruptData, path + ": header size " + std::to_string(header_size) +
                                             ", expected " + std::to_string(kIndexHeaderSize));
  }
  info.type = Field8(h + 16);
  info.metric = Field8(h + 24);
  if (info.type != "flat" && info.type != "hnsw") {
    throw Error(ErrorCode::kCorruptData, path + ": unknown index type " + Quote(info.type) +
                                             " in the header (expected: flat, hnsw)");
  }
  if (info.metric != "ip") {
    throw Error(ErrorCode::kCorruptData,
                path + ": metric " + Quote(info.metric) + " is not supported (expected: ip)");
  }
  const uint32_t dim = Get<uint32_t>(h + 32);
  if (dim < 1 || dim > (1u << 20)) {
    throw Error(ErrorCode::kCorruptData,
                path + ": header: dimension " + std::to_string(dim) + ", expected 1 .. 1048576");
  }
  info.dim = static_cast<int>(dim);
  const uint64_t count = Get<uint64_t>(h + 40);
  if (count > (uint64_t{1} << 40)) {
    throw Error(ErrorCode::kCorruptData,
                path + ": header: item count " + std::to_string(count) + " is not plausible");
  }
  info.count = static_cast<int64_t>(count);
  info.payload_size = Get<uint64_t>(h + 48);
  info.checksum = Get<uint32_t>(h + kChecksumOffset);
  const uint64_t expected = kIndexHeaderSize + info.payload_size;
  if (info.payload_size > file_size || file_size < expected) {
    throw Error(ErrorCode::kCorruptData, path + ": truncated: the header announces " +
                                             std::to_string(expected) + " bytes, the file has " +
                                             std::to_string(file_size));
  }
  // Each item takes at least a u32 id length, a one-byte id and its vector: a count the
  // payload cannot hold is refused before anything is sized by it.
  const uint64_t min_item_bytes = 4 + 1 + 4 * uint64_t{dim};
  if (count > info.payload_size / min_item_bytes) {
    throw Error(ErrorCode::kCorruptData,
                path + ": header: " + std::to_string(count) + " items of dimension " +
                    std::to_string(dim) + " need at least " +
                    std::to_string(count * min_item_bytes) +
                    " payload bytes, the header announces " + std::to_string(info.payload_size));
  }
  if (file_size > expected) {
    throw Error(ErrorCode::kCorruptData,
                path + ": " + std::to_string(file_size - expected) +
                    " unexpected bytes after the payload (the header announces " +
                    std::to_string(expected) + ")");
  }
  return info;
}

class CrcSink : public internal::ByteSink {
 public:
  void Write(const void* data, size_t size) override {
    crc_ = Crc32c(crc_, data, size);
    size_ += size;
  }
  uint32_t crc_ = 0;
  uint64_t size_ = 0;
};

class FileSink : public internal::ByteSink {
 public:
  explicit FileSink(AtomicFile* file) : file_(file) {}
  void Write(const void* data, size_t size) override {
    file_->Write(data, size);
    crc_ = Crc32c(crc_, data, size);
    size_ += size;
  }
  AtomicFile* file_;
  uint32_t crc_ = 0;
  uint64_t size_ = 0;
};

}  // namespace

IndexInfo ReadIndexInfo(const std::string& path) {
  uint64_t file_size = 0;
  auto f = OpenForRead(path, &file_size);
  char h[kIndexHeaderSize] = {};
  const size_t have = std::fread(h, 1, sizeof(h), f.get());
  return ParseHeader(path, h, have, file_size);
}

namespace internal {

void WriteIndexFile(const std::string& path, const std::string& type, int dim, int64_t count,
                    const std::string& model_fingerprint, uint32_t version,
                    const std::function<void(ByteSink&)>& body) {
  const auto emit = [&](ByteSink& sink) {
    sink.U32(static_cast<uint32_t>(model_fingerprint.size()));
    sink.Write(model_fingerprint.data(), model_fingerprint.size());
    body(sink);
  };
  char h[kIndexHeaderSize] = {};
  std::memcpy(h, kMagic, sizeof(kMagic));
  Put<uint32_t>(h + 8, version);
  Put<uint32_t>(h + 12, kIndexHeaderSize);
  std::strncpy(h + 16, type.c_str(), 8);
  std::strncpy(h + 24, "ip", 8);
  Put<uint32_t>(h + 32, static_cast<uint32_t>(dim));
  Put<uint64_t>(h + 40, static_cast<uint64_t>(count));
  const uint32_t header_crc = Crc32c(0, h, kChecksummedHeaderBytes);

  // First pass: the payload's size and checksum, which the header holds.
  CrcSink measure;
  measure.crc_ = header_crc;
  emit(measure);
  Put<uint64_t>(h + 48, measure.size_);
  Put<uint32_t>(h + kChecksumOffset, measure.crc_);

  AtomicFile file(path);
  file.Write(h, sizeof(h));
  FileSink sink(&file);
  sink.crc_ = header_crc;
  emit(sink);
  if (sink.size_ != measure.size_ || sink.crc_ != measure.crc_) {
    throw Error(ErrorCode::kInternal,
                path + ": internal error: the payload changed while it was written");
  }
  file.Commit();
}

IndexFileContents ReadIndexFile(const std::string& path, int expected_dim) {
  uint64_t file_size = 0;
  auto f = OpenForRead(path, &file_size);
  IndexFileContents c;
  char h[kIndexHeaderSize] = {};
  const size_t have = std::fread(h, 1, sizeof(h), f.get());
  c.info = ParseHeader(path, h, have, file_size);
  if (expected_dim > 0 && c.info.dim != expected_dim) {
    throw Error(path + ": index dimension " + std::to_string(c.info.dim) +
                " does not match the expected dimension " + std::to_string(expected_dim));
  }
  c.bytes.resize(file_size);
  std::memcpy(c.bytes.data(), h, kIndexHeaderSize);
  const size_t rest = file_size - kIndexHeaderSize;
  if (rest > 0 && std::fread(c.bytes.data() + kIndexHeaderSize, 1, rest, f.get()) != rest) {
    throw Error(ErrorCode::kIo, path + ": read failed: " + std::strerror(errno));
  }
  uint32_t crc = Crc32c(0, c.bytes.data(), kChecksummedHeaderBytes);
  crc = Crc32c(crc, c.bytes.data() + kIndexHeaderSize, rest);
  if (crc != c.info.checksum) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "checksum mismatch (header 0x%08x, contents 0x%08x)",
                  c.info.checksum, crc);
    throw Error(ErrorCode::kCorruptData, path + ": " + buf + ": the file is corrupted");
  }
  return c;
}

const char* PayloadReader::Take(size_t size, const char* what) {
  if (size > remaining()) {
    Fail(std::string(what) + ": needs " + std::to_string(size) + " bytes, only " +
         std::to_string(remaining()) + " left in the payload");
  }
  const char* p = bytes_.data() + pos_;
  pos_ += size;
  return p;
}

uint32_t PayloadReader::U32(const char* what) { return Get<uint32_t>(Take(4, what)); }
uint64_t PayloadReader::U64(const char* what) { return Get<uint64_t>(Take(8, what)); }

std::string PayloadReader::ModelFingerprint() {
  const uint32_t size = U32("model fingerprint");
  if (size != 0 && size != 64) {
    Fail("model fingerprint: " + std::to_string(size) + " bytes, expected 0 or 64");
  }
  std::string fingerprint(Take(size, "model fingerprint"), size);
  if (size != 0 && !IsSha256Hex(fingerprint)) {
    Fail("model fingerprint: " + Quote(fingerprint) + " is not 64 lowercase hex digits");
  }
  return fingerprint;
}

void PayloadReader::ExpectEnd() {
  if (remaining() != 0) {
    Fail(std::to_string(remaining()) + " bytes left over after the last section");
  }
}

void PayloadReader::CheckFinite(const float* v, int dim, int64_t label,
                                const std::string& id) const {
  for (int p = 0; p < dim; ++p) {
    if (!std::isfinite(v[p])) {
      Fail("vectors: item " + std::to_string(label) + " (id " + Quote(id) +
           "): value at dimension " + std::to_string(p) + " is not finite");
    }
  }
}

void PayloadReader::Fail(const std::string& message) const {
  throw Error(ErrorCode::kCorruptData, path_ + ": payload: " + message);
}

}  // namespace internal
}  // namespace twotower::index
