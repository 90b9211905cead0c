// The feedback event log of `twotower serve`: JSON lines appended to one file,
//   {"event": "click", "item_id": "50", "ts_ms": 1764450000000, "user_id": "42",
//    "variant": "control"}
// and, for a like, "models": the SHA-256 of every model served when it came (which decides,
// by content, the models whose live history it joins after a restart or reload).
// Append writes each event through to the operating system before it returns, so an event the
// server acknowledged survives the process being killed at any moment; Flush(true) adds the fsync
// a power loss needs (the server calls it every second and on shutdown). At start the existing
// file is read back, so a restart continues the counts: a last line without its newline that
// holds a whole event is kept (the newline is added), one that does not (a write cut by a crash)
// is cut off; ReadReport says which. Thread-safe.
#ifndef TWOTOWER_SERVE_EVENTS_H_
#define TWOTOWER_SERVE_EVENTS_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace twotower::serve {

struct Event {
  int64_t ts_ms = 0;  // Unix time, milliseconds
  std::string user_id, item_id;
  std::string event;  // "impression" | "click" | "like"
  std::string variant;
  std::vector<std::string> models;  // a like's: the SHA-256 of each model served; else empty
};

// What reading an event log found.
struct ReadReport {
  int64_t events = 0;         // whole events read (and passed on)
  int64_t torn_bytes = 0;     // length of a last line that is not a whole event (0 when none)
  bool unterminated = false;  // the last event had no newline after it
  // One line for a person: how many events, and what was (or, reading only, would be) repaired.
  std::string Describe(const std::string& path, bool repaired) const;
};

// True for the event names the log takes.
bool IsEventName(const std::string& name);

// Reads an event log without changing it (`twotower experiment report`): calls `f` with each
// whole event (a last line without its newline counts when it is one). Throws Error naming the
// file and line for a malformed line other than the last.
ReadReport ReadEvents(const std::string& path, const std::function<void(const Event&)>& f);

class EventLog {
 public:
  // Opens `path` for appending (creating it and its directory), first calling `replay` with each
  // event already in it. Throws Error naming the file and line for a malformed line other than a
  // torn last one.
  EventLog(std::string path, const std::function<void(const Event&)>& replay);
  ~EventLog();  // flushes and syncs
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Writes one event through to the operating system (not yet fsynced). Throws Error naming the
  // file when the write fails (then the event is not logged).
  void Append(const Event& e);
  // With sync, fsyncs the file (what Append wrote survives a power loss). Throws Error naming the
  // file on failure.
  void Flush(bool sync);
  // Removes the log's file if this object created it and appended nothing to it: a server that
  // fails to start (its port taken) leaves no empty log behind. A log that was there before is
  // kept, however empty.
  void DiscardIfUnused();
  int64_t logged() const;                                   // events appended since start
  const ReadReport& replayed() const { return replayed_; }  // what the start read and repaired
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  mutable std::mutex mutex_;
  int64_t logged_ = 0;
  bool created_ = false;  // the file did not exist before this object opened it
  ReadReport replayed_;
};

}  // namespace twotower::serve

#endif  // TWOTOWER_SERVE_EVENTS_H_
