#include "twotower/serve/events.h"

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

int64_t ReadEvents(const std::string& path, const std::function<void(const Event&)>& f,
                   int64_t* torn_bytes) {
  const std::string text = ReadFile(path);
  size_t start = 0;
  int64_t line = 0, count = 0;
  *torn_bytes = 0;
  while (start < text.size()) {
    const size_t nl = text.find('\n', start);
    ++line;
    if (nl == std::string::npos) {
      // Written up to a crash: no line end, so not a whole event.
      *torn_bytes = static_cast<int64_t>(text.size() - start);
      break;
    }
    const std::string where = path + ":" + std::to_string(line);
    const nlohmann::json j =
        ParseJsonStrict(std::string_view(text).substr(start, nl - start), where);
    Event e;
    try {
      e.ts_ms = j.at("ts_ms").get<int64_t>();
      e.user_id = j.at("user_id").get<std::string>();
      e.item_id = j.at("item_id").get<std::string>();
      e.event = j.at("event").get<std::string>();
      e.variant = j.at("variant").get<std::string>();
    } catch (const nlohmann::json::exception& ex) {
      throw Error(ErrorCode::kCorruptData,
                  where + ": not an event (" + std::string(ex.what()) + ")");
    }
    if (!IsEventName(e.event))
      throw Error(ErrorCode::kCorruptData, where + ": unknown event " + Quote(e.event));
    f(e);
    ++count;
    start = nl + 1;
  }
  return count;
}

EventLog::EventLog(std::string path, const std::function<void(const Event&)>& replay)
    : path_(std::move(path)) {
  const std::filesystem::path p(path_);
  if (p.has_parent_path()) MakeDirectories(p.parent_path().string());
  std::error_code ec;
  if (std::filesystem::exists(path_, ec)) {
    int64_t torn_bytes = 0;
    replayed_ = ReadEvents(path_, replay, &torn_bytes);
    if (torn_bytes > 0) {
      torn_ = 1;
      const auto size = std::filesystem::file_size(path_, ec);
      if (ec || ::truncate(path_.c_str(), static_cast<off_t>(size) - torn_bytes) != 0) {
        throw Error(ErrorCode::kIo,
                    path_ + ": cannot cut off a torn last line: " + std::strerror(errno));
      }
    }
  }
  file_ = std::fopen(path_.c_str(), "ab");
  if (file_ == nullptr)
    throw Error(ErrorCode::kIo, path_ + ": cannot open for appending: " + std::strerror(errno));
}

EventLog::~EventLog() {
  try {
    Flush(true);
  } catch (const Error&) {
  }
  std::fclose(file_);
}

void EventLog::Append(const Event& e) {
  const nlohmann::json j = {{"ts_ms", e.ts_ms},
                            {"user_id", e.user_id},
                            {"item_id", e.item_id},
                            {"event", e.event},
                            {"variant", e.variant}};
  const std::string line = j.dump() + "\n";
  std::lock_guard<std::mutex> lock(mutex_);
  buffer_ += line;
  ++logged_;
}

void EventLog::Flush(bool sync) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!buffer_.empty()) {
    if (std::fwrite(buffer_.data(), 1, buffer_.size(), file_) != buffer_.size() ||
        std::fflush(file_) != 0) {
      throw Error(ErrorCode::kIo, path_ + ": write failed: " + std::strerror(errno));
    }
    buffer_.clear();
  }
  if (sync && ::fsync(::fileno(file_)) != 0) {
    throw Error(ErrorCode::kIo, path_ + ": fsync failed: " + std::strerror(errno));
  }
}

int64_t EventLog::logged() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return logged_;
}

}  // namespace twotower::serve
