// Thread settings for the whole process (OpenMP and Eigen).
#ifndef TWOTOWER_CORE_THREADS_H_
#define TWOTOWER_CORE_THREADS_H_

namespace twotower {

// Sets the number of worker threads used by OpenMP loops and Eigen's matrix products.
// threads <= 0 means all cores (this process's, divided among the mpirun ranks on this machine
// when they share them: core/dist.h). Returns the number in effect. Call before starting work.
int SetThreads(int threads);

// SetThreads for a scope: the calling thread's OpenMP and Eigen thread counts are put back as
// they were when it ends, so that a library call (app::Train from Python, a test) leaves the
// process's settings as it found them.
class ScopedThreads {
 public:
  explicit ScopedThreads(int threads);
  ~ScopedThreads();
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;
  int threads() const { return threads_; }  // the number in effect in the scope

 private:
  int threads_, previous_omp_, previous_eigen_;
};

}  // namespace twotower

#endif  // TWOTOWER_CORE_THREADS_H_
