// ProgressBar: a progress bar on stderr for long loops (training epochs, batch jobs).
//
// On a terminal it redraws one line in place (`train  [#####.....]  42/100  loss 0.512`); when
// stderr is not a terminal it prints a single plain line when the loop finishes, so logs stay
// readable. Disabled bars print nothing. Not thread-safe: update it from one thread.
#ifndef TWOTOWER_CORE_PROGRESS_H_
#define TWOTOWER_CORE_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <string>

namespace twotower {

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
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace twotower

#endif  // TWOTOWER_CORE_PROGRESS_H_
