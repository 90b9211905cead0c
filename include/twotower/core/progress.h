// ProgressBar: a progress bar on stderr for long loops (training epochs, batch jobs).
//
// On a terminal it redraws one line in place (`train  [#####.....]  42/100  loss 0.512`); when
// stderr is not a terminal it prints a single plain line when the loop finishes, so logs stay
// readable. Disabled bars print nothing. Not thread-safe: update it from one thread.
//
// A front end that draws bars itself (the Python module: tqdm in a terminal or a notebook)
// installs a ProgressSink for the length of a call (ScopedProgressSink); enabled bars then report
// to it instead of drawing on stderr.
#ifndef TWOTOWER_CORE_PROGRESS_H_
#define TWOTOWER_CORE_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <string>

namespace twotower {

// Receives the bars' states. Calls come from the thread that updates the bar: Start once, Update
// at most 20 times a second, Finish once. `bar` tells bars apart (one may start while another
// is open, e.g. "val" inside "train"); seconds since the bar started; status as ProgressBar's.
// An exception thrown by a sink is the caller's to catch: the sink must not throw.
class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  virtual void Start(int64_t bar, const std::string& label, int64_t total) = 0;
  virtual void Update(int64_t bar, int64_t done, double seconds, const std::string& status) = 0;
  virtual void Finish(int64_t bar, int64_t done, double seconds, const std::string& status) = 0;
};

// Installs `sink` process-wide (bars made while it is installed report to it) and puts the
// previous one back when it goes out of scope. One front end at a time: nest, do not interleave.
class ScopedProgressSink {
 public:
  explicit ScopedProgressSink(ProgressSink* sink);
  ~ScopedProgressSink();
  ScopedProgressSink(const ScopedProgressSink&) = delete;
  ScopedProgressSink& operator=(const ScopedProgressSink&) = delete;

 private:
  ProgressSink* previous_;
};

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, bool enabled);
  ~ProgressBar();

  // Sets the number of finished steps and an optional status text (e.g. the running loss).
  void Update(int64_t done, const std::string& status = "");
  // Draws the final state and ends the line. Called by the destructor if not called before.
  void Finish(const std::string& status = "");

 private:
  void Draw(const std::string& status, bool final_line);

  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  bool enabled_;
  bool tty_;
  bool finished_ = false;
  ProgressSink* sink_ = nullptr;  // the installed sink when enabled, else null
  int64_t id_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace twotower

#endif  // TWOTOWER_CORE_PROGRESS_H_
