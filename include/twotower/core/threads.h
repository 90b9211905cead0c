// Thread settings: the thread count of core/parallel.h (kept as OpenMP's) and Eigen's.
#ifndef TWOTOWER_CORE_THREADS_H_
#define TWOTOWER_CORE_THREADS_H_

namespace twotower {

// Sets the calling thread's number of worker threads for core/parallel.h's ParallelFor (kept as
// OpenMP's thread count, omp_get_max_threads()); Eigen's own threading is turned off (the large
// products are split by core/parallel.h instead).
// threads <= 0 means all cores (this process's, divided among the mpirun ranks on this machine
// when they share them: core/dist.h). Returns the number in effect. Call before starting work.
int SetThreads(int threads);

// SetThreads for a scope: the calling thread's thread count is put back as it was when it ends, so
// that a library call (app::Train from Python, a test) leaves the process's settings as it found
// them.
class ScopedThreads {
 public:
  explicit ScopedThreads(int threads);
  ~ScopedThreads();
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;
  int threads() const { return threads_; }  // the number in effect in the scope

 private:
  int threads_, previous_omp_;
};

}  // namespace twotower

#endif  // TWOTOWER_CORE_THREADS_H_
