// Thread settings for the whole process (OpenMP and Eigen).
#ifndef TWOTOWER_CORE_THREADS_H_
#define TWOTOWER_CORE_THREADS_H_

namespace twotower {

// Sets the number of worker threads used by OpenMP loops and Eigen's matrix products.
// threads <= 0 means all cores. Returns the number in effect. Call before starting work.
int SetThreads(int threads);

}  // namespace twotower

#endif  // TWOTOWER_CORE_THREADS_H_
