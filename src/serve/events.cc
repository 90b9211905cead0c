#include "twotower/serve/events.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "twotower/core/error.h"
#include "twotower/core/files.h"
#include "twotower/core/json.h"

namespace twotower::serve {

bool IsEventName(const std::string& name) {
  return name == "impression" || name == "click" || name == "like";
}

namespace {

// The event on one line of the log; throws Error (kCorruptData) naming `where`.
Event ParseEvent(std::string_view line, const std::string& where) {
  nlohmann::json j;
  try {
    j = ParseJsonStrict(line, where);
  } catch (const Error& e) {
    throw Error(ErrorCode::kCorruptData, e.what());
  }
  Event e;
  try {
    e.ts_ms = j.at("ts_ms").get<int64_t>();
    e.user_id = j.at("user_id").get<std::string>();
    e.item_id = j.at("item_id").get<std::string>();
    e.event = j.at("event").get<std::string>();
    e.variant = j.at("variant").get<std::string>();
    if (j.contains("models")) e.models = j.at("models").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& ex) {
    throw Error(ErrorCode::kCorruptData, where + ": not an event (" + std::string(ex.what()) + ")");
  }
  if (!IsEventName(e.event)) {
    throw Error(ErrorCode::kCorruptData, where + ": unknown event " + Quote(e.event));
  }
  return e;
}

}  // namespace

std::string ReadReport::Describe(const std::string& path, bool repaired) const {
  std::string out = path + ": " + std::to_string(events) + " events read";
  if (unterminated) {
    out += repaired ? "; the last event had no newline after it: kept, and the newline added"
                    : "; the last event has no newline after it (kept)";
  }
  if (torn_bytes > 0) {
    out += (repaired ? "; a torn last line of " : "; a torn last line of ") +
           std::to_string(torn_bytes) +
           (repaired ? " bytes (not a whole event: a write cut by a crash) was cut off"
                     : " bytes is not a whole event (a write cut by a crash) and is ignored");
  }
  return out;
}

ReadReport ReadEvents(const std::string& path, const std::function<void(const Event&)>& f) {
  const std::string text = ReadFile(path);
  size_t start = 0;
  int64_t line = 0;
  ReadReport r;
  while (start < text.size()) {
    const size_t nl = text.find('\n', start);
    ++line;
    const std::string where = path + ":" + std::to_string(line);
    if (nl == std::string::npos) {
      // The last line has no line end: a whole event whose newline was lost, or a write cut by
      // a crash. Only a whole, valid event counts.
      try {
        const Event e = ParseEvent(std::string_view(text).substr(start), where);
        f(e);
        ++r.events;
        r.unterminated = true;
      } catch (const Error&) {
        r.torn_bytes = static_cast<int64_t>(text.size() - start);
      }
      break;
    }
    f(ParseEvent(std::string_view(text).substr(start, nl - start), where));
    ++r.events;
    start = nl + 1;
  }
  return r;
}

EventLog::EventLog(std::string path, const std::function<void(const Event&)>& replay)
    : path_(std::move(path)) {
  const std::filesystem::path p(path_);
  if (p.has_parent_path()) MakeDirectories(p.parent_path().string());
  int fd = -1;
  bool locked = false;
  try {
    // One writer per log, for the writer's life: a second server appending to the same file
    // would interleave its events with this one's, and its replay would cut off what it took
    // for a torn line while this one was writing it. flock's lock belongs to this open file, so
    // it goes when the file is closed or the process dies (no stale lock file to clean up).
    // The file is created here (O_EXCL: DiscardIfUnused may remove it again) or was there. A
    // file locked after another process removed its name (a server that failed to start and
    // discarded its log) is not the log: opened again.
    for (int attempt = 0;; ++attempt) {
      fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      created_ = fd >= 0;
      if (fd < 0 && errno == EEXIST) {
        fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
      }
      if (fd < 0) {
        throw Error(ErrorCode::kIo, path_ + ": cannot open for appending: " + std::strerror(errno));
      }
      if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        if (err == EWOULDBLOCK) {
          throw Error(ErrorCode::kConflict,
                      path_ +
                          ": the events log is in use by another process (another twotower "
                          "serve?); give each server an events log of its own");
        }
        throw Error(ErrorCode::kIo, path_ + ": cannot lock: " + std::strerror(err));
      }
      locked = true;
      struct stat held, named;
      if (::fstat(fd, &held) == 0 && ::stat(path_.c_str(), &named) == 0 &&
          held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
        break;
      }
      if (attempt == 8) {
        throw Error(ErrorCode::kIo, path_ +
                                        ": the file keeps being removed or replaced while "
                                        "this server opens it");
      }
      ::close(fd);  // and the lock: that inode has no name any more
      fd = -1;
      locked = false;
    }
    replayed_ = ReadEvents(path_, replay);
    if (replayed_.torn_bytes > 0) {
      std::error_code ec;
      const auto size = std::filesystem::file_size(path_, ec);
      if (ec || ::ftruncate(fd, static_cast<off_t>(size) - replayed_.torn_bytes) != 0) {
        throw Error(ErrorCode::kIo,
                    path_ + ": cannot cut off a torn last line: " + std::strerror(errno));
      }
    }
    file_ = ::fdopen(fd, "ab");
    if (file_ == nullptr) {
      throw Error(ErrorCode::kIo, path_ + ": cannot open for appending: " + std::strerror(errno));
    }
  } catch (...) {
    // Only a file this object created and holds the lock of: a file it created but could not
    // lock is another server's log by now.
    if (created_ && locked) ::unlink(path_.c_str());  // before the lock goes with the file
    if (fd >= 0) ::close(fd);
    throw;
  }
  if (replayed_.unterminated) {
    // The last event is whole: end its line, so the next one does not join it.
    if (std::fputc('\n', file_) == EOF || std::fflush(file_) != 0) {
      const int err = errno;
      if (created_) ::unlink(path_.c_str());
      std::fclose(file_);  // and with it the lock: the constructor throws, no destructor runs
      file_ = nullptr;
      throw Error(ErrorCode::kIo,
                  path_ + ": cannot end the last event's line: " + std::strerror(err));
    }
  }
}

EventLog::~EventLog() {
  try {
    Flush(true);
  } catch (const Error&) {
  }
  std::fclose(file_);
}

void EventLog::Append(const Event& e) {
  nlohmann::json j = {{"ts_ms", e.ts_ms},
                      {"user_id", e.user_id},
                      {"item_id", e.item_id},
                      {"event", e.event},
                      {"variant", e.variant}};
  if (!e.models.empty()) j["models"] = e.models;
  const std::string line = j.dump() + "\n";
  std::lock_guard<std::mutex> lock(mutex_);
  // Through to the operating system before the caller acknowledges the event: a killed process
  // loses nothing it answered. One write per event; Flush(true) adds the fsync.
  const long before = std::ftell(file_);
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    // Not logged: the caller refuses the event (a 5xx), so nothing acknowledged is lost. A part
    // of the line may have reached the file (a full disk): cut back to the last whole event, or
    // the next event would join it into a line no start could read.
    const int error = errno;
    std::clearerr(file_);
    if (before < 0 || ::ftruncate(::fileno(file_), before) != 0 ||
        std::fseek(file_, 0, SEEK_END) != 0) {
      throw Error(ErrorCode::kIo,
                  path_ + ": write failed (" + std::strerror(error) +
                      ") and a partial line could not be cut off: " + std::strerror(errno));
    }
    throw Error(ErrorCode::kIo, path_ + ": write failed: " + std::strerror(error));
  }
  ++logged_;
}

void EventLog::Flush(bool sync) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (sync && ::fsync(::fileno(file_)) != 0) {
    throw Error(ErrorCode::kIo, path_ + ": fsync failed: " + std::strerror(errno));
  }
}

void EventLog::DiscardIfUnused() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!created_ || logged_ > 0) return;
  // Under this process's lock: a server that opened the file meanwhile gets the lock only after
  // this one closes it, finds its name gone and opens the path again (the constructor).
  ::unlink(path_.c_str());
  created_ = false;
}

int64_t EventLog::logged() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return logged_;
}

}  // namespace twotower::serve
