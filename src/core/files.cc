#include "twotower/core/files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "twotower/core/error.h"

namespace twotower {

std::string ReadFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw Error(path + ": is a directory, expected a file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path + ": read failed");
  return ss.str();
}

void MakeDirectories(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw Error(path + ": cannot create directory: " + ec.message());
}

void WriteFileAtomically(const std::string& path, std::string_view content) {
  AtomicFile file(path);
  file.Write(content);
  file.Commit();
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  const std::filesystem::path target(path_);
  if (target.has_parent_path()) MakeDirectories(target.parent_path().string());
  // mkstemp gives every writer its own temporary file, even two in one process.
  std::string pattern = path_ + ".tmp.XXXXXX";
  const int fd = ::mkstemp(pattern.data());
  if (fd < 0) throw Error(path_ + ": cannot write: " + std::strerror(errno));
  ::fchmod(fd, 0644);
  temp_path_ = pattern;
  file_ = ::fdopen(fd, "wb");
  if (file_ == nullptr) {
    const std::string reason = std::strerror(errno);
    ::close(fd);
    std::remove(temp_path_.c_str());
    throw Error(path_ + ": cannot write: " + reason);
  }
}

AtomicFile::~AtomicFile() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove(temp_path_.c_str());
  }
}

void AtomicFile::Write(std::string_view bytes) { Write(bytes.data(), bytes.size()); }

void AtomicFile::Write(const void* data, size_t size) {
  if (file_ == nullptr) throw Error(path_ + ": write after commit");
  if (size > 0 && std::fwrite(data, 1, size, file_) != size) {
    throw Error(path_ + ": write failed: " + std::strerror(errno));
  }
}

void AtomicFile::Commit() {
  if (file_ == nullptr) throw Error(path_ + ": committed twice");
  bool ok = std::fflush(file_) == 0;
  ok = ok && ::fsync(::fileno(file_)) == 0;
  const int saved_errno = errno;
  ok = (std::fclose(file_) == 0) && ok;
  file_ = nullptr;
  if (!ok) {
    std::remove(temp_path_.c_str());
    throw Error(path_ + ": write failed: " + std::strerror(saved_errno));
  }
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(temp_path_.c_str());
    throw Error(path_ + ": cannot rename temporary file into place: " + reason);
  }
}

}  // namespace twotower
