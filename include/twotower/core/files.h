// File helpers: whole-file reads with clear errors, and atomic writes.
//
// Every output of twotower goes through AtomicFile or WriteFileAtomically: the bytes go to a
// temporary name in the same directory, are flushed, then renamed over the target, so a crash or
// an error never leaves a half-written model, embedding or metrics file. Not thread-safe per
// object; distinct objects may be used from distinct threads.
#ifndef TWOTOWER_CORE_FILES_H_
#define TWOTOWER_CORE_FILES_H_

#include <cstdio>
#include <string>
#include <string_view>

namespace twotower {

// Reads the whole file. Throws Error("<path>: cannot open: <reason>") when it cannot.
std::string ReadFile(const std::string& path);

// Writes `content` to `path` atomically (temporary name + rename). Creates parent directories.
void WriteFileAtomically(const std::string& path, std::string_view content);

// Creates the directory and its parents; throws Error naming the path on failure.
void MakeDirectories(const std::string& path);

// A file being written under a temporary name; Commit() renames it into place. Destroying an
// uncommitted AtomicFile removes the temporary file, so the target is either the old file or the
// complete new one; so does a SIGINT or SIGTERM to the `twotower` command (RegisterTemporaryFile).
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void Write(std::string_view bytes);
  void Write(const void* data, size_t size);
  // Flushes, syncs and renames the temporary file to the target path. Throws Error on failure.
  void Commit();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string temp_path_;
  std::FILE* file_ = nullptr;
  int registered_ = -1;  // RegisterTemporaryFile's slot
};

// Temporary files that an interrupted process must not leave behind. AtomicFile registers its
// temporary file while it is written; other writers of temporary files may register theirs.
// RegisterTemporaryFile returns a slot for UnregisterTemporaryFile, or -1 when none is free (64
// slots) or the path is longer than 1,023 bytes: the file is then simply not removed on a
// signal. Thread-safe.
int RegisterTemporaryFile(const std::string& path);
void UnregisterTemporaryFile(int slot);

// Removes every registered temporary file. Async-signal-safe (it calls unlink only): for a
// SIGINT / SIGTERM handler, before the process dies of the signal (src/main.cc does this).
void RemoveTemporaryFilesFromSignalHandler();

// Holds SIGINT / SIGTERM while a group of files that belong together is written and renamed
// into place (embed's .npy and .ids.txt, recommend's output and its .meta.json, the tables,
// splits and config of generate, data interactions and data movielens), so that an interrupt leaves
// all of them old or all of them new. The `twotower` command's handler defers a signal that arrives
// while a hold is alive (DeferInterrupt); the action set by SetDeferredInterruptAction runs when
// the last hold ends. Without that handler (the Python module) a hold does nothing. Keep holds
// short: the user waits for them. (A SIGKILL or a power cut can still part such files; their
// readers check that they match.)
class InterruptHold {
 public:
  InterruptHold();
  ~InterruptHold();
  InterruptHold(const InterruptHold&) = delete;
  InterruptHold& operator=(const InterruptHold&) = delete;
};
// For the signal handler, async-signal-safe: true when the signal is deferred (a hold is alive,
// or a hold ending right now took it), false when the handler must act on it now.
bool DeferInterrupt(int sig);
// What a deferred signal does when the last hold ends (the handler's own action).
void SetDeferredInterruptAction(void (*action)(int sig));

}  // namespace twotower

#endif  // TWOTOWER_CORE_FILES_H_
