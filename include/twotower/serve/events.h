// The feedback event log of `twotower serve`: JSON lines appended to one file,
//   {"ts_ms": 1764450000000, "user_id": "42", "item_id": "50", "event": "click",
//    "variant": "control"}
// buffered in memory and written in batches: Flush() writes what is buffered (the server calls it
// every second and on shutdown, with an fsync), so a crash loses at most the last interval. At
// start the existing file is read back (a torn last line, from a crash in the middle of a write,
// is counted and cut off), so a restart continues the counts. Thread-safe.
#ifndef TWOTOWER_SERVE_EVENTS_H_
#define TWOTOWER_SERVE_EVENTS_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>

namespace twotower::serve {

struct Event {
  int64_t ts_ms = 0;  // Unix time, milliseconds
  std::string user_id, item_id;
  std::string event;  // "impression" | "click" | "like"
  std::string variant;
};

// True for the event names the log takes.
bool IsEventName(const std::string& name);

// Reads an event log without changing it (`twotower experiment report`): calls `f` with each
// whole event and returns how many; *torn_bytes receives the length of a torn last line (0 when
// none). Throws Error naming the file and line for a malformed line.
int64_t ReadEvents(const std::string& path, const std::function<void(const Event&)>& f,
                   int64_t* torn_bytes);

class EventLog {
 public:
  // Opens `path` for appending (creating it and its directory), first calling `replay` with each
  // event already in it. Throws Error naming the file and line for a malformed line other than a
  // torn last one.
  EventLog(std::string path, const std::function<void(const Event&)>& replay);
  ~EventLog();  // flushes and syncs
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  void Append(const Event& e);
  // Writes the buffered events; with sync, fsyncs the file too. Throws Error naming the file on a
  // write failure (the events stay buffered).
  void Flush(bool sync);
  int64_t logged() const;  // events appended since start
  int64_t replayed() const { return replayed_; }
  int64_t torn() const { return torn_; }  // torn last lines cut off at start (0 or 1)
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  mutable std::mutex mutex_;
  std::string buffer_;
  int64_t logged_ = 0, replayed_ = 0, torn_ = 0;
};

}  // namespace twotower::serve

#endif  // TWOTOWER_SERVE_EVENTS_H_
