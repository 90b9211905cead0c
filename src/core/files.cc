#include "twotower/core/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "twotower/core/error.h"
#include "twotower/core/failpoint.h"

namespace twotower {
namespace {

// The registry of temporary files: fixed slots, so that a signal handler can walk it without
// locks or allocation. A slot is free (0), being filled (1), in use (2) or taken by the handler
// (3; the process is about to die of its signal).
constexpr int kTempSlots = 64;
constexpr size_t kTempPathBytes = 1024;
struct TempSlot {
  std::atomic<int> state{0};
  char path[kTempPathBytes];
};
TempSlot g_temp_slots[kTempSlots];

}  // namespace

int RegisterTemporaryFile(const std::string& path) {
  if (path.size() >= kTempPathBytes) return -1;
  for (int i = 0; i < kTempSlots; ++i) {
    int expected = 0;
    if (g_temp_slots[i].state.compare_exchange_strong(expected, 1)) {
      std::memcpy(g_temp_slots[i].path, path.c_str(), path.size() + 1);
      g_temp_slots[i].state.store(2);
      return i;
    }
  }
  return -1;
}

void UnregisterTemporaryFile(int slot) {
  if (slot < 0 || slot >= kTempSlots) return;
  int expected = 2;
  g_temp_slots[slot].state.compare_exchange_strong(expected, 0);
}

void RemoveTemporaryFilesFromSignalHandler() {
  for (TempSlot& slot : g_temp_slots) {
    int expected = 2;
    if (slot.state.compare_exchange_strong(expected, 3)) ::unlink(slot.path);
  }
}

namespace {
std::atomic<int> g_holds{0};
std::atomic<int> g_pending_signal{0};
std::atomic<void (*)(int)> g_deferred_action{nullptr};
}  // namespace

InterruptHold::InterruptHold() { g_holds.fetch_add(1); }

InterruptHold::~InterruptHold() {
  // The handler stores the signal before it looks at the count, and this looks at the signal
  // after the count went to zero: whichever comes second sees the other, so a signal is acted
  // on exactly once (here or in the handler).
  if (g_holds.fetch_sub(1) != 1) return;
  const int sig = g_pending_signal.exchange(0);
  if (sig == 0) return;
  if (void (*action)(int) = g_deferred_action.load(); action != nullptr) action(sig);
}

bool DeferInterrupt(int sig) {
  g_pending_signal.store(sig);
  if (g_holds.load() > 0) return true;
  return g_pending_signal.exchange(0) == 0;  // 0: a hold that just ended took it
}

void SetDeferredInterruptAction(void (*action)(int)) { g_deferred_action.store(action); }

std::string ReadFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw Error(path + ": is a directory, expected a file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) ThrowCannotOpen(path, errno);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(ErrorCode::kIo, path + ": read failed");
  return ss.str();
}

void MakeDirectories(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw Error(ErrorCode::kIo, path + ": cannot create directory: " + ec.message());
}

void WriteFileAtomically(const std::string& path, std::string_view content) {
  AtomicFile file(path);
  file.Write(content);
  file.Commit();
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  // A rename replaces whatever has the name: a symbolic link is followed (the file it names is
  // replaced, not the link), and anything else that is not a regular file (a device such as
  // /dev/stdout, a FIFO, a socket, a directory) is refused rather than replaced by a file.
  {
    std::error_code ec;
    const auto link = std::filesystem::symlink_status(path_, ec);
    if (!ec && std::filesystem::is_symlink(link)) {
      const std::filesystem::path resolved = std::filesystem::weakly_canonical(path_, ec);
      if (!ec) path_ = resolved.string();
    }
    const auto status = std::filesystem::status(path_, ec);
    if (!ec && std::filesystem::exists(status) && !std::filesystem::is_regular_file(status)) {
      throw Error(
          path_ + ": exists and is not a regular file (" +
          (std::filesystem::is_directory(status) ? "a directory" : "a device, FIFO or socket") +
          "); twotower writes a temporary file and renames it over the target, which would "
          "replace it: name a file");
    }
  }
  const std::filesystem::path target(path_);
  if (target.has_parent_path()) MakeDirectories(target.parent_path().string());
  // mkstemp gives every writer its own temporary file, even two in one process.
  std::string pattern = path_ + ".tmp.XXXXXX";
  const int fd = ::mkstemp(pattern.data());
  if (fd < 0) throw Error(ErrorCode::kIo, path_ + ": cannot write: " + std::strerror(errno));
  // A replaced file keeps its permission bits (a private 0600 output stays private); a new one
  // gets 0644. (umask is not consulted: reading it means setting it, which races with other
  // threads creating files.)
  struct stat existing {};
  const bool replaces = ::stat(path_.c_str(), &existing) == 0 && S_ISREG(existing.st_mode);
  ::fchmod(fd, replaces ? (existing.st_mode & 07777) : 0644);
  temp_path_ = pattern;
  registered_ = RegisterTemporaryFile(temp_path_);
  file_ = ::fdopen(fd, "wb");
  if (file_ == nullptr) {
    const std::string reason = std::strerror(errno);
    ::close(fd);
    std::remove(temp_path_.c_str());
    UnregisterTemporaryFile(registered_);
    throw Error(ErrorCode::kIo, path_ + ": cannot write: " + reason);
  }
}

AtomicFile::~AtomicFile() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove(temp_path_.c_str());
  }
  UnregisterTemporaryFile(registered_);
}

void AtomicFile::Write(std::string_view bytes) { Write(bytes.data(), bytes.size()); }

void AtomicFile::Write(const void* data, size_t size) {
  if (file_ == nullptr) throw Error(path_ + ": write after commit");
  if (size > 0 && std::fwrite(data, 1, size, file_) != size) {
    throw Error(ErrorCode::kIo, path_ + ": write failed: " + std::strerror(errno) +
                                    " (the previous file, if any, is unchanged)");
  }
}

void AtomicFile::Commit() {
  if (file_ == nullptr) throw Error(path_ + ": committed twice");
  // A full disk or a file size limit shows here at the latest (buffered bytes are written by the
  // flush); the reason is the first failing call's.
  int failure = 0;
  if (std::fflush(file_) != 0) failure = errno;
  if (failure == 0 && ::fsync(::fileno(file_)) != 0) failure = errno;
  if (std::fclose(file_) != 0 && failure == 0) failure = errno;
  file_ = nullptr;
  if (failure != 0) {
    std::remove(temp_path_.c_str());
    throw Error(ErrorCode::kIo, path_ + ": write failed: " + std::strerror(failure) +
                                    " (the previous file, if any, is unchanged)");
  }
  FailPoint("files.before_rename");  // tests: a crash with the new bytes not yet in place
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(temp_path_.c_str());
    throw Error(ErrorCode::kIo, path_ + ": cannot rename temporary file into place: " + reason);
  }
  UnregisterTemporaryFile(registered_);
  registered_ = -1;
  // The rename itself reaches the disk with the directory: without this, a power cut right after
  // could leave the old file (or none) although Commit returned.
  std::filesystem::path parent = std::filesystem::path(path_).parent_path();
  if (parent.empty()) parent = ".";
  const int dir = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace twotower
